"""One relay process serves many teams (issue 16): ``/t/<id>/v1`` per team, one-team code per team.

Real everything: the ``hbw-relay`` CLI (CliRunner, no mocks), a relay on a loopback port
(``RelayThread``) serving a multi-team directory, real devices joining with the invites the CLI
makes, real SQLite files or PostgreSQL schemas (the ``backend`` fixture), raw sockets for the
hostile paths. What must hold: each team's sequence is gapless and holds only its own devices'
batches, a request for no team (or a tricked path) is refused before its body is read and changes
nothing, a device of one team cannot act in another, and on PostgreSQL every team shares one
connection pool whose schema choice never outlives a transaction.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import relay_helpers
from click.testing import CliRunner
from relay_helpers import Member, Team, member_cli, set_relay_url
from test_storage import sync_at_once

from hbw_sync.client import sync as syncing
from hbw_sync.errors import AccessError
from hbw_sync.server import teampool, teams
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.runner import RelayThread

pytestmark = pytest.mark.usefixtures("backend")

_dbs = itertools.count(1)


def relay(*args: str) -> Any:
    return CliRunner().invoke(relay_cli, list(args), catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multi_database(request: pytest.FixtureRequest) -> str | None:
    """A fresh empty PostgreSQL database for a multi-team relay under the ``postgres`` backend, else None."""
    if relay_helpers.NEW_DATABASE is None:
        return None
    import os

    import psycopg

    server = request.getfixturevalue("pg_server")
    name = f"mt{os.getpid()}_{next(_dbs)}"
    with psycopg.connect(server.base_url(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server.base_url().replace("/hbw?", f"/{name}?")


class Multi:
    """A multi-team directory made with the CLI, served by one relay process on a fixed loopback port."""

    def __init__(self, tmp: Path, database: str | None, **cfg: Any):
        self.tmp = tmp
        self.data = tmp / "multi"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["init", "--multi", str(self.data), "--url", self.base]
        r = relay(*args, *(["--database", database] if database else []))
        assert r.exit_code == 0, r.output
        self.thread = RelayThread(RelayConfig(data=self.data, port=self.port, access_log=False, **cfg))
        self.teams: dict[str, Team] = {}

    def add(self, tid: str, name: str) -> Team:
        r = relay("team", "add", "--data", str(self.data), name, "--id", tid, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["url"] == f"{self.base}/t/{tid}"
        t = Team.existing(self.tmp / tid, teams.team_dir(self.data, tid))
        t.tmp.mkdir()
        t.url = f"{self.base}/t/{tid}"
        self.teams[tid] = t
        return t

    def __enter__(self) -> "Multi":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()

    def get(self, path: str) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as resp:
                body = resp.read().decode()
                return resp.status, json.loads(body) if body.startswith("{") else body
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode())


def metric(text: str, name: str) -> float:
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


def state(t: Team) -> tuple[list, list]:
    """What a refused request must not change: the team's batches and devices (rows, whole)."""
    return (t.sql("SELECT rseq, device, seq, data FROM batches ORDER BY rseq"),
            t.sql("SELECT device, last_seen_ms, revoked_ms FROM devices ORDER BY device"))


def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request as bytes (paths no HTTP client would send) and read the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head_bytes, _sep, rest = data.partition(b"\r\n\r\n")
        length = next((int(x.split(b":")[1]) for x in head_bytes.split(b"\r\n")
                       if x.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(head_bytes.split(b" ")[1]), rest


def test_three_teams_sync_at_once_through_one_process_gapless_and_apart(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with Multi(tmp_path, multi_database(request)) as multi:
        groups: dict[str, list[Member]] = {}
        for tid in ("finance", "health", "roads"):
            t = multi.add(tid, tid.title())
            sup, mem = t.pair()
            groups[tid] = [sup, mem, t.join("amina")]
        everyone = [m for ms in groups.values() for m in ms]
        for m in everyone:
            assert m.sync().ok
        rounds = 3
        sync_at_once(everyone, rounds, prefix={m.home: tid for tid, ms in groups.items() for m in ms})
        for m in everyone:
            assert m.sync().ok
        for tid, ms in groups.items():
            t = multi.teams[tid]
            want = {f"{tid} {m.name} {r} {k}" for m in ms for r in range(rounds) for k in range(2)}
            for m in ms:
                with m.open() as rep:
                    titles = {x.title for x in rep.tasks()}
                assert titles >= want, (tid, m.name)
                assert all(x.split()[0] == tid for x in titles if x.split()[0] in groups), (tid, titles)
            rows = t.sql("SELECT rseq, device FROM batches ORDER BY rseq")
            assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), tid  # gapless, no duplicate
            devices = {bytes(r[0]) for r in t.sql("SELECT device FROM devices")}
            assert {bytes(r[1]) for r in rows} <= devices  # only its own devices' batches
            assert len(devices) == 3
        status, health = multi.get("/healthz")
        assert status == 200 and health["teams"] == {"open": 3, "known": 3}


@pytest.mark.sqlite_only("the refusals are decided before any storage is touched")
def refused(text: str) -> dict[str, float]:
    """The hbw_root_refused_total series of a /metrics page, by reason label."""
    return {line.split('"')[1]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("hbw_root_refused_total{")}


def test_hostile_paths_are_refused_before_the_body_and_change_nothing(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="hbw.relay")
    with Multi(tmp_path, None) as multi:
        t = multi.add("finance", "Finance")
        sup, _mem = t.pair()
        before = state(t)
        bad = ["/t/nope/v1", "/t/Finance/v1", "/t/f/v1", "/t/" + "a" * 33 + "/v1", "/t/finance%2Fv1/v1",
               "/t/fin%61nce/v1", "/t/../v1", "/t/%2e%2e/finance/v1", "/t/finance/../v1", "/t/finance/v2",
               "/t/finance//v1", "/t/finance/v1/", "/t//v1", "/t/finance", "/t/" + "a" * 5000 + "/v1"]
        answered: list[str] = []  # the paths refused by the relay itself (403), not by aiohttp's router (404)
        for path in bad:
            # Declares 40 MB and sends 5 bytes: an answer at all shows the body was never waited for.
            status, body = raw_request(multi.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000\r\n"
                                                   "Content-Type: application/x-hbw\r\n\r\n", b"hello")
            assert status in (403, 404), path
            if status == 403:
                assert json.loads(body)["code"] == "access.unknown_team", path
                answered.append(path)
        # The one-team routes do not exist on a multi-team relay: a device must name its team.
        status, _body = raw_request(multi.port, "POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", b"hello")
        assert status == 404
        assert state(t) == before
        assert sup.sync().ok  # the team itself is untouched and serving
        # Each refusal under /t/ is counted by reason (two fixed labels, never the path) and logged as one
        # JSON line; the 5,000-character path is logged cut short.
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
        lines = [x for x in lines if x.get("action") == "refuse"]
        counts = refused(str(multi.get("/metrics")[1]))
        assert set(counts) == set(teampool.REFUSALS)
        well_formed = [x for x in answered if teampool.team_of(x) is not None]
        assert "/t/nope/v1" in well_formed and len(answered) >= 10
        assert counts == {"unknown_team": len(well_formed), "malformed": len(answered) - len(well_formed)}
        assert len(lines) == len(answered)
        assert all(x["error"] == "access.unknown_team" and len(x["path"]) <= 80 for x in lines)
        assert any(x["path_len"] > 5000 for x in lines)
        status, _body = multi.get("/t/nope2/v1")
        assert status == 403 and refused(str(multi.get("/metrics")[1]))["unknown_team"] == 2


@pytest.mark.sqlite_only("who may sign where is decided the same way on both backends")
def test_a_device_of_team_a_cannot_act_in_team_b(tmp_path: Path) -> None:
    with Multi(tmp_path, None) as multi:
        a, b = multi.add("alpha", "Alpha"), multi.add("beta", "Beta")
        sup_a, _ = a.pair()
        _sup_b, _ = b.pair()
        with sup_a.open() as rep:
            rep.add_tasks([{"title": "alpha only"}])
        before_a, before_b = state(a), state(b)
        set_relay_url(sup_a, b.url)  # its signed requests now go to team B's route
        with pytest.raises(AccessError) as refused:
            sup_a.sync()
        assert refused.value.code == "access.unknown_device"
        assert state(b) == before_b and state(a) == before_a
        set_relay_url(sup_a, a.url)
        assert sup_a.sync().ok  # back at its own team, it syncs


@pytest.mark.sqlite_only("the CLI's words and refusals do not depend on the backend")
def test_cli_teams_invites_carry_the_team_url_and_removal_keeps_data(tmp_path: Path) -> None:
    with Multi(tmp_path, None) as multi:
        d = str(multi.data)
        multi.add("finance", "District Finance")
        multi.add("health", "Health Office")
        r = relay("invite", "--data", d, "dana")
        assert r.exit_code == 2 and "--team" in r.output and "finance, health" in r.output
        r = relay("devices", "--data", d)
        assert r.exit_code == 2 and "finance, health" in r.output
        r = relay("invite", "--data", d, "--team", "nope", "dana")
        assert r.exit_code == 2 and "no team nope" in r.output
        r = relay("invite", "--data", d, "--team", "finance", "dana", "--role", "supervisor", "--json")
        assert r.exit_code == 0, r.output
        inv = json.loads(r.output)
        assert inv["relay"] == f"{multi.base}/t/finance"
        # Office IT gives the server's address: the team's path is added, once (a device given the root
        # would reach no team).
        for given in (multi.base, multi.base + "/", f"{multi.base}/t/health"):
            r = relay("invite", "--data", d, "--team", "health", "erin", "--url", given, "--json")
            assert r.exit_code == 0, r.output
            assert json.loads(r.output)["relay"] == f"{multi.base}/t/health", given
        r = relay("init", "--multi", "--data", str(tmp_path / "flagged"))
        assert r.exit_code == 0 and teams.is_multi(tmp_path / "flagged"), r.output
        r = relay("team", "list", "--data", str(tmp_path / "dana_missing"))
        assert r.exit_code != 0 and "init --multi" in r.output
        dana = Member("dana", tmp_path / "dana", f"dana {relay_helpers.STRONG}", "supervisor")
        syncing.join(dana.home, inv["invite"], dana.passphrase, kdf=relay_helpers.FAST_KDF)
        code, out = member_cli(dana, "sync")
        assert code == 0, out
        r = relay("devices", "--data", d, "--team", "finance", "--json")
        assert r.exit_code == 0 and len(json.loads(r.output)) == 1
        assert json.loads(relay("devices", "--data", d, "--team", "health", "--json").output) == []
        rows = json.loads(relay("team", "list", "--data", d, "--json").output)
        assert [(x["id"], x["name"], x["devices"]) for x in rows] == [("finance", "District Finance", 1),
                                                                       ("health", "Health Office", 0)]
        r = relay("team", "remove", "--data", d, "finance")
        assert r.exit_code == 2 and "--force" in r.output
        assert (multi.data / "teams" / "finance").is_dir()
        r = relay("team", "remove", "--data", d, "finance", "--force", "--json")
        assert r.exit_code == 0, r.output
        kept = Path(json.loads(r.output)["kept"])
        assert (kept / "relay.key").is_file() and (kept / "relay.db").is_file()
        code, out = member_cli(dana, "sync")
        assert code != 0  # the team is no longer served
        assert [x["id"] for x in json.loads(relay("team", "list", "--data", d, "--json").output)] == ["health"]
        r = relay("invite", "--data", str(kept), "--team", "finance", "x")
        assert r.exit_code == 2 and "holds one team" in r.output


@pytest.mark.sqlite_only("the LRU is the same for either backend")
def test_open_teams_are_capped_and_idle_ones_closed(tmp_path: Path) -> None:
    with Multi(tmp_path, None, max_open_teams=1, team_idle_s=1.0) as multi:
        members = []
        for tid in ("alpha", "beta", "gamma"):
            sup, _mem = multi.add(tid, tid.title()).pair()
            members.append(sup)
        for _round in range(2):
            for m in members:
                with m.open() as rep:
                    rep.add_tasks([{"title": "x"}])
                assert m.sync().ok
                _s, text = multi.get("/metrics")
                assert metric(str(text), "hbw_teams_open") == 1
        assert metric(str(multi.get("/metrics")[1]), "hbw_teams_closed_total") >= 5
        deadline = time.monotonic() + 60
        while multi.get("/healthz")[1]["teams"]["open"] != 0:  # type: ignore[index]
            assert time.monotonic() < deadline, "an idle team was never closed"
            time.sleep(0.2)
        assert members[0].sync().ok  # opened again on demand


def test_postgres_teams_share_one_pool_and_the_schema_never_leaks(tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    database = multi_database(request)
    if database is None:
        pytest.skip("PostgreSQL only: SQLite teams each have their own file")
    import psycopg

    with Multi(tmp_path, database) as multi:
        for tid in ("alpha", "beta", "gamma"):
            sup, _mem = multi.add(tid, tid.title()).pair()
            assert sup.sync().ok
        _s, text = multi.get("/metrics")
        held = metric(str(text), "hbw_pg_connections")
        assert 1 <= held <= teampool.postgres.POOL_SIZE
        name = database.split("/")[3].split("?")[0]
        with psycopg.connect(database, autocommit=True) as c:
            n = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                          (name,)).fetchone()[0]
        assert n == held  # three teams open, no connection of their own

    # One connection, two teams in turn: each transaction sees only its own team, and none after it.
    pool = teampool.SharedPgPool(database, size=1)
    pool.start()
    try:
        import asyncio

        async def run() -> None:
            a = await pool.runner(teams.team_dir(multi.data, "alpha"))
            b = await pool.runner(teams.team_dir(multi.data, "beta"))
            team = "SELECT value FROM meta WHERE key = 'team_name'"
            for _ in range(3):
                assert bytes((await a.read(lambda t: t.execute(team).fetchone()))[0]) != \
                    bytes((await b.read(lambda t: t.execute(team).fetchone()))[0])
            names = [await r.run(lambda t: relay_meta(t)) for r in (a, b, a)]
            assert names == ["Alpha", "Beta", "Alpha"]
            assert pool.executor is not None
            after = pool.executor.submit(lambda: pool.local.conn.execute("SHOW search_path").fetchone()[0]).result()
            assert "hbw_" not in after

        asyncio.run(run())
        assert len(pool.conns) == 1
    finally:
        pool.stop()


def relay_meta(t: Any) -> str:
    from hbw_sync.server import relay as r

    return r.meta(t, "team_name")


@pytest.mark.sqlite_only("a damaged team file is a SQLite matter")
def test_a_team_that_cannot_open_is_told_in_json_and_the_others_keep_serving(tmp_path: Path) -> None:
    with Multi(tmp_path, None) as multi:
        good = multi.add("good", "Good")
        multi.add("broken", "Broken")
        (teams.team_dir(multi.data, "broken") / "relay.db").write_bytes(b"not a database at all" * 100)
        status, body = raw_request(multi.port, "POST /t/broken/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                                   b"hello")
        assert status >= 400 and json.loads(body)["code"]  # words the device can show, not a bare 500 page
        sup, _mem = good.pair()
        assert sup.sync().ok
        status, health = multi.get("/healthz")
        assert status == 200 and health["teams"]["open"] == 1


@pytest.mark.sqlite_only("the team listing is files in the data directory on both backends")
def test_the_team_count_is_cached_yet_a_team_added_or_removed_while_serving_is_seen(tmp_path: Path) -> None:
    with Multi(tmp_path, None) as multi:
        multi.add("finance", "Finance")
        _s, health = multi.get("/healthz")
        assert isinstance(health, dict) and health["teams"]["known"] == 1
        health_t = multi.add("health", "Health Office")  # by the CLI, another "process", while serving
        _s, health = multi.get("/healthz")
        assert isinstance(health, dict) and health["teams"]["known"] == 2
        assert metric(str(multi.get("/metrics")[1]), "hbw_teams_known") == 2
        sup, _mem = health_t.pair()
        assert sup.sync().ok  # and it serves
        # The count is read once and reused while the teams directory is unchanged.
        pool = teampool.TeamPool(teampool.web.Application(), RelayConfig(data=multi.data), None)
        assert pool.known_count() == 2 and pool.known_count() == 2 and pool.known_scans == 1
        multi.add("audit", "Audit")
        assert pool.known_count() == 3 and pool.known_scans == 2
        r = relay("team", "remove", "--data", str(multi.data), "audit")
        assert r.exit_code == 0, r.output
        assert pool.known_count() == 2 and pool.known_scans == 3
        _s, health = multi.get("/healthz")
        assert isinstance(health, dict) and health["teams"]["known"] == 2


def test_two_worker_processes_serve_many_teams_converged_gapless_and_apart(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``serve --workers 2`` on a multi-team directory: each worker keeps its own open teams (and, on
    PostgreSQL, its own pool), so two teams' devices syncing at once through both workers must still
    converge per team, with gapless sequences, each batch stored once and nothing crossing teams; a
    worker killed mid-way is started again and the teams go on."""
    from test_storage import Serve, assert_converged_gapless

    multi = Multi(tmp_path, multi_database(request))
    names = {"finance": ["dana", "amina", "bosco"], "health": ["eve", "femi", "gita"]}
    for tid in names:
        multi.add(tid, tid.title())
    serve = Serve(multi.data, "2")
    try:
        pids = {e["worker"]: e["pid"] for e in serve.events("listening")}
        assert sorted(pids) == [0, 1]
        groups: dict[str, list[Member]] = {}
        for tid, (sup, *rest) in names.items():
            t = multi.teams[tid]
            t.url = f"{serve.url}/t/{tid}"
            groups[tid] = [t.join(sup, "supervisor")]
            assert groups[tid][0].sync().ok
            groups[tid] += [t.join(n) for n in rest]
        everyone = [m for ms in groups.values() for m in ms]
        for m in everyone:
            assert m.sync().ok
        sync_at_once(everyone)

        # /metrics, whichever worker answers, counts the whole relay: every worker's syncs and teams
        # (a worker's counts reach the others' within FLUSH_S; nothing syncs between this and the kill).
        def answered(action: str = "") -> set[tuple[str, int]]:
            """(team, worker) pairs in the access log: which worker served which team (any request)."""
            return {(json.loads(x)["team"], json.loads(x)["worker"]) for x in list(serve.lines)
                    if f'"action": "{action}' in x and '"team"' in x}

        def whole_relay_metrics() -> str:
            syncs = sum(1 for x in list(serve.lines) if '"action": "sync"' in x and '"status": 200' in x)
            deadline = time.monotonic() + 60
            while True:
                text = urllib.request.urlopen(serve.url + "/metrics", timeout=30).read().decode()
                got = sum(float(line.split()[1]) for line in text.splitlines()
                          if line.startswith('hbw_requests_total{action="sync",status="200"}'))
                if got == syncs or time.monotonic() > deadline:
                    assert got == syncs
                    return text
                time.sleep(0.2)

        text = whole_relay_metrics()
        assert metric(text, "hbw_workers") == 2
        assert metric(text, "hbw_teams_known") == 2
        assert metric(text, "hbw_devices_seen") == len(everyone)
        assert metric(text, "hbw_teams_opened_total") == len(answered())  # each worker opened each team it served once

        serve.kill_worker(pids[1], then_sync=everyone)
        text = whole_relay_metrics()  # the restarted worker went on from its file's counts
        assert metric(text, "hbw_workers") == 2

        for tid, ms in groups.items():
            assert_converged_gapless(multi.teams[tid], ms)
            others = {n for t2, ns in names.items() if t2 != tid for n in ns}
            for m in ms:
                with m.open() as rep:
                    assert not {x.title.split()[0] for x in rep.tasks()} & others, (tid, m.name)
        synced = answered("sync")
        assert {w for _t, w in synced} == {0, 1} and {t for t, _w in synced} == set(names)
    finally:
        code = serve.stop()
    assert code == 0
