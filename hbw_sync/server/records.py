"""The relay's records as people read them: one sentence per audit entry, and the same facts as JSON.

Why: office IT keeps a record of which equipment went to whom and who did
what; Dana reads it when something went wrong. The audit table stores each
entry as (time, actor, action, detail as JSON) so that new kinds of entries need
no schema change; this module turns an entry into who (a member, office IT, or
the relay itself), what (a sentence), when (local time, and ISO 8601 with the
offset in JSON) and which device (its short id and label). Nothing here prints
a Python dict or a "?": an unknown actor is "an unknown device", an unknown
action is told by its name with its details in words.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import timefmt
from ..i18n import _

#: Actors that are not members: who they are in words.
_ACTORS = {"admin": "office IT", "relay": "the relay"}


def _dev(detail: dict[str, Any], labels: dict[str, str]) -> str | None:
    d = detail.get("device")
    return d if isinstance(d, str) and d else None


def _device_words(device: str | None, labels: dict[str, str]) -> str:
    if not device:
        return ""
    label = labels.get(device)
    return f"device {device[:8]}" + (f" ({label})" if label else "")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def sentence(entry: dict[str, Any], labels: dict[str, str], members_of: dict[str, str]) -> str:
    """What an audit entry says, in words (without its time and actor column)."""
    a, d = entry["action"], entry["detail"]
    dev = _device_words(_dev(d, labels), labels)
    if a == "init":
        return f"created the relay for team {d.get('team', '')!r}"
    if a == "invite":
        via = " (also as a word code)" if d.get("words") else ""
        return (f"invited {d.get('member')} as {'a supervisor' if d.get('role') == 'supervisor' else 'a member'}, "
                f"valid {_plural(int(d.get('ttl_days', 0)), 'day')}{via}")
    if a == "team_invite":  # a supervisor's device (PROTOCOL.md §14b)
        return (f"invited {d.get('member')} as {'a supervisor' if d.get('role') == 'supervisor' else 'a member'} "
                f"from {dev} (a secret invite), valid {_plural(int(d.get('ttl_days', 0)), 'day')}")
    if a == "approve":
        return f"approved {dev} of {d.get('member')} as {'a supervisor' if d.get('role') == 'supervisor' else 'a member'}"
    if a == "reject":
        return f"rejected {dev} of {d.get('member')}: it can no longer sync"
    if a == "enroll":
        return f"enrolled {dev}" if dev else "enrolled a device"
    if a == "revoke":
        owner = d.get("member") or members_of.get(_dev(d, labels) or "", "")
        return f"revoked {dev}" + (f" of {owner}" if owner else "") + ": it can no longer sync"
    if a == "key":
        return f"made team key number {d.get('epoch')} on {dev}" if dev else f"made team key number {d.get('epoch')}"
    if a == "bundle":
        return (f"sent bundle {d.get('counter')} by email or USB from {dev}: "
                f"{_plural(int(d.get('acks', 0)), 'batch', 'batches')} taken in, "
                f"{_plural(int(d.get('batches_out', 0)), 'batch', 'batches')} sent back")
    if a == "batch" and entry.get("actor") == "relay":
        return f"signed {_plural(int(d.get('ops', 0)), 'move')} of rebalancing ({timefmt.human_bytes(int(d.get('bytes', 0)))})"
    if a == "batch":
        return (f"sent {_plural(int(d.get('ops', 0)), 'change')} ({timefmt.human_bytes(int(d.get('bytes', 0)))}) "
                f"from {dev}" if dev else "sent changes")
    if a == "rebalance":
        moves = d.get("moves") or []
        said = "; ".join(f"task {m.get('task', '')[:6]} from {m.get('from') or 'nobody'} to {m.get('to')}"
                         for m in moves[:5])
        more = f" and {len(moves) - 5} more" if len(moves) > 5 else ""
        return f"moved {_plural(len(moves), 'task')} by rebalancing: {said}{more}"
    if a in ("task_delete", "task_archive", "task_unarchive"):
        task = str(d.get("task", ""))[:6]
        frm = f" from {dev}" if dev else ""
        return {"task_delete": f"deleted task {task}{frm} for the whole team: it left every list; its history is kept",
                "task_archive": f"archived task {task}{frm}: out of lists and rebalancing until brought back",
                "task_unarchive": f"brought archived task {task} back{frm}"}[a]
    if a in ("doc_confidential", "doc_unconfidential", "doc_export"):
        doc = str(d.get("doc", ""))[:6]
        frm = f" from {dev}" if dev else ""
        return {"doc_confidential": f"marked document {doc} confidential{frm}",
                "doc_unconfidential": f"cleared the confidential mark of document {doc}{frm}",
                "doc_export": f"wrote confidential document {doc} outside hbw-sync{frm}, giving a reason "
                              "(sealed: the team sees it)"}[a]
    if a.startswith("equipment_"):
        return _equipment_sentence(a, d, dev)
    if a == "code_failed":
        return f"refused a word code for invite slot {d.get('slot')}: the words did not match"
    rest = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in d.items() if not isinstance(v, (dict, list)))
    return a.replace("_", " ") + (f" ({rest})" if rest else "")


def _equipment_sentence(a: str, d: dict[str, Any], dev: str) -> str:
    """The equipment register's entries (``admin.equipment_*``), in words."""
    tag, who = str(d.get("asset", "")), str(d.get("member") or "")
    if a == "equipment_add":
        what = ", ".join(str(x) for x in (d.get("model"), d.get("serial") and _("serial {s}").format(s=d["serial"]))
                         if x)
        return _("recorded equipment {tag}").format(tag=tag) + (f" ({what})" if what else "")
    if a == "equipment_lend":
        return _("lent {tag} to {member}").format(tag=tag, member=who) + (f", {dev}" if dev else "")
    if a == "equipment_invite":
        return _("tied {tag} to a new invite for {member}: the device that joins with it is {tag}'s").format(
            tag=tag, member=who)
    if a == "equipment_return":
        return _("recorded {tag} as returned by {member}").format(tag=tag, member=who or _("nobody"))
    if a == "equipment_lost":
        said = _("recorded {tag} as lost").format(tag=tag) + (_(" (lent to {member})").format(member=who) if who else "")
        return said + (_("; revoked its {device}").format(device=dev) if dev else "")
    return a.replace("_", " ") + f" {tag}"


def actor_words(actor: str | None) -> str:
    if not actor:
        return "an unknown device"
    return _ACTORS.get(actor, actor)


def readable(entries: list[dict[str, Any]], labels: dict[str, str], members_of: dict[str, str],
             tz: dt.tzinfo | None = None) -> list[dict[str, Any]]:
    """Each entry with ``who``, ``what``, ``when`` (local, with offset), ``time`` (human) and ``device``."""
    out = []
    for e in entries:
        device = _dev(e["detail"], labels)
        out.append({
            "when": timefmt.iso_local(e["time_ms"], tz),
            "time": timefmt.human(e["time_ms"], tz),
            "time_ms": e["time_ms"],
            "who": actor_words(e["actor"]),
            "actor": e["actor"],
            "action": e["action"],
            "what": sentence(e, labels, members_of),
            "device": device,
            "device_label": labels.get(device) if device else None,
            "detail": e["detail"],
        })
    return out
