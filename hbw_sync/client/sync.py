"""Joining a relay and syncing with it: one round trip in the common case, nothing lost on a bad link.

A sync request carries the outbox (closed batches, up to a byte budget) and the
pull cursor; the response carries the acknowledgements and the batches this
device has not seen (up to ``budget`` bytes). Further round trips happen only
while more is waiting on either side.

Crash and link safety follow from two rules:

* the outbox loses a batch only when a response *signed by the pinned relay*
  acknowledges it, and the relay acknowledges only after its commit; a batch
  sent twice (lost ack) is recognised by (device, seq) and not applied twice;
* each response is applied in one local transaction (acks, received batches,
  cursor), so a sync cut at any point either took effect whole or not at all.

Without the passphrase (a scheduler) a sync moves sealed batches only: what it
receives waits in the inbox until the next unlocked command applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import aiohttp

from .. import codec, crypto, envelope, evidence, features, hlc, messages, wordcode
from ..enroll import Invite
from ..i18n import _, ngettext
from ..errors import (ConfigError, HbwError, IntegrityError, LimitError, ProtocolError, TransientError, UsageError,
                      WrongKeyError, from_dict, from_peer)
from ..timefmt import human_bytes
from . import keyflow, notices
from .device import Device, now_ms
from .locked import LockedDevice
from .store import DB_NAME, default_home
from .replica import Replica
from . import docdelta, docsync, retry, snapshots
from .progress import Meter, OnProgress
from .vault import KdfParams
from .synclock import sync_lock  # the one OS lock, behind its seam (bundles and tests import it from here)
from ..i18n import _

DEFAULT_BUDGET = 200_000
MAX_ROUND_TRIPS = 10_000
#: Bytes/s below which an upload counts as stalled (16 kbit/s, well under the slowest link served).
MIN_UPLOAD_RATE = 2_000
#: Batches above this size travel in resumable pieces instead of inside a sync request.
INLINE_MAX = 64 * 1024
CHUNK = 64 * 1024
#: Bytes of a streamed download gathered before they are written to the store (and on a drop).
FETCH_FLUSH = 64 * 1024


@dataclass
class SyncReport:
    ok: bool = True
    round_trips: int = 0
    sent_batches: int = 0
    sent_bytes: int = 0
    received_batches: int = 0
    received_bytes: int = 0
    #: Why a snapshot from the relay was refused (this device replays the history instead), or None.
    snapshot_reject: dict[str, Any] | None = None
    applied_ops: int = 0
    waiting_to_apply: int = 0
    rejected: int = 0
    # A passphrase was given but does not open the store (a stale HBW_PASSPHRASE): the sync ran locked.
    wrong_passphrase: bool = False
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: What the key flow waits on a person for: who, since when, what to do (keyflow.waiting).
    waiting: list[dict[str, Any]] = field(default_factory=list)
    #: Attempts this sync took: more than 1 when the link dropped and it went on (``sync(deadline=...)``).
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- transport ---------------------------------------------------------------------------------------


async def post(url: str, body: bytes, timeout: float, *, path: str = "/v1", unverified_tls: bool = False,
               on_sent: Callable[[int], None] | None = None,
               on_chunk: Callable[[bytes], None] | None = None) -> bytes:
    """POST one envelope; transport failures become TransientError, relay errors their own class.

    ``timeout`` bounds a stall, not the transfer: a total bound would fail a batch
    bigger than what the link moves in ``timeout`` on every retry, for ever. The
    request's bytes may still be on their way long after the socket took them, so
    the wait for the answer, and for each of its bytes, allows ``timeout`` plus the
    request's size at ``MIN_UPLOAD_RATE``.

    ``on_sent(n)`` (a stream) hears how many bytes of ``body`` were handed to the socket so far,
    as they go: a large upload shows progress while it moves, not only when it ends.
    ``on_chunk(data)`` (a streamed download) is handed a ``200`` answer's bytes as they arrive, and
    ``b""`` is returned: what came before a drop is the caller's to keep.
    """
    try:
        stall = timeout + len(body) / MIN_UPLOAD_RATE
        to = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 15), sock_read=stall)
        shared = _SESSION.get()
        # Within one sync, round trips reuse one keep-alive connection: on a 300-800 ms link a new
        # TCP handshake per 64 KiB piece would cost more than the piece.
        async with (contextlib.nullcontext(shared) if shared else aiohttp.ClientSession(timeout=to)) as session:
            pin = TLS_PIN.get()
            tls = aiohttp.Fingerprint(pin) if pin and url.startswith("https://") else None
            async with asyncio.timeout(stall):
                # unverified_tls: only for a word-code fetch, whose answer is authenticated by the words (§14a).
                ssl_arg: Any = False if unverified_tls else (tls if tls else True)
                headers = {"Content-Type": "application/x-hbw"}
                data: Any = body
                if on_sent is not None:  # sized, so that the relay sees a Content-Length (it needs one)
                    data, headers["Content-Length"] = _slices(body, on_sent), str(len(body))
                # No User-Agent or Accept-Encoding: ~70 bytes a request that a link cut every few KB
                # pays on every attempt (the relay never compresses, and knows who asks from the envelope).
                resp = await session.post(url.rstrip("/") + path, data=data, timeout=to, ssl=ssl_arg,
                                          headers=headers, skip_auto_headers=_SKIP_HEADERS)
            async with resp:  # leaving it unread closes the connection: an over-long answer is not drained
                if resp.status == 200 and on_chunk is not None:
                    got = 0
                    async for piece in resp.content.iter_any():
                        got += len(piece)
                        if got > MAX_STREAMED_ANSWER:
                            raise answer_too_large(MAX_STREAMED_ANSWER)
                        on_chunk(piece)
                    return b""
                data = await read_capped(resp, MAX_ANSWER if resp.status == 200 else MAX_ERROR_BODY)
                if resp.status == 200:
                    return data
                try:
                    err = json.loads(data)
                except ValueError:
                    err = None
                if isinstance(err, dict) and "error" in err:
                    raise from_peer(err, resp.status, resp.headers.get("Retry-After"))
                if resp.status >= 500:
                    raise TransientError(_("the relay answered {status}; try again later").format(status=resp.status))
                raise ProtocolError(_("the relay answered {status} {reason}").format(status=resp.status, reason=resp.reason), code="protocol.http")
    except HbwError:
        raise
    except aiohttp.ClientConnectorCertificateError:
        raise IntegrityError(_("the relay's TLS certificate is not trusted by this computer"), code="integrity.tls",
                             hint=_("ask office IT for an invite made after 'hbw-relay serve "
                                   "--tls-cert' (it pins the certificate)")) from None
    except aiohttp.ServerFingerprintMismatch:
        raise IntegrityError(_("the relay's TLS certificate is not the one your invite pinned: this may not be "
              "your office's relay"), code="integrity.tls",
                             hint=_("ask office IT whether the relay's certificate changed")) from None
    # The words are for a person; the library's exception (its class name, "ServerDisconnectedError")
    # goes to the log only: ``technical`` below, and the chained cause.
    except aiohttp.ClientConnectorError as e:  # no connection: nothing of the request left this device
        _log_cause(url, e)
        raise TransientError(
            _("could not reach the relay at {url}").format(url=url), code="transient.unreachable",
            hint=_("nothing was lost; sync again when the link is back"),
        ) from e
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        _log_cause(url, e)
        what = (_("the relay did not answer in time ({url})") if isinstance(e, asyncio.TimeoutError)
                else _("the link to the relay dropped before the answer was complete ({url})"))
        raise TransientError(what.format(url=url), hint=_("nothing was lost; sync again when the link is back")) from e


#: Largest answer read from the relay: a response envelope is at most ``max_message`` (32 MiB, §10, §12).
MAX_ANSWER = codec.DEFAULT_LIMITS.max_message
#: Largest streamed answer (``/v1/fetch``, §17): a head (2 + at most 65 535 bytes) and one batch.
MAX_STREAMED_ANSWER = MAX_ANSWER + 2 + 0xFFFF
#: Largest error body read from the relay: a JSON code, its words and a few bounded params (§13).
MAX_ERROR_BODY = 64 * 1024


def answer_too_large(cap: int) -> LimitError:
    """The error for an answer longer than a client reads: plain words, nothing of the answer used."""
    return LimitError(_("the relay's answer is longer than {size}, the most hbw-sync reads; nothing of it was used")
                      .format(size=human_bytes(cap)), code="protocol.answer_size",
                      hint=_("this is not a relay hbw-sync can work with; ask office IT"))


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body of ``resp``, refused with ``protocol.answer_size`` as soon as it passes ``cap`` bytes.

    Why: the relay's answers are read before their signature is checked, and an error body is not
    signed at all. Without a bound a broken or hostile server (or anything between) sending an
    endless body would fill this device's memory. A declared ``Content-Length`` over the cap is
    refused before a byte is read; otherwise the count is checked at every piece that arrives, so
    at most ``cap`` plus one piece is held.
    """
    if resp.content_length is not None and resp.content_length > cap:
        raise answer_too_large(cap)
    buf = bytearray()
    async for piece in resp.content.iter_chunked(64 * 1024):
        buf += piece
        if len(buf) > cap:
            raise answer_too_large(cap)
    return bytes(buf)


_SKIP_HEADERS = ("User-Agent", "Accept-Encoding")
#: Bytes a stream hands to the socket at a time (and between two progress reports).
SEND_SLICE = 16 * 1024


async def _slices(body: bytes, on_sent: Callable[[int], None]) -> Any:
    view = memoryview(body)
    for at in range(0, len(body), SEND_SLICE):
        part = view[at:at + SEND_SLICE]
        yield bytes(part)
        on_sent(at + len(part))


def _log_cause(url: str, e: BaseException) -> None:
    """Keep the library's own account of a link failure for whoever debugs (not for the person)."""
    logging.getLogger(__name__).info("link to %s failed: %s: %s", url, type(e).__name__, e)


class Transport(Protocol):
    """How a request reaches the relay: ``post`` in real use; tests wrap it to cut or count the link."""

    def __call__(self, url: str, body: bytes, timeout: float, *, path: str = ...,
                 on_sent: Callable[[int], None] | None = ...,
                 on_chunk: Callable[[bytes], None] | None = ...) -> Awaitable[bytes]: ...


_SESSION: contextvars.ContextVar[aiohttp.ClientSession | None] = contextvars.ContextVar("hbw_session", default=None)
#: SHA-256 of the relay's TLS certificate as the invite pinned it (None: plain http, or system CAs).
TLS_PIN: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("hbw_tls_pin", default=None)


async def _pinned(pin: bytes | None, coro: Any) -> Any:
    token = TLS_PIN.set(pin)
    try:
        return await coro
    finally:
        TLS_PIN.reset(token)


def call(dev: Device, action: str, args: dict[str, Any], transport: "Transport", timeout: float) -> dict[str, Any]:
    """One signed request to this device's relay outside a sync (e.g. 'invite'); the verified result."""
    s = dev.store
    body, nonce = envelope.make_request(dev.transport_key(), s.meta("device_id"), action, args, now_ms())
    raw = asyncio.run(_pinned(s.meta("tls_sha256"), transport(s.meta("relay_url"), body, timeout)))
    return envelope.parse_response(raw, s.meta("relay_public"), nonce).result


# -- join ---------------------------------------------------------------------------------------------


def _enroll(dev: Device, inv: Invite, passphrase: str, label: str, transport: Transport,
            timeout: float) -> tuple[dict[str, Any], dict[int, bytes]]:
    """Enroll ``dev`` with the relay the invite pins and store its answer; closes ``dev``."""
    with dev:
        rep = dev.unlock(passphrase)
        s = dev.store
        if s.meta("relay_public") is not None:
            raise UsageError(_("this device already joined a relay"), hint=_("use a separate --home for another team"))
        if s.meta("member") != inv.member:
            raise UsageError(_("this invite is for {member!r}, but this device belongs to {meta!r}").format(member=inv.member, meta=s.meta('member')))
        local_team = s.meta("team_id")
        author = rep.author
        proof, code = keyflow.join_proof(inv, author.public, dev.transport_key().public, s.meta("x25519_public"))
        args = {
            "token": inv.token,
            "author_pub": author.public,
            "transport_pub": dev.transport_key().public,
            "x25519_pub": s.meta("x25519_public"),
            "label": label or platform.node()[:64],
            "proof": proof,
        }
        body, nonce = envelope.make_request(dev.transport_key(), author.device_id, "enroll", args, now_ms())
        raw = asyncio.run(_pinned(inv.tls_sha256, transport(inv.url, body, timeout)))
        res = envelope.parse_response(raw, inv.relay_public, nonce).result
        if res.get("team") != inv.team:
            raise ProtocolError(_("the relay answered for another team than the invite names"), code="integrity.team")
        relay_keys: dict[int, bytes] = res["keys"]
        with s.transaction():
            s.set_meta("join_pending", None)
            s.set_meta("relay_url", inv.url)
            s.set_meta("relay_public", inv.relay_public)
            s.set_meta("role", res["role"])
            s.set_meta("team_name", res["team_name"])
            s.set_meta("relay_x25519", res.get("relay_x25519"))
            s.set_meta("tls_sha256", inv.tls_sha256)
            if not relay_keys and res["role"] == "supervisor":
                # The team's first supervisor device: its key (new, or its local team's) becomes epoch 1.
                if local_team is None:
                    rep.add_team_key(crypto.TeamKey.generate(epoch=1))
                key = rep.current_key()
                s.set_meta("publish_key", [key.epoch, key.key_id])
                s.set_meta("team_id", res["team"])
                if local_team is not None and local_team != res["team"]:
                    rep.changes.reseal_outbox()
            elif local_team is not None:
                raise UsageError(
                    _("this device holds work of a team started offline; only the team's "
                          "first supervisor device can bring such work to a relay"),
                    hint=_("use a fresh --home for this invite; ask office IT to revoke this "
                          "enrollment"),
                )
            else:
                s.set_meta("team_id", res["team"])
            keyflow.joined(rep.ledger, inv, res, code, first_device=not relay_keys and res["role"] == "supervisor")
        if res.get("welcome"):
            keyflow.open_welcome(rep.ledger)
    return res, relay_keys


def _discard_store(root: Path, fresh_dir: bool) -> None:
    """Remove a store that a failed join created (and its directory, if the join made that too)."""
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", "sync.lock"):
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    if fresh_dir:
        with contextlib.suppress(OSError):
            root.rmdir()


def resolve_word_code(relay_url: str | None, text: str, timeout: float = 60,
                      transport: Callable[..., Any] = post) -> str:
    """The full invite that a word code unlocks at the relay (PROTOCOL.md §14a).

    Raises:
        UsageError: the code is mistyped, or no relay address was given.
        AccessError (``access.code``): the relay holds no such code, or the words do not match.
        IntegrityError (``integrity.code``): what came back does not open with the words (not our relay).
        TransientError: the relay cannot be reached, or it is refusing codes for a while.
    """
    slot, words = wordcode.parse_code(text)
    if not relay_url:
        raise UsageError(_("a word code needs the relay's address too"),
                         hint=_("hbw-sync join --relay http://OFFICE-HOST:PORT CODE (office IT "
                               "says it with the code)"))
    url = relay_url.strip() if "://" in relay_url else "http://" + relay_url.strip()
    proof, seal_key = wordcode.derive(slot, words)
    raw = asyncio.run(transport(url, wordcode.fetch_request(slot, proof), timeout, path="/v1/code",
                                unverified_tls=True))
    try:
        if len(raw) > wordcode.MAX_SEALED_INVITE + 16:
            raise ProtocolError(_("too long"), code="protocol.limit")
        sealed = codec.unpack(raw)
    except ProtocolError:
        raise ProtocolError(_("the relay's answer to a word code is malformed"), code="protocol.schema") from None
    return wordcode.open_invite(seal_key, slot, sealed)


def join(home: Path | None, code: str, passphrase: str, *, label: str = "", transport: Transport = post,
         timeout: float = 60, kdf: KdfParams = KdfParams(), relay_url: str | None = None,
         on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Enroll this device with an invite (creating the store if there is none), then sync once.

    ``on_progress`` is passed to that first sync (a late joiner may download a lot).

    A join that fails leaves nothing behind: a store it created is removed, and the error's hint
    says so, so the next try starts clean. One exception: when the link dropped after the request
    may have reached the relay, the new keys are kept (the relay may have enrolled them), so the
    same join can finish; a later join for another member replaces such a store.

    Raises:
        UsageError: the invite is damaged, or this store belongs to someone else or another relay.
        AccessError (``access.invite``): the relay refused the invite (used, expired, unknown).
        TransientError: the relay could not be reached.
        IntegrityError: the relay is not the one the invite pins.
        And for a word code (with ``relay_url``), what ``resolve_word_code`` raises.
    """
    if wordcode.looks_like_code(code):
        code = resolve_word_code(relay_url, code, timeout)
    inv = Invite.decode(code)
    root = Path(home) if home else default_home()
    fresh_dir = not root.exists()
    try:
        dev = Device.open(home)
        created = False
        if dev.store.meta("join_pending") and dev.store.meta("member") != inv.member:
            # Left by an earlier join whose answer never came, for another person: it holds nothing
            # but keys, so start again rather than stop at "this device belongs to someone else".
            dev.close()
            _discard_store(root, False)
            raise ConfigError(_("no store"))
    except ConfigError:
        dev = Device.init(home, inv.member, passphrase, kdf=kdf)
        with dev.store.transaction():
            dev.store.set_meta("join_pending", True)
        created = True
    try:
        res, relay_keys = _enroll(dev, inv, passphrase, label, transport, timeout)
    except BaseException as e:
        if not created:
            raise
        if isinstance(e, TransientError) and e.code != "transient.unreachable":
            # The relay may have enrolled this device's keys before the link dropped: keep them, so the
            # same join finishes it (the relay answers a retry with the same keys, PROTOCOL.md §14).
            e.hint = ("this device's keys are kept so that the same 'hbw-sync join' can finish when the relay "
                      "can be reached; nothing else was stored")
            raise
        _discard_store(root, fresh_dir)
        if isinstance(e, TransientError):
            e.hint = "nothing was kept on this device; run the same 'hbw-sync join' when the relay can be reached"
        elif isinstance(e, HbwError):
            e.hint = ((e.hint + "; ") if e.hint else "") + "nothing was kept on this device"
        raise
    out = {"member": res["member"], "role": res["role"], "team": res["team_name"], "relay": inv.url,
           "first_device": not relay_keys and res["role"] == "supervisor"}
    try:
        report = sync(home, passphrase, transport=transport, timeout=timeout, on_progress=on_progress)
        out["synced"] = report.ok
        out["received_bytes"] = report.received_bytes  # a late joiner's first download (issue 11)
    except TransientError as e:
        out["synced"] = False
        out["note"] = str(e)
    with Device.open(home) as d:
        out["waiting"] = keyflow.waiting(d.store)  # e.g. the approval code to show a supervisor
    return out


# -- sync ---------------------------------------------------------------------------------------------


#: Smallest piece and budget a link that keeps dropping shrinks them to (the relay's least budget is 1 KiB).
MIN_PIECE = 2 * 1024


@dataclass
class _Link:
    """What the attempts of one sync learn about the link: how big a round trip gets through whole.

    A piece bigger than what the link carries between two drops would be cut
    every time, for ever (the relay keeps only whole pieces). So an attempt that
    dropped before any piece or batch got through halves the piece size and the
    sync budget, and each round trip that completes grows them a little, back
    towards their normal size: a link that drops every few KB still moves a
    multi-MB outbox, one small piece at a time. An attempt that did move some
    keeps the sizes: the gap between drops is bigger than a piece, and smaller
    pieces would only cost more round trips.
    """

    budget: int
    piece: int = CHUNK
    top_budget: int = 0
    #: Payload bytes (pieces, batches) moved by completed round trips, over all attempts.
    moved: int = 0
    #: Large batch seq -> bytes the relay holds of it (its last answer): not "left" any more.
    held: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.top_budget = self.top_budget or self.budget

    def shrink(self) -> None:
        self.piece = max(MIN_PIECE, self.piece // 2)
        self.budget = max(MIN_PIECE, self.budget // 2)

    def grow(self) -> None:
        # Additive increase (as TCP's congestion window): doubling would overshoot the gap between two
        # drops at once, and lose every second piece.
        self.piece = min(CHUNK, self.piece + MIN_PIECE)
        self.budget = min(self.top_budget, self.budget + 4 * MIN_PIECE)



class _Session:
    """State of one sync run over one store."""

    #: What this device says it reads (sync arg ``reads``, ``features.py``); None sends none, as an
    #: hbw-sync from before the arg did (tests drive such an older device with it).
    reads: int | None = features.READS

    def __init__(self, dev: LockedDevice, rep: Replica | None, link: _Link | int, transport: Transport, timeout: float,
                 on_progress: OnProgress | None = None):
        self.dev, self.rep, self.s = dev, rep, dev.store
        self.link = link if isinstance(link, _Link) else _Link(link)  # an int: a fixed budget (a reply bundle)
        self.transport, self.timeout = transport, timeout
        self.report = SyncReport()
        self.meter = Meter(on_progress)
        #: Bytes the outbox held when this run started (the upload's total); set by ``run``.
        self.up_total = 0
        #: The relay said more waits than it sent: the download's total is not known yet.
        self.more_waiting = True
        #: Plain bytes of document chunks still to fetch in this run (set by ``docsync.fetch``): part of the
        #: download's total while it fetches.
        self.chunks_to_fetch = 0
        self.outgoing_grants: list[list[Any]] = []
        self.admission_sent: dict[str, Any] = {}
        self.snapshot: list[Any] | None = None

    def request(self) -> tuple[bytes, bytes, list[tuple[int, int]]]:
        s = self.s
        sent: list[tuple[int, int]] = []
        batches: list[bytes] = []
        used = 0
        for seq, size in s.execute(
            "SELECT seq, size FROM outbox WHERE state = 'closed' AND size <= ? ORDER BY seq", (INLINE_MAX,)
        ).fetchall():
            if batches and used + size > self.link.budget:
                break
            batches.append(s.execute("SELECT data FROM outbox WHERE seq = ?", (seq,)).fetchone()[0])
            sent.append((seq, size))
            used += size
        args: dict[str, Any] = {
            "cursor": s.meta("pull_cursor", 0),
            "budget": self.link.budget,
            "batches": batches,
            "roster_v": s.meta("roster_v"),
        }
        if self.reads is not None:
            args["reads"] = self.reads
        if s.meta("publish_key"):
            args["key"] = s.meta("publish_key")
        if snapshots.refused_recently(s):
            args["no_snapshot"] = True  # replaying the history a refused snapshot would have skipped
        if self.outgoing_grants:
            args["grants"] = self.outgoing_grants
        if self.snapshot:
            args["snapshot"] = self.snapshot
        self.admission_sent = keyflow.request_args(s)
        args.update(self.admission_sent)
        body, nonce = envelope.make_request(self.dev.transport_key(), s.meta("device_id"), "sync", args, now_ms())
        return body, nonce, sent

    def apply_response(self, res: dict[str, Any], sent: list[tuple[int, int]]) -> bool:
        """Record one response in one transaction; True if another round trip is needed."""
        s = self.s
        capped: set[tuple[int, bytes]] = set()
        refused = False
        # A relay that serves a snapshot although this device asked for none is not asked again in
        # this run (it could answer so for ever): the sync stops, says so, and nothing is lost.
        replaying = snapshots.refused_recently(s) is not None
        with s.transaction():
            snapshots.start_count(s)
            # A reply bundle may arrive after a newer sync: never let it turn anything back.
            if "roster" in res and res["roster_v"] >= (s.meta("roster_v") or -1):
                # Entries changed since the version we sent, or (roster_full) the whole roster.
                keys_now = {} if res.get("roster_full", True) else dict(s.meta("roster_keys") or {})
                keys_now.update({d.hex(): v for d, v in res["roster"].items()})
                s.set_meta("roster_keys", keys_now)
                s.set_meta("roster", {d: v[0] for d, v in keys_now.items()})
                s.set_meta("roster_v", res["roster_v"])
                take_reads(s, res)
            if "snapshot" in res:  # checked before its cursor counts, and before this answer's batches are seen
                refused = self._take_snapshot(res["snapshot"])
            got: dict[bytes, int] = {}  # device -> highest seq received or acked in this answer (counted once)
            me = s.meta("device_id")
            for seq, rseq, rcv in res.get("acks", []):
                capped |= self._ack(seq, rcv)
                got[me] = max(got.get(me, 0), seq)
            for seq, err in res.get("rejects", []):
                s.execute("UPDATE outbox SET state = 'rejected' WHERE seq = ?", (seq,))
                self.report.rejected += 1
                self.report.notes.append(_("batch {seq} refused by the relay: {why}").format(seq=seq, why=_refusal(err)))
            for rseq, device, rcv, data, *size in res.get("batches", []):
                if data is None:  # a large batch: fetched in resumable pieces after this response
                    s.execute("INSERT OR IGNORE INTO downloads (rseq, device, received_ms, size) VALUES (?, ?, ?, ?)",
                              (rseq, device, rcv, size[0]))
                    continue
                s.execute("INSERT OR IGNORE INTO inbox (rseq, device, received_ms, data) VALUES (?, ?, ?, ?)",
                          (rseq, device, rcv, data))
                got[device] = max(got.get(device, 0), snapshots.batch_seq(data))
                self.report.received_batches += 1
                self.report.received_bytes += len(data)
            snapshots.raise_seen(s, got)
            if not refused:  # a refused snapshot's jump does not count: the history is fetched instead
                # Never backwards: a reply bundle may arrive after a newer online sync.
                s.set_meta("pull_cursor", max(res.get("cursor", 0), s.meta("pull_cursor", 0)))
            if res.get("relay_x25519"):
                s.set_meta("relay_x25519", res["relay_x25519"])
            keys = {**(s.meta("relay_keys") or {}), **res.get("keys", {})}
            s.set_meta("relay_keys", keys)
            pk = s.meta("publish_key")
            if pk and keys.get(pk[0]) == pk[1]:
                s.set_meta("publish_key", None)
            if res.get("grants"):
                s.set_meta("grants_in", (s.meta("grants_in") or []) + res["grants"])
            keyflow.take_response(s, res, self.admission_sent)
            self._mark_capped(capped)
        acked = {a[0] for a in res.get("acks", [])}
        self.report.sent_batches += sum(1 for seq, _sent in sent if seq in acked)
        self.report.sent_bytes += sum(n for seq, n in sent if seq in acked)
        self.more_waiting = bool(res.get("more"))
        self._show_progress()
        self.outgoing_grants = []
        self.snapshot = None
        if isinstance(res.get("snapshot_refused"), dict):
            with s.transaction():
                self.report.notes.append(snapshots.relay_refused_mine(s, res["snapshot_refused"], now_ms()))
        if refused and replaying:
            self.report.ok = False
            self.report.notes.append(_("The relay sent a summary of the history again although this device asked "
                                       "it not to; this sync stopped there. Nothing was lost. If it happens again, "
                                       "tell office IT: the relay may not be the office's."))
        more = bool(res.get("more")) or (refused and not replaying)
        if self.rep is not None:
            more |= self.rep_duties(res)
        left = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'closed' AND size <= ?", (INLINE_MAX,)).fetchone()[0]
        return more or (left > 0 and bool(acked))

    def _show_progress(self, up_extra: int = 0, down_extra: int = 0) -> None:
        """Tell ``on_progress`` how far the upload and the download are (``*_extra``: a piece in flight)."""
        if not self.meter.active:
            return
        r = self.report
        if self.up_total:
            self.meter("upload", r.sent_bytes + up_extra, self.up_total)
        if (r.received_bytes or down_extra or self.chunks_to_fetch
                or self.s.execute("SELECT 1 FROM downloads").fetchone()):
            pending = self.s.execute("SELECT COALESCE(SUM(size), 0) FROM downloads").fetchone()[0]
            pending += self.chunks_to_fetch
            done = r.received_bytes + down_extra
            self.meter("download", done, None if self.more_waiting else r.received_bytes + pending)

    def _take_snapshot(self, entry: Any) -> bool:
        """Keep a served snapshot for applying, or refuse it (see ``snapshots``); True if refused."""
        s = self.s
        got = snapshots.check_served(s, entry)
        if isinstance(got, HbwError):
            author = entry[1] if isinstance(entry, list) and len(entry) > 1 and isinstance(entry[1], bytes) else b""
            cursor = entry[0] if isinstance(entry, list) and entry and type(entry[0]) is int else 0
            self.report.notes.append(snapshots.refuse(s, cursor, author, got))
            self.report.snapshot_reject = {"code": got.code, "reason": got.message, "cursor": cursor}
            return True
        # The cursor it jumps from: where to go back to if it fails to decode once unlocked.
        s.set_meta("snapshot_in", [*entry, s.meta("pull_cursor", 0)])
        self.report.received_bytes += len(entry[2])  # a snapshot's bytes came down the link too
        return False

    def _ack(self, seq: int, rcv: int) -> set[tuple[int, bytes]]:
        """Forget an acknowledged batch; returns entities whose ops the relay's clock capped."""
        s, me = self.s, self.s.meta("device_id")
        s.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        s.execute("UPDATE oplog SET received_ms = ? WHERE device = ? AND batch_seq = ?", (rcv, me, seq))
        return {(k, e) for k, e in s.execute(
            "SELECT kind, entity FROM oplog WHERE device = ? AND batch_seq = ? AND hlc > ?", (me, seq, hlc.skew_bound(rcv))
        )}

    def _mark_capped(self, capped: set[tuple[int, bytes]]) -> None:
        if capped:
            s = self.s
            s.set_meta("rebuild", sorted(capped | {tuple(x) for x in s.meta("rebuild") or []}))

    async def _call(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        s = self.s
        body, nonce = envelope.make_request(self.dev.transport_key(), s.meta("device_id"), action, args, now_ms())
        raw = await self.transport(s.meta("relay_url"), body, self.timeout)
        self.report.round_trips += 1
        return envelope.parse_response(raw, s.meta("relay_public"), nonce).result

    async def upload_large(self) -> None:
        """Send each large batch as a stream, resuming at the byte the relay already holds.

        First the question "where are we?" (``upload`` without a piece): the answer is the
        offset the relay holds, or the batch's ack if it is in already. Then one stream
        (``POST /v1/stream``, PROTOCOL.md §13a): a signed head, then the bytes from that
        offset. The relay checks the head before it reads a body byte, then keeps every byte
        that arrives, even when the link drops in the middle: the next attempt asks again
        and sends only what the relay lacks. So a cut costs no resent bytes, whatever the
        gap between two drops.
        """
        s = self.s
        for seq, size in s.execute(
            "SELECT seq, size FROM outbox WHERE state = 'closed' AND size > ? ORDER BY seq", (INLINE_MAX,)
        ).fetchall():
            data = s.execute("SELECT data FROM outbox WHERE seq = ?", (seq,)).fetchone()[0]
            res = await self.send_stream(seq, data)
            self.link.held.pop(seq, None)
            with s.transaction():
                if "ack" in res:
                    self._mark_capped(self._ack(seq, res["ack"][2]))
                    snapshots.raise_seen(s, {s.meta("device_id"): seq})
                    self.report.sent_batches += 1
                    self.report.sent_bytes += size
                else:
                    s.execute("UPDATE outbox SET state = 'rejected' WHERE seq = ?", (seq,))
                    self.report.rejected += 1
                    self.report.notes.append(_("batch {seq} refused by the relay: {why}").format(
                        seq=seq, why=_refusal(res["reject"])))
            self._show_progress()

    async def send_stream(self, seq: int, data: bytes, pack: bool = False) -> dict[str, Any]:
        """Stream ``data`` (a batch, or with ``pack`` a chunk pack) until the relay holds all of it.

        Asks where the upload stands, then streams the rest from there; a dropped link raises
        (the next attempt asks again). Returns the relay's last answer: ``ack`` or ``reject`` for
        a batch, ``stored`` or ``reject`` for a pack.
        """
        size, digest = len(data), hashlib.sha256(data).digest()
        res = await self._call("upload", {"seq": seq, "total": size, "sha256": digest})
        restarts = stuck = 0
        while "ack" not in res and "reject" not in res and "stored" not in res:
            offset = res["offset"]
            if type(offset) is not int or not 0 <= offset < size:
                raise ProtocolError(_("the relay answered an upload with an offset out of range"),
                                    code="protocol.upload")
            if res.get("restart"):  # the bytes it held were not these: it dropped them
                restarts += 1
                if restarts > 1:
                    raise IntegrityError(_("the relay keeps receiving other bytes than this device sends"),
                                         code="integrity.sha256",
                                         hint=_("the link may be altering data; tell office IT"))
            self._relay_holds(seq, offset)
            res = await self._stream(seq, size, offset, digest, data, pack)
            stuck = stuck + 1 if res.get("offset") == offset and "ack" not in res else 0
            if stuck >= 3:  # the relay took none of three streams: something else uploads the same
                raise TransientError(_("the relay did not take this device's upload; try again later"),
                                     code="transient.upload")
        return res

    def _relay_holds(self, seq: int, offset: int) -> None:
        """The relay said it holds ``offset`` bytes of batch ``seq``: what a cut stream left there is progress."""
        before = self.link.held.get(seq)
        if before is not None and offset > before:
            self.link.moved += offset - before
            self.link.grow()
        self.link.held[seq] = offset
        self._show_progress(up_extra=offset)

    async def _stream(self, seq: int, size: int, offset: int, digest: bytes, data: bytes,
                      pack: bool = False) -> dict[str, Any]:
        """One stream of ``data`` from ``offset`` to its end; the relay's verified answer."""
        s = self.s
        args: dict[str, Any] = {"seq": seq, "total": size, "offset": offset, "sha256": digest}
        if pack:
            args["chunks"] = True
        head, nonce = envelope.make_request(self.dev.transport_key(), s.meta("device_id"), "stream", args, now_ms())
        body = len(head).to_bytes(2, "big") + head + data[offset:]
        start = len(body) - (size - offset)
        try:
            raw = await self.transport(s.meta("relay_url"), body, self.timeout, path="/v1/stream",
                                       on_sent=lambda n: self._show_progress(up_extra=offset + max(0, n - start)))
        except TransientError:
            # Handed to the socket is not received: until the relay says how much it kept (the next
            # attempt asks), count only what it confirmed before this stream.
            self._show_progress(up_extra=offset)
            raise
        self.report.round_trips += 1
        res = envelope.parse_response(raw, s.meta("relay_public"), nonce).result
        got = res.get("offset")
        if type(got) is int and got > offset:
            self.link.moved += got - offset
            self.link.grow()
            self.link.held[seq] = got
        return res

    async def download_large(self) -> None:
        """Fetch large batches as streams kept as they arrive; what came is kept across drops and runs.

        Each fetch (``POST /v1/fetch``, PROTOCOL.md §17) asks for the batch from the bytes this
        device holds; the relay answers a signed head (size, offset, the batch's SHA-256), then the
        raw bytes. They are written to the store as they come (``FETCH_FLUSH`` at a time, and what
        came when the link drops), so a cut costs nothing already received. The whole batch must
        have the head's SHA-256, else its bytes are dropped and fetched again.
        """
        s = self.s
        for rseq, device, rcv, size in s.execute("SELECT rseq, device, received_ms, size FROM downloads").fetchall():
            have = s.execute("SELECT COALESCE(SUM(length(data)), 0) FROM download_chunks WHERE rseq = ?",
                             (rseq,)).fetchone()[0]
            restarts = 0
            while have < size:
                before = have
                digest = await self._fetch(rseq, have, size)
                have = s.execute("SELECT COALESCE(SUM(length(data)), 0) FROM download_chunks WHERE rseq = ?",
                                 (rseq,)).fetchone()[0]
                if have >= size:
                    data = b"".join(r[0] for r in s.execute(
                        "SELECT data FROM download_chunks WHERE rseq = ? ORDER BY offset", (rseq,)))
                    if len(data) != size or hashlib.sha256(data).digest() != digest:
                        with s.transaction():
                            s.execute("DELETE FROM download_chunks WHERE rseq = ?", (rseq,))
                        have, restarts = 0, restarts + 1
                        if restarts > 1:
                            raise IntegrityError(_("the bytes received for a large batch keep differing from "
                                                   "what the relay vouched for"), code="integrity.sha256",
                                                 hint=_("the link may be altering data; tell office IT"))
                elif have == before:
                    raise ProtocolError(_("the relay sent an empty piece"), code="protocol.download")
            with s.transaction():
                data = b"".join(r[0] for r in s.execute(
                    "SELECT data FROM download_chunks WHERE rseq = ? ORDER BY offset", (rseq,)))
                s.execute("INSERT OR IGNORE INTO inbox (rseq, device, received_ms, data) VALUES (?, ?, ?, ?)",
                          (rseq, device, rcv, data))
                snapshots.saw_batch(s, device, data)
                s.execute("DELETE FROM download_chunks WHERE rseq = ?", (rseq,))
                s.execute("DELETE FROM downloads WHERE rseq = ?", (rseq,))
            self.report.received_batches += 1
            self.report.received_bytes += size
            self._show_progress()

    async def _fetch(self, rseq: int, offset: int, size: int) -> bytes:
        """One streamed fetch of batch ``rseq`` from ``offset``; keeps what arrives; the SHA-256 the relay signed."""
        s = self.s
        body, nonce = envelope.make_request(self.dev.transport_key(), s.meta("device_id"), "fetch",
                                            {"rseq": rseq, "offset": offset}, now_ms())
        st: dict[str, Any] = {"buf": bytearray(), "head": None, "at": offset, "pending": bytearray()}

        def keep() -> None:
            if st["pending"]:
                with s.transaction():
                    s.execute("INSERT OR REPLACE INTO download_chunks (rseq, offset, data) VALUES (?, ?, ?)",
                              (rseq, st["at"], bytes(st["pending"])))
                n = len(st["pending"])
                st["at"] += n
                self.link.moved += n
                st["pending"] = bytearray()
                self._show_progress(down_extra=st["at"])

        def on_chunk(data: bytes) -> None:
            if st["head"] is None:
                st["buf"] += data
                buf = st["buf"]
                if len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                    return
                n = int.from_bytes(buf[:2], "big")
                res = envelope.parse_response(bytes(buf[2:2 + n]), s.meta("relay_public"), nonce).result
                if res.get("size") != size or res.get("offset") != offset or not isinstance(res.get("sha256"), bytes):
                    raise ProtocolError(_("the relay answered a fetch for other bytes than asked"),
                                        code="protocol.download")
                st["head"] = res["sha256"]
                data = bytes(buf[2 + n:])
            if st["at"] + len(st["pending"]) + len(data) > size:
                raise ProtocolError(_("the relay sent more bytes than the batch holds"), code="protocol.download")
            st["pending"] += data
            if len(st["pending"]) >= FETCH_FLUSH:
                keep()

        try:
            await self.transport(s.meta("relay_url"), body, self.timeout, path="/v1/fetch", on_chunk=on_chunk)
        finally:
            if st["head"] is not None:
                keep()  # what arrived before a drop (after a head the relay signed) is kept
        self.report.round_trips += 1
        self.link.grow()
        if st["head"] is None:
            raise ProtocolError(_("the relay's answer to a fetch has no head"), code="protocol.download")
        return st["head"]

    def rep_duties(self, res: dict[str, Any]) -> bool:
        """What only an unlocked device can do: check keys, rotate, grant, snapshot. True if it has more to send."""
        rep = self.rep
        assert rep is not None
        check_keys(rep)
        need = False
        if res.get("rotate") and not self.s.meta("publish_key"):
            current = rep.current_key()
            new = crypto.TeamKey.generate(epoch=current.epoch + 1)
            with self.s.transaction():
                rep.add_team_key(new)
                self.s.set_meta("publish_key", [new.epoch, new.key_id])
            self.report.notes.append(_("rotated the team key to epoch {epoch} after a revocation").format(epoch=new.epoch))
            need = True
        need |= keyflow.grant_duties(rep.ledger, res, self.outgoing_grants, self.report.notes)
        if res.get("want_snapshot") and not self.snapshot and not res.get("more"):
            # Only from a state that includes everything up to the cursor: nothing waiting to apply.
            rep.apply_incoming()
            waiting = self.s.execute("SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM downloads)").fetchone()[0]
            # Only a supervisor's, vouching for a complete count (§18), and not within a day of a refusal.
            coverage = snapshots.seen(self.s)
            if (not waiting and coverage is not None and not self.s.meta("snapshot_in")
                    and self.s.meta("role") == "supervisor" and snapshots.may_build(self.s, now_ms())
                    and snapshots.worth_building(self.s, res.get("joiner_bytes"))):
                snap = rep.incoming.make_snapshot(self.s.meta("pull_cursor", 0), coverage)
                if snapshots.worth_sending(self.s, res.get("joiner_bytes"), len(snap[1])):
                    self.snapshot = snap
                    need = True
        return need

    async def run(self) -> None:
        url = self.s.meta("relay_url")
        relay_pub = self.s.meta("relay_public")
        if not url or relay_pub is None:
            raise ConfigError(_("this device has not joined a relay"), code="config.not_joined")
        self.up_total = 0 if not self.meter.active else self.report.sent_bytes + self.s.execute(
            "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state = 'closed'").fetchone()[0]
        self._show_progress()

        async def run() -> None:
            await docsync.push(self)  # chunks before the batches that name them (§18e)
            await self._run(url, relay_pub)

        await self.connected(run)

    async def connected(self, fn: Callable[[], Any]) -> Any:
        """Run ``await fn()`` with one keep-alive connection to the relay and its TLS pin."""
        async with aiohttp.ClientSession() as shared:
            token, pin = _SESSION.set(shared), TLS_PIN.set(self.s.meta("tls_sha256"))
            try:
                return await fn()
            finally:
                _SESSION.reset(token)
                TLS_PIN.reset(pin)

    async def fetch_wanted(self) -> None:
        """Download the chunks the fetch policy wants (after what arrived was applied); say what the relay lacks."""
        rep = self.rep
        assert rep is not None
        versions = rep.versions.wanted_versions()
        if not versions:
            return
        _got, lacking = await self.connected(lambda: docdelta.fetch_versions(self, rep.versions, versions))
        if lacking:
            self.report.notes.append(ngettext(
                "{n} part of a document is not at the relay yet (its author has not synced since adding it); "
                "the next sync fetches it",
                "{n} parts of documents are not at the relay yet (their author has not synced since adding them); "
                "the next sync fetches them", lacking).format(n=lacking))

    async def _run(self, url: str, relay_pub: bytes) -> None:
        while True:
            if self.report.round_trips >= MAX_ROUND_TRIPS:
                break
            body, nonce, sent = self.request()
            raw = await self.transport(url, body, self.timeout)
            self.report.round_trips += 1
            res = envelope.parse_response(raw, relay_pub, nonce).result
            before = self.report.sent_bytes + self.report.received_bytes
            again = self.apply_response(res, sent)
            self.link.moved += self.report.sent_bytes + self.report.received_bytes - before
            self.link.grow()
            await self.download_large()
            if not again:
                break
        # Documents after task changes: urgent work is never stuck behind a large file.
        await self.upload_large()


def reads_map(value: Any) -> dict[bytes, int] | None:
    """A result's ``reads`` (device id -> bits) if its shape is right, else None: bin 8 keys, uint32 values,
    no more entries than a roster may hold. Checked before use: it is the relay's word (PROTOCOL.md §19)."""
    if not isinstance(value, dict) or len(value) > evidence.MAX_ROSTER:
        return None
    for k, v in value.items():
        if (not isinstance(k, bytes) or len(k) != 8 or not isinstance(v, int) or isinstance(v, bool)
                or not 0 <= v <= features.READS_MAX):
            return None
    return value


def take_reads(s: Any, res: dict[str, Any]) -> None:
    """Keep what each roster device reads (meta ``roster_reads``, device hex -> bits) as the roster is kept:
    replaced with a whole roster, merged with a delta; a roster device the map leaves out reads 0 (a relay
    from before ``reads`` sends no map at all). Inside the caller's transaction, with the roster it came with.

    A map of the wrong shape is not used (the values held stay as they were) and is logged as a problem:
    a sync never fails on it.
    """
    got = reads_map(res.get("reads", {}))
    if got is None:
        notices.add_log(s, now_ms(), now_ms(), False, "apply", "ignored the relay's malformed 'reads' map",
                        code="problem.reads_malformed", params={})
        return
    held = {} if res.get("roster_full", True) else dict(s.meta("roster_reads") or {})
    for device in res["roster"]:
        held[device.hex()] = got.get(device, 0)
    s.set_meta("roster_reads", held)


def check_keys(rep: Replica) -> None:
    """A team key that does not match the team's is told at once, not as a decryption failure later."""
    relay_keys = rep.store.meta("relay_keys") or {}
    for epoch, key in rep.team_keys().items():
        if epoch in relay_keys and relay_keys[epoch] != key.key_id:
            raise WrongKeyError(_("this device's team key (epoch {epoch}) is not the team's key").format(epoch=epoch),
                                hint=_("this device was set up for another team; join again with "
                                      "a fresh --home"))


def sync(home: Path | None, passphrase: str | None = None, *, budget: int = DEFAULT_BUDGET, timeout: float = 60,
         transport: Transport = post, on_progress: OnProgress | None = None, deadline: float | None = None,
         policy: retry.RetryPolicy = retry.RetryPolicy(),
         on_retry: Callable[[retry.RetryNotice], None] | None = None) -> SyncReport:
    """Sync with the relay. With ``passphrase``, also apply what arrived and do key duties.

    ``on_progress`` (optional) is called with a ``progress.Progress`` as bytes go
    up and come down, for a bar on a terminal, the tray or the app.

    A wrong ``passphrase`` does not stop the sync (it needs none): it runs as a
    locked sync and the report says so (``wrong_passphrase``, and a note).

    With ``deadline`` (seconds), a dropped link does not end the sync: it goes on
    where it stopped, with backoff (``retry.finish``), until done, until the
    deadline passes, or until ``policy.tries_without_progress`` attempts in a row
    moved nothing; ``on_retry`` hears of each drop before the wait. Without it
    (or 0), one attempt (a dropped link raises at once).

    Raises:
        TransientError: the link dropped (one attempt); with ``deadline``: ``transient.deadline``
            or ``transient.no_progress``, their words saying how much went and how much is left.
        TransientError ``transient.locked``: another sync of this store is running.
        And what the relay refuses with (AccessError, ProtocolError, ...), at once.
    """
    if deadline is None or deadline <= 0:  # 0: one attempt (``--deadline 0``)
        return _sync_once(home, passphrase, _Link(budget), timeout, transport, SyncReport(), on_progress)
    report = SyncReport(attempts=0)
    link = _Link(budget)

    moved_before = [0]

    def attempt(counted: Transport) -> SyncReport:
        if report.attempts and link.moved == moved_before[0]:
            link.shrink()  # the last attempt got no piece through whole: try smaller ones
        moved_before[0] = link.moved
        report.attempts += 1
        report.ok = True
        return _sync_once(home, passphrase, link, timeout, counted, report, on_progress)

    t0 = time.monotonic()
    with Device.open(home) as dev:
        url = dev.store.meta("relay_url") or "the relay"
    out = retry.finish(attempt, transport, deadline_s=deadline, left=lambda: max(0, pending_bytes(home) - sum(link.held.values())),
                       policy=policy,
                       on_retry=on_retry, where=f"the relay at {url}")
    out.duration_s = round(time.monotonic() - t0, 3)
    return out


def pending_bytes(home: Path | None) -> int:
    """Bytes this device still has to move as far as it knows: its outbox, document chunks, large batches half fetched."""
    with Device.open(home) as dev:
        s = dev.store
        out = s.execute("SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state IN ('open', 'closed')").fetchone()[0]
        todo = s.execute("SELECT COALESCE(SUM(size), 0) FROM downloads").fetchone()[0]
        have = s.execute("SELECT COALESCE(SUM(length(data)), 0) FROM download_chunks").fetchone()[0]
        chunks_out = docsync.docchunks.LocalChunks(s).unsent_bytes()  # document chunks not yet at the relay
    return int(out) + max(0, int(todo) - int(have)) + chunks_out


def _sync_once(home: Path | None, passphrase: str | None, link: _Link, timeout: float, transport: Transport,
               report: SyncReport, on_progress: OnProgress | None = None) -> SyncReport:
    """One attempt of ``sync``: its counts add up in ``report`` (shared by the attempts of one sync)."""
    t0 = time.monotonic()
    dev = Device.open(home)
    with dev, sync_lock(dev.store.home):
        rep = dev.try_unlock(passphrase)
        if rep is not None:
            rep.apply_incoming()
        s = dev.store
        session = _Session(dev, rep, link, transport, timeout, on_progress)
        session.report = report
        session.report.wrong_passphrase = passphrase is not None and rep is None
        try:
            for _attempt in range(2):  # a second pass sends what a key grant, received in the first, let us seal
                close_outbox(dev, rep)
                asyncio.run(session.run())
                if rep is None:
                    break
                before = s.meta("pull_cursor", 0)
                session.report.applied_ops += rep.apply_incoming()
                if s.meta("pull_cursor", 0) < before:  # a snapshot failed to decode: replay the history now
                    r = s.meta("snapshot_refused") or {}
                    session.report.snapshot_reject = {k: r.get(k) for k in ("code", "reason", "cursor")}
                    session.report.notes.append(str(r.get("text", "")))
                    continue
                if not s.execute("SELECT 1 FROM outbox WHERE state = 'open'").fetchone():
                    break
            if rep is not None:
                asyncio.run(session.fetch_wanted())  # documents by policy, once task changes are in
        except HbwError as e:
            session.report.ok = False
            _log(dev, session.report, t0, e)
            raise
        session.report.waiting_to_apply = s.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        session.report.waiting = keyflow.waiting(s)
        _log(dev, session.report, t0, None)
        return session.report


def _refusal(err: Any) -> str:
    """A relay's refusal of one batch (a JSON error in a sync answer), in the person's words."""
    if not isinstance(err, dict):
        return str(err)
    return messages.words(from_dict(err))[0]


def _log(dev: Device, report: SyncReport, t0: float, failure: BaseException | str | None) -> None:
    report.duration_s = round(time.monotonic() - t0, 3)
    error, code, params = notices.error_row(failure)  # the error's code: 'status' words it when shown
    if error is None and not report.ok:  # stopped short without an error (a relay serving a refused snapshot)
        error = report.notes[-1] if report.notes else "the sync stopped short"
    detail = json.dumps({k: v for k, v in report.to_dict().items() if k != "notes"} | ({"error": error} if error else {}))
    with dev.store.transaction():
        notices.add_log(dev.store, now_ms() - int(report.duration_s * 1000), now_ms(), error is None, "relay",
                        error or detail, code, params)


def fetch_doc(rep: Replica, prefix: str, version: int | None = None, *, transport: Transport = post,
              timeout: float = 60) -> int:
    """Download the parts of one document version this device lacks (``doc get``); bytes fetched.

    Raises:
        TransientError: the relay cannot be reached (nothing half-kept is lost: fetched chunks stay).
        UsageError ``usage.doc_not_at_relay``: the relay lacks parts (their author has not synced).
        ConfigError: this device has not joined a relay.
    """
    _view, did, digest = rep.documents.locate_version(prefix, version)
    if not rep.versions.missing_chunks(did, digest) and not rep.versions.is_pending(did, digest):
        return 0
    if not rep.store.meta("relay_url"):
        raise ConfigError(_("this document is not on this device, and this device has not joined a relay"),
                          code="config.not_joined")
    session = _Session(rep, rep, _Link(DEFAULT_BUDGET), transport, timeout)
    got, lacking = asyncio.run(session.connected(lambda: docdelta.ensure(session, rep.versions, did, digest)))
    stuck = docdelta.base_missing(rep.versions, did, digest)
    if stuck is not None:
        raise stuck
    if lacking:
        raise UsageError(ngettext("{n} part of this document is not at the relay yet: its author has not synced "
                                  "since saving it",
                                  "{n} parts of this document are not at the relay yet: its author has not synced "
                                  "since saving it", lacking).format(n=lacking),
                         code="usage.doc_not_at_relay", hint=_("try again after its author's next sync"))
    return got


def close_outbox(dev: Device, rep: Replica | None) -> None:
    """Close the open batch before sending: built into full batches when unlocked, as pieces when not."""
    if rep is not None:
        rep.close_outbox()
        return
    with dev.store.transaction():
        dev.store.execute("UPDATE outbox SET state = 'closed', closed_ms = ? WHERE state = 'open'", (now_ms(),))
