"""What the relay accepts, per action: the one table of request args and body sizes.

Why a table: every byte of a request arrives before anything about its sender
is known. The relay reads the routing header, refuses a body over its action's
limit, verifies the signature, and only then decodes the args, each by its spec
here (``schema.decode`` checks type and length from the msgpack header before
it copies anything). ``enroll`` is the one action whose args are decoded before
a signature can be checked (they carry the key that signs it), so its body and
fields are small. An arg that is not in this table is skipped unbuilt and never
reaches the action: **adding an arg to an action means adding one line here**
(``tests/test_hostile.py`` fails if relay code reads an arg this table lacks).

Connection limits (timeouts, caps) are in ``connections.py``; stored-data
quotas (unfinished uploads) are below, beside the args they bound.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .. import bundle as bundle_fmt
from .. import chunks, codec, features
from ..errors import LimitError, TransientError
from ..schema import Bin, Bool, Int, ListOf, Opt, Soft, Spec, Str, Tuple

#: Largest HTTP request body (40 MiB): a sync carrying inline batches, or a bundle's batches.
MAX_BODY = 40 * 1024 * 1024
#: Largest bundle ``POST /v1/bundle`` takes (``RelayConfig.bundle_max`` overrides): the largest a device
#: writes in format 2 (``bundle.MAX_STREAM``, 4 GiB). It is read as a stream, never held (``app.read_bundle``).
BUNDLE_MAX = bundle_fmt.MAX_STREAM
#: A format 1 bundle is one AEAD message, read whole: it keeps the old request body limit.
BUNDLE_V1_MAX = MAX_BODY
#: Largest upload or download piece.
CHUNK_MAX = 256 * 1024
#: Unfinished uploads older than this are dropped (a device resumes within hours, not days).
UPLOAD_EXPIRE_MS = 24 * 3_600_000
#: Bytes of unfinished uploads one device may hold at the relay.
UPLOAD_QUOTA = 64 * 1024 * 1024

_MSG = codec.DEFAULT_LIMITS.max_message  # 32 MiB: one batch or snapshot
_EPOCH = Int(1, 2**32 - 1)
_U63 = Int(0, 2**63 - 1)


@dataclass(frozen=True)
class Action:
    """An action's largest body and its args (name -> spec); ``pre_auth``: args decoded before the signature."""

    body: int
    args: dict[str, Spec] = field(default_factory=dict)
    pre_auth: bool = False


ACTIONS: dict[str, Action] = {
    "enroll": Action(body=16 * 1024, pre_auth=True, args={
        "token": Bin(64, 16),
        "author_pub": Bin(32, 32),
        "transport_pub": Bin(32, 32),
        "x25519_pub": Bin(32, 32),
        "label": Str(64),
        "proof": Bin(32, 32),  # the enrollment proof (PROTOCOL.md §14b)
    }),
    "sync": Action(body=MAX_BODY, args={
        "cursor": _U63,
        "budget": _U63,
        "batches": ListOf(Bin(_MSG), 20_000),
        "roster_v": Opt(_U63),
        "key": Tuple((_EPOCH, Bin(32))),  # [epoch, key id]
        "grants": ListOf(Tuple((Bin(8, 8), _EPOCH, Bin(1024))), 10_000),  # [device, epoch, grant]
        "snapshot": Soft(Tuple((_U63, Bin(_MSG)))),  # [cursor, sealed snapshot]; another shape is refused as a value
        "bundle": _U63,  # a bundle's counter (only inside a bundle)
        "reply_max": Int(64 * 1024, 32 * 1024 * 1024),  # largest reply part (only inside a bundle; bundle_replies)
        "no_snapshot": Bool(),  # true: replay history instead of a snapshot (the device refused one, §18)
        # Admission (§14b): approval records, welcomes after a code approval, rejections (supervisors).
        "approvals_after": _U63,
        "want_welcome": Bool(),
        "approvals": ListOf(Bin(512), 256),
        "welcomes": ListOf(Tuple((Bin(8, 8), ListOf(_EPOCH, 4096), Bin(64 * 1024))), 256),
        "reject": ListOf(Bin(8, 8), 256),
        # What the device's software reads (features.py, a bit set): kept per device, handed out with the roster.
        "reads": Int(0, features.READS_MAX),
    }),
    "invite": Action(body=80 * 1024, args={  # a supervisor's team invite (§14b)
        "token_hash": Bin(32, 32),
        "member": Str(32),
        "role": Str(16),
        "ttl_days": Int(1, 90),
        "welcome": Bin(64 * 1024),
        "epochs": ListOf(_EPOCH, 4096),
    }),
    "upload": Action(body=CHUNK_MAX + 4096, args={
        "seq": _U63,
        "total": Int(0, _MSG),
        "offset": Int(0, _MSG),
        "chunk": Bin(CHUNK_MAX),
        "sha256": Bin(32, 32),
    }),
    "evidence": Action(body=4096, args={  # a supervisor's audit export (PROTOCOL.md §24)
        "member": Str(32),
        "task": Bin(32, 1),
        "since_ms": _U63,
        "until_ms": _U63,
    }),
    "download": Action(body=4096, args={
        "rseq": _U63,
        "offset": _U63,
        "length": Int(1, 2**31),
    }),
}

# -- document chunks (PROTOCOL.md §18e): outside batches, in the relay's chunk store --
#: Bytes of sealed chunks one team may keep at the relay (``RelayConfig.chunk_quota`` overrides).
CHUNK_QUOTA = 20 * 1024**3
#: Largest total of sealed chunks one ``chunk_put`` carries, and one ``chunk_get`` answers.
CHUNK_PUT_MAX = 4 * 1024 * 1024
CHUNK_GET_MAX = 4 * 1024 * 1024
#: Most ids one ``chunk_missing`` or ``chunk_get`` names (16 bytes each: 64 KiB).
CHUNK_IDS_MAX = 4096
#: An unreferenced chunk is kept this long: a device uploads chunks before the batch naming them.
CHUNK_GRACE_MS = 7 * 86_400_000
#: Garbage collection scans the store at most this often (and whenever a put would pass the quota).
CHUNK_GC_EVERY_MS = 3_600_000

_CID = Bin(16, 16)
_SEALED_CHUNK = Bin(chunks.SEALED_MAX, 1)
ACTIONS.update({
    "chunk_put": Action(body=CHUNK_PUT_MAX + 64 * 1024, args={
        "chunks": ListOf(Tuple((_CID, _SEALED_CHUNK)), CHUNK_PUT_MAX // 1024),
    }),
    "chunk_missing": Action(body=CHUNK_IDS_MAX * 18 + 4096, args={"ids": ListOf(_CID, CHUNK_IDS_MAX)}),
    "chunk_get": Action(body=CHUNK_IDS_MAX * 18 + 4096, args={
        "ids": ListOf(_CID, CHUNK_IDS_MAX),
        "budget": Int(1, CHUNK_GET_MAX),
    }),
})

# A bundle's sealed chunks (PROTOCOL.md §18f): only inside a bundle (online, ``chunk_put`` carries them);
# the list is bounded here and by the bundle's size (``bundle.MAX_BUNDLE``), each chunk like ``chunk_put``'s.
ACTIONS["sync"].args["chunks"] = ListOf(Tuple((_CID, _SEALED_CHUNK)), bundle_fmt.MAX_CHUNKS)
# A format 2 bundle's body, named by its signed request: [SHA-256, segment count, byte length] (§18b).
ACTIONS["sync"].args["body"] = Tuple((Bin(32, 32), Int(1, bundle_fmt.MAX_STREAM), Int(0, bundle_fmt.MAX_STREAM)))
# The chunks a bundle's device wants in the reply (its fetch policy's, bounded like ``chunk_get``'s ids).
ACTIONS["sync"].args["want_chunks"] = ListOf(_CID, CHUNK_IDS_MAX)

# -- streamed uploads (PROTOCOL.md §13a, ``stream.py``): a signed head, then the batch's raw bytes --
#: Largest stream head (its 2-byte length prefix excluded): a request envelope of four small args.
STREAM_HEAD_MAX = 1024
#: Body bytes a stream gathers before writing them to the partial upload (a cut loses none of them:
#: what is gathered is written when the connection drops too); also what it holds of the BodyBudget.
STREAM_FLUSH = 64 * 1024
#: The stream head's args; the head is an ordinary request envelope with the action ``stream``, accepted
#: only on ``POST /v1/stream`` (not in ``ACTIONS``: it has no body of its own on ``/v1``).
STREAM = Action(body=STREAM_HEAD_MAX, args={
    "seq": _U63,
    "total": Int(1, _MSG),
    "offset": Int(0, _MSG),
    "sha256": Bin(32, 32),
    "chunks": Bool(),  # true: the bytes are a pack of sealed document chunks, not a batch (§18e)
})
#: A streamed download's request (``POST /v1/fetch``, ``stream.serve_fetch``): a large batch from an offset.
FETCH = Action(body=4096, args={
    "rseq": _U63,
    "offset": _U63,
})
#: A chunk pack's ``seq`` is at least this (a batch's never is): its upload never meets a batch's.
PACK_SEQ = 1 << 62
#: Largest chunk pack (what one ``chunk_put`` may carry).
PACK_MAX = 4 * 1024 * 1024


#: Largest body before the action is known (the first bytes name it; see ``body_limit``).
HEAD_BYTES = 128


def action_for(name: str) -> Action | None:
    return ACTIONS.get(name)


def check_body(name: str, size: int) -> None:
    """Refuse a body over its action's limit, before any of it is decoded."""
    act = ACTIONS.get(name)
    if act is not None and size > act.body:
        raise LimitError(f"a {name} request of {size} bytes is over the {act.body}-byte limit", code="protocol.limit")


class BodyBudget:
    """Bytes of request bodies the relay holds at once: in total, and per client address.

    Why: each body is bounded, but not how many arrive together. 64 connections from one
    address each sending 31 MiB would be 2 GB before any signature is checked. A body
    holds its bytes from the first chunk until its answer is sent; one that does not fit
    is refused as ``transient.busy`` (503, retry shortly), changing nothing. A largest
    body (40 MiB) always fits an otherwise idle address.
    """

    def __init__(self, total: int = 128 * 1024 * 1024, per_address: int = 48 * 1024 * 1024):
        self.total, self.per_address = total, per_address
        self.held = 0
        self.by_address: Counter[str] = Counter()

    def take(self, address: str, n: int) -> None:
        if self.held + n > self.total or self.by_address[address] + n > self.per_address:
            raise TransientError("the relay is receiving too much at once; nothing was stored",
                                 code="transient.busy", hint="the next sync tries again")
        self.held += n
        self.by_address[address] += n

    def give(self, address: str, n: int) -> None:
        self.held -= n
        self.by_address[address] -= n
        if self.by_address[address] <= 0:
            del self.by_address[address]
