"""A device's side of trusting a snapshot: what it has seen, what it accepts, and falling back.

A snapshot lets this device's pull cursor jump past the team's history, so a bad one (a
member's, a stale one, one that leaves batches out) would hide those batches from it for
ever while every sync still "worked". So before the cursor moves, even in a sync without
the passphrase, the device checks what it can without the team key: the author is a
supervisor device this device trusts (keyflow.trust: never on the relay's roster's word) and
not revoked, the signature holds under the key that trust names, the header's cursor is the
one the relay served, and the coverage claims no fewer of any device's batches than this
device has already seen. A snapshot refused here (or one that fails to decode later) is
dropped: the cursor stays (or goes back) where it was, the device asks the relay for no
snapshot until it has replayed past the refused cursor, and the person is told in plain
words. See PROTOCOL.md §18.

The coverage count (meta ``seen_seqs``: device id -> highest batch seq) is what a
supervisor's device signs as its own snapshot's coverage; it is raised by every batch put
in the inbox, every ack of the device's own batches, and every snapshot applied.
"""

from __future__ import annotations

from typing import Any

from .. import messages, snapshot
from ..errors import AccessError, HbwError, IntegrityError, ProtocolError, from_dict
from . import keyflow, notices
from ..clock import now_ms
from .store import Store
from ..i18n import _

#: Header bytes of a batch that hold its seq (u64, big-endian): PROTOCOL.md §5.
_SEQ = slice(22, 30)
#: After the relay refused this device's own snapshot, it builds none for this long: building one
#: reads the whole op log and sends it, and the relay asks at every sync until it holds one.
RETRY_AFTER_MS = 24 * 3600 * 1000


def seen(store: Store) -> dict[bytes, int] | None:
    """device -> highest batch seq this device has seen at or below its pull cursor; None if not counted.

    A store made before the count existed (it has synced, and has no count) cannot vouch
    for what it holds, so it builds no snapshot.
    """
    m = store.meta("seen_seqs")
    if m is None:
        return {} if not store.meta("pull_cursor", 0) else None
    return dict(m)


def start_count(store: Store) -> None:
    """Begin the count with the first sync's answer (inside its transaction): from then on it is complete."""
    if store.meta("seen_seqs") is None and not store.meta("pull_cursor", 0):
        store.set_meta("seen_seqs", {})


def raise_seen(store: Store, items: dict[bytes, int]) -> None:
    """Raise the count for these devices (inside the caller's transaction)."""
    m = seen(store)
    if m is None or not items:
        return
    for d, q in items.items():
        if q > m.get(d, -1):
            m[d] = q
    store.set_meta("seen_seqs", m)


def batch_seq(data: bytes) -> int:
    """The seq in a batch's header (0 if too short to hold one: such a batch is dropped when applied)."""
    return int.from_bytes(data[_SEQ], "big") if len(data) >= _SEQ.stop else 0


def saw_batch(store: Store, device: bytes, data: bytes) -> None:
    raise_seen(store, {device: batch_seq(data)})


def admitted(store: Store, trusted: keyflow.Trusted) -> bool:
    """Whether this device trusts a supervisor's device yet (not while it waits for an approval)."""
    me = store.meta("device_id")
    return any(role == "supervisor" for d, (_pub, role, _x) in trusted.items() if d != me)


def check_served(store: Store, entry: Any) -> tuple[snapshot.Claim, str] | HbwError:
    """The claim and its author's member name, or the reason to refuse; no team key needed.

    Call after the response's roster is recorded and before its batches are counted.
    """
    try:
        if not (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is int
                and isinstance(entry[1], bytes) and isinstance(entry[2], bytes)):
            raise ProtocolError(_("malformed snapshot entry in the relay's answer"), code="protocol.schema")
        cursor, author, data = entry
        # The author's key and role come from this device's own trust (welcomes and approval
        # records signed by supervisors it trusts), never from the relay's roster: a hostile relay
        # host could list a device of its own there as a supervisor. The roster only names people.
        e = (store.meta("roster_keys") or {}).get(author.hex())
        member = e[0] if e else f"device {author.hex()[:8]}"
        if e is not None and len(e) > 3 and e[3] is not None:
            raise AccessError(_("it comes from {member}'s device, which was revoked").format(member=member), code="access.role")
        trusted = keyflow.trust(store)
        t = trusted.get(author)
        if t is None and e is not None and not admitted(store, trusted):
            # Not admitted yet (office IT's invite, no approval): this device trusts no supervisor,
            # so it can hold the snapshot only provisionally on the roster's word. It stays sealed
            # until the key arrives with an approval, and is opened only with the key the device
            # then trusts; if that fails, the cursor goes back and the history is replayed
            # (``Incoming._apply_snapshot``).
            t = (e[1], e[4] if len(e) > 4 else "member", None)
        if t is None:
            raise IntegrityError(_("it comes from {member}'s device, which no supervisor of this team approved").format(member=member),
                                 code="integrity.device")
        author_pub, role, _x = t
        if role != "supervisor":
            raise AccessError(_("{member} is not a supervisor, and only a supervisor's device may provide one").format(member=member),
                              code="access.role")
        claim = snapshot.verify(data, author_pub, store.meta("team_id"))
        if claim.cursor != cursor:
            raise IntegrityError(_("the relay served it for another point in the history than it covers"),
                                 code="integrity.coverage")
        me = store.meta("device_id")
        for d, q in (seen(store) or {}).items():
            if d != me and claim.coverage.get(d, -1) < q:
                raise IntegrityError(_("it covers fewer changes than this device already holds"),
                                     code="integrity.coverage")
        return claim, member
    except HbwError as e:
        return e


def refuse(store: Store, cursor: int, author: bytes, reason: HbwError) -> str:
    """Drop a snapshot and replay history instead; returns the sentence to tell the person.

    Inside the caller's transaction. The relay is asked for no snapshot until the pull
    cursor has passed the refused one.
    """
    who = ((store.meta("roster_keys") or {}).get(author.hex()) or [None])[0] or f"device {author.hex()[:8]}"
    text = (f"Refused a summary of the team's history from {who}'s device: {reason.message}. "
            "This device fetches the full history instead; nothing will be missing, it only takes longer.")
    store.set_meta("snapshot_refused", {"cursor": cursor, "author": author, "code": reason.code,
                                        "reason": reason.message, "text": text, "at_ms": now_ms()})
    store.set_meta("snapshot_in", None)
    params = {"who": who, **notices.why_params(reason)}
    notices.add_notice(store, text, code="notice.snapshot_refused", params=params, when_ms=now_ms())
    return notices.shown("notice.snapshot_refused", notices.pack(params), text)  # said now, in today's words


def relay_refused_mine(store: Store, error: dict[str, Any], now: int) -> str:
    """The relay did not keep this device's snapshot: remember when (see ``may_build``); the words to say."""
    store.set_meta("snapshot_mine_refused", {"at_ms": now, "code": str(error.get("code"))})
    why = messages.words(from_dict(error))[0]
    return _("the relay did not keep this device's summary of the history ({why}); nothing is lost: new devices "
             "fetch the full history instead. This device tries again tomorrow.").format(why=why)


def may_build(store: Store, now: int) -> bool:
    """Whether to answer the relay's request for a snapshot now (not within a day of a refusal of ours)."""
    r = store.meta("snapshot_mine_refused")
    return not r or now - int(r.get("at_ms", 0)) >= RETRY_AFTER_MS


def refused_recently(store: Store) -> dict[str, Any] | None:
    """The last refused snapshot, while this device is still replaying the history it would have skipped."""
    r = store.meta("snapshot_refused")
    if r and store.meta("pull_cursor", 0) < r["cursor"]:
        return dict(r)
    return None


__all__ = ["seen", "start_count", "raise_seen", "saw_batch", "batch_seq", "admitted", "check_served", "refuse", "refused_recently",
           "relay_refused_mine", "may_build"]


# -- whether a snapshot saves a late joiner bytes (issue 11) -----------------------------------------

#: A snapshot is sent when a late joiner would otherwise download more than this many times its size
#: (below the 1.5x the relay aims at, so a snapshot goes before that bound is passed).
SAVES_FACTOR = 1.25


def worth_building(store: Store, joiner_bytes: Any) -> bool:
    """Whether to build a snapshot the relay asked for: not while what a joiner downloads now is
    within SAVES_FACTOR of the last one built and kept back (building reads the whole op log)."""
    if type(joiner_bytes) is not int:  # a relay that does not say: build, as before
        return True
    last = store.meta("snapshot_kept_back")
    return last is None or joiner_bytes > SAVES_FACTOR * last


def worth_sending(store: Store, joiner_bytes: Any, size: int) -> bool:
    """Send a built snapshot only if it saves a late joiner bytes: a team whose history is mostly
    its state (a document added, then small edits) would upload a snapshot larger than the history.
    Kept back, its size is remembered so the next ask does not build again for nothing."""
    if type(joiner_bytes) is not int or joiner_bytes > SAVES_FACTOR * size:
        store.set_meta("snapshot_kept_back", None)
        return True
    store.set_meta("snapshot_kept_back", size)
    return False
