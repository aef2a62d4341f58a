"""Change records ("ops") and the field registry.

An op is one change by one device to one entity (a task, a document, a member's
working profile). Its fields are split in two by *who may read them*:

* **routing** fields (assignee, status, due date, priority, requirements,
  profiles...) travel readable by the relay, which needs them to route and
  reallocate work;
* **content** fields (titles, descriptions, notes, document names and bytes)
  are sealed with the team key; the relay never sees them.

Fields are named on the wire by small integer tags (one byte in msgpack)
rather than strings: on a 3G link the names would otherwise be most of a small
op. The registry below is the single source of truth for tags, names, types
and merge rules; ``protocol/PROTOCOL.md`` reproduces it.

An op id is never sent: it is the op's HLC (8 bytes, big-endian) followed by
its author's device id (8 bytes). HLCs strictly increase per device and device
ids are unique per team, so the pair is unique, time-ordered, and free.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Mapping

from .errors import ProtocolError

DEVICE_ID_LEN = 8
OP_ID_LEN = 16
MAX_ENTITY_LEN = 32
MAX_TEXT = 256 * 1024  # a description longer than 256 KiB belongs in a document
MAX_NAME = 64
MAX_CAPACITY = 1000  # open tasks a member holds at full load; more is a typo, not a plan
MAX_REF = 128  # a spreadsheet row key (task.ref)
MAX_REASON = 1000  # why a confidential document left the store (doc.export_reason)
#: Chunks one document version may have: 4 GiB at the smallest chunk (16 KiB); 4 MiB of ids.
MAX_DOC_CHUNKS = 1 << 18
#: Largest encoded manifest (ids, sizes, header) of such a version.
MAX_MANIFEST = MAX_DOC_CHUNKS * 21 + 64


class Kind(IntEnum):
    TASK = 1
    DOC = 2
    MEMBER = 3


class Status(IntEnum):
    OPEN = 0
    IN_PROGRESS = 1
    DONE = 2
    BLOCKED = 3


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    URGENT = 3


class Need(IntEnum):
    """Bits of a task's ``needs`` field: what doing the task requires."""

    INTERNET = 1
    LAPTOP = 2
    OFFICE = 4


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Merge(IntEnum):
    LWW = 0  # last writer (by effective HLC, then op id) wins
    APPEND = 1  # every value is kept, ordered by op id (notes)
    POLICY = 2  # assignment and status: concurrent changes settle by role and rules (merge.policy_winner)


ROUTING = "routing"
CONTENT = "content"


@dataclass(frozen=True)
class FieldSpec:
    tag: int
    name: str
    section: str
    check: Callable[[Any], bool]
    merge: Merge = Merge.LWW
    nullable: bool = False


def _is_int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and lo <= v <= hi


def _is_text(limit: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= limit


def _is_bytes(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, bytes) and lo <= len(v) <= hi


def _is_bool(v: Any) -> bool:
    return type(v) is bool


_MEMBER_NAME = re.compile(r"[a-z0-9._-]{1,32}")


def is_member_name(v: Any) -> bool:
    """Member handles: 1-32 of a-z, 0-9, '.', '_', '-'; they name people in routing fields.

    One precompiled regex (``fullmatch``, so no trailing newline slips through): the relay checks
    the assignee of every op of every batch, and a per-character generator cost it 4 us each.
    """
    return isinstance(v, str) and _MEMBER_NAME.fullmatch(v) is not None


_DAY_MAX = 2_932_896  # 9999-12-31 in days since 1970-01-01

FIELDS: dict[Kind, dict[int, FieldSpec]] = {}


def _register(kind: Kind, *specs: FieldSpec) -> None:
    FIELDS[kind] = {s.tag: s for s in specs}


_register(
    Kind.TASK,
    FieldSpec(1, "assignee", ROUTING, is_member_name, merge=Merge.POLICY, nullable=True),
    FieldSpec(2, "status", ROUTING, _is_int_in(0, 3), merge=Merge.POLICY),
    FieldSpec(3, "due", ROUTING, _is_int_in(0, _DAY_MAX), nullable=True),
    FieldSpec(4, "priority", ROUTING, _is_int_in(0, 3)),
    FieldSpec(5, "needs", ROUTING, _is_int_in(0, 7)),
    FieldSpec(6, "pinned", ROUTING, _is_bool),
    FieldSpec(32, "title", CONTENT, _is_text(1024)),
    FieldSpec(33, "description", CONTENT, _is_text(MAX_TEXT)),
    FieldSpec(34, "note", CONTENT, _is_text(MAX_TEXT), merge=Merge.APPEND),
    # -- archive, delete, import (issue 13): one block, tags 16-17 and 40 --
    # Routing, so the relay leaves archived and deleted tasks out of rebalancing and workload.
    FieldSpec(16, "archived", ROUTING, _is_bool),
    # A tombstone: only ``true`` is a valid value, so last-writer-wins over any set of ops that
    # holds one is ``true``. A delete therefore wins over every concurrent edit, is never undone,
    # and the task's whole history stays in the op log (and the relay's audit).
    FieldSpec(17, "deleted", ROUTING, lambda v: v is True),
    # The supervisor's own row key from a spreadsheet: a re-import updates instead of duplicating.
    FieldSpec(40, "ref", CONTENT, _is_text(MAX_REF)),
    # -- end of the issue-13 block --
)
_register(
    Kind.DOC,
    FieldSpec(1, "task", ROUTING, _is_bytes(1, MAX_ENTITY_LEN), nullable=True),
    FieldSpec(2, "size", ROUTING, _is_int_in(0, 1 << 40)),
    FieldSpec(32, "name", CONTENT, _is_text(255)),
    FieldSpec(33, "data", CONTENT, lambda v: isinstance(v, bytes)),
    # The version pointer: concurrent versions are all kept (the later wins, the others become
    # conflict copies), so it follows the policy rule rather than plain last-writer-wins.
    FieldSpec(34, "sha256", CONTENT, _is_bytes(32, 32), merge=Merge.POLICY),
    FieldSpec(35, "delta", CONTENT, lambda v: isinstance(v, bytes)),  # rebuilds sha256 from base_sha256
    FieldSpec(36, "base_sha256", CONTENT, _is_bytes(32, 32)),
    # -- confidential documents (issue 17 item 3): tags 3-4 and 37, PROTOCOL.md §5a --
    # The mark is routing (LWW), so an auditor without the team key sees it. Each export is one
    # op carrying ``exported`` (routing, ``true`` only) and its reason (sealed: it may name a case);
    # both APPEND, so every export is kept, keyed by op id: who (device) and when (HLC).
    FieldSpec(3, "confidential", ROUTING, _is_bool),
    FieldSpec(4, "exported", ROUTING, lambda v: v is True, merge=Merge.APPEND),
    FieldSpec(37, "export_reason", CONTENT, lambda v: isinstance(v, str) and 1 <= len(v) <= MAX_REASON,
              merge=Merge.APPEND),
    # -- end of the issue-17 block --
    # -- chunked versions (PROTOCOL.md §18d-e): the bytes travel as sealed chunks outside batches.
    # The ids again in routing, so the relay knows which chunks a version uses (garbage collection)
    # without reading content; the manifest (ids, sizes, whole-file SHA-256) for devices.
    FieldSpec(5, "chunks", ROUTING, lambda v: isinstance(v, bytes) and len(v) % 16 == 0 and len(v) <= MAX_DOC_CHUNKS * 16),
    FieldSpec(38, "manifest", CONTENT, _is_bytes(1, MAX_MANIFEST)),
    # A delta version's manifest as SHA-256 of it + a delta against its base version's (§18e): the
    # ids of a 20 MB file's manifest are ~5 KB that do not compress; the few that changed cost bytes.
    FieldSpec(39, "manifest_delta", CONTENT, _is_bytes(33, MAX_MANIFEST)),
    # -- end of chunked versions
)
_register(
    Kind.MEMBER,
    FieldSpec(1, "laptop", ROUTING, _is_bool),
    FieldSpec(2, "internet", ROUTING, _is_bool),
    FieldSpec(3, "office_days", ROUTING, _is_int_in(0, 127)),
    FieldSpec(4, "away_until", ROUTING, _is_int_in(0, _DAY_MAX), nullable=True),
    # -- rebalancing (issue 13 item 3): how much open work a member holds at full load, and
    # whether a supervisor opts in to receiving work (members always may).
    FieldSpec(5, "capacity", ROUTING, _is_int_in(1, MAX_CAPACITY)),
    FieldSpec(6, "takes_work", ROUTING, _is_bool),
    # -- end of rebalancing fields
    FieldSpec(32, "display_name", CONTENT, _is_text(MAX_NAME)),
)

NAMES: dict[Kind, dict[str, FieldSpec]] = {k: {s.name: s for s in v.values()} for k, v in FIELDS.items()}


@dataclass(frozen=True)
class Op:
    """One change to one entity. ``fields`` and ``content`` map field tags to values.

    ``content`` is None when the op was decoded without the team key (the relay's view).
    ``base`` is the op id of the latest op on this entity that the author had
    applied when making the change (None for a creation): the revision it was based on.
    """

    kind: Kind
    entity: bytes
    hlc: int
    base: bytes | None = None
    fields: Mapping[int, Any] = field(default_factory=dict)
    content: Mapping[int, Any] | None = field(default_factory=dict)

    def op_id(self, device: bytes) -> bytes:
        return make_op_id(self.hlc, device)

    def named(self) -> dict[str, Any]:
        """Fields and content by name, for people and JSON."""
        specs = FIELDS[self.kind]
        out = {specs[t].name: v for t, v in self.fields.items()}
        out.update({specs[t].name: v for t, v in (self.content or {}).items()})
        return out


def make_op_id(hlc: int, device: bytes) -> bytes:
    return hlc.to_bytes(8, "big") + device


def split_op_id(op_id: bytes) -> tuple[int, bytes]:
    return int.from_bytes(op_id[:8], "big"), op_id[8:]


def make_op(kind: Kind, entity: bytes, hlc: int, base: bytes | None = None, **values: Any) -> Op:
    """Build an op from field *names*, sorting them into routing and content by the registry."""
    specs = NAMES[kind]
    fields: dict[int, Any] = {}
    content: dict[int, Any] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise ValueError(f"{kind.name.lower()} has no field {name!r}")
        (fields if spec.section == ROUTING else content)[spec.tag] = value
    op = Op(kind, entity, hlc, base, fields, content)
    validate_op(op)
    return op


def _check_values(kind: Kind, values: Any, section: str) -> None:
    if not isinstance(values, dict):
        raise ProtocolError(f"{section} fields of an op must be a map", code="protocol.schema")
    specs = FIELDS[kind]
    for tag, value in values.items():
        spec = specs.get(tag) if type(tag) is int else None
        if spec is None or spec.section != section:
            raise ProtocolError(f"unknown {section} field tag {tag!r} for a {kind.name.lower()}", code="protocol.schema")
        if value is None and spec.nullable:
            continue
        if not spec.check(value):
            raise ProtocolError(f"bad value for {kind.name.lower()}.{spec.name}", code="protocol.schema")


def validate_op(op: Op) -> None:
    """Check an op against the registry; raises ProtocolError naming the bad part."""
    if not isinstance(op.entity, bytes) or not 1 <= len(op.entity) <= MAX_ENTITY_LEN:
        raise ProtocolError("entity id must be 1-32 bytes", code="protocol.schema")
    if type(op.hlc) is not int or not 0 < op.hlc < (1 << 64):
        raise ProtocolError("op timestamp out of range", code="protocol.schema")
    if op.base is not None and (not isinstance(op.base, bytes) or len(op.base) != OP_ID_LEN):
        raise ProtocolError("base revision must be a 16-byte op id", code="protocol.schema")
    _check_values(op.kind, op.fields, ROUTING)
    if op.content is not None:
        _check_values(op.kind, op.content, CONTENT)


def routing_row(op: Op) -> list[Any]:
    """The op's routing part as the msgpack array the wire carries: [kind, entity, hlc, base, fields]."""
    return [int(op.kind), op.entity, op.hlc, op.base, canonical(op.fields)]


def canonical(values: Mapping[int, Any] | None) -> dict[int, Any]:
    """Fields sorted by tag, so one op always encodes to the same bytes."""
    return dict(sorted((values or {}).items()))


def op_from_row(row: Any, content: Any = None, *, with_content: bool) -> Op:
    """Rebuild and validate an op from its wire arrays (content may be absent for the relay)."""
    if not isinstance(row, list) or len(row) != 5:
        raise ProtocolError("an op must be a 5-element array", code="protocol.schema")
    kind_v, entity, hlc, base, fields = row
    try:
        kind = Kind(kind_v) if type(kind_v) is int else None
    except ValueError:
        kind = None
    if kind is None:
        raise ProtocolError(f"unknown entity kind {kind_v!r}", code="protocol.schema")
    op = Op(kind, entity, hlc, base, fields, content if with_content else None)
    validate_op(op)
    return op


_KINDS = {int(k): k for k in Kind}
_HLC_END = 1 << 64


def check_routing_rows(rows: list[Any]) -> tuple[int, list[bytes]]:
    """Validate a batch's routing rows in one pass, as ``op_from_row`` + ``validate_op`` and the
    increasing-timestamp rule would, without building an ``Op`` per row.

    Returns (number of ops, the ``chunks`` values of its document versions): all the relay keeps
    of them. Why apart from ``op_from_row``: the relay checks every op of every batch it stores
    and never reads the ops themselves, and 100 ``Op`` objects a batch were a third of its CPU
    per sync. Same checks, same errors, in the same order (``tests/test_ops_rows.py`` holds the
    two against each other).
    """
    chunk_lists: list[bytes] = []
    last = 0
    doc = Kind.DOC
    chunks_tag = NAMES[doc]["chunks"].tag
    for row in rows:
        if not isinstance(row, list) or len(row) != 5:
            raise ProtocolError("an op must be a 5-element array", code="protocol.schema")
        kind_v, entity, hlc, base, fields = row
        kind = _KINDS.get(kind_v) if type(kind_v) is int else None
        if kind is None:
            raise ProtocolError(f"unknown entity kind {kind_v!r}", code="protocol.schema")
        if not isinstance(entity, bytes) or not 1 <= len(entity) <= MAX_ENTITY_LEN:
            raise ProtocolError("entity id must be 1-32 bytes", code="protocol.schema")
        if type(hlc) is not int or not 0 < hlc < _HLC_END:
            raise ProtocolError("op timestamp out of range", code="protocol.schema")
        if base is not None and (not isinstance(base, bytes) or len(base) != OP_ID_LEN):
            raise ProtocolError("base revision must be a 16-byte op id", code="protocol.schema")
        _check_values(kind, fields, ROUTING)
        if hlc <= last:
            raise ProtocolError("ops in a batch must have strictly increasing timestamps", code="protocol.order")
        last = hlc
        if kind is doc:
            ids = fields.get(chunks_tag)
            if ids:
                chunk_lists.append(ids)
    return len(rows), chunk_lists


# -- small value helpers shared by the CLI and import ------------------------------------

_EPOCH = _dt.date(1970, 1, 1)


def date_to_day(d: _dt.date) -> int:
    return (d - _EPOCH).days


def day_to_date(day: int) -> _dt.date:
    return _EPOCH + _dt.timedelta(days=day)


def needs_to_names(bits: int) -> list[str]:
    return [n.name.lower() for n in Need if bits & n]


def days_to_names(bits: int) -> list[str]:
    return [d for i, d in enumerate(WEEKDAYS) if bits & (1 << i)]
