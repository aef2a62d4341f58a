"""One error tree for the whole of hbw-sync, and the one place it maps to exit codes and HTTP.

Every failure a user, a script or a peer can meet is an ``HbwError``. Expected
outcomes (a conflict, "no such task") are *values*, not exceptions; these are
for the cases where the operation cannot go on and nothing was changed.

::

    HbwError                      exit 1   HTTP 500  something unexpected
    ├── UsageError                exit 2   HTTP 400  bad input from the person or script
    ├── ConfigError               exit 78  HTTP 500  not initialised, no team, bad home
    ├── StoreError                exit 74  HTTP 500  local store unreadable, disk full
    │   └── StorageError          exit 74  HTTP 503  disk full, I/O error, read-only, busy: free space, retry
    ├── ProtocolError             exit 65  HTTP 400  bytes that are not a valid message
    │   ├── LimitError            exit 65  HTTP 413  over a size cap, decompression bomb
    │   └── VersionError          exit 76  HTTP 426  unknown format version or dictionary
    ├── IntegrityError            exit 65  HTTP 400  signature, AEAD tag or hash mismatch
    ├── AccessError               exit 77  HTTP 403  not allowed
    │   ├── WrongKeyError         exit 77  HTTP 403  wrong passphrase or team key
    │   └── RevokedError          exit 77  HTTP 403  this device was revoked
    └── TransientError            exit 75  HTTP 503  relay unreachable, link dropped: retry later

Exit codes follow BSD ``sysexits.h`` so that cron and systemd can tell
"try again later" (75) from "a person must look at this".

``StorageError`` is a fault of the disk under a store, not of the request: on
the machine that has it (the relay's admin commands, a device's own store) it
is exit 74, a person must free space or fix the disk; a *peer* that meets it
(a device whose sync the relay could not save) gets HTTP 503 with Retry-After
and, through ``from_peer``, a ``TransientError``: exit 75, its changes stay
queued and go out at a later sync.

Each error also carries a stable dotted ``code`` (``protocol.truncated``,
``integrity.signature``...) that JSON output and the wire use, and that the
protocol test vectors name, so another implementation can be checked against
the same expectations without sharing class names.

The ``code`` is also the key of the words a person reads (``hbw_sync/messages.py``): an error may
carry ``params`` (names → short values) that fill that code's template, and a front end renders
``(code, params)`` in the person's language when it shows the error. ``message`` stays English for
logs and the wire; ``params`` travel in the relay's error body beside it, bounded on arrival
(``MAX_PARAMS``...) because error bodies are not signed.
"""

from __future__ import annotations

import re
from typing import Any


class HbwError(Exception):
    """Root of every error hbw-sync raises on purpose.

    ``message`` says what went wrong in words a non-engineer can act on;
    ``hint`` (optional) says what to do about it. ``params`` (optional) are the values the
    code's template in ``messages.MESSAGES`` names: given (even empty), they ask front ends to
    render the code's words in the person's language instead of ``message``. ``from_peer`` is
    True for an error rebuilt from a relay's answer (its ``message`` and ``hint`` are English and
    may name the relay's commands).
    """

    code = "error"
    from_peer = False
    peer_hint: str | None = None

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None,
                 params: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.hint = hint
        self.params: dict[str, str | int] | None = None if params is None else clean_params(params)

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-friendly dict, for ``--json`` output and wire responses."""
        d: dict[str, Any] = {"error": type(self).__name__, "code": self.code, "message": self.message}
        if self.hint:
            d["hint"] = self.hint
        if self.params:
            d["params"] = dict(self.params)
        return d

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(HbwError):
    code = "usage"


class ConfigError(HbwError):
    code = "config"


class StoreError(HbwError):
    code = "store"


class StorageError(StoreError):
    """The disk under a store failed a read or write; nothing of the operation was kept.

    Codes: ``store.disk_full``, ``store.io``, ``store.read_only``, ``store.busy``,
    ``store.corrupt``. Raised by the I/O edges (``server/db.py``) from SQLite's
    and the OS's error numbers, never from message text alone.
    """

    code = "store.io"


class ProtocolError(HbwError):
    code = "protocol"


class LimitError(ProtocolError):
    code = "protocol.limit"


class VersionError(ProtocolError):
    code = "protocol.version"


class IntegrityError(HbwError):
    code = "integrity"


class AccessError(HbwError):
    code = "access"


class WrongKeyError(AccessError):
    code = "access.wrong_key"


class RevokedError(AccessError):
    code = "access.revoked"


class TransientError(HbwError):
    code = "transient"
    #: Seconds the peer asked us to wait (its HTTP Retry-After), when it said; bounded by ``from_peer``.
    retry_after_s: int | None = None


# The one table of exit codes. Looked up along the MRO, most specific first.
EXIT_CODES: dict[type[HbwError], int] = {
    HbwError: 1,
    UsageError: 2,
    ConfigError: 78,  # EX_CONFIG
    StoreError: 74,  # EX_IOERR
    StorageError: 74,
    ProtocolError: 65,  # EX_DATAERR
    LimitError: 65,
    VersionError: 76,  # EX_PROTOCOL
    IntegrityError: 65,
    AccessError: 77,  # EX_NOPERM
    WrongKeyError: 77,
    RevokedError: 77,
    TransientError: 75,  # EX_TEMPFAIL
}

# The one table of HTTP statuses, for the relay.
HTTP_STATUSES: dict[type[HbwError], int] = {
    HbwError: 500,
    UsageError: 400,
    ConfigError: 500,
    StoreError: 500,
    StorageError: 503,  # the request was fine; the relay's disk was not: retry later
    ProtocolError: 400,
    LimitError: 413,
    VersionError: 426,
    IntegrityError: 400,
    AccessError: 403,
    WrongKeyError: 403,
    RevokedError: 403,
    TransientError: 503,
}

# Seconds a peer should wait before retrying, sent as HTTP Retry-After with every 503.
RETRY_AFTER_S: dict[str, int] = {
    "store.busy": 5,  # another writer (a backup, an admin command) holds the lock for a moment
    "store.disk_full": 600,  # a person must free space first
    "store.read_only": 600,
    "store.io": 300,
    "store.corrupt": 3600,
    "transient.busy": 5,  # request bodies held at once over the relay's budget: a moment
    "transient.slow_body": 60,  # the request arrived too slowly: the link may be better in a minute
}
DEFAULT_RETRY_AFTER_S = 60


_BY_NAME: dict[str, type[HbwError]] = {cls.__name__: cls for cls in EXIT_CODES}


def _lookup(table: dict[type[HbwError], int], exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return table[HbwError]


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an error (1 for anything outside the tree)."""
    return _lookup(EXIT_CODES, exc)


def http_status_for(exc: BaseException) -> int:
    """The HTTP status the relay answers with for an error."""
    return _lookup(HTTP_STATUSES, exc)


def retry_after_for(exc: BaseException) -> int | None:
    """Seconds for an HTTP ``Retry-After`` header, for errors answered 503; None otherwise."""
    if http_status_for(exc) != 503:
        return None
    return RETRY_AFTER_S.get(getattr(exc, "code", ""), DEFAULT_RETRY_AFTER_S)


MAX_PARAMS = 8  # names in an error's params
MAX_PARAM_NAME = 32
MAX_PARAM_TEXT = 200  # characters of one text value; longer ones are cut
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,%d}\Z" % (MAX_PARAM_NAME - 1))


def clean_params(params: Any) -> dict[str, str | int]:
    """An error's params, bounded: at most ``MAX_PARAMS`` names of ``[a-z][a-z0-9_]*``, each an int
    (|n| < 2**53) or text of at most ``MAX_PARAM_TEXT`` characters; anything else is dropped.

    Why drop instead of refuse: params only fill words on a screen. An error body from the relay is
    not signed (§13a), so a forged or future one may carry anything; the error itself must still be
    reported, and a template whose value was dropped falls back to the English ``message``.
    """
    out: dict[str, str | int] = {}
    if not isinstance(params, dict):
        return out
    for k, v in params.items():
        if len(out) >= MAX_PARAMS:
            break
        if not isinstance(k, str) or not _PARAM_NAME.match(k):
            continue
        if isinstance(v, bool):
            continue
        if isinstance(v, int) and abs(v) < 2**53:
            out[k] = v
        elif isinstance(v, str):
            out[k] = v[:MAX_PARAM_TEXT]
    return out


def from_dict(d: dict[str, Any]) -> HbwError:
    """Rebuild an error sent by a peer (the relay's JSON error body), unknown names as ``HbwError``.

    Every field is type- and size-checked here: the body is not signed. The result is marked
    ``from_peer`` so a front end shows the code's words, not the peer's English.
    """
    cls = _BY_NAME.get(str(d.get("error")), HbwError)
    code = d.get("code")
    code = code[:64] if isinstance(code, str) and code else None
    hint = d.get("hint")
    hint = hint[:1000] if isinstance(hint, str) and hint else None
    message = d.get("message", "unknown error")
    message = message[:2000] if isinstance(message, str) else "unknown error"
    params = d.get("params")
    e = cls(message, code=code, hint=hint, params=params if isinstance(params, dict) else None)
    e.from_peer = True
    e.peer_hint = hint  # a hint changed on this side after this (more said about what it means here) is ours
    return e


MAX_RETRY_AFTER_S = 3600  # error bodies are unsigned: a forged Retry-After may delay a device this long at most


def from_peer(d: dict[str, Any], status: int, retry_after: str | None = None) -> HbwError:
    """Rebuild an error a peer answered with HTTP ``status`` (and ``Retry-After`` header, if any).

    A 503 means "the request was fine, try again later" whatever the peer's class
    (its disk is full, it is busy): for us that is a ``TransientError`` (exit 75)
    that keeps the peer's code, message and hint, never a fault of our own store.
    ``Retry-After`` counts only as a whole number of seconds, capped at
    ``MAX_RETRY_AFTER_S`` (the HTTP-date form is ignored).
    """
    e = from_dict(d)
    if status == 503 and not isinstance(e, TransientError):
        e = TransientError(e.message, code=e.code, hint=e.hint, params=e.params)
        e.from_peer, e.peer_hint = True, e.hint
    if isinstance(e, TransientError) and retry_after and len(retry_after) <= 10 and retry_after.isdigit():
        e.retry_after_s = min(int(retry_after), MAX_RETRY_AFTER_S)
    return e
