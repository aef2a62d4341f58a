"""The relay's storage seam: portable SQL, migrations, and PostgreSQL under concurrent writers.

The relay suites (test_relay, test_hostile, test_records, test_equipment) run on
both backends through conftest's ``backend`` fixture; this module tests what only
the seam has: the SQL rules of ``storage/base.py``, ``hbw-relay migrate`` on a
relay made by the previous release (``tests/data/relay_schema1.sql``, dumped
from a relay that release made), and several writers, in threads and in two
relay processes, against one PostgreSQL.
"""

from __future__ import annotations

import ast
import os
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import relay_helpers
from hbw_sync import codec, crypto
from hbw_sync.errors import ConfigError, StorageError
from hbw_sync.server import admin, relay, storage
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.storage import postgres
from hbw_sync.server.storage.base import SCHEMA_VERSION
from relay_helpers import Team
from hostile_helpers import RelayProcess

ROOT = Path(__file__).resolve().parent.parent
SCHEMA1 = Path(__file__).parent / "data" / "relay_schema1.sql"


# -- the portable subset ----------------------------------------------------------------------------

#: What the relay's own statements must not say (storage/base.py): each is SQLite's or PostgreSQL's alone.
NOT_PORTABLE = {
    r"INSERT OR (REPLACE|IGNORE)": "ON CONFLICT (...) DO UPDATE / DO NOTHING",
    r"(?<![.\w])hex\(": "compare bytes in Python",
    r"x''": "a b\"\" parameter",
    r"sqlite_master|PRAGMA": "tables exist from the schema (migrate adds them)",
    r"SUM\([^)]*\bIS (NOT )?NULL\)": "SUM(CASE WHEN ... THEN 1 ELSE 0 END)",
    r"(?<![\"\w])offset(?![\"\w])": 'quote "offset" (reserved in PostgreSQL)',
    r"(ROLLBACK TO|RELEASE) (?!SAVEPOINT)": "ROLLBACK TO SAVEPOINT / RELEASE SAVEPOINT",
    r"BEGIN IMMEDIATE": "the store runs transactions",
}
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|SAVEPOINT|RELEASE|ROLLBACK|BEGIN|PRAGMA)\b")
#: admin's backup and restore use SQLite's file API by design (a backup file is a SQLite database, either backend).
SQLITE_FILE_TOOLS = {("admin.py", "backup"), ("admin.py", "restore")}


def sql_problems(path: Path) -> list[str]:
    """Non-portable statements in ``path`` (string constants that are SQL), and driver-specific code."""
    tree = ast.parse(path.read_text())
    out = []
    for fn in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
        if (path.name, getattr(fn, "name", "")) in SQLITE_FILE_TOOLS:
            continue
        body = fn.body if isinstance(fn, ast.FunctionDef) else [n for n in tree.body if not isinstance(
            n, ast.FunctionDef)]
        for node in (n for stmt in body for n in ast.walk(stmt)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                for pattern, instead in NOT_PORTABLE.items():
                    if re.search(pattern, node.value):
                        out.append(f"{path.name}:{node.lineno}: {node.value[:60]!r} (write: {instead})")
            elif isinstance(node, ast.Attribute) and node.attr == "lastrowid":
                out.append(f"{path.name}:{node.lineno}: lastrowid (write: INSERT ... RETURNING)")
            elif isinstance(node, ast.Name) and node.id == "sqlite3":
                out.append(f"{path.name}:{node.lineno}: sqlite3 (the store runs transactions and maps its errors)")
    return sorted(set(out))


def test_relay_modules_write_only_portable_sql() -> None:
    """Every statement of the relay's logic runs unchanged on SQLite and PostgreSQL: a drift test."""
    server = ROOT / "hbw_sync" / "server"
    files = [p for p in server.glob("*.py") if p.name != "db.py"] + list((server / "office").glob("*.py"))
    assert len(files) > 10
    assert [f for p in files for f in sql_problems(p)] == []


def test_the_rules_catch_what_they_name(tmp_path: Path) -> None:
    """The drift test can fail: each rule matches the statement it forbids."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sqlite3\n"
        "def f(conn):\n"
        "    conn.execute(\"INSERT OR REPLACE INTO meta (key) VALUES (?)\")\n"
        "    conn.execute(\"SELECT device FROM devices WHERE hex(device) LIKE ?\")\n"
        "    conn.execute(\"INSERT INTO grants (data) VALUES (x'')\")\n"
        "    conn.execute(\"SELECT 1 FROM sqlite_master\")\n"
        "    conn.execute(\"SELECT SUM(d.revoked_ms IS NULL) FROM d\")\n"
        "    conn.execute(\"SELECT data FROM upload_chunks ORDER BY offset\")\n"
        "    conn.execute(\"RELEASE b\")\n"
        "    conn.execute(\"BEGIN IMMEDIATE\")\n"
        "    return conn.execute('x').lastrowid, sqlite3\n")
    assert len(sql_problems(bad)) == len(NOT_PORTABLE) + 2
    good = tmp_path / "good.py"
    good.write_text("def f(conn, offset):\n    conn.execute('SELECT data FROM t ORDER BY \"offset\"')\n"
                    "    return offset.hex()\n")
    assert sql_problems(good) == []


# -- migrations ---------------------------------------------------------------------------------------


def schema1_relay(tmp_path: Path) -> Path:
    """A data directory as the previous release left it: its database from the SQL dump, a relay key."""
    data = tmp_path / "old"
    data.mkdir(mode=0o700)
    conn = sqlite3.connect(data / "relay.db")
    conn.executescript(SCHEMA1.read_text())
    conn.close()
    (data / "relay.key").write_bytes(crypto.DeviceKey.generate().private)
    return data


def table_rows(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
    finally:
        conn.close()


def test_migrate_upgrades_a_relay_of_the_previous_schema(tmp_path: Path) -> None:
    data = schema1_relay(tmp_path)
    before = table_rows(data / "relay.db")
    assert before["meta"] and len(before["batches"]) == 2 and "equipment" not in before
    # Opened as it is, it is refused with what to do, and left untouched.
    res = CliRunner().invoke(relay_cli, ["devices", "--data", str(data)])
    assert res.exit_code == 78 and "schema 1" in res.output and "hbw-relay migrate" in res.output
    assert table_rows(data / "relay.db") == before
    # What the hint says first works on the old schema: a backup, which holds the old rows.
    res = CliRunner().invoke(relay_cli, ["backup", "--data", str(data), str(tmp_path / "before-migrate.db")])
    assert res.exit_code == 0, res.output
    assert table_rows(tmp_path / "before-migrate.db") == before

    # Schema 2 kept document chunks as files with no index: schema 3 indexes them (and skips junk).
    team_id = relay.meta(sqlite3.connect(data / "relay.db"), "team")
    cid, sealed = os.urandom(16), os.urandom(5000)
    (data / "chunks" / team_id.hex() / cid.hex()[:2]).mkdir(parents=True)
    (data / "chunks" / team_id.hex() / cid.hex()[:2] / cid.hex()).write_bytes(sealed)
    (data / "chunks" / team_id.hex() / cid.hex()[:2] / "x.1.tmp").write_bytes(b"a cut write")

    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    assert '"from": 1' in res.output and f'"to": {SCHEMA_VERSION}' in res.output
    after = table_rows(data / "relay.db")
    # Schema 4 adds devices.reads, NULL (reads 0) until each device declares at its next sync.
    assert all(len(r) == len(b) + 1 and r[-1] is None for r, b in zip(after["devices"], before["devices"]))
    after["devices"] = [r[:-1] for r in after["devices"]]
    for name, rows in before.items():  # every row kept, byte for byte (but the schema mark)
        if name != "meta":
            assert after[name] == rows, name
    assert [r for r in after["meta"] if r[0] != "schema"] == [r for r in before["meta"] if r[0] != "schema"]
    assert after["equipment"] == []
    assert [(r[0], r[1], r[2], r[4]) for r in after["chunks"]] == [(team_id, cid, len(sealed), None)]

    # The upgraded relay works: lists, the register (a table schema 1 made on first use), a new device's sync.
    assert {d["member"] for d in admin.devices(data)} == {"dana", "chidi"}
    admin.equipment_add(data, "LT-001", serial="SN-1")
    assert admin.equipment_list(data)[0]["asset"] == "LT-001"
    team = Team.existing(tmp_path, data)  # no init: the upgraded data dir, its own relay thread
    with team:
        amina = team.join("amina", "supervisor", url=team.url)  # office IT's invite: no supervisor device here
        assert amina.sync().ok
        store = storage.open_store(data)  # the migrated chunk is served from its file
        try:
            ident = store.read(lambda c: relay.load_identity(data, c))
            assert store.read(lambda c: ident.chunks.get(c, team_id, cid)) == sealed
        finally:
            store.close()
    conn = sqlite3.connect(data / "relay.db")
    assert conn.execute("SELECT d.reads FROM devices d WHERE d.member = 'amina'").fetchone() == (1,)
    conn.close()
    rows = table_rows(data / "relay.db")["batches"]
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))  # rseq goes on from the old ones, no gap
    assert rows[:2] == before["batches"]

    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data)])
    assert res.exit_code == 0 and "nothing changed" in res.output


def test_migrate_refuses_a_newer_schema_and_junk_and_changes_nothing(tmp_path: Path) -> None:
    data = schema1_relay(tmp_path)
    conn = sqlite3.connect(data / "relay.db")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (b"99",))
    conn.commit()
    conn.close()
    before = table_rows(data / "relay.db")
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data)])
    assert res.exit_code == 78 and "schema 99" in res.output
    assert table_rows(data / "relay.db") == before
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "relay.db").write_bytes(b"not a database at all" * 100)
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(tmp_path / "junk")])
    assert res.exit_code == 78 and "not a relay database" in res.output
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(tmp_path / "none")])
    assert res.exit_code == 78 and "no relay data" in res.output


def test_a_failed_migration_step_leaves_the_relay_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """All steps and the version bump are one transaction."""
    from hbw_sync.server.storage import sqlite as store_sqlite

    data = schema1_relay(tmp_path)
    before = table_rows(data / "relay.db")

    def half_then_fail(conn: sqlite3.Connection, data: Path) -> None:
        conn.execute("CREATE TABLE equipment (x INTEGER)")
        raise sqlite3.OperationalError("simulated failure in a step")

    monkeypatch.setitem(store_sqlite.MIGRATIONS, 1, half_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        storage.migrate(data)
    assert table_rows(data / "relay.db") == before


# -- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.fixture
def pg_url(pg_server) -> str:
    return pg_server.url()


def test_postgres_relay_from_the_command_line(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "relay"
    res = CliRunner().invoke(relay_cli, ["init", "--data", str(data), "--team", "Ministry HQ", "--database", pg_url])
    assert res.exit_code == 0, res.output
    assert (data / "database.url").stat().st_mode & 0o777 == 0o600 and not (data / "relay.db").exists()
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data), "--json"])
    assert res.exit_code == 0 and '"backend": "postgres"' in res.output
    # The same database again is refused with words; nothing is overwritten.
    res = CliRunner().invoke(relay_cli, ["init", "--data", str(tmp_path / "r2"), "--team", "X", "--database", pg_url])
    assert res.exit_code == 78 and "already holds a relay" in res.output
    assert not (tmp_path / "r2" / "relay.key").exists()
    res = CliRunner().invoke(relay_cli, ["init", "--data", str(tmp_path / "r3"), "--team", "X",
                                         "--database", "mysql://x"])
    assert res.exit_code == 78 and "postgresql://" in res.output
    # A PostgreSQL nobody listens on: exit 74 in words that name the server, never the password.
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "database.url").write_text(f"postgresql://hbw:s3cret@/hbw?host={tmp_path}&port=1\n")
    res = CliRunner().invoke(relay_cli, ["devices", "--data", str(gone)])
    assert res.exit_code == 74 and "PostgreSQL" in res.output and "s3cret" not in res.output


def test_concurrent_writers_get_gapless_team_sequence_numbers(pg_url: str, tmp_path: Path) -> None:
    """Two runners (as two processes would), four threads each, racing to append: rseq 1..N, each once."""
    admin.init(tmp_path / "relay", "Team", database=pg_url)
    stores = [storage.open_store(tmp_path / "relay") for _ in range(2)]
    runners = [s.runner() for s in stores]
    for r in runners:
        r.start()
    per_thread, out, errors = 25, [], []

    def append(runner, who: int) -> None:
        try:
            for i in range(per_thread):
                dev = who.to_bytes(8, "big")
                out.append(runner.call(relay.insert_batch, dev, i + 1, 0, 1, 1, os.urandom(64)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(runners[k % 2], k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, s in zip(runners, stores):
        r.stop()
        s.close()
    assert errors == []
    assert sorted(out) == list(range(1, 8 * per_thread + 1))
    check = storage.open_store(tmp_path / "relay")
    rows = check.read(lambda t: t.execute("SELECT rseq, device, seq FROM batches").fetchall())
    check.close()
    assert len(rows) == 8 * per_thread and len({(d, s) for _r, d, s in rows}) == len(rows)


def test_invite_use_is_one_conditional_update_without_the_team_lock(pg_url: str, tmp_path: Path) -> None:
    """The invite's one-time use holds even where the team's lock does not: two transactions that
    both read the invite unused (no lock taken) race to enroll with it; exactly one wins."""
    import psycopg

    admin.init(tmp_path / "relay", "Team", database=pg_url)
    admin.invite(tmp_path / "relay", "amina", "member", url="http://127.0.0.1:1")
    th = relay_rows_pg(pg_url, "SELECT token_hash FROM invites")[0][0]
    conns = [psycopg.connect(pg_url) for _ in range(2)]
    try:
        seen = [c.execute("SELECT used_ms FROM invites WHERE token_hash = %s", (th,)).fetchone()[0] for c in conns]
        assert seen == [None, None]  # both think it is free
        now = relay.now_ms()
        sql = relay_sql("UPDATE invites SET used_ms")
        first = conns[0].execute(sql, (now, b"d" * 8, th, now)).rowcount
        conns[0].commit()
        second = conns[1].execute(sql, (now, b"e" * 8, th, now)).rowcount  # waits for the row, then re-reads it
        conns[1].commit()
        assert (first, second) == (1, 0)
    finally:
        for c in conns:
            c.close()
    assert relay_rows_pg(pg_url, "SELECT device FROM invites") == [(b"d" * 8,)]


def relay_rows_pg(url: str, sql: str) -> list:
    import psycopg

    with psycopg.connect(url) as c:
        return c.execute(sql).fetchall()


def relay_sql(start: str) -> str:
    """The relay's own statement starting with ``start`` (relay.py), in psycopg's placeholders."""
    text = (ROOT / "hbw_sync" / "server" / "relay.py").read_text()
    at = text.index(f'"{start}')
    stmt = "".join(re.findall(r'"([^"]*)"', text[at:text.index(")", text.index("WHERE", at))]))
    return postgres._pg_sql(stmt)


class Serve:
    """``hbw-relay serve --workers N`` as a person runs it (a subprocess); its log lines collected as they come."""

    def __init__(self, data: Path, workers: str = "2", *options: str):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "hbw_sync.server.cli", "serve", "--data", str(data),
                                      "--port", "0", "--workers", workers, *options], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for("listening on")
        self.url = line.split("listening on ", 1)[1].strip()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 90) -> str:
        with self._seen:
            ok = self._seen.wait_for(lambda: any(text in x for x in self.lines[after:]) or self.proc.poll() is not None,
                                     timeout)
            hit = [x for x in self.lines[after:] if text in x]
        assert ok and hit, f"no {text!r} in the relay's log:\n{''.join(self.lines)}"
        return hit[0]

    def events(self, state: str) -> list[dict]:
        import json

        return [json.loads(x[x.index("{"):]) for x in list(self.lines) if '"action": "worker"' in x
                and f'"state": "{state}"' in x]

    def kill_worker(self, pid: int, then_sync: list = ()) -> None:
        """SIGKILL a worker (as the OOM killer would), wait until serve has started another, then sync
        each of ``then_sync`` twice: devices go on."""
        import signal

        mark = len(self.lines)
        os.kill(pid, signal.SIGKILL)
        self.wait_for('"state": "restarted"', after=mark)
        for _ in range(2):
            for m in then_sync:
                assert m.sync().ok

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


ROUNDS = 4  # each device adds two tasks and syncs, this many times, all devices at once


def sync_at_once(everyone: list, rounds: int = ROUNDS, prefix: dict | None = None) -> None:
    """Each device adds two tasks ("[PREFIX ]NAME ROUND K", ``prefix`` by device home) and syncs, ``rounds``
    times, all devices at once in threads."""
    errors: list[BaseException] = []

    def work(m) -> None:
        lead = f"{prefix[m.home]} " if prefix else ""
        try:
            for r in range(rounds):
                with m.open() as rep:
                    rep.add_tasks([{"title": f"{lead}{m.name} {r} {k}"} for k in range(2)])
                assert m.sync().ok
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m,)) for m in everyone]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def join_and_sync_at_once(team: Team, serve: Serve) -> tuple[dict[int, int], list]:
    """Four devices join through ``serve``'s two workers, then sync ROUNDS times at once, in threads.

    Returns the workers' pids by index and the devices. Shared by the SQLite and PostgreSQL workers tests."""
    pids = {e["worker"]: e["pid"] for e in serve.events("listening")}
    assert sorted(pids) == [0, 1]
    dana = team.join("dana", "supervisor", url=serve.url)
    assert dana.sync().ok
    members = [team.join(n, url=serve.url) for n in ["amina", "bosco", "chidi"]]
    everyone = [dana, *members]
    for m in everyone:
        assert m.sync().ok
    sync_at_once(everyone)
    return pids, everyone


def assert_converged_gapless(team: Team, everyone: list) -> None:
    """Every device holds every task; team sequence numbers have no gap or duplicate; each device's
    batches are stored once each, none missing."""
    want = {f"{m.name} {r} {k}" for m in everyone for r in range(ROUNDS) for k in range(2)}
    for m in everyone:
        with m.open() as rep:
            assert {t.title for t in rep.tasks()} >= want, m.name
    rows = team.sql("SELECT rseq, device, seq FROM batches ORDER BY rseq")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    seqs: dict[bytes, list[int]] = {}
    for _r, d, s in rows:
        seqs.setdefault(d, []).append(s)
    for d, ss in seqs.items():
        assert sorted(ss) == list(range(1, len(ss) + 1)), d.hex()
    assert len(seqs) == len(everyone)


def test_serve_workers_share_one_port_on_postgres(tmp_path: Path, pg_server) -> None:
    """``serve --workers 2``: devices sync at once through both workers of one port on one PostgreSQL:
    everyone converges, team sequence numbers have no gap or duplicate, no batch is lost or stored twice.
    A worker killed mid-way is started again; SIGTERM stops them all and serve exits 0."""
    relay_helpers.NEW_DATABASE = pg_server.url
    try:
        team = Team(tmp_path)
    finally:
        relay_helpers.NEW_DATABASE = None
    serve = Serve(team.data, "2")
    try:
        team.url = serve.url
        pids, everyone = join_and_sync_at_once(team, serve)
        # A worker dies (the OOM killer, say): serve starts another; devices go on syncing.
        serve.kill_worker(pids[1], then_sync=everyone)
        assert_converged_gapless(team, everyone)
        # Both workers answered syncs: the kernel spread the connections over them.
        answered = {x.split('"worker": ')[1][0] for x in serve.lines if '"action": "sync"' in x and '"worker"' in x}
        assert answered == {"0", "1"}
    finally:
        code = serve.stop()
    assert code == 0
    live = [e["pid"] for e in serve.events("listening") + serve.events("restarted")]
    for pid in live:  # every worker stopped with serve
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_serve_workers_crash_loop_stops_serve_with_its_code(tmp_path: Path, pg_server) -> None:
    """Workers that keep dying (here: killed as soon as they listen) are a crash loop that restarting will
    not fix: after ``CRASH_BUDGET`` deaths every worker is stopped and serve exits 1, saying why."""
    import signal

    from hbw_sync.server import workers

    admin.init(tmp_path / "relay", "Team", database=pg_server.url())
    serve = Serve(tmp_path / "relay", "2")
    try:
        pid = serve.events("listening")[-1]["pid"]
        for i in range(workers.CRASH_BUDGET):
            mark = len(serve.lines)
            os.kill(pid, signal.SIGKILL)
            if i < workers.CRASH_BUDGET - 1:  # started again: kill the new one
                serve.wait_for('"state": "restarted"', after=mark)
                pid = serve.events("restarted")[-1]["pid"]
        code = serve.proc.wait(60)
    finally:
        if serve.proc.poll() is None:
            serve.stop()
    text = "".join(serve.lines)
    assert code == 1 and "died 5 times within 60 s" in text
    for e in serve.events("listening") + serve.events("restarted"):  # none left running
        assert not Path(f"/proc/{e['pid']}").exists() or "zombie" in Path(f"/proc/{e['pid']}/status").read_text()


def test_serve_workers_count_refused_in_words(tmp_path: Path) -> None:
    """A worker count that is not a number, or out of range, is refused before anything listens
    (several workers on SQLite are served: tests/test_relay_workers.py)."""
    admin.init(tmp_path / "relay", "Team")
    res = CliRunner().invoke(relay_cli, ["serve", "--data", str(tmp_path / "relay"), "--port", "0", "--workers", "0"])
    assert res.exit_code == 2 and "between 1 and" in res.output
    res = CliRunner().invoke(relay_cli, ["serve", "--data", str(tmp_path / "relay"), "--workers", "lots"])
    assert res.exit_code == 2 and "'auto'" in res.output
    from hbw_sync.server.workers import worker_count

    assert worker_count("auto") == len(os.sched_getaffinity(0)) and worker_count(" 3 ") == 3


def test_config_errors_name_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        storage.check_url("sqlite:///x.db")
    assert "postgresql://" in e.value.message
    assert postgres.redact("postgresql://hbw:pw@db/x") == "postgresql://hbw:***@db/x"
    with pytest.raises((ConfigError, StorageError)):
        storage.open_store(tmp_path / "nothing")


def test_a_postgres_that_goes_away_loses_nothing_and_comes_back(tmp_path: Path) -> None:
    """The database server stops under a running relay: devices are told to retry (exit 75 words, changes
    kept queued), /healthz says 503; once it is back, the next sync delivers everything once."""
    import urllib.error
    import urllib.request

    from hbw_sync.client import sync as syncing
    from hbw_sync.errors import TransientError
    from pg import PgServer

    server = PgServer()  # its own cluster: stopping it must not disturb other tests
    relay_helpers.NEW_DATABASE = server.url
    try:
        with Team(tmp_path) as team:
            relay_helpers.NEW_DATABASE = None
            dana, chidi = team.pair()
            with dana.open() as rep:
                rep.add_task("written while the database is down")
            server.halt()
            with pytest.raises(TransientError) as e:
                syncing.sync(dana.home, dana.passphrase, timeout=20)
            assert e.value.code == "store.busy" and "nothing was lost" in str(e.value)
            with pytest.raises(urllib.error.HTTPError) as h:
                urllib.request.urlopen(team.url + "/healthz", timeout=20)
            assert h.value.code == 503 and b"PostgreSQL" in h.value.read()
            server.start()
            assert dana.sync().ok and chidi.sync().ok
            with chidi.open() as rep:
                assert [t.title for t in rep.tasks()] == ["written while the database is down"]
            rows = team.sql("SELECT rseq FROM batches ORDER BY rseq")
            assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    finally:
        relay_helpers.NEW_DATABASE = None
        server.stop()


def test_migrate_brings_a_postgres_relay_from_2_to_3_with_its_chunk_files(tmp_path: Path, pg_url: str) -> None:
    """Schema 2 on PostgreSQL kept chunk bytes as files beside one relay process: 3 loads them into rows."""
    data = tmp_path / "relay"
    admin.init(data, "Ministry HQ", database=pg_url)
    conn = postgres.connect(pg_url)
    with conn.transaction():  # what schema 2 was: no chunks table, no devices.reads
        conn.execute("DROP TABLE chunks")
        conn.execute("ALTER TABLE devices DROP COLUMN reads")
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (b"2",))
    team_id = relay.meta(postgres.PgTxn(conn), "team")
    conn.close()
    with pytest.raises(ConfigError, match="schema 2"):
        storage.open_store(data)
    cid, sealed = os.urandom(16), os.urandom(5000)
    (data / "chunks" / team_id.hex() / cid.hex()[:2]).mkdir(parents=True)
    (data / "chunks" / team_id.hex() / cid.hex()[:2] / cid.hex()).write_bytes(sealed)
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data), "--json"])
    assert res.exit_code == 0 and '"from": 2' in res.output and f'"to": {SCHEMA_VERSION}' in res.output, res.output
    store = storage.open_store(data)
    try:
        ident = store.read(lambda c: relay.load_identity(data, c))
        assert store.read(lambda c: ident.chunks.get(c, team_id, cid)) == sealed  # from its row now
    finally:
        store.close()


def test_migrate_brings_a_postgres_relay_from_3_to_4_and_devices_then_declare_what_they_read(
        tmp_path: Path, pg_url: str) -> None:
    """Schema 3 had no ``devices.reads``: 4 adds it, the enrolled devices' rows kept, and a sync fills it."""
    data = tmp_path / "relay"
    admin.init(data, "Ministry HQ", database=pg_url)
    with Team.existing(tmp_path, data) as team:
        dana = team.join("dana", "supervisor")
    conn = postgres.connect(pg_url)
    with conn.transaction():  # what schema 3 was
        conn.execute("ALTER TABLE devices DROP COLUMN reads")
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (b"3",))
    before = conn.execute("SELECT device, member, author_pub, roster_v FROM devices").fetchall()
    conn.close()
    with pytest.raises(ConfigError, match="schema 3"):
        storage.open_store(data)
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data), "--json"])
    assert res.exit_code == 0 and '"from": 3' in res.output and f'"to": {SCHEMA_VERSION}' in res.output, res.output
    conn = postgres.connect(pg_url)
    assert conn.execute("SELECT device, member, author_pub, roster_v FROM devices").fetchall() == before
    assert conn.execute("SELECT reads FROM devices").fetchall() == [(None,)]
    conn.close()
    with Team.existing(tmp_path, data) as again:
        relay_helpers.set_relay_url(dana, again.url)  # a new port
        assert dana.sync().ok
        assert again.sql("SELECT reads FROM devices")[0][0] == 1
    res = CliRunner().invoke(relay_cli, ["migrate", "--data", str(data), "--json"])
    assert res.exit_code == 0 and f'"from": {SCHEMA_VERSION}' in res.output, res.output


def test_the_backup_copies_every_table_of_both_schemas(tmp_path: Path, pg_url: str) -> None:
    """storage.dump.TABLES against the tables each backend makes: a table added to one schema fails here."""
    from hbw_sync.server.storage import dump, sqlite as store_sqlite

    store_sqlite.create_schema(tmp_path / "r.db")
    conn = sqlite3.connect(tmp_path / "r.db")
    lite = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    postgres.create(pg_url)
    conn = postgres.connect(pg_url)
    pg = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables"
                                     " WHERE table_schema = current_schema()")}
    conn.close()
    assert lite == pg == set(dump.TABLES)


# -- the named hot-path methods (storage.named.RelayTxn): one contract, both backends -----------------


@pytest.fixture
def named_store(tmp_path: Path, backend: str):
    """A real relay database of the backend under test; ``run(fn)`` calls ``fn(RelayTxn, txn)`` in one transaction."""
    from hbw_sync.server.storage.named import relay_txn

    relay_helpers.init_relay(tmp_path / "r", "T")
    store = storage.open_store(tmp_path / "r")
    try:
        yield lambda fn: store.transact(lambda t: fn(relay_txn(t), t))
    finally:
        store.close()


def test_named_device_lookup_and_seen(named_store) -> None:
    run = named_store
    dev = b"D" * 8
    assert run(lambda rt, t: (rt.device(dev), rt.device(dev, seen_ms=5), rt.transport_key(dev))) == (None, None, None)
    run(lambda rt, t: (t.execute("INSERT INTO members (name, role, created_ms) VALUES ('dana', 'supervisor', 1)"),
                       t.execute("INSERT INTO devices (device, member, author_pub, transport_pub, x25519_pub,"
                                 " enrolled_ms, last_seen_ms) VALUES (?, 'dana', ?, ?, ?, 1, 1)",
                                 (dev, b"a" * 32, b"t" * 32, b"x" * 32))))
    row = run(lambda rt, t: rt.device(dev, seen_ms=42))
    assert (row.member, row.author_pub, row.transport_pub, row.revoked_ms, row.role) == \
        ("dana", b"a" * 32, b"t" * 32, None, "supervisor")
    assert run(lambda rt, t: rt.transport_key(dev)) == b"t" * 32
    seen = lambda: run(lambda rt, t: t.execute("SELECT last_seen_ms FROM devices").fetchone()[0])  # noqa: E731
    assert seen() == 42
    with pytest.raises(RuntimeError):  # a refusal after the look-up (bad signature) undoes the stamp
        run(lambda rt, t: (rt.device(dev, seen_ms=99), (_ for _ in ()).throw(RuntimeError("refused"))))
    assert seen() == 42 and run(lambda rt, t: rt.device(dev)).member == "dana"


def test_named_nonce_replay_is_a_value_and_the_transaction_goes_on(named_store) -> None:
    run = named_store

    def twice(rt, t):
        first, again = rt.use_nonce(b"n" * 24, 10), rt.use_nonce(b"n" * 24, 11)
        # PostgreSQL aborts a transaction on a key violation: a value keeps this one usable.
        return first, again, rt.use_nonce(b"m" * 24, 12), t.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]

    assert run(twice) == (True, False, True, 2)
    assert run(lambda rt, t: rt.use_nonce(b"n" * 24, 13)) is False  # committed: still a replay later
    run(lambda rt, t: rt.prune_nonces(12))
    assert run(lambda rt, t: (rt.use_nonce(b"n" * 24, 14), rt.use_nonce(b"m" * 24, 14))) == (True, False)


def test_named_batches_are_gapless_idempotent_by_seq_and_listed_after_a_cursor(named_store) -> None:
    run = named_store
    a, b = b"A" * 8, b"B" * 8
    rseqs = run(lambda rt, t: [rt.add_batch(a, 1, 100, 2, 1, b"one"), rt.add_batch(b, 1, 101, 1, 1, b"two" * 30),
                               rt.add_batch(a, 2, 102, 1, 1, b"three")])
    assert rseqs == [1, 2, 3]
    # (device, seq) sent again: None, a value, and the transaction goes on (PostgreSQL would abort on an error)
    assert run(lambda rt, t: (rt.add_batch(a, 1, 103, 1, 1, b"other"), rt.add_batch(b, 2, 104, 1, 1, b"four"))) == \
        (None, 4)  # no gap left by the one not stored
    got = run(lambda rt, t: rt.batch_by_seq(a, 2))
    assert (got.rseq, got.received_ms, got.data) == (3, 102, b"three")
    assert run(lambda rt, t: rt.batch_by_seq(a, 9)) is None
    refs = run(lambda rt, t: rt.batches_after(1, 2))
    assert [(r.rseq, r.device, r.received_ms, r.size) for r in refs] == [(2, b, 101, 90), (3, a, 102, 5)]
    assert run(lambda rt, t: (rt.batch_data(2), rt.batch_data(99), rt.any_after(3), rt.any_after(4))) == \
        (b"two" * 30, None, True, False)
    assert run(lambda rt, t: rt.batch_by_seq(a, 1)).data == b"one"  # the first content kept
    assert sorted(run(lambda rt, t: rt.batches_data(1, 4, a, 90))) == [(2, b"two" * 30), (4, b"four")]
    assert run(lambda rt, t: rt.batches_data(1, 4, a, 89)) == [(4, b"four")]  # over max_size: left out


def test_named_upload_pieces(named_store) -> None:
    run = named_store
    d = b"D" * 8
    run(lambda rt, t: (rt.upload_add(d, 5, 0, 9, b"abc", 10), rt.upload_add(d, 5, 3, 9, b"def", 11),
                       rt.upload_add(d, 7, 0, 4, b"xy", 5), rt.upload_add(d, 6, 0, 4, b"zz", 8)))
    assert run(lambda rt, t: (rt.upload_held(d, 5, 9), rt.upload_used(d), rt.upload_oldest_other(d, 5))) == \
        (6, 10, [7, 6])
    assert run(lambda rt, t: rt.upload_held(d, 7, 100)) == 0  # another total: the old pieces are forgotten
    run(lambda rt, t: rt.upload_add(d, 5, 6, 9, b"ghi", 12))
    assert run(lambda rt, t: rt.upload_take(d, 5)) == b"abcdefghi"
    assert run(lambda rt, t: (rt.upload_held(d, 5, 9), rt.upload_used(d))) == (0, 2)
    run(lambda rt, t: rt.upload_expire(9))
    assert run(lambda rt, t: rt.upload_used(d)) == 0


def test_two_teams_in_two_schemas_of_one_postgres_stay_apart(tmp_path: Path, pg_server) -> None:
    """The sharding unit is the schema (README, "Sharding by team"): two teams' relays in two schemas of
    one database sync at once, each under its own lock, and neither sees the other's batches or chunks."""
    relay_helpers.NEW_DATABASE = pg_server.url
    try:
        teams = [Team(tmp_path / "a", "Finance"), Team(tmp_path / "b", "Works")]
    finally:
        relay_helpers.NEW_DATABASE = None
    for t in teams:
        t.__enter__()
    try:
        pairs = [t.pair("dana", "chidi") for t in teams]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                sup, mem = pairs[i]
                for r in range(3):
                    with sup.open() as rep:
                        rep.add_tasks([{"title": f"team {i} round {r}"}])
                    assert sup.sync().ok and mem.sync().ok
                doc = tmp_path / f"scan{i}.pdf"
                doc.write_bytes(os.urandom(1_200_000))
                with sup.open() as rep:
                    rep.add_doc(doc)
                assert sup.sync().ok
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        for i, (t, (sup, mem)) in enumerate(zip(teams, pairs)):
            assert mem.sync().ok
            with mem.open() as rep:
                assert {x.title for x in rep.tasks()} == {f"team {i} round {r}" for r in range(3)}
            rseqs = [r[0] for r in t.sql("SELECT rseq FROM batches ORDER BY rseq")]
            assert rseqs == list(range(1, len(rseqs) + 1))  # each team's own gapless numbering
            team_ids = {bytes(r[0]) for r in t.sql("SELECT team FROM chunks")}
            team_id = codec.unpack(bytes(t.sql("SELECT value FROM meta WHERE key = 'team'")[0][0]))
            assert team_ids == {team_id} and t.chunk_ids()  # its own document's chunks only
        locks = [storage.open_store(t.data) for t in teams]
        assert locks[0].lock != locks[1].lock  # different teams never wait for each other
        for s in locks:
            s.close()
    finally:
        for t in teams:
            t.__exit__(None, None, None)
