"""An op as the vector files show it (shared by the policy and sync families)."""

from __future__ import annotations

from typing import Any

from hbw_sync.ops import FIELDS, Op


def jval(v: Any) -> Any:
    """A field value in JSON: bytes as ``{"hex": ...}``, everything else as it is."""
    return {"hex": v.hex()} if isinstance(v, bytes) else v


def op_json(op: Op) -> dict[str, Any]:
    """Kind, entity, HLC, base and every field (routing and content) by its §5 name."""
    names = FIELDS[op.kind]
    fields = {names[t].name: jval(v) for t, v in sorted({**op.fields, **(op.content or {})}.items())}
    return {"kind": op.kind.name.lower(), "entity": op.entity.hex(), "hlc": op.hlc,
            "base": op.base.hex() if op.base else None, "fields": fields}
