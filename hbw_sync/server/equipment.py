"""The equipment register's SQL: which laptop (asset tag, serial, model) went to whom, when, and back.

Why a module of its own: office IT must know which equipment was lent to whom
and whether it came back (issue 17 item 2), and the relay's storage is being
put behind a seam (SQLite now, PostgreSQL next). Keeping every statement of the
register here, in plain SQL both databases read, makes it one small file to
port. The decisions (a lost laptop's device is revoked, words for people) live
in ``admin``; this module only reads and writes rows.

The table is keyed by team (the relay's ``team`` id) and asset tag. It is made
with the schema (``storage``: schema 2; ``hbw-relay migrate`` adds it to older relays).
It lives in the relay database, so ``hbw-relay backup``/``restore`` carry it.
A device is tied to an asset by the invite it enrolled with (``invite_hash``,
joined to ``invites.device``) or named directly (``device``).
"""

from __future__ import annotations

from typing import Any

from .storage import Txn

#: Longest asset tag, serial, model or note: typed by a person, shown in a table.
MAX_TAG = 64
MAX_TEXT = 200

_COLUMNS = ("asset", "serial", "model", "note", "added_ms", "holder", "lent_ms", "returned_ms", "lost_ms",
            "device")


def add(conn: Txn, team: bytes, asset: str, serial: str | None, model: str | None,
        note: str | None, now: int) -> bool:
    """Insert a new asset; False when the tag is already in the register (nothing changed)."""
    if get(conn, team, asset) is not None:
        return False
    conn.execute("INSERT INTO equipment (team, asset, serial, model, note, added_ms) VALUES (?, ?, ?, ?, ?, ?)",
                 (team, asset, serial, model, note, now))
    return True


def get(conn: Txn, team: bytes, asset: str) -> dict[str, Any] | None:
    rows = _select(conn, team, "AND e.asset = ?", (asset,))
    return rows[0] if rows else None


def all_items(conn: Txn, team: bytes) -> list[dict[str, Any]]:
    return _select(conn, team, "", ())


def _select(conn: Txn, team: bytes, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT e.asset, e.serial, e.model, e.note, e.added_ms, e.holder, e.lent_ms, e.returned_ms, e.lost_ms,"
        " COALESCE(e.device, i.device) FROM equipment e LEFT JOIN invites i ON i.token_hash = e.invite_hash"
        f" WHERE e.team = ? {where} ORDER BY e.asset", (team, *args)).fetchall()
    return [dict(zip(_COLUMNS, r)) for r in rows]


def lend(conn: Txn, team: bytes, asset: str, member: str, now: int,
         device: bytes | None = None, invite_hash: bytes | None = None) -> None:
    """Lend to ``member`` from ``now``: a new loan, so returned/lost and the old device are cleared."""
    conn.execute("UPDATE equipment SET holder = ?, lent_ms = ?, returned_ms = NULL, lost_ms = NULL, device = ?,"
                 " invite_hash = ? WHERE team = ? AND asset = ?", (member, now, device, invite_hash, team, asset))


def bind_invite(conn: Txn, team: bytes, asset: str, invite_hash: bytes) -> None:
    """The device that enrolls with this invite is the asset's device."""
    conn.execute("UPDATE equipment SET invite_hash = ?, device = NULL WHERE team = ? AND asset = ?",
                 (invite_hash, team, asset))


def mark_returned(conn: Txn, team: bytes, asset: str, now: int) -> None:
    conn.execute("UPDATE equipment SET returned_ms = ? WHERE team = ? AND asset = ?", (now, team, asset))


def mark_lost(conn: Txn, team: bytes, asset: str, now: int) -> None:
    conn.execute("UPDATE equipment SET lost_ms = ? WHERE team = ? AND asset = ?", (now, team, asset))


def assets_by_device(conn: Txn, team: bytes) -> dict[bytes, str]:
    """Device id -> asset tag, for the devices list."""
    return {r["device"]: r["asset"] for r in all_items(conn, team) if r["device"]}
