"""The passphrase's life: how strong a new one must be, checking it, and changing it.

Why a strength rule: the passphrase is the only thing between a stolen laptop
(or a copy of ``store.db``) and every title, note and document on it, and
scrypt only slows a guesser down by a constant. So a new passphrase must reach
zxcvbn's top score (4: "very unguessable", about 10^10 guesses or more, with
the member's own name and the program's name counted as known words). zxcvbn is
a well-kept estimator that knows dictionaries, names, keyboard patterns, dates
and l33t substitutions, which a length-and-classes rule does not: "Password1!"
passes such rules and fails here, "orchid lantern 52 ferry" passes here.

The rule applies when a passphrase is *chosen* (``Device.init``, ``join`` with
a new store, ``change``), never when one is *used*: a store made before the
rule keeps opening, and ``check`` says whether its passphrase would pass today.

Why changing is cheap and safe: the passphrase wraps only the 32-byte store
key (see ``vault``); every sealed value is under the store key, which does not
change. So a change rewrites two meta rows (the wrapped key and the KDF cost)
in one SQLite transaction: a kill -9 at any moment leaves the store opening
with exactly one of the old and the new passphrase, never neither.

A lost passphrase cannot be recovered (nobody else holds the store key, by
design). The way back is to enroll the device again (``RECOVERY``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import UsageError
from . import vault
from ..i18n import _

if TYPE_CHECKING:  # locked.py imports this module for the strength rule
    from .locked import LockedDevice

# zxcvbn's scores run 0..4; 4 means an estimated 10^10 guesses or more.
MIN_SCORE = 4
# Longest passphrase that may be chosen (a longer one is refused before it is hashed).
MAX_CHARS = 1024
# zxcvbn's own cap on what it estimates; a longer passphrase is judged by its first 72 characters,
# which only ever underestimates it.
ESTIMATE_CHARS = 72
# Words a guesser would try first for anyone using this program.
KNOWN_WORDS = ("hbw", "hbw-sync", "sync", "passphrase", "password")

# zxcvbn keeps the user inputs of the call in a module-level dict: one estimate at a time
# (a web app may judge two passphrases at once).
_ESTIMATE_LOCK = threading.Lock()

RECOVERY = (
    "If you lose your passphrase, nobody can open this device's store, not even office IT. "
    "Ask office IT for a new invite and join again with a fresh store: the team's tasks and documents "
    "come back from the relay; only changes this device had not yet sent are lost."
)


@dataclass(frozen=True)
class Strength:
    """zxcvbn's verdict on a candidate passphrase, in words a person can act on."""

    score: int  # 0..4
    ok: bool  # score >= MIN_SCORE
    guesses_log10: float
    warning: str
    suggestions: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"score": self.score, "ok": self.ok, "min_score": MIN_SCORE,
                "guesses_log10": round(self.guesses_log10, 1), "warning": self.warning,
                "suggestions": self.suggestions}


def strength(passphrase: str, known: Iterable[str] = ()) -> Strength:
    """How guessable ``passphrase`` is; ``known`` adds words a guesser knows (the member's name, team).

    Only the first ``ESTIMATE_CHARS`` are estimated, so the cost is bounded whatever the length.
    """
    if not isinstance(passphrase, str):
        raise UsageError(_("the passphrase must be text"), code="usage.weak_passphrase")
    from zxcvbn import zxcvbn  # here, not at the top: its word lists cost ~25-70 ms that status and sync never need

    with _ESTIMATE_LOCK:
        r = zxcvbn(passphrase[:ESTIMATE_CHARS], user_inputs=[*KNOWN_WORDS, *(w for w in known if w)])
    fb = r.get("feedback") or {}
    return Strength(
        score=int(r["score"]),
        ok=int(r["score"]) >= MIN_SCORE,
        guesses_log10=float(r["guesses_log10"]),
        warning=fb.get("warning") or "",
        suggestions=list(fb.get("suggestions") or []),
    )


def require_strong(passphrase: str, known: Iterable[str] = ()) -> None:
    """Refuse a new passphrase that is empty, too long, or below ``MIN_SCORE``.

    Raises:
        UsageError ``usage.weak_passphrase``: nothing was created or changed.
    """
    if not passphrase:
        raise UsageError(_("the passphrase must not be empty"), code="usage.weak_passphrase",
                         hint=_("choose four or more unrelated words, e.g. 'orchid lantern 52 ferry'"))
    if len(passphrase) > MAX_CHARS:
        raise UsageError(_("the passphrase is longer than {MAX_CHARS} characters").format(MAX_CHARS=MAX_CHARS), code="usage.weak_passphrase",
                         hint=_("a few unrelated words are enough"))
    s = strength(passphrase, known)
    if s.ok:
        return
    why = s.warning[:1].lower() + s.warning[1:].rstrip(".") if s.warning else None
    why = why or f"about 10^{s.guesses_log10:.0f} guesses would find it; a new one needs 10^10"
    raise UsageError(
        _("this passphrase is too easy to guess ({why}); nothing was changed").format(why=why),
        code="usage.weak_passphrase",
        hint=" ".join([*s.suggestions, "Choose four or more unrelated words, e.g. 'orchid lantern 52 ferry'."]),
    )


@dataclass(frozen=True)
class CheckResult:
    """Whether a passphrase opens this store, and whether it would be accepted if chosen today."""

    opens: bool
    strength: Strength | None  # None when it does not open the store (no verdict on a wrong one)

    def to_dict(self) -> dict[str, object]:
        return {"opens": self.opens, "strength": None if self.strength is None else self.strength.to_dict()}


def check(dev: "LockedDevice", passphrase: str) -> CheckResult:
    """Does ``passphrase`` open ``dev``'s store? A wrong one is a value here, not an error."""
    if not dev.opens_with(passphrase):
        return CheckResult(opens=False, strength=None)
    return CheckResult(opens=True, strength=strength(passphrase, [dev.identity.member, dev.identity.team_name or ""]))


def change(dev: "LockedDevice", old: str, new: str, *, kdf: vault.KdfParams | None = None,
           on_step: Callable[[str], None] | None = None) -> None:
    """Re-wrap the store key under ``new``: one transaction, so a kill -9 leaves exactly one passphrase working.

    ``kdf`` sets a new scrypt cost (default: keep the store's). ``on_step`` is
    called with "unwrapped", "wrapped", "written" and "committed" as the change
    goes: a seam for the kill -9 test and for a progress display.

    Raises:
        WrongKeyError: ``old`` does not open the store (nothing changed).
        UsageError ``usage.weak_passphrase``: ``new`` is too weak (nothing changed).
        UsageError ``usage.same_passphrase``: ``new`` equals ``old``.
        StoreError: the store could not be written (nothing changed).
    """
    step = on_step or (lambda _name: None)
    ident = dev.identity
    require_strong(new, [ident.member, ident.team_name or ""])
    if new == old:
        raise UsageError(_("the new passphrase is the same as the old one; nothing was changed"),
                         code="usage.same_passphrase")
    s = dev.store
    before = s.meta("store_key")
    current = vault.KdfParams.from_list(s.meta("kdf"))
    store_key = vault.unwrap_store_key(old, before, current)  # WrongKeyError if old is wrong
    step("unwrapped")
    params = kdf or current
    wrapped = vault.wrap_store_key(new, store_key, params)
    step("wrapped")
    with s.transaction():
        if s.meta("store_key") != before:  # another 'passphrase change' won the race: keep its result
            raise UsageError(_("the passphrase was changed by another command meanwhile; nothing was changed"),
                             code="usage.changed_meanwhile")
        s.set_meta("kdf", params.to_list())
        s.set_meta("store_key", wrapped)
        step("written")
    step("committed")

