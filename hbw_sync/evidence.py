"""Evidence files: what an outside auditor checks offline, with no store and no relay (sans-IO).

Every change in hbw-sync is a batch signed by its author's device (``batch.py``).
That proves authorship only to someone who knows which key belongs to whom, and
that nothing was left out only to someone who knows what the team holds. An
evidence file carries both, so that an auditor with nothing but the file (and,
ideally, the relay's public key as office IT publishes it) can check:

* the **receipts**: a statement signed by the relay's own key (the key invites
  pin) listing every batch it holds in a range of team sequence numbers, each
  with its author device, its per-device sequence number, when the relay
  received it, its SHA-256, and whether it falls within the export's scope;
* the **roster** in the same signed statement: each device's author key, its
  member and role, when IT enrolled it and when it was revoked (IT's certificate);
* the **approval records** (``approval.py``): a supervisor's device vouching for
  another device's keys (the supervisor's certificate);
* the **batches** in scope, byte for byte as their authors signed them;
* the exporter's signature (a supervisor's device) over all of it.

``verify`` checks every signature and chain and returns a ``Report``: who
changed what and when, from which device, and every problem found, each with a
stable code: an altered batch (``integrity.receipt``), one missing from the
range the receipts cover (``integrity.missing``), batches out of order
(``integrity.order``), a batch by a revoked device after its revocation
(``integrity.revoked``)... A file that does not even parse (truncated, trailing
bytes, over a limit) is refused with a ``ProtocolError``. Everything is size-
and type-checked before it is built (``schema.py``): the file may be hostile.

Byte layout: PROTOCOL.md §24. A relay that lies can leave a batch out of its own
receipts or mark it out of scope; it cannot change a batch, forge a device's
signature, or make a device look approved. The receipts say what the relay
claimed, under its key, at export time; that claim is itself evidence.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import approval, codec, crypto, hlc, schema
from . import batch as wire
from .errors import HbwError, IntegrityError, LimitError, ProtocolError, VersionError
from .i18n import _
from .ops import FIELDS, Kind

MAGIC = b"HBW"
TYPE_RECEIPTS = b"M"
TYPE_EVIDENCE = b"E"
VERSION = 1
#: "HBW" type version, then the body's length (8 bytes, big-endian): truncation is told from tampering.
FRAME = struct.Struct(">3scBQ")
#: Largest evidence file hbw-audit reads (it holds whole batches, documents included).
MAX_FILE = 1024 * 1024 * 1024
MAX_RECEIPTS = 1_000_000
MAX_ROSTER = 100_000
MAX_BATCHES = 200_000
MAX_APPROVALS = 100_000
_MSG = codec.DEFAULT_LIMITS.max_message

_U63 = schema.Int(0, 2**63 - 1)
SCOPE_SPEC = schema.Tuple((schema.Opt(schema.Str(32)), schema.Opt(schema.Bin(32, 1)), schema.Opt(_U63),
                           schema.Opt(_U63)))
RECEIPT_SPEC = schema.Tuple((_U63, schema.Bin(8, 8), schema.Int(1, 2**63 - 1), _U63, schema.Bin(32, 32),
                             schema.Bool()))
ROSTER_SPEC = schema.Tuple((schema.Bin(8, 8), schema.Str(32), schema.Str(16), schema.Bin(32, 32), _U63,
                            schema.Opt(_U63)))
RECEIPTS_SPEC = schema.Tuple((schema.Bin(8, 8), _U63, SCOPE_SPEC, _U63, _U63,
                              schema.ListOf(RECEIPT_SPEC, MAX_RECEIPTS), schema.ListOf(ROSTER_SPEC, MAX_ROSTER)))
EVIDENCE_SPEC = schema.Tuple((schema.Bin(MAX_FILE), schema.Bin(32, 32), schema.ListOf(schema.Bin(_MSG), MAX_BATCHES),
                              schema.ListOf(schema.Bin(approval.MAX_APPROVAL), MAX_APPROVALS), schema.Bin(8, 8), _U63))


# -- the relay's signed receipts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What an export claims to cover: a member's devices, a task, a period of relay time (None: any)."""

    member: str | None = None
    task: bytes | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def row(self) -> list[Any]:
        return [self.member, self.task, self.since_ms, self.until_ms]


@dataclass(frozen=True)
class Receipt:
    """The relay's word: it holds batch ``seq`` of ``device`` at team sequence ``rseq`` since ``received_ms``."""

    rseq: int
    device: bytes
    seq: int
    received_ms: int
    sha256: bytes
    in_scope: bool


@dataclass(frozen=True)
class Enrollment:
    """IT's certificate, as the relay signs it: this author key is this member's device, from/until when."""

    device: bytes
    member: str
    role: str
    author_pub: bytes
    enrolled_ms: int
    revoked_ms: int | None


@dataclass(frozen=True)
class Receipts:
    team: bytes
    made_ms: int
    scope: Scope
    first_rseq: int  # every batch the relay holds with first <= rseq <= last is listed
    last_rseq: int
    receipts: tuple[Receipt, ...]
    roster: tuple[Enrollment, ...]


def _frame(kind: bytes, body: bytes) -> bytes:
    return FRAME.pack(MAGIC, kind, VERSION, len(body)) + body


def _unframe(data: bytes | memoryview, kind: bytes, what: str, max_len: int) -> tuple[memoryview, memoryview, bytes]:
    """(signed part, body, signature) of a framed, signed object; ProtocolError on any framing fault."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(_("the {what} must be bytes").format(what=what), code="protocol.type")
    mv = memoryview(data)
    if len(mv) > max_len:
        raise LimitError(_("the {what} is over the size limit").format(what=what), code="protocol.limit")
    if len(mv) < FRAME.size:
        if (MAGIC + kind).startswith(bytes(mv[:4])):
            raise ProtocolError(_("the {what} is truncated").format(what=what), code="protocol.truncated")
        raise ProtocolError(_("this is not an hbw-sync {what}").format(what=what), code="protocol.magic")
    magic, k, version, n = FRAME.unpack_from(mv)
    if magic != MAGIC or k != kind:
        raise ProtocolError(_("this is not an hbw-sync {what}").format(what=what), code="protocol.magic")
    if version != VERSION:
        raise VersionError(_("the {what} uses format version {v}; this hbw-sync reads version {mine}").format(
            what=what, v=version, mine=VERSION), hint=_("upgrade hbw-sync") if version > VERSION else None)
    end = FRAME.size + n
    if len(mv) < end + crypto.SIG_LEN:
        raise ProtocolError(_("the {what} is truncated").format(what=what), code="protocol.truncated")
    if len(mv) > end + crypto.SIG_LEN:
        raise ProtocolError(_("trailing bytes after the {what}").format(what=what), code="protocol.trailing")
    return mv[:end], mv[FRAME.size:end], bytes(mv[end:])


def _decode_all(spec: schema.Spec, body: memoryview, what: str) -> Any:
    value, at = schema.decode(spec, body, 0, what)
    if at != len(body):
        raise ProtocolError(_("trailing bytes inside the {what}").format(what=what), code="protocol.trailing")
    return value


def make_receipts(relay_key: crypto.DeviceKey, team: bytes, made_ms: int, scope: Scope, first_rseq: int,
                  last_rseq: int, receipts: list[Receipt], roster: list[Enrollment]) -> bytes:
    """The relay's signed statement (PROTOCOL.md §24.1); receipts in rseq order."""
    body = codec.pack([team, made_ms, scope.row(), first_rseq, last_rseq,
                       [[r.rseq, r.device, r.seq, r.received_ms, r.sha256, r.in_scope] for r in receipts],
                       [[e.device, e.member, e.role, e.author_pub, e.enrolled_ms, e.revoked_ms] for e in roster]])
    signed = _frame(TYPE_RECEIPTS, body)
    return signed + relay_key.sign(signed)


def open_receipts(data: bytes, relay_pub: bytes) -> Receipts:
    """Check the relay's signature, then decode (bounded). IntegrityError/ProtocolError when it does not hold."""
    signed, body, sig = _unframe(data, TYPE_RECEIPTS, _("relay receipts"), MAX_FILE)
    try:
        crypto.verify(relay_pub, sig, signed, what="relay's receipts")
    except IntegrityError:
        raise IntegrityError(_("the relay's receipts do not match the relay's signature: they were altered, or "
                               "signed by another key"), code="integrity.receipts") from None
    team, made, scope, first, last, recs, roster = _decode_all(RECEIPTS_SPEC, body, _("relay receipts"))
    return Receipts(team, made, Scope(*scope), first, last, tuple(Receipt(*r) for r in recs),
                    tuple(Enrollment(*e) for e in roster))


# -- the evidence file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    receipts: bytes
    relay_pub: bytes
    batches: tuple[bytes, ...]
    approvals: tuple[bytes, ...]
    exporter: bytes
    exported_ms: int
    signed: bytes = b""
    signature: bytes = b""


def make_evidence(exporter: crypto.DeviceKey, receipts: bytes, relay_pub: bytes, batches: list[bytes],
                  approvals: list[bytes], exported_ms: int) -> bytes:
    """An evidence file (PROTOCOL.md §24.2), signed by the exporting supervisor's device."""
    body = codec.pack([receipts, relay_pub, list(batches), list(approvals), exporter.device_id, exported_ms])
    signed = _frame(TYPE_EVIDENCE, body)
    return signed + exporter.sign(signed)


def parse_evidence(data: bytes) -> Evidence:
    """Framing and types only (bounded); ``verify`` checks the signatures."""
    signed, body, sig = _unframe(data, TYPE_EVIDENCE, _("evidence file"), MAX_FILE)
    rec, relay_pub, batches, approvals, exporter, exported = _decode_all(EVIDENCE_SPEC, body, _("evidence file"))
    return Evidence(rec, relay_pub, tuple(batches), tuple(approvals), exporter, exported, bytes(signed), sig)


# -- verification --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    rseq: int | None = None


@dataclass
class Change:
    """One op as the auditor reads it."""

    kind: str
    entity: bytes
    time_ms: int
    fields: dict[str, Any]


@dataclass
class Entry:
    """One batch: who (member, device), when (author's clock and relay's receipt), what."""

    rseq: int
    device: bytes
    member: str
    seq: int
    received_ms: int
    changes: list[Change]
    content_shown: bool


@dataclass
class Report:
    team: bytes
    relay_pub: bytes
    relay_key_checked: bool
    scope: Scope
    first_rseq: int
    last_rseq: int
    made_ms: int
    exporter: str
    exported_ms: int
    devices: list[dict[str, Any]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


def _named(kind: Kind, values: Mapping[int, Any]) -> dict[str, Any]:
    specs = FIELDS[kind]
    return {specs[t].name if t in specs else str(t): v for t, v in values.items()}


def _approvals(records: tuple[bytes, ...], by_device: dict[bytes, Enrollment],
               problems: list[Problem]) -> dict[bytes, list[tuple[bytes, int, str]]]:
    """device -> [(approver device, time, role)] for each record whose signature holds under the approver's
    enrolled key; a record that does not hold is a problem (someone altered a certificate)."""
    out: dict[bytes, list[tuple[bytes, int, str]]] = {}
    for raw in records:
        try:
            a = approval.parse_approval(raw)
        except ProtocolError:
            problems.append(Problem("integrity.approval", _("an approval record in the file is malformed")))
            continue
        signer = by_device.get(a.approver)
        if signer is None:
            problems.append(Problem("integrity.approval", _(
                "an approval record for device {device} names an approver the relay does not list").format(
                device=a.device.hex()[:8])))
            continue
        try:
            approval.verify_approval(raw, signer.author_pub)
        except (IntegrityError, ProtocolError):
            problems.append(Problem("integrity.approval", _(
                "the approval record for device {device} does not match its approver's signature").format(
                device=a.device.hex()[:8])))
            continue
        enrolled = by_device.get(a.device)
        if enrolled is not None and enrolled.author_pub != a.author_pub:
            problems.append(Problem("integrity.approval", _(
                "device {device} is listed with another key than the one its supervisor approved").format(
                device=a.device.hex()[:8])))
            continue
        out.setdefault(a.device, []).append((a.approver, a.time_ms, a.role))
    return out


def verify(data: bytes, relay_pub: bytes | None = None, keys: Mapping[int, crypto.TeamKey] | None = None) -> Report:
    """Check an evidence file; the Report lists what it shows and every problem.

    ``relay_pub``: the relay's public key as office IT publishes it; without it the key in the
    file is used and the report says it was not checked. ``keys``: team keys by epoch, to
    show content. Raises ProtocolError/IntegrityError when the file cannot be read at all
    (truncated, not an evidence file, receipts not signed by the relay).
    """
    ev = parse_evidence(data)
    if relay_pub is not None and relay_pub != ev.relay_pub:
        raise IntegrityError(_("the file's receipts are signed by another relay key than the one given"),
                             code="integrity.relay_key", hint=_("check the relay key office IT published"))
    rc = open_receipts(ev.receipts, ev.relay_pub)
    by_device = {e.device: e for e in rc.roster}
    exporter = by_device.get(ev.exporter)
    report = Report(rc.team, ev.relay_pub, relay_pub is not None, rc.scope, rc.first_rseq, rc.last_rseq, rc.made_ms,
                    exporter.member if exporter else ev.exporter.hex()[:8], ev.exported_ms)
    problems = report.problems
    approved = _approvals(ev.approvals, by_device, problems)
    for e in rc.roster:
        report.devices.append({"device": e.device.hex(), "member": e.member, "role": e.role,
                               "enrolled_ms": e.enrolled_ms, "revoked_ms": e.revoked_ms,
                               "approved_by": [{"device": d.hex(), "member": by_device[d].member, "time_ms": t,
                                                "role": role} for d, t, role in approved.get(e.device, [])]})

    last = -1
    r: Receipt | None  # a receipt here; below, the one a batch names, if any
    for r in rc.receipts:
        if r.rseq <= last or not rc.first_rseq <= r.rseq <= rc.last_rseq:
            problems.append(Problem("integrity.order", _("the relay's receipts are not in team order"), r.rseq))
        last = max(last, r.rseq)
    wanted = {(r.device, r.seq): r for r in rc.receipts}
    seen: set[tuple[bytes, int]] = set()
    last = -1
    for data_b in ev.batches:
        try:
            frame = wire.parse_batch(data_b)
        except HbwError as e:
            problems.append(Problem(e.code, _("a batch in the file does not parse: {why}").format(why=e.message)))
            continue
        where = (frame.device, frame.seq)
        r = wanted.get(where)
        dev = frame.device.hex()[:8]
        if r is None:
            problems.append(Problem("integrity.unlisted", _(
                "batch {seq} of device {device} is not among the relay's receipts").format(seq=frame.seq, device=dev)))
            continue
        if where in seen:
            problems.append(Problem("integrity.order", _("batch {seq} of device {device} appears twice").format(
                seq=frame.seq, device=dev), r.rseq))
            continue
        seen.add(where)
        if r.rseq < last:
            problems.append(Problem("integrity.order", _(
                "batch {seq} of device {device} is out of order (team sequence {rseq} after {last})").format(
                seq=frame.seq, device=dev, rseq=r.rseq, last=last), r.rseq))
        last = max(last, r.rseq)
        if frame.team != rc.team:
            problems.append(Problem("integrity.team", _("batch {seq} of device {device} belongs to another team").format(
                seq=frame.seq, device=dev), r.rseq))
            continue
        if hashlib.sha256(data_b).digest() != r.sha256:
            problems.append(Problem("integrity.receipt", _(
                "batch {seq} of device {device} differs from what the relay received (its SHA-256 does not match "
                "the receipt): it was altered").format(seq=frame.seq, device=dev), r.rseq))
            continue
        who = by_device.get(frame.device)
        if who is None:
            problems.append(Problem("integrity.unknown_device", _(
                "batch {seq} comes from device {device}, which the relay's roster does not list").format(
                seq=frame.seq, device=dev), r.rseq))
            continue
        try:
            frame.verify(who.author_pub)
        except IntegrityError:
            problems.append(Problem("integrity.signature", _(
                "batch {seq} of device {device} does not match its author's signature").format(
                seq=frame.seq, device=dev), r.rseq))
            continue
        try:
            opened = frame.open(keys) if keys and frame.epoch in keys else None
            ops = list(opened.ops) if opened else frame.routing_ops()
        except HbwError as e:
            problems.append(Problem(e.code, _("batch {seq} of device {device} does not open: {why}").format(
                seq=frame.seq, device=dev, why=e.message), r.rseq))
            continue
        if who.revoked_ms is not None:
            late = max([hlc.wall_ms(op.hlc) for op in ops] + [r.received_ms])
            if late > who.revoked_ms:
                problems.append(Problem("integrity.revoked", _(
                    "batch {seq} was signed by {member}'s device {device} after that device was revoked").format(
                    seq=frame.seq, member=who.member, device=dev), r.rseq))
        changes = []
        for op in ops:
            values = {**_named(op.kind, op.fields)}
            if opened is not None:
                values.update(_named(op.kind, op.content or {}))
            changes.append(Change(op.kind.name.lower(), op.entity, hlc.wall_ms(op.hlc), values))
        report.entries.append(Entry(r.rseq, frame.device, who.member, frame.seq, r.received_ms, changes,
                                    opened is not None))
    for r in rc.receipts:
        if r.in_scope and (r.device, r.seq) not in seen:
            problems.append(Problem("integrity.missing", _(
                "batch {seq} of device {device} (team sequence {rseq}) is within the range the file claims to cover, "
                "but is not in it").format(seq=r.seq, device=r.device.hex()[:8], rseq=r.rseq), r.rseq))
    if exporter is None:
        problems.append(Problem("integrity.exporter", _("the exporting device is not in the relay's roster")))
    else:
        try:
            crypto.verify(exporter.author_pub, ev.signature, ev.signed, what="evidence file")
        except IntegrityError:
            problems.append(Problem("integrity.signature", _(
                "the file does not match its exporter's signature: it was changed after export")))
    return report


