"""A multi-team relay gets what a one-team relay has: TLS, automatic rebalancing, a chunk quota per team.

Real parts only: ``hbw-relay serve`` as a subprocess (one or two workers), the CLI (CliRunner),
devices that join with the CLI's invites and sync over a loopback port, real SQLite files or
PostgreSQL schemas (the ``backend`` fixture, as in ``test_multiteam.py``).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from hostile_helpers import post, signed
from relay_helpers import FAST_KDF, STRONG, Member, Team, set_relay_url
from test_bundle_chunks import add_scan, batch_count
from test_chunk_relay import call, sealed_chunks
from test_multiteam import Multi, metric, multi_database, relay
from test_storage import Serve
from test_tls import self_signed

from hbw_sync.client import bundles
from hbw_sync.client import sync as syncing
from hbw_sync.server import admin, teams

pytestmark = pytest.mark.usefixtures("backend")

GiB = 1024**3


def relay_batches(t: Team) -> int:
    """Batches the relay itself signed in a team (each auto-rebalance round that moved something is one)."""
    key = (t.data / "relay.key").read_bytes()
    from hbw_sync import crypto

    return len(t.sql("SELECT rseq FROM batches WHERE device = ?", (crypto.DeviceKey(key).device_id,)))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tls_serves_every_team_and_invites_for_any_team_pin_it(tmp_path: Path, request: pytest.FixtureRequest,
                                                              workers: str) -> None:
    multi = Multi(tmp_path, multi_database(request))
    finance = multi.add("finance", "Finance")
    cert, key = self_signed(tmp_path, "office")
    serve = Serve(multi.data, workers, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert serve.url.startswith("https://")
        d = str(multi.data)
        r = relay("invite", "--data", d, "--team", "finance", "dana", "--role", "supervisor", "--url", serve.url,
                  "--json")
        assert r.exit_code == 0, r.output
        inv = json.loads(r.output)
        assert inv["relay"] == f"{serve.url}/t/finance"
        dana = Member("dana", tmp_path / "dana", f"dana {STRONG}", "supervisor")
        # A self-signed certificate that no invite pinned is refused (test_tls); this one joins: it is pinned.
        assert syncing.join(dana.home, inv["invite"], dana.passphrase, kdf=FAST_KDF)["synced"] is True
        assert dana.sync().ok
        finance.url = f"{serve.url}/t/finance"
        chidi = finance.join("chidi")
        assert chidi.sync().ok and dana.sync().ok
        # A team added while serving: its invites pin the same certificate, and it is served over TLS.
        health = multi.add("health", "Health")
        health.url = f"{serve.url}/t/health"
        inv2 = admin.invite(health.data, "erin", "supervisor", url=health.url)
        assert inv2.tls_sha256 == admin.certificate_digest(cert)
        erin = health.join("erin", "supervisor")
        assert erin.sync().ok
        # An http URL pins nothing (there is no certificate there to pin).
        assert admin.invite(health.data, "femi", url="http://127.0.0.1:1/t/health").tls_sha256 is None
        synced = {(json.loads(x[x.index("{"):])["team"]) for x in list(serve.lines)
                  if '"action": "sync"' in x and '"status": 200' in x}
        assert synced == {"finance", "health"}
    finally:
        assert serve.stop() == 0


def test_the_office_page_is_still_refused_on_a_multi_team_directory_with_words(tmp_path: Path) -> None:
    multi = Multi(tmp_path, None)
    r = relay("serve", "--data", str(multi.data), "--admin", "--port", "0")
    assert r.exit_code == 2 and "--team ID" in r.output and "does not yet serve a multi-team relay" in r.output
    r = relay("serve", "--data", str(multi.data), "--tls-cert", __file__, "--port", "0")
    assert r.exit_code == 2 and "go together" in r.output


def stuck_task(t: Team) -> tuple[Member, Member, str]:
    """A supervisor and a member; a task held by someone who is not in the team (it cannot progress)."""
    dana, chidi = t.pair()
    with dana.open() as rep:
        tid = rep.add_task("Reconcile invoices", assignee="ghost").id
    assert dana.sync().ok and chidi.sync().ok
    return dana, chidi, tid


def test_auto_rebalance_moves_every_teams_stuck_work_once_from_one_worker(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``--auto-rebalance`` with ``--workers 2``: worker 0 alone runs the rounds, over every known team (none
    open: no device sends anything), opening each for its turn and closing it again; a team that cannot
    open is logged and counted, and the others are still done; each stuck task moves exactly once."""
    multi = Multi(tmp_path, multi_database(request))
    with multi:
        work = {tid: stuck_task(multi.add(tid, tid.title())) for tid in ("alpha", "beta")}
    multi.add("broken", "Broken")
    (teams.team_dir(multi.data, "broken") / "relay.key").write_bytes(b"not a key")
    serve = Serve(multi.data, "2", "--auto-rebalance", "0.0005")  # hours: a round every 1.8 s

    def rounds() -> list[dict]:
        return [json.loads(x[x.index("{"):]) for x in list(serve.lines) if '"action": "auto-rebalance"' in x]

    try:
        deadline = time.monotonic() + 120
        while not all(sum(1 for x in rounds() if x.get("team") == tid and "moves" in x) >= 3 for tid in work):
            assert time.monotonic() < deadline, "".join(serve.lines)
            time.sleep(0.3)
        lines = rounds()
        assert {x["worker"] for x in lines} == {0}  # one worker runs the rounds: two never both move a task
        assert {x["team"] for x in lines} == {"alpha", "beta", "broken"}
        assert all("error" in x for x in lines if x["team"] == "broken")
        for tid in work:
            moves = [x["moves"] for x in lines if x["team"] == tid and "moves" in x]
            assert moves[0] == 1 and sum(moves) == 1, (tid, moves)  # moved once, then nothing left to move
            assert relay_batches(multi.teams[tid]) == 1
        # /metrics, whichever worker answers, counts worker 0's rounds (its counts reach the others' within
        # FLUSH_S). Teams were opened for their turn only and closed again: none stays open.
        while True:
            text = urllib.request.urlopen(serve.url + "/metrics", timeout=30).read().decode()
            if metric(text, "hbw_rebalance_rounds_total") >= 3 and metric(text, "hbw_teams_open") == 0:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert metric(text, "hbw_rebalance_moves_total") == 2
        assert metric(text, "hbw_rebalance_failed_total") >= 3  # the broken team, each round
        for tid, (dana, chidi, task) in work.items():
            for m in (dana, chidi):
                set_relay_url(m, f"{serve.url}/t/{tid}")
                assert m.sync().ok
                with m.open() as rep:
                    assert rep.task(task).assignee == "chidi", (tid, m.name)
    finally:
        assert serve.stop() == 0


def test_each_team_has_its_own_quota_online_and_in_bundle_ingest(tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    multi = Multi(tmp_path, multi_database(request), team_idle_s=8.0)  # an idle sweep every 2 s
    d = str(multi.data)
    finance, health, roads = multi.add("finance", "Finance"), multi.add("health", "Health"), multi.add("roads", "Roads")
    r = relay("team", "quota", "--data", d, "finance", "0.001", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"id": "finance", "chunk_quota": int(0.001 * GiB), "chunk_quota_own": True}
    # The serve option is the default of the teams without their own, kept for the commands serve does not run.
    teams.keep_serve_settings(multi.data, chunk_quota=3 * GiB)
    rows = {x["id"]: x for x in json.loads(relay("team", "list", "--data", d, "--json").output)}
    assert (rows["finance"]["chunk_quota"], rows["finance"]["chunk_quota_own"]) == (int(0.001 * GiB), True)
    assert (rows["health"]["chunk_quota"], rows["health"]["chunk_quota_own"]) == (3 * GiB, False)
    assert relay("team", "quota", "--data", d, "roads", "0.001").exit_code == 0
    text = relay("team", "list", "--data", d).output
    assert "its own quota" in text and "the relay's default" in text
    assert admin.chunk_quota(finance.data) == int(0.001 * GiB) and admin.chunk_quota(health.data) == 3 * GiB

    with multi:
        finance.url, health.url = f"{multi.base}/t/finance", f"{multi.base}/t/health"
        fdana, health_dana = finance.join("dana", "supervisor"), health.join("dana", "supervisor")
        many = sealed_chunks(30)  # 1.2 MB: over finance's 1 MiB, far under health's default
        status, err = post(finance.url, signed(fdana, "chunk_put", {"chunks": [list(p) for p in many]}),
                                path="/t/finance/v1")
        assert (status, err["code"]) == (413, "protocol.quota")
        assert finance.chunk_ids() == []
        assert call(health, health_dana, "chunk_put", {"chunks": [list(p) for p in many]})["stored"] == 30
        # Raised while serving: the open team re-reads it at the next idle sweep. It is asked every 0.5 s,
        # so it is never idle long enough to be closed: the sweep's reading, not a reopening, applies it.
        opened = metric(str(multi.get("/metrics")[1]), "hbw_teams_opened_total")
        assert relay("team", "quota", "--data", d, "finance", "1").exit_code == 0
        deadline = time.monotonic() + 60
        while True:
            status, body = post(finance.url, signed(fdana, "chunk_put", {"chunks": [list(p) for p in many]}),
                                path="/t/finance/v1")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and len(finance.chunk_ids()) == 30
        assert metric(str(multi.get("/metrics")[1]), "hbw_teams_opened_total") == opened  # finance not reopened

        # bundle ingest --team (its own process, without serve's options) refuses at the team's own quota too.
        roads.url = f"{multi.base}/t/roads"
        _rdana, chidi = roads.pair()
        add_scan(chidi, tmp_path)  # 2 MB
        bundles.export_bundle(chidi.home, tmp_path / "c.hbw", passphrase=chidi.passphrase)
        before = batch_count(roads)
        r = relay("bundle", "ingest", "--data", d, "--team", "roads", str(tmp_path / "c.hbw"),
                  "--reply-dir", str(tmp_path / "replies"))
        assert r.exit_code == 65 and "nothing of this bundle was applied" in r.output, r.output
        assert batch_count(roads) == before and roads.chunk_bytes() == 0
        assert relay("team", "quota", "--data", d, "roads", "2").exit_code == 0
        r = relay("bundle", "ingest", "--data", d, "--team", "roads", str(tmp_path / "c.hbw"),
                  "--reply-dir", str(tmp_path / "replies"))
        assert r.exit_code == 0, r.output
        assert roads.chunk_bytes() >= 2_000_000


@pytest.mark.sqlite_only("the team id is checked before any storage is touched")
@pytest.mark.parametrize("bad", ["../finance", "finance/../health", "..", "/etc", "fin%2F..", "Finance",
                                 "f", "a" * 33, "finance\x00", "../../outside", "teams/finance"])
def test_a_team_id_in_team_quota_cannot_escape_the_teams_directory(tmp_path: Path, bad: str) -> None:
    multi = Multi(tmp_path, None)
    finance = multi.add("finance", "Finance")
    (tmp_path / "outside").mkdir()
    from test_multiteam import state

    before = (state(finance), sorted(str(p) for p in tmp_path.rglob("*")))
    r = relay("team", "quota", "--data", str(multi.data), bad, "1")
    assert r.exit_code == 2 and "is not a team id" in r.output, r.output
    assert (state(finance), sorted(str(p) for p in tmp_path.rglob("*"))) == before
    rows = json.loads(relay("team", "list", "--data", str(multi.data), "--json").output)
    assert [x["chunk_quota_own"] for x in rows] == [False]
    r = relay("team", "quota", "--data", str(multi.data), "nope", "1")
    assert r.exit_code == 2 and "no team nope" in r.output
    for size in ("0", "nan", "inf", "-1", "1e400"):  # not a size: refused in words, nothing kept
        r = relay("team", "quota", "--data", str(multi.data), "finance", size)
        assert r.exit_code == 2 and "SIZE_GB" in r.output, (size, r.output)
    assert [x["chunk_quota_own"] for x in json.loads(relay("team", "list", "--data", str(multi.data),
                                                           "--json").output)] == [False]
