"""Office IT's relay administration as library calls: init, invites, devices, audit, backup.

Each function works on the data directory and is safe while the relay runs:
writes are single short transactions through the storage seam (``storage``:
SQLite WAL lets the server go on; PostgreSQL takes the team's lock like the
server does), and a backup copies a consistent state without stopping anyone
(SQLite's online backup API; PostgreSQL: one REPEATABLE READ transaction), in
one portable file either backend restores (``storage.dump``).

A full or failing disk surfaces as ``StorageError`` (exit 74 with words, not a
traceback). Everything written here (database, backups, reply bundles) is
0600 in a 0700 directory (``fileio``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from .. import allocation, crypto, fileio, timefmt, wordcode
from ..enroll import Invite, new_token, token_hash
from ..i18n import _
from .. import bundle as bundle_fmt
from ..errors import ConfigError, LimitError, StoreError, UsageError
from ..ops import MAX_CAPACITY, is_member_name
from . import board, db, equipment, records, relay, storage, teams
from .storage import Txn
from .storage import dump
from .storage import sqlite as store_sqlite


def _write(data: Path, fn: Any, *args: Any) -> Any:
    """``fn(txn, *args)`` in one write transaction of the relay's store."""
    store = storage.open_store(Path(data))
    try:
        return store.transact(fn, *args)
    finally:
        store.close()


def _read(data: Path, fn: Any, *args: Any) -> Any:
    """``fn(txn, *args)`` reading the relay's store (no write lock)."""
    store = storage.open_store(Path(data))
    try:
        return store.read(fn, *args)
    finally:
        store.close()


def init(data: Path, team: str, url: str | None = None, database: str | None = None) -> dict[str, Any]:
    """Create a relay for team ``team`` in ``data``: its database and its signing key (kept 0600).

    With ``database`` (a ``postgresql://`` URL), the tables go there and ``data`` keeps the key and
    the URL (``storage.URL_FILE``); the database (or its ``search_path`` schema) must hold no relay.
    """
    data = Path(data)
    if storage.holds_relay(data):
        raise ConfigError(f"{data} already holds a relay", hint="use another --data directory")
    if database is not None:
        storage.check_url(database)
    if not team.strip():
        raise UsageError(_("the team name must not be empty"))
    with db.faults(where=data.parent):
        fileio.private_dir(data)
    key = crypto.DeviceKey.generate()
    fd = os.open(data / "relay.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private)
    try:
        storage.create(data, database)
    except BaseException:
        (data / "relay.key").unlink(missing_ok=True)  # no half relay that blocks a retry
        raise
    team_id = os.urandom(8)

    def setup(conn: Txn) -> None:
        relay.set_meta(conn, "team", team_id)
        relay.set_meta(conn, "team_name", team.strip())
        relay.set_meta(conn, "url", url)
        relay.set_meta(conn, "roster_v", 0)
        relay.audit(conn, "admin", "init", now=relay.now_ms(), team=team.strip())

    _write(data, setup)
    return {"team": team.strip(), "team_id": team_id.hex(), "relay_key": key.public.hex(), "data": str(data)}


def invite(data: Path, member: str, role: str = "member", url: str | None = None, ttl_days: int = 14,
           asset: str | None = None) -> Invite:
    """A one-time invite for ``member``; the relay keeps only the token's hash.

    With ``asset`` (a tag in the equipment register), the device that enrolls with it is that
    asset's device, and the asset is lent to ``member`` if it is not already.

    Raises:
        UsageError: a bad member name, role or duration, or an asset not in the register (or lost).
    """
    return _make_invite(data, member, role, url, ttl_days, words=False, asset=asset)[0]


def invite_with_code(data: Path, member: str, role: str = "member", url: str | None = None,
                     ttl_days: int = 14, asset: str | None = None) -> tuple[Invite, str]:
    """A one-time invite and a word code for it that a person can read out by phone (PROTOCOL.md §14a).

    The code lives 24 hours at most (less if the invite expires sooner) and ends when the invite is used.
    """
    inv, code = _make_invite(data, member, role, url, ttl_days, words=True, asset=asset)
    assert code is not None
    return inv, code


def _make_invite(data: Path, member: str, role: str, url: str | None, ttl_days: int,
                 words: bool, asset: str | None = None) -> tuple[Invite, str | None]:
    if not 1 <= ttl_days <= 365:
        raise UsageError(_("an invite is valid for 1 to 365 days"))
    tag = _asset_tag(asset) if asset is not None else None
    # A team of a multi-team relay: the certificate its serve keeps for the whole directory (a team added
    # after serve started has none of its own).
    served = teams.served_certificate(Path(data))

    def look(conn: Txn) -> tuple[bytes, str | None, bytes | None]:
        u = url or relay.meta(conn, "url")
        pin = served if served is not None else relay.meta(conn, "tls_sha256")
        return relay.meta(conn, "team"), u, pin if u and u.startswith("https://") else None

    team, url, tls = _read(data, look)
    if not url:
        raise UsageError(_("the relay's URL is not known"), hint=_("pass --url http://OFFICE-HOST:PORT"))
    key = crypto.DeviceKey((Path(data) / "relay.key").read_bytes())
    token = new_token()
    name = member.strip().lower()
    inv = Invite(url, key.public, team, token, name, role, tls)

    def make(conn: Txn) -> str | None:
        now = relay.now_ms()
        relay.create_invite(conn, name, role, token, ttl_days, "admin", now, words=words)
        if tag is not None:
            _tie_invite(conn, tag, name, token, now)
        if not words:
            return None
        slot, ws = relay.create_code(conn, inv.encode(), token, now + ttl_days * 86_400_000, now)
        return wordcode.format_code(slot, ws)

    return inv, _write(data, make)


def set_chunk_quota(data: Path, quota: int, database: str | None = None) -> None:
    """Keep ``serve --chunk-quota-gb`` (bytes) in the relay's settings: ``bundle ingest`` applies it too."""
    store = storage.open_store(Path(data), database)
    try:
        store.transact(relay.set_meta, relay.CHUNK_QUOTA_SETTING, int(quota))
    finally:
        store.close()


def chunk_quota(data: Path) -> int:
    """The chunk quota this relay applies (bytes): the one ``serve`` last kept, else the default; for a team
    of a multi-team directory, its own (``team quota``), else the one its serve last kept."""
    return _read(data, lambda conn: _identity(conn, data).chunks.quota)


def certificate_digest(cert_file: Path) -> bytes:
    """The SHA-256 of a PEM certificate's DER form: what an invite pins."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError) as e:
        raise UsageError(_("cannot read the TLS certificate {cert_file}: {e}").format(cert_file=cert_file, e=e)) from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def set_tls_certificate(data: Path, cert_file: Path) -> bytes:
    """Remember the SHA-256 of the relay's TLS certificate, so invites can pin it.

    On a multi-team directory it is kept once for all teams (``teams.keep_serve_settings``): invites
    for any team, and for a team added later, pin it."""
    digest = certificate_digest(cert_file)
    if teams.is_multi(Path(data)):
        teams.keep_serve_settings(Path(data), tls_sha256=digest.hex())
    else:
        _write(data, relay.set_meta, "tls_sha256", digest)
    return digest


def devices(data: Path) -> list[dict[str, Any]]:
    rows = _read(data, lambda conn: conn.execute(
        "SELECT device, member, label, enrolled_ms, revoked_ms, last_seen_ms FROM devices ORDER BY enrolled_ms"
    ).fetchall())
    return [
        {"device": d.hex(), "member": m, "label": lbl, "enrolled_ms": e, "revoked_ms": r, "last_seen_ms": s}
        for d, m, lbl, e, r, s in rows
    ]


def find_device(data: Path, device: str) -> dict[str, Any]:
    """The one device whose id starts with ``device`` (as ``devices`` lists it).

    Raises:
        UsageError: no such device, or the prefix names several.
    """
    dev = _read(data, relay.find_device, device.strip().lower())
    return next(d for d in devices(data) if d["device"] == dev.hex())


def revoke(data: Path, device: str) -> dict[str, Any]:
    """Revoke a device: every later request from it is refused; supervisors are asked to rotate the key."""
    dev, member = _write(data, relay.revoke, device.strip().lower(), "admin", relay.now_ms())
    return {"device": dev.hex(), "member": member, "revoked": True}


def members(data: Path) -> list[dict[str, Any]]:
    rows = _read(data, lambda conn: conn.execute(
        # ``d.device IS NOT NULL``: a member with no device has one LEFT JOIN row of NULLs, not an active device.
        "SELECT m.name, m.role, COUNT(d.device),"
        " SUM(CASE WHEN d.device IS NOT NULL AND d.revoked_ms IS NULL THEN 1 ELSE 0 END),"
        " MAX(d.last_seen_ms) FROM members m LEFT JOIN devices d ON d.member = m.name GROUP BY m.name ORDER BY m.name"
    ).fetchall())
    return [
        {"member": n, "role": r, "devices": c, "active_devices": a or 0, "last_seen_ms": s} for n, r, c, a, s in rows
    ]


def audit_log(data: Path, limit: int = 100) -> list[dict[str, Any]]:
    """Who did what, newest first: admin actions and every accepted batch, each with who, what (a
    sentence), when (local time) and which device; see ``records.readable``."""
    # Fold batches stored since the last look: tasks archived or deleted in them enter the audit then.
    # Reading the record must work on a full or read-only disk too (that is when IT looks): then it
    # shows what was folded before, and the rest enters at the next look.
    try:
        _write(data, lambda conn: board.materialize(conn, _identity(conn, data)))
    except StoreError:
        pass
    def look(conn: Txn) -> tuple[list[Any], list[Any], list[Any], bytes]:
        admin = conn.execute("SELECT time_ms, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?",
                             (limit,)).fetchall()
        batches = conn.execute(
            "SELECT b.received_ms, d.member, b.device, b.seq, b.n_ops, b.size, b.rseq FROM batches b"
            " LEFT JOIN devices d ON d.device = b.device ORDER BY b.rseq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        devs = conn.execute("SELECT device, member, label FROM devices").fetchall()
        return admin, batches, devs, _identity(conn, data).key.device_id

    admin, batches, devs, relay_dev = _read(data, look)
    labels = {d.hex(): lbl for d, _m, lbl in devs if lbl}
    members_of = {d.hex(): m for d, m, _l in devs}
    out = [{"time_ms": t, "actor": a, "action": act, "detail": json.loads(d)} for t, a, act, d in admin]
    out += [
        {"time_ms": t, "actor": "relay" if dev == relay_dev else m, "action": "batch",
         "detail": {"device": dev.hex(), "seq": seq, "ops": n, "bytes": size, "rseq": rseq}}
        for t, m, dev, seq, n, size, rseq in batches
    ]
    out.sort(key=lambda r: r["time_ms"], reverse=True)
    return records.readable(out[:limit], labels, members_of)


def _identity(conn: Txn, data: Path) -> relay.RelayIdentity:
    """The relay's identity, held to the quota serve applies: a team of a multi-team directory to its own
    (``team quota``) or else its serve's default, so ``bundle ingest --team`` refuses where serve does."""
    quota = teams.team_quota(conn, Path(data)) if teams.directory_of(Path(data)) is not None else None
    return relay.load_identity(Path(data), conn, quota)


def rebalance(data: Path, apply: bool = False, stale_hours: float = 72, *, to: str | None = None,
              exclude: tuple[str, ...] = (), max_moves: int | None = None,
              default_capacity: int = allocation.DEFAULT_CAPACITY) -> dict[str, Any]:
    """Propose (or, with ``apply``, issue) moves of tasks that cannot progress where they sit, and moves
    that even the load relative to capacity (rules: ``hbw_sync/allocation.py``, PROTOCOL.md §18a).

    Raises:
        UsageError: ``to`` cannot receive work, or a bound is out of range.
    """
    if max_moves is not None and max_moves < 0:
        raise UsageError(_("the number of moves must be 0 or more"))
    if not 1 <= default_capacity <= MAX_CAPACITY:
        raise UsageError(_("the default capacity must be 1-{MAX_CAPACITY} open tasks").format(MAX_CAPACITY=MAX_CAPACITY))
    opts = allocation.Options(to=to.strip().lower() if to else None,
                              exclude=frozenset(e.strip().lower() for e in exclude), max_moves=max_moves,
                              default_capacity=default_capacity, stale_ms=int(stale_hours * 3_600_000))

    def run(conn: Txn) -> dict[str, Any]:
        return board.rebalance(conn, _identity(conn, data), relay.now_ms(), opts, apply)
    return _write(data, run)


def workload(data: Path, default_capacity: int = allocation.DEFAULT_CAPACITY) -> list[dict[str, Any]]:
    """Per member: open tasks against capacity, late and urgent work, profile, last seen."""
    return _write(data, lambda conn: board.workload(conn, _identity(conn, data), relay.now_ms(), default_capacity))


def conflicts(data: Path) -> list[dict[str, Any]]:
    return _write(data, lambda conn: board.conflicts(conn, _identity(conn, data)))


def ingest_bundle(data: Path, file: Path, reply_dir: Path | None = None) -> dict[str, Any]:
    """Apply a bundle brought by email or USB stick and write the reply bundle to send back."""
    try:  # read segment by segment by relay.ingest_bundle_parts: never a whole huge file in memory
        size = Path(file).stat().st_size
    except OSError as e:
        raise UsageError(_("cannot read {file}: {v}").format(file=file, v=e.strerror or e)) from None
    if size > bundle_fmt.MAX_STREAM:
        raise LimitError(_("{file} is larger than any bundle ({v} MiB): it was not read further and nothing "
              "changed").format(file=file, v=bundle_fmt.MAX_STREAM // (1024 * 1024)), code="protocol.limit",
                         hint=_("check that this is the right file"))
    out_dir = Path(reply_dir) if reply_dir else Path(file).parent
    try:
        if not out_dir.is_dir():
            fileio.private_dir(out_dir)  # a directory we make holds replies only: 0700
    except OSError as e:
        raise UsageError(_("cannot create {out_dir}: {v}").format(out_dir=out_dir, v=e.strerror or e)) from None
    # Committed first, written second: a reply must never acknowledge what is not durable. If the
    # write fails, ingesting the same bundle again writes the same reply (see relay.ingest_bundle).
    replies, stats = _write(data, lambda conn: relay.ingest_bundle_parts(conn, _identity(conn, data), Path(file),
                                                                         relay.now_ms(), spool_dir=Path(data)))
    # The request's nonce in the name: the parts of one export share its counter, and each part's
    # reply must not overwrite another's (the last carries the batches' acknowledgements). The same
    # bundle again gets the same name, so an ingest repeated after a failed write still replaces it.
    stem = f"hbw-reply-{stats['member']}-{stats['device'][:8]}-{stats['counter']}-{stats['request'][:6]}"
    n = len(replies)
    # One file per part, each within the device's --max-size; "2of3" says the order to a person.
    outs = [out_dir / (f"{stem}.hbw" if n == 1 else f"{stem}-{i}of{n}.hbw") for i in range(1, n + 1)]
    with db.faults(f"the disk that holds {out_dir}", "the bundle was applied and nothing is lost, but its reply "
                   "was not written", "ingest the same bundle again: it writes the same reply", out_dir):
        for out, reply in zip(outs, replies):
            fileio.write_private(out, reply)
    return {**stats, "reply": str(outs[0]), "reply_bytes": sum(map(len, replies)),
            "replies": [{"file": str(o), "bytes": len(r)} for o, r in zip(outs, replies)]}


def backup(data: Path, dest: Path) -> dict[str, Any]:
    """Write the whole relay (every table and its document chunks) to one file, while it runs.

    SQLite: the online backup API, then the chunk files it indexes; PostgreSQL: every table read
    as of one instant. The file restores into either backend (``restore``, ``storage.dump``).
    ``relay.key`` is not in it: keep it apart.
    """
    dest = Path(dest)
    if dest.exists():
        raise UsageError(f"{dest} exists; choose a new file name")
    url = storage.database_url(Path(data))
    src = store_sqlite.open_any_schema(Path(data) / db.DB_NAME) if url is None else None  # an older schema too
    try:
        with db.faults(f"the disk that holds {dest.parent}", "no backup was written", where=dest.parent):
            fileio.create_private(dest)  # a backup is the whole relay: 0600 before a byte is in it
            if src is not None:
                out = sqlite3.connect(dest)
                try:
                    src.backup(out)
                finally:
                    out.close()
                n = dump.pack_chunk_files(dest, Path(data))
            else:
                assert url is not None
                dest.unlink()  # the schema is made in it: a new file, 0600 again
                n = dump.backup_postgres(url, dest)
    except BaseException as e:
        dest.unlink(missing_ok=True)  # no half backup that looks like one
        if isinstance(e, sqlite3.Error):
            raise StoreError(_("backup failed: {e}").format(e=e)) from None
        raise
    finally:
        if src is not None:
            src.close()
    return {"backup": str(dest), "bytes": dest.stat().st_size, "chunks": n,
            "backend": "sqlite" if url is None else "postgres"}


def migrate(data: Path, database: str | None = None) -> dict[str, Any]:
    """Upgrade the relay's database to this version's schema (``storage.migrate``); {from, to, backend}.

    Raises:
        ConfigError: no relay there, or a schema newer than this hbw-relay knows (nothing changed).
    """
    found, now = storage.migrate(Path(data), database)
    return {"from": found, "to": now, "backend": "postgres" if storage.database_url(Path(data), database) else "sqlite"}


def restore(backup_file: Path, data: Path, key_file: Path, database: str | None = None) -> dict[str, Any]:
    """Rebuild a data directory from a backup file and the relay key (kept apart, like any secret).

    Into SQLite in ``data`` (any schema this hbw-relay can migrate), or with ``database`` into
    an empty PostgreSQL database or schema (this version's schema), whichever backend made it.
    """
    data = Path(data)
    if storage.holds_relay(data):
        raise ConfigError(f"{data} already holds a relay; restore into an empty directory")
    url = storage.check_url(database) if database else None
    fileio.private_dir(data)
    src = sqlite3.connect(backup_file)
    made = [data / "relay.key", data / storage.URL_FILE, data / db.DB_NAME,
            *(data / (db.DB_NAME + x) for x in fileio.SQLITE_SIDE_FILES)]
    try:
        try:
            ok = src.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            ok = False
        if not ok:
            raise StoreError(_("{backup_file} is damaged").format(backup_file=backup_file))
        dump.check_restorable(dump.schema_of_file(src, Path(backup_file)), Path(backup_file),
                              "sqlite" if url is None else "postgres")
        try:
            with db.faults(f"the disk that holds {data}", "nothing was restored", "restore again", data):
                if url is None:
                    fileio.private_sqlite(data / db.DB_NAME)
                    out = sqlite3.connect(data / db.DB_NAME)
                    try:
                        src.backup(out)
                    finally:
                        out.close()
                    n = dump.unpack_chunk_files(data / db.DB_NAME, data)
                else:
                    n = dump.restore_postgres(src, url)
                    fd = os.open(data / storage.URL_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fileio.FILE_MODE)
                    with os.fdopen(fd, "w") as f:
                        f.write(url + "\n")
                fd = os.open(data / "relay.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(Path(key_file).read_bytes())
        except BaseException:  # no half-restored directory that looks like a relay and blocks a retry
            for path in made:
                path.unlink(missing_ok=True)
            shutil.rmtree(data / "chunks", ignore_errors=True)
            raise
    finally:
        src.close()
    return {"data": str(data), "chunks": n, "backend": "sqlite" if url is None else "postgres"}


# -- the equipment register (issue 17 item 2; its SQL is in ``equipment``) ------------------------------

def _asset_tag(asset: str) -> str:
    tag = (asset or "").strip()
    if not 1 <= len(tag) <= equipment.MAX_TAG or not tag.isprintable():
        raise UsageError(_("an asset tag is 1 to {n} printable characters").format(n=equipment.MAX_TAG),
                         code="usage.bad_asset")
    return tag


def _text(value: str | None, what: str) -> str | None:
    if value is None or not value.strip():
        return None
    v = value.strip()
    if len(v) > equipment.MAX_TEXT or not v.isprintable():
        raise UsageError(_("the {what} is at most {n} printable characters").format(what=what, n=equipment.MAX_TEXT))
    return v


def _team(conn: Txn) -> bytes:
    return relay.meta(conn, "team")


def _item(conn: Txn, tag: str) -> dict[str, Any]:
    row = equipment.get(conn, _team(conn), tag)
    if row is None:
        raise UsageError(_("no equipment with asset tag {tag!r}").format(tag=tag), code="usage.no_asset",
                         hint=_("see 'hbw-relay equipment list', or add it with 'hbw-relay equipment add'"))
    return row


def _state(row: dict[str, Any]) -> str:
    if row["lost_ms"]:
        return "lost"
    if row["holder"] and not row["returned_ms"]:
        return "lent"
    return "in_stock"


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "device": row["device"].hex() if row["device"] else None, "state": _state(row)}


def _tie_invite(conn: Txn, tag: str, member: str, token: bytes, now: int) -> None:
    row = _item(conn, tag)
    if row["lost_ms"]:
        raise UsageError(_("asset {tag} is marked lost: a device on it cannot be enrolled").format(tag=tag),
                         code="usage.asset_lost")
    th = token_hash(token)
    if _state(row) == "lent" and row["holder"] == member:
        equipment.bind_invite(conn, _team(conn), tag, th)
    else:
        equipment.lend(conn, _team(conn), tag, member, now, invite_hash=th)
    relay.audit(conn, "admin", "equipment_invite", now=now, asset=tag, member=member)


def equipment_add(data: Path, asset: str, serial: str | None = None, model: str | None = None,
                  note: str | None = None) -> dict[str, Any]:
    """Record a piece of equipment (a laptop, a dongle) under its asset tag, in stock.

    Raises:
        UsageError: a bad tag or text (``usage.bad_asset``), or the tag is already recorded
            (``usage.asset_exists``); nothing changed.
    """
    tag = _asset_tag(asset)
    serial, model, note = _text(serial, _("serial number")), _text(model, _("model")), _text(note, _("note"))

    def run(conn: Txn) -> dict[str, Any]:
        now = relay.now_ms()
        if not equipment.add(conn, _team(conn), tag, serial, model, note, now):
            raise UsageError(_("asset tag {tag!r} is already in the register").format(tag=tag),
                             code="usage.asset_exists", hint=_("see 'hbw-relay equipment list'"))
        relay.audit(conn, "admin", "equipment_add", now=now, asset=tag, serial=serial, model=model)
        return _public(_item(conn, tag))
    return _write(data, run)


def equipment_lend(data: Path, asset: str, member: str, device: str | None = None) -> dict[str, Any]:
    """Lend ``asset`` to ``member`` from now (optionally naming the enrolled device on it).

    Raises:
        UsageError: unknown or lost asset, already lent to someone else, a bad member name,
            or a device that is not that member's.
    """
    tag = _asset_tag(asset)
    name = member.strip().lower()
    if not is_member_name(name):
        raise UsageError(_("{member!r} is not a valid member name").format(member=member),
                         hint=_("1-32 of a-z, 0-9, '.', '_', '-'"))

    def run(conn: Txn) -> dict[str, Any]:
        row = _item(conn, tag)
        if row["lost_ms"]:
            raise UsageError(_("asset {tag} is marked lost; record it again under a new tag if it was found")
                             .format(tag=tag), code="usage.asset_lost")
        if _state(row) == "lent" and row["holder"] != name:
            raise UsageError(_("asset {tag} is lent to {holder}; record its return first").format(
                tag=tag, holder=row["holder"]), code="usage.asset_lent",
                hint=_("hbw-relay equipment return {tag}").format(tag=tag))
        dev = None
        if device:
            dev = relay.find_device(conn, device.strip().lower())
            owner = conn.execute("SELECT member FROM devices WHERE device = ?", (dev,)).fetchone()[0]
            if owner != name:
                raise UsageError(_("device {device} is {owner}'s, not {member}'s").format(
                    device=dev.hex()[:8], owner=owner, member=name))
        now = relay.now_ms()
        equipment.lend(conn, _team(conn), tag, name, now, device=dev)
        relay.audit(conn, "admin", "equipment_lend", now=now, asset=tag, member=name,
                    **({"device": dev.hex()} if dev else {}))
        return _public(_item(conn, tag))
    return _write(data, run)


def equipment_return(data: Path, asset: str) -> dict[str, Any]:
    """Record that ``asset`` came back today. Its device stays enrolled (``device_active`` says so).

    Raises:
        UsageError: unknown asset, or not lent out (``usage.asset_not_lent``).
    """
    tag = _asset_tag(asset)

    def run(conn: Txn) -> dict[str, Any]:
        row = _item(conn, tag)
        if _state(row) != "lent":
            raise UsageError(_("asset {tag} is not lent out; nothing changed").format(tag=tag),
                             code="usage.asset_not_lent")
        now = relay.now_ms()
        equipment.mark_returned(conn, _team(conn), tag, now)
        relay.audit(conn, "admin", "equipment_return", now=now, asset=tag, member=row["holder"])
        out = _public(_item(conn, tag))
        out["device_active"] = bool(row["device"]) and conn.execute(
            "SELECT revoked_ms IS NULL FROM devices WHERE device = ?", (row["device"],)).fetchone() == (1,)
        return out
    return _write(data, run)


def equipment_lost(data: Path, asset: str) -> dict[str, Any]:
    """Mark ``asset`` lost today and revoke the device enrolled on it, in one transaction.

    ``revoked`` names the device revoked now (None when there was none, or it was already
    revoked); the next supervisor sync rotates the team key.

    Raises:
        UsageError: unknown asset, or already marked lost (``usage.asset_lost``).
    """
    tag = _asset_tag(asset)

    def run(conn: Txn) -> dict[str, Any]:
        row = _item(conn, tag)
        if row["lost_ms"]:
            raise UsageError(_("asset {tag} is already marked lost; nothing changed").format(tag=tag),
                             code="usage.asset_lost")
        now = relay.now_ms()
        equipment.mark_lost(conn, _team(conn), tag, now)
        revoked = None
        if row["device"]:
            active = conn.execute("SELECT revoked_ms IS NULL FROM devices WHERE device = ?",
                                  (row["device"],)).fetchone()
            if active == (1,):
                relay.revoke(conn, row["device"].hex(), "admin", now)
                revoked = row["device"].hex()
        relay.audit(conn, "admin", "equipment_lost", now=now, asset=tag, member=row["holder"],
                    **({"device": revoked} if revoked else {}))
        return {**_public(_item(conn, tag)), "revoked": revoked}
    return _write(data, run)


def equipment_list(data: Path) -> list[dict[str, Any]]:
    """The register, by asset tag: each item with ``state`` (in_stock, lent, lost), holder, dates, device."""
    return _read(data, lambda conn: [_public(r) for r in equipment.all_items(conn, _team(conn))])


# -- backups the office page makes and lists -------------------------------------------------------

BACKUP_DIR = "backups"


def backup_now(data: Path) -> dict[str, Any]:
    """A backup into ``DATA/backups/`` (0700) named by its UTC time; see ``backup``."""
    folder = Path(data) / BACKUP_DIR
    fileio.private_dir(folder)
    stamp = timefmt.iso_utc(relay.now_ms(), millis=True).replace(":", "").replace("-", "").replace(".", "")
    return backup(data, folder / f"relay-{stamp}.db")


def backups(data: Path) -> list[dict[str, Any]]:
    """Backups in ``DATA/backups/``, newest first: file, bytes, made (ms)."""
    folder = Path(data) / BACKUP_DIR
    if not folder.is_dir():
        return []
    out = [{"backup": str(p), "name": p.name, "bytes": p.stat().st_size, "made_ms": int(p.stat().st_mtime * 1000)}
           for p in folder.glob("relay-*.db") if p.is_file()]
    return sorted(out, key=lambda r: r["made_ms"], reverse=True)


# -- the office page's admin token ---------------------------------------------------------------

TOKEN_FILE = "admin.token"


def office_token(data: Path) -> tuple[str, bool]:
    """The office page's admin token and whether it was made just now (then show it once).

    Kept 0600 in the data directory (like relay.key), never in the database: a backup
    handed to someone does not let them into the page.
    """
    path = Path(data) / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(24)
    with db.faults(where=Path(data)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return token, True
