"""``hbw-relay serve --workers N`` on SQLite: several processes on one relay.db, correct together.

Real processes (the CLI as office IT runs it), real devices (``relay_helpers.Team``), a real
SQLite file. What must hold with two writers taking turns: every device converges, the team's
sequence numbers have no gap and no duplicate, each device's batches are stored once each,
and ``/metrics`` counts the whole relay, whichever worker answers it, across a worker's restart.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from pathlib import Path

from relay_helpers import Team
from test_storage import Serve, assert_converged_gapless, join_and_sync_at_once

from hbw_sync.server import chunkstore, relay
from hbw_sync.server.storage import sqlite as sq


def _metric(text: str, name: str, labels: str = "") -> float:
    pat = "^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$"
    return sum(float(m.group(1)) for m in re.finditer(pat, text, re.M))


def _syncs_logged(serve: Serve) -> int:
    return sum(1 for x in list(serve.lines) if '"action": "sync"' in x and '"status": 200' in x)


def _metrics_catch_up(serve: Serve, timeout: float = 60) -> str:
    """The relay's /metrics once its sync count equals the syncs the workers logged (other workers'
    counts reach the file the asked one reads within ``SharedMetrics.FLUSH_S``)."""
    deadline = time.monotonic() + timeout
    while True:
        text = urllib.request.urlopen(serve.url + "/metrics", timeout=30).read().decode()
        got, want = _metric(text, "hbw_requests_total", 'action="sync",status="200"'), _syncs_logged(serve)
        if got == want or time.monotonic() > deadline:
            assert got == want, (got, want)
            return text
        time.sleep(0.2)


def test_two_sqlite_workers_converge_gapless_and_count_the_whole_relay(tmp_path: Path) -> None:
    team = Team(tmp_path)  # SQLite: the embedded default
    serve = Serve(team.data, "2")
    try:
        team.url = serve.url
        pids, everyone = join_and_sync_at_once(team, serve)
        text = _metrics_catch_up(serve)
        assert _metric(text, "hbw_workers") == 2
        assert _metric(text, "hbw_devices_seen") == len(everyone)  # a union across workers, not a sum
        assert _metric(text, "hbw_batches_in_total") == len(team.sql("SELECT rseq FROM batches"))
        before = _metric(text, "hbw_requests_total", 'action="sync",status="200"')

        # A worker dies: serve starts another, which goes on from its counts; devices go on syncing.
        serve.kill_worker(pids[1], then_sync=everyone)
        text = _metrics_catch_up(serve)
        assert _metric(text, "hbw_requests_total", 'action="sync",status="200"') >= before + 2 * len(everyone)

        assert_converged_gapless(team, everyone)
        answered = {x.split('"worker": ')[1][0] for x in serve.lines if '"action": "sync"' in x and '"worker"' in x}
        assert answered == {"0", "1"}
    finally:
        code = serve.stop()
    assert code == 0


def test_a_staged_chunk_another_process_indexed_is_not_removed(tmp_path: Path) -> None:
    """Two relay processes stage the same chunk id: one's request is refused (its file was staged first),
    the other's ``put`` indexed that very file. The refused one's clean-up must leave it: a held chunk
    without its bytes would be lost for every device."""
    team = Team(tmp_path)
    db = team.data / sq.DB_NAME
    ident_team = team.sql("SELECT value FROM meta WHERE key = 'team'")[0][0]
    from hbw_sync import codec

    t = codec.unpack(ident_team)
    a = chunkstore.for_backend("sqlite", team.data, 1 << 30)  # process A's store
    b = chunkstore.for_backend("sqlite", team.data, 1 << 30)  # process B's
    cid, data = bytes(range(16)), os.urandom(100)
    staged = a.stage(t, cid, data)  # type: ignore[attr-defined]
    assert staged is not None and staged.exists()
    conn = sq.connect(db)
    conn.execute("BEGIN IMMEDIATE")
    assert b.put(conn, t, cid, data, relay.now_ms())
    conn.execute("COMMIT")
    a.unstage([staged])  # type: ignore[attr-defined]
    assert staged.exists() and b.get(conn, t, cid) == data
    # And a staged file nobody indexed is removed.
    other = a.stage(t, bytes(16), os.urandom(100))  # type: ignore[attr-defined]
    a.unstage([other])  # type: ignore[attr-defined]
    assert not other.exists()
    conn.close()
