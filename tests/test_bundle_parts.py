"""Reply bundles within a size cap (issue 11 item 5): a large reply is split into files of at most
``--max-size`` each, and however the mail delivers them (in order, out of order, one twice) the
device ends with everything, and is told what is still to come. Real relay, real CLIs, real files.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.server.cli import cli as relay_cli

from relay_helpers import Member, Team

CAP = 150_000


def noise(n: int) -> str:
    """Text that compresses little: each byte has to travel."""
    return base64.b64encode(os.urandom(n * 3 // 4)).decode()


def office_news(dana: Member, tasks: int, size: int) -> set[str]:
    """Dana adds ``tasks`` tasks with ``size``-character descriptions, one sync each: one batch each."""
    made = set()
    for i in range(tasks):
        with dana.open() as rep:
            rep.add_task(f"Ledger page {i}", description=noise(size))
        dana.sync()
        made.add(f"Ledger page {i}")
    return made


def titles(m: Member) -> set[str]:
    with m.open() as rep:
        return {t.title for t in rep.tasks()}


class Chidi:
    """Chidi's device through the real CLI, and the office's relay CLI, with files in ``tmp``."""

    def __init__(self, team: Team, m: Member, tmp: Path):
        self.team, self.m, self.tmp = team, m, tmp
        self.env = {"HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": m.passphrase}

    def client(self, *args: str, code: int = 0):
        res = CliRunner().invoke(client_cli, list(args), env=self.env, catch_exceptions=False)
        assert res.exit_code == code, res.output
        return res

    def round(self, name: str, max_size: str = str(CAP)) -> dict:
        """Export a bundle, have the office ingest it; returns the relay's --json answer."""
        self.client("bundle", "export", str(self.tmp / f"{name}.hbw"), "--max-size", max_size)
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(self.team.data),
                                             str(self.tmp / f"{name}.hbw"), "--reply-dir",
                                             str(self.tmp / f"replies-{name}"), "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    def imp(self, file: str) -> str:
        return self.client("bundle", "import", file).stdout


def pending(m: Member) -> tuple[int, int]:
    with Device.open(m.home) as dev:
        s = dev.store
        return (s.execute("SELECT COUNT(*) FROM inbox").fetchone()[0], s.meta("pull_cursor", 0))


def test_a_reply_over_the_cap_comes_in_files_within_it_and_says_what_is_to_come(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    made = office_news(dana, 12, 40_000)  # about 12 x 30 KB of batches: well over one 150 KB file
    with chidi.open() as rep:
        rep.add_task("Chidi's inspection")
    c = Chidi(team, chidi, tmp_path)
    r = c.round("b1")
    files = [x["file"] for x in r["replies"]]
    assert len(files) >= 3 and r["parts"] == len(files) and not r["more_waiting"] and not r["over_cap"]
    sizes = [Path(f).stat().st_size for f in files]
    assert all(s <= CAP for s in sizes), sizes
    assert all(re.search(rf"-{i}of{len(files)}\.hbw$", f) for i, f in enumerate(files, 1))
    outs = [c.imp(f) for f in files]
    # Each import says which part it was and what is still to come, in words and human sizes.
    assert outs[0].startswith(f"Part 1 of {len(files)} imported: 1 of your batches confirmed")
    first_left = re.search(r"(\d+) more bundles to come: ([\d.]+ (?:KB|MB))\. Import them as they arrive", outs[0])
    assert first_left and int(first_left.group(1)) == len(files) - 1, outs[0]
    assert "1 more bundle to come: " in outs[-2]
    assert "to come" not in outs[-1] and "wait" not in outs[-1]
    assert titles(chidi) >= made | {"Chidi's inspection"}
    assert pending(chidi)[0] == 0
    dana.sync()
    assert "Chidi's inspection" in titles(dana)
    # Nothing is left for chidi: the next round trip brings nothing more, in one file.
    with chidi.open() as rep:
        rep.add_task("Second visit")
    again = c.round("b2")
    assert again["parts"] == 1 and again["batches_out"] == 0
    assert "Imported: 1 of your batches confirmed, 0 received" in c.imp(again["reply"])


def test_parts_out_of_order_and_twice_converge_with_nothing_lost(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    made = office_news(dana, 12, 40_000)
    c = Chidi(team, chidi, tmp_path)
    r = c.round("b1")
    files = [x["file"] for x in r["replies"]]
    n = len(files)
    assert n >= 3
    inbox0, cursor0 = pending(chidi)
    # The last part first: kept, but its changes wait, and the cursor stays (nothing may be skipped).
    out = c.imp(files[-1])
    assert f"Part {n} of {n} imported" in out and "wait for the part before it" in out
    assert f"{n - 1} more bundles to come" in out
    inbox1, cursor1 = pending(chidi)
    assert inbox1 > inbox0 and cursor1 == cursor0
    assert titles(chidi).isdisjoint(made)  # not applied out of the relay's order
    # The same file again: nothing changes.
    assert "already imported" in c.imp(files[-1])
    assert pending(chidi) == (inbox1, cursor1)
    # An online sync meanwhile is fine too; here: the first part, then the middle ones backwards.
    c.imp(files[0])
    for f in reversed(files[1:-1]):
        c.imp(f)
    assert "already imported" in c.imp(files[1])
    assert titles(chidi) >= made and pending(chidi)[0] == 0
    with Device.open(chidi.home) as dev:
        assert dev.store.meta("bundle_ranges") is None and dev.store.meta("bundle_parts") is None
    # And the cursor is where an online sync would have left it: a sync now brings nothing.
    assert chidi.sync().received_batches == 0


def test_an_online_sync_fills_the_gap_a_missing_part_left(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    made = office_news(dana, 10, 40_000)
    c = Chidi(team, chidi, tmp_path)
    files = [x["file"] for x in c.round("b1")["replies"]]
    assert len(files) >= 3
    c.imp(files[0])
    c.imp(files[2])  # part 2 lost in the mail
    assert not titles(chidi) >= made
    chidi.sync()  # a link after all
    assert titles(chidi) >= made
    assert pending(chidi)[0] == 0
    c.imp(files[1])  # part 2 arrives late: harmless
    assert titles(chidi) >= made and pending(chidi)[0] == 0


def test_a_change_larger_than_any_bundle_is_named_and_the_rest_waits_for_it(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    with dana.open() as rep:
        rep.add_task("Scanned ledger", description=noise(200_000))  # one batch of about 150 KB
    dana.sync()
    c = Chidi(team, chidi, tmp_path)
    r = c.round("b1", max_size="100KB")
    assert r["parts"] == 1 and r["oversize_bytes"] > 100_000
    assert Path(r["reply"]).stat().st_size <= 100_000
    out = c.imp(r["reply"])
    assert re.search(r"A change of [\d.]+ KB is larger than a bundle may be \(100\.0 KB\)", out), out
    assert "--max-size" in out
    r = c.round("b2", max_size="1MB")  # what the words say to do
    assert r["oversize_bytes"] is None
    c.imp(r["reply"])
    assert "Scanned ledger" in titles(chidi)


def test_a_max_size_too_small_to_carry_anything_is_refused(team: Team, tmp_path: Path) -> None:
    _dana, chidi = team.pair()
    c = Chidi(team, chidi, tmp_path)
    res = c.client("bundle", "export", str(tmp_path / "x.hbw"), "--max-size", "10KB", code=2)
    assert "at least 64 KB" in res.output and not (tmp_path / "x.hbw").exists()


def test_a_reply_max_out_of_range_is_refused_and_changes_nothing(team: Team, tmp_path: Path, monkeypatch) -> None:
    """``reply_max`` is bounded (64 KiB to 32 MiB) before the relay builds anything with it."""
    import pytest

    from hbw_sync.client import bundles
    from hbw_sync.errors import ProtocolError
    from hbw_sync.server import admin

    _dana, chidi = team.pair()
    with chidi.open() as rep:
        rep.add_task("Tiny")
    monkeypatch.setattr(bundles, "MIN_REPLY", 1)  # what a modified client could send
    bundles.export_bundle(chidi.home, tmp_path / "x.hbw", max_bytes=1000)
    before = admin.devices(team.data)
    with pytest.raises(ProtocolError) as e:
        admin.ingest_bundle(team.data, tmp_path / "x.hbw", tmp_path / "replies")
    assert e.value.code == "protocol.schema"
    assert admin.devices(team.data) == before  # no counter, no "last seen"
    assert not list((tmp_path / "replies").glob("*.hbw")) if (tmp_path / "replies").exists() else True


def test_the_office_is_told_to_send_every_file(team: Team, tmp_path: Path) -> None:
    """``hbw-relay bundle ingest`` in words: how many files, each within one email, send them all."""
    dana, chidi = team.pair()
    office_news(dana, 8, 40_000)
    c = Chidi(team, chidi, tmp_path)
    c.client("bundle", "export", str(tmp_path / "b.hbw"), "--max-size", "150KB")
    res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "b.hbw"),
                                         "--reply-dir", str(tmp_path / "out")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out").glob("*.hbw"))
    assert len(files) >= 2
    assert f"The reply is {len(files)} files (" in res.output and "send them all, in any order:" in res.output
    assert all(f.name in res.output for f in files) and "bytes" not in res.output


def test_held_ranges_chain_and_a_malformed_part_is_a_clear_error(tmp_path: Path) -> None:
    """The bookkeeping alone, on a real store: ranges reached by the cursor chain, others hold."""
    import pytest

    from hbw_sync.client import reply_parts
    from hbw_sync.client.store import Store
    from hbw_sync.errors import ProtocolError

    s = Store.create(tmp_path / "home")
    with s.transaction():
        s.set_meta("pull_cursor", 10)
        reply_parts.hold(s, 30, 40)  # part 3 came first
        reply_parts.hold(s, 20, 30)  # then part 2
    assert reply_parts.held_from(s) == 11  # nothing past the gap (10, 20] applies
    with s.transaction():
        s.set_meta("pull_cursor", 20)  # part 1 arrived: the cursor reaches part 2, then part 3
        reply_parts.settle(s)
    assert s.meta("pull_cursor") == 40 and s.meta("bundle_ranges") is None and reply_parts.held_from(s) is None
    with s.transaction():
        assert reply_parts.record(s, "ab", 2, 3, [5, 7, 9]) == {"complete": False, "parts_left": 2, "bytes_left": 14}
        assert reply_parts.record(s, "ab", 2, 3, [5, 7, 9])["parts_left"] == 2  # twice: counted once
        assert reply_parts.imported(s, "ab", 2) and not reply_parts.imported(s, "ab", 1)
        reply_parts.record(s, "ab", 1, 3, [5, 7, 9])
        assert reply_parts.record(s, "ab", 3, 3, [5, 7, 9]) == {"complete": True, "parts_left": 0, "bytes_left": 0}
    assert s.meta("bundle_parts") is None
    for bad in ({"part": [3, 2]}, {"part": [0, 1]}, {"part": [1, True]}, {"part": "1/2"},
                {"part": [1, 2], "parts_bytes": [1]}, {"part": [1, 2], "from_cursor": "7"}):
        with pytest.raises(ProtocolError) as e:
            reply_parts.check_part(bad)
        assert e.value.code == "protocol.schema"
    assert reply_parts.check_part({}) == (1, 1, None, [])  # an older relay's one reply
    s.close()
