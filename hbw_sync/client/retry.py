"""One sync that finishes the job: reconnect with backoff while the link moves bytes, within a deadline.

Why: on a 3G dongle that drops every few hundred KB, each single attempt ends in
a dropped connection although bytes went through and were kept (uploads and
downloads resume at the piece, acknowledged batches leave the outbox). A person
who clicks "Sync now" and goes to cook dinner should not have to run it twelve
times. So ``finish`` runs attempts until one completes, and stops early only
when

* the deadline passes (a person's default is minutes, a scheduler's is under
  its own interval), or
* ``tries_without_progress`` attempts in a row moved nothing at all: the relay
  is truly unreachable, and trying on only burns the battery.

Progress is counted at the transport: the bytes of every round trip that came
back whole (request and answer). A round trip that completed was applied (the
sync module applies each answer in one transaction), so it is progress that no
later cut can take back.

This module does no I/O of its own: the caller hands in one attempt (a function
given a transport), how much is still to move, and how to wait.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..errors import TransientError, UsageError
from ..timefmt import human_bytes
from ..i18n import _

T = TypeVar("T")
Transport = Callable[..., Any]

#: Deadline of a sync started by a person (``hbw-sync sync`` on a terminal): long enough for a few MB
#: over a poor 3G link, short enough that it does not run on unseen all evening.
PERSON_DEADLINE_S = 600.0
#: Deadline of a scheduled sync: under the shipped 30-minute schedule, so runs never pile up.
SCHEDULER_DEADLINE_S = 1500.0


def default_deadline(person: bool) -> float:
    """The deadline when none is given: a person's at a terminal, else a scheduler's."""
    return PERSON_DEADLINE_S if person else SCHEDULER_DEADLINE_S


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1h`` (a ``--deadline``); 0 means one attempt.

    Raises:
        UsageError: not a duration, negative, or over a day.
    """
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz").strip()
    unit = t[len(num):].strip() or "s"
    try:
        secs = float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        raise UsageError(_("{text!r} is not a duration").format(text=text), hint=_("write it like 90s, 10m or 1h")) from None
    if not 0 <= secs <= 86_400:
        raise UsageError(_("a deadline of {text!r} is out of range").format(text=text), hint=_("give between 0 and 24h")) from None
    return secs


def _sleep(s: float) -> bool:
    """The plain wait: sleeps, and is never told to stop."""
    time.sleep(s)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts, and when to call the relay unreachable."""

    #: Wait after an attempt that moved bytes: the link was up a moment ago, so come back quickly.
    first_wait_s: float = 0.5
    #: The wait doubles after each attempt that moved nothing, up to this.
    max_wait_s: float = 30.0
    #: Attempts in a row that moved nothing before the relay counts as unreachable (waits 2 s, 4 s).
    tries_without_progress: int = 3
    #: A relay that asks for a longer wait than this (a full disk: 10 min) ends the sync at once with
    #: its own words; the next scheduled sync tries again. A short ask (busy: 5 s) is waited out.
    max_relay_wait_s: float = 10.0
    #: Waits ``s`` seconds; returns True if told to stop meanwhile (``watch``'s SIGTERM).
    wait: Callable[[float], bool] = field(default=_sleep)
    #: Jitter factor range, so many laptops cut by one outage do not all return in step.
    jitter: tuple[float, float] = (0.8, 1.2)


@dataclass(frozen=True)
class RetryNotice:
    """One dropped attempt, told before the wait: what went, what is left, when the next try is."""

    attempt: int
    went: int  # bytes of the round trips that completed, over all attempts so far
    left: int  # bytes still waiting to move, as far as this device can tell
    wait_s: float
    error: str  # the underlying error, for the log: never shown to a person as is

    def to_dict(self, phase: str | None = None) -> dict[str, Any]:
        """The ``--progress json`` line for the tray and the app: integer bytes, seconds, no exception names.

        ``phase`` is what was moving when the link dropped (``upload``, ``download``), None if unknown.
        """
        return {"event": "retry", "attempt": self.attempt, "dropped": phase, "went_bytes": self.went,
                "left_bytes": self.left, "next_attempt_s": round(self.wait_s, 1), "message": self.text()}

    def text(self) -> str:
        """The sentence a person reads: plain words, no exception names."""
        wait = f"trying again in {self.wait_s:.0f} s." if self.wait_s >= 1 else "trying again now."
        if self.went:
            return (f"The link dropped after {human_bytes(self.went)} of {human_bytes(self.went + self.left)}; "
                    f"{human_bytes(self.left)} left; {wait}")
        return f"Could not get through to the relay; {wait}"


class _Counter:
    """Wraps a transport: counts completed round trips and their bytes, and refuses to start one past the deadline."""

    def __init__(self, inner: Transport, deadline_at: float | None):
        self.inner, self.deadline_at = inner, deadline_at
        self.bytes = 0

    async def __call__(self, url: str, body: bytes, timeout: float, **kw: Any) -> bytes:
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            raise TransientError(_("the sync's deadline passed"), code="transient.deadline")
        raw = await self.inner(url, body, timeout, **kw)
        self.bytes += len(body) + len(raw)
        return raw


def finish(attempt: Callable[[Transport], T], transport: Transport, *, deadline_s: float, left: Callable[[], int],
           policy: RetryPolicy = RetryPolicy(), on_retry: Callable[[RetryNotice], None] | None = None,
           where: str = "the relay") -> T:
    """Run ``attempt`` until it returns, resuming after each dropped link, within ``deadline_s`` seconds.

    ``attempt(transport)`` is one whole sync; it must keep what completed round
    trips brought (the sync module does). ``left()`` says how many bytes still
    wait to move, for the words.

    Raises:
        TransientError ``transient.deadline``: the deadline passed first; says what went and what is left.
        TransientError ``transient.no_progress``: ``policy.tries_without_progress`` attempts in a row
            moved nothing.
        Any other error of an attempt, at once (a refusal is not made better by asking again; nor is
        another sync holding this store, ``transient.locked``, nor a relay that asks for a long wait).
    """
    t0 = time.monotonic()
    deadline_at = t0 + deadline_s
    counter = _Counter(transport, deadline_at)
    idle = 0  # attempts in a row that moved nothing
    wait = policy.first_wait_s
    tries = 0
    while True:
        tries += 1
        before = counter.bytes
        try:
            return attempt(counter)
        except TransientError as e:
            if e.code == "transient.locked" or (e.retry_after_s or 0) > policy.max_relay_wait_s:
                raise  # not the link: another sync holds the store, or the relay's disk needs a person first
            last = e
        moved = counter.bytes > before
        if last.code == "transient.deadline":
            raise _deadline_error(deadline_s, counter.bytes, left()) from last
        if moved:
            idle, wait = 0, policy.first_wait_s
        else:
            idle += 1
            if idle >= policy.tries_without_progress:
                raise _unreachable_error(where, idle, time.monotonic() - t0, counter.bytes, left()) from last
            wait = min(policy.max_wait_s, policy.first_wait_s * 2 ** idle)
        pause = wait * random.uniform(*policy.jitter)
        if last.retry_after_s:  # the relay said how long (it is busy): sooner would only resend bytes
            pause = max(pause, float(last.retry_after_s))
        if time.monotonic() + pause >= deadline_at:
            raise _deadline_error(deadline_s, counter.bytes, left()) from last
        if on_retry is not None:
            on_retry(RetryNotice(tries, counter.bytes, left(), pause, f"{type(last).__name__}: {last}"))
        if policy.wait(pause):
            raise TransientError(_("the sync was stopped before it finished"), code="transient.stopped",
                                 hint=_("nothing was lost; the next sync goes on from where this "
                                       "one stopped")) from last


def _minutes(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


def _deadline_error(deadline_s: float, went: int, left: int) -> TransientError:
    return TransientError(
        _("The sync stopped at its deadline ({deadline_s}): {went} went through, {left} is left.").format(deadline_s=_minutes(deadline_s), went=human_bytes(went), left=human_bytes(left)),
        code="transient.deadline",
        hint=_("nothing was lost; the next sync goes on from where this one stopped (or give a "
              "longer --deadline)"),
    )


def _unreachable_error(where: str, tries: int, spent_s: float, went: int, left: int) -> TransientError:
    # English for logs; (code, params) for the person's words when shown (hbw_sync/messages.py).
    if went:
        params: dict[str, str | int] = {"case": "dropped", "where": where, "went": human_bytes(went),
                                        "total": human_bytes(went + left), "n": tries, "left": human_bytes(left)}
        msg = ("The link to {where} dropped after {went} of {total}, and {n} tries since moved nothing; "
               "{left} is left.").format(**params)
    else:
        params = {"case": "unreachable", "where": where, "n": tries, "spent": _minutes(spent_s)}
        msg = "Could not reach {where} ({n} tries in {spent}).".format(**params)
    return TransientError(msg, code="transient.no_progress", params=params,
                          hint=_("nothing was lost; sync again when the link is back"))
