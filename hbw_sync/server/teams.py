"""A multi-team data directory: one relay process serves many teams (issue 16).

Why this layout. Each team is an ordinary one-team data directory under
``DIR/teams/<id>/`` (its own ``relay.key``, its own ``relay.db`` or its own
PostgreSQL schema ``hbw_<id>`` named in its ``database.url``). So every one-team
code path (admin commands, backups, restores, migrations, the sync path itself)
keeps working per team, unchanged; what is new is only how a request or a
command finds its team. The directory itself holds ``multi.json`` (what it is,
the devices' base URL, and the PostgreSQL server all teams' schemas live in).

Team ids appear in URLs (``/t/<id>/v1``), in directory names and in schema
names, so they are checked by one strict pattern before any of those uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import fileio
from ..clock import now_ms
from ..errors import ConfigError, UsageError
from ..i18n import _, ngettext
from . import db, limits, relay, storage

MARKER = "multi.json"
TEAMS = "teams"
REMOVED = "removed"
#: 2 to 32 characters: a lower-case letter, then lower-case letters, digits or ``_``. Safe as it
#: is in a URL path segment, a file name and (after ``hbw_``) an unquoted PostgreSQL identifier.
ID_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")
MAX_MARKER = 64 * 1024


def valid_id(text: str) -> bool:
    """Whether ``text`` is a team id (the whole string matches ``ID_RE``)."""
    return len(text) <= 32 and ID_RE.fullmatch(text) is not None


def check_id(text: str) -> str:
    if not valid_id(text):
        raise UsageError(_("{id!r} is not a team id: 2 to 32 characters, a lower-case letter first, then "
                           "lower-case letters, digits or _").format(id=text[:40]))
    return text


def id_for(name: str) -> str:
    """A team id made from a team's name: 'District Finance Office' -> 'district_finance_office'."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:32].rstrip("_")
    if not slug or not slug[0].isalpha():
        slug = ("t_" + slug)[:32].rstrip("_")
    return slug if valid_id(slug) else "team"


def is_multi(data: Path) -> bool:
    return (Path(data) / MARKER).is_file()


def read_marker(data: Path) -> dict[str, Any]:
    path = Path(data) / MARKER
    try:
        if path.stat().st_size > MAX_MARKER:
            raise ValueError("too large")
        d = json.loads(path.read_bytes())
        if not isinstance(d, dict) or d.get("kind") != "hbw-relay multi-team":
            raise ValueError("not ours")
        return d
    except FileNotFoundError:
        raise ConfigError(_("{data} is not a multi-team relay directory (it has no {marker})").format(
            data=data, marker=MARKER), hint=_("make one with 'hbw-relay init --multi --data DIR'; a one-team "
                                               "relay needs no team commands")) from None
    except (OSError, ValueError) as e:
        raise ConfigError(_("{path} is not a multi-team relay directory: {why}").format(path=path, why=e)) from None


#: A team's own chunk quota (bytes, ``team quota``), in that team's settings (``meta``). Beside, not instead of,
#: ``relay.CHUNK_QUOTA_SETTING``: that one is what a one-team ``serve`` last kept; this one outranks the
#: multi-team serve's default, so it must survive every serve.
TEAM_QUOTA_SETTING = "chunk_quota_team"
#: What a multi-team ``serve`` keeps in ``multi.json`` for the commands it does not run itself (``invite``,
#: ``bundle ingest``, ``team add``): its ``--chunk-quota-gb`` in bytes, and its certificate's SHA-256 (hex).
SERVE_SETTINGS = ("chunk_quota", "tls_sha256")


def keep_serve_settings(data: Path, **settings: Any) -> None:
    """Keep what ``serve`` was given in ``multi.json`` (replaced whole, atomically), for the other commands.

    Why the directory's file and not every team's settings: a ministry's directory holds thousands of
    teams, and one write per team at each start would cost minutes; a team looks here when it has no
    setting of its own (``serve_setting``), so a team added later gets it too."""
    marker = read_marker(data)
    for k, v in settings.items():
        if k not in SERVE_SETTINGS:
            raise ValueError(k)
        marker[k] = v
    with db.faults(where=data):
        fileio.write_private(Path(data) / MARKER, json.dumps(marker).encode())


def directory_of(team_data: Path) -> Path | None:
    """The multi-team directory ``team_data`` is a team of (``DIR/teams/<id>``), or None for a one-team relay."""
    d = Path(team_data)
    if d.parent.name == TEAMS and valid_id(d.name) and is_multi(d.parent.parent):
        return d.parent.parent
    return None


def serve_setting(team_data: Path, key: str) -> Any:
    """What the multi-team ``serve`` kept (``keep_serve_settings``) for the team in ``team_data``; None when
    it is no team of a multi-team directory or nothing was kept."""
    parent = directory_of(team_data)
    return read_marker(parent).get(key) if parent is not None else None


def served_certificate(team_data: Path) -> bytes | None:
    """The SHA-256 of the certificate the multi-team ``serve`` of ``team_data`` serves with, or None."""
    h = serve_setting(team_data, "tls_sha256")
    if isinstance(h, str) and len(h) == 64:
        try:
            return bytes.fromhex(h)
        except ValueError:
            return None
    return None


def own_quota(txn: Any) -> int | None:
    """The team's own chunk quota (``team quota``) in bytes, or None when it takes the serve's default."""
    q = relay.meta(txn, TEAM_QUOTA_SETTING)
    return q if type(q) is int and q > 0 else None


def team_quota(txn: Any, team_data: Path, serve_default: int | None = None) -> int | None:
    """The chunk quota a team of a multi-team directory is held to: its own, else the serve's default
    (``serve_default``, or the one the last serve kept), else None (``relay.load_identity`` decides)."""
    own = own_quota(txn)
    if own is not None:
        return own
    if serve_default is not None:
        return serve_default
    kept = serve_setting(team_data, "chunk_quota")
    return kept if type(kept) is int and kept > 0 else None


def set_quota(data: Path, team_id: str, quota: int) -> dict[str, Any]:
    """Give team ``team_id`` its own chunk quota (bytes), kept in its settings: ``serve`` (at the team's
    next opening, or within a minute for an open team) and ``bundle ingest --team`` both refuse at it."""
    read_marker(data)
    where = team_dir(data, check_id(team_id))  # the id is checked before it names any path
    if not storage.holds_relay(where):
        raise UsageError(_("no team {id} in {data}; teams: {teams}").format(
            id=team_id, data=data, teams=", ".join(known(data)) or _("none")))
    store = storage.open_store(where)
    try:
        store.transact(relay.set_meta, TEAM_QUOTA_SETTING, int(quota))
    finally:
        store.close()
    return {"id": team_id, "chunk_quota": int(quota), "chunk_quota_own": True}


def schema_for(team_id: str) -> str:
    return "hbw_" + check_id(team_id)


def team_url(base: str, team_id: str) -> str:
    """The PostgreSQL URL of one team: the server's URL with ``search_path`` set to the team's schema."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if any(k == "options" for k, _v in query):
        raise ConfigError(_("the multi-team --database URL must not set options: each team's schema is chosen by "
                            "the relay"), hint=_("remove options=... from the URL"))
    query.append(("options", f"-csearch_path={schema_for(team_id)}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def init_multi(data: Path, database: str | None, url: str | None) -> dict[str, Any]:
    """Make an empty multi-team directory; teams come with ``add_team``."""
    data = Path(data)
    if is_multi(data) or storage.holds_relay(data):
        raise ConfigError(_("{data} already holds a relay").format(data=data), hint=_("use another directory"))
    if database is not None:
        storage.check_url(database)
        team_url(database, "check")  # refuse a URL with options now, not at the first team
        from .storage import postgres

        postgres.connect(database).close()  # the server answers: say so now, with words
    with db.faults(where=data.parent):
        fileio.private_dir(data)
        fileio.private_dir(data / TEAMS)
        marker = {"kind": "hbw-relay multi-team", "version": 1, "database": database,
                  "url": url.rstrip("/") if url else None}
        fd = os.open(data / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fileio.FILE_MODE)
        with os.fdopen(fd, "w") as f:
            json.dump(marker, f)
    return {"data": str(data), "backend": "postgres" if database else "sqlite", "url": marker["url"]}


def team_dir(data: Path, team_id: str) -> Path:
    return Path(data) / TEAMS / check_id(team_id)


def known(data: Path) -> list[str]:
    """The ids of the teams in a multi-team directory, sorted (a directory whose name is no id is not a team)."""
    root = Path(data) / TEAMS
    try:
        names = [p.name for p in root.iterdir()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if valid_id(n) and storage.holds_relay(root / n))


def add_team(data: Path, name: str, team_id: str | None = None) -> dict[str, Any]:
    """A new team: a one-team relay in ``DIR/teams/<id>/`` (and its schema ``hbw_<id>`` on PostgreSQL)."""
    from . import admin

    marker = read_marker(data)
    tid = check_id(team_id) if team_id else id_for(name)
    where = team_dir(data, tid)
    if storage.holds_relay(where):
        raise ConfigError(_("team {id} already exists in {data}").format(id=tid, data=data),
                          hint=_("choose another id with --id"))
    base = marker.get("url")
    url = f"{base}/t/{tid}" if base else None
    database = marker.get("database")
    team_db = None
    if database:
        team_db = team_url(database, tid)
        from .storage import postgres

        conn = postgres.connect(database)
        try:
            with conn.transaction():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_for(tid)}")  # id checked by ID_RE
        finally:
            conn.close()
    r = admin.init(where, name, url, team_db)
    return {**r, "id": tid, "url": url, "schema": schema_for(tid) if database else None}


def _summary(data: Path, tid: str) -> dict[str, Any]:
    from . import admin

    where = team_dir(data, tid)
    row: dict[str, Any] = {"id": tid, "data": str(where)}
    try:
        rows = admin.devices(where)
        row["devices"] = sum(1 for d in rows if not d["revoked_ms"])
        store = storage.open_store(where)
        try:
            row["name"], own = store.read(lambda t: (relay.meta(t, "team_name"), own_quota(t)))
        finally:
            store.close()
        kept = serve_setting(where, "chunk_quota")
        row["chunk_quota"] = own or (kept if type(kept) is int and kept > 0 else limits.CHUNK_QUOTA)
        row["chunk_quota_own"] = own is not None
    except Exception as e:  # noqa: BLE001 - one broken team must not hide the others in the list
        row.update(devices=None, name=None, chunk_quota=None, chunk_quota_own=None, error=str(e))
    return row


def list_teams(data: Path) -> list[dict[str, Any]]:
    read_marker(data)
    return [_summary(data, tid) for tid in known(data)]


def remove_team(data: Path, team_id: str, force: bool = False) -> dict[str, Any]:
    """Take a team out of service: its directory moves to ``DIR/removed/``; nothing is deleted.

    Refused while devices are enrolled (not revoked) unless ``force``: their officials would
    silently stop syncing. The PostgreSQL schema is kept too: dropping a team's data is a
    decision for a person with a backup in hand, not a side effect of a command.
    """
    marker = read_marker(data)
    where = team_dir(data, team_id)
    if not storage.holds_relay(where):
        raise UsageError(_("no team {id} in {data}; teams: {teams}").format(
            id=team_id, data=data, teams=", ".join(known(data)) or _("none")))
    row = _summary(data, team_id)
    if row["devices"] and not force:
        raise UsageError(ngettext("team {id} still has {n} enrolled device; revoke it first, or add --force",
                                  "team {id} still has {n} enrolled devices; revoke them first, or add --force",
                                  row["devices"]).format(id=team_id, n=row["devices"]))
    dest = Path(data) / REMOVED / f"{team_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now_ms() / 1000))}"
    with db.faults(where=data):
        fileio.private_dir(Path(data) / REMOVED)
        shutil.move(str(where), str(dest))
    return {"id": team_id, "kept": str(dest), "devices": row["devices"],
            "schema": schema_for(team_id) if marker.get("database") else None}


def resolve(data: Path, team_id: str | None) -> Path:
    """The one-team directory an admin command works on: ``data`` itself, or its team ``team_id``.

    A multi-team directory needs ``--team``: a command run on the wrong team (a revoke, say)
    cannot be undone, so none is guessed.
    """
    if not is_multi(data):
        if team_id:
            raise UsageError(_("--team is for a multi-team relay directory; {data} holds one team").format(data=data))
        return Path(data)
    if not team_id:
        raise UsageError(_("{data} serves several teams: add --team ID (teams: {teams})").format(
            data=data, teams=", ".join(known(data)) or _("none yet; 'hbw-relay team add NAME'")))
    where = team_dir(data, team_id)
    if not storage.holds_relay(where):
        raise UsageError(_("no team {id} in {data}; teams: {teams}").format(
            id=team_id, data=data, teams=", ".join(known(data)) or _("none")))
    return where
