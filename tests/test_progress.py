"""Progress events from sync and bundles, and how the CLI shows them (issue 11 item 2), on a real relay.

The library reports ``Progress(phase, done, total)`` through one keyword
argument; the CLI draws nothing off a terminal, JSON lines with ``--progress
json``, and keeps quiet about "try again later" with ``--quiet`` (item 3).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from click.testing import CliRunner

from hbw_sync.client import bundles
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.cli_progress import BarRenderer, progress_for
from hbw_sync.client.progress import Meter, Progress

from relay_helpers import STRONG, Team


def _by_phase(events: list[Progress], phase: str) -> list[Progress]:
    return [e for e in events if e.phase == phase]


def _monotonic(events: list[Progress]) -> bool:
    return all(a.done <= b.done for a, b in zip(events, events[1:]))


def test_sync_reports_upload_and_download_bytes(team: Team, tmp_path: Path) -> None:
    amina, chidi = team.join("amina", "supervisor"), team.join("chidi")
    amina.sync()
    chidi.sync()
    doc = tmp_path / "report.bin"
    doc.write_bytes(os.urandom(300_000))  # incompressible: travels in several 64 KiB pieces each way
    with amina.open() as rep:
        rep.add_task("small urgent change")
        rep.add_doc(doc)

    up: list[Progress] = []
    r = amina.sync(on_progress=up.append)
    sent = _by_phase(up, "upload")
    assert len(sent) >= 4, sent  # the pieces show, not only the end
    assert _monotonic(sent)
    assert sent[-1].done == sent[-1].total == r.sent_bytes > 300_000
    assert not _by_phase(up, "download")  # nothing came down for amina

    down: list[Progress] = []
    r = chidi.sync(on_progress=down.append)
    got = _by_phase(down, "download")
    assert len(got) >= 4, got
    assert _monotonic(got)
    assert got[-1].done == got[-1].total == r.received_bytes > 300_000
    assert all(e.total is None or e.done <= e.total for e in got)


def test_bundle_export_and_import_report_progress(team: Team, tmp_path: Path) -> None:
    amina = team.join("amina", "supervisor")
    amina.sync()
    with amina.open() as rep:
        for i in range(3):
            rep.add_task(f"inspection {i}")
    events: list[Progress] = []
    r = bundles.export_bundle(amina.home, tmp_path / "out.hbw", on_progress=events.append)
    assert events[0] == Progress("export", 0, events[0].total)
    assert events[-1] == Progress("export", r["bytes"], r["bytes"])
    assert _monotonic(events)


def test_no_callback_means_no_work_and_repeats_are_dropped() -> None:
    seen: list[Progress] = []
    Meter(None)("upload", 5, 10)  # no callback: nothing to call, no error
    m = Meter(seen.append)
    m("upload", 5, 10)
    m("upload", 5, 10)
    m("upload", 12, 10)  # a total learnt late never shows done past it
    assert seen == [Progress("upload", 5, 10), Progress("upload", 12, 12)]
    assert seen[0].to_dict() == {"event": "progress", "phase": "upload", "done_bytes": 5, "total_bytes": 10}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_renderer_modes() -> None:
    plain = io.StringIO()
    with progress_for("auto", plain) as cb:  # not a terminal: nothing at all
        assert cb is None
    with progress_for("auto", _Tty(), quiet=True) as cb:
        assert cb is None
    tty = _Tty()
    with progress_for("auto", tty) as cb:
        assert isinstance(cb, BarRenderer)
        cb(Progress("upload", 0, 2_000_000))
        cb(Progress("upload", 1_000_000, 2_000_000))
        cb(Progress("download", 500_000, None))
    drawn = tty.getvalue()
    assert "Sending" in drawn and "Receiving" in drawn and "1.00M/2.00M" in drawn  # done of total, rate, time left
    lines = io.StringIO()
    with progress_for("json", lines) as cb:
        assert cb is not None
        cb(Progress("import", 3, 9))
    assert json.loads(lines.getvalue()) == {"event": "progress", "phase": "import", "done_bytes": 3, "total_bytes": 9}


def _cli(home: Path, passphrase: str, *args: str):
    env = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": passphrase}
    return CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)


def test_cli_progress_json_lines_on_stderr_and_nothing_off_a_terminal(team: Team, tmp_path: Path) -> None:
    amina = team.join("amina", "supervisor")
    amina.sync()
    doc = tmp_path / "scan.bin"
    doc.write_bytes(os.urandom(200_000))
    with amina.open() as rep:
        rep.add_doc(doc)
    res = _cli(amina.home, amina.passphrase, "sync", "--progress", "json", "--json")
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stderr.splitlines()]
    assert events and all(e["event"] == "progress" and isinstance(e["done_bytes"], int) for e in events)
    assert events[-1]["phase"] == "upload" and events[-1]["done_bytes"] == events[-1]["total_bytes"] > 200_000
    assert json.loads(res.stdout)["sent_bytes"] == events[-1]["done_bytes"]  # stdout keeps the result

    with amina.open() as rep:
        rep.add_task("one more")
    res = _cli(amina.home, amina.passphrase, "sync")  # CliRunner is no terminal: no bar, no escape codes
    assert res.exit_code == 0 and res.stderr == ""


def test_quiet_sync_says_nothing_when_the_only_news_is_try_later(team: Team) -> None:
    amina = team.join("amina", "supervisor")
    amina.sync()
    with amina.open() as rep:
        rep.add_task("written offline")
    team.thread.stop()  # the relay is gone: what cron meets on an offline evening
    res = _cli(amina.home, amina.passphrase, "sync", "--quiet")
    assert res.exit_code == 75
    assert res.output == ""
    loud = _cli(amina.home, amina.passphrase, "sync", "--deadline", "0")  # one attempt: the transport's words
    assert loud.exit_code == 75
    assert "could not reach the relay" in loud.stderr
    # Words, not a library's exception name (it stays in the log for whoever debugs).
    assert "Error" not in loud.stderr and "aiohttp" not in loud.stderr
    # --json --quiet: still nothing at all (cron mails stdout too); the exit code says "try later".
    both = _cli(amina.home, amina.passphrase, "sync", "--quiet", "--json")
    assert both.exit_code == 75 and both.stdout == "" and both.stderr == ""
    # --json alone: stdout is one parseable object with the stable code; the words go to stderr.
    scripted = _cli(amina.home, amina.passphrase, "sync", "--json", "--deadline", "0")
    assert scripted.exit_code == 75
    err = json.loads(scripted.stdout)
    assert err["code"].startswith("transient.") and "relay" in err["message"] and err["hint"]
    assert "could not reach the relay" in scripted.stderr


def test_a_cut_sync_says_how_far_it_got_in_words(team: Team, tmp_path: Path) -> None:
    from netem import LinkProxy, Toxics
    from relay_helpers import set_relay_url

    amina = team.join("amina", "supervisor")
    amina.sync()
    doc = tmp_path / "scan.bin"
    doc.write_bytes(os.urandom(400_000))  # about seven 64 KiB pieces
    with amina.open() as rep:
        rep.add_doc(doc)
    port = int(team.url.rsplit(":", 1)[1].split("/")[0])
    with LinkProxy(port, up=Toxics(cut_after=250_000)) as proxy:
        set_relay_url(amina, proxy.url)
        res = _cli(amina.home, amina.passphrase, "sync", "--deadline", "0")  # one attempt (else it goes on)
    assert res.exit_code == 75, res.output
    err = res.stderr
    # What the relay confirmed before the cut (it keeps the bytes that arrived; the next sync asks how many).
    assert " of 400.3 KB sent before that, " in err and "KB left; nothing was lost" in err, err
    assert "Error" not in err  # no library exception name


def test_join_shows_the_first_sync_download(team: Team, tmp_path: Path) -> None:
    dana = team.join("dana", "supervisor")
    doc = tmp_path / "plan.bin"
    doc.write_bytes(os.urandom(150_000))
    with dana.open() as rep:
        rep.add_doc(doc)
    dana.sync()
    home = tmp_path / "dev-late"
    env = {"HBW_SYNC_HOME": str(home), "HBW_NEW_PASSPHRASE": f"late {STRONG}", "HBW_PASSPHRASE": f"late {STRONG}"}
    res = CliRunner().invoke(client_cli, ["join", team.invite("late"), "--progress", "json"], env=env,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    down = [e for e in events if e["phase"] == "download"]
    assert down and down[-1]["done_bytes"] == down[-1]["total_bytes"] > 150_000


def test_progress_json_tells_each_retry_and_stdout_stays_the_result(team: Team, tmp_path: Path) -> None:
    """``--progress json`` on a link that drops: a ``retry`` line per drop (what dropped, bytes done and
    left, the next attempt), progress lines around them, all on stderr; stdout is the --json result."""
    from netem import LinkProxy, Toxics
    from relay_helpers import set_relay_url

    amina = team.join("amina", "supervisor")
    amina.sync()
    doc = tmp_path / "scan.bin"
    doc.write_bytes(os.urandom(400_000))
    with amina.open() as rep:
        rep.add_doc(doc)
    port = int(team.url.rsplit(":", 1)[1].split("/")[0])
    with LinkProxy(port, up=Toxics(cut_every=150_000)) as proxy:
        set_relay_url(amina, proxy.url)
        res = _cli(amina.home, amina.passphrase, "sync", "--progress", "json", "--json", "--deadline", "10m")
        assert proxy.cuts >= 2
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stderr.splitlines()]  # every stderr line is JSON
    retries = [e for e in events if e["event"] == "retry"]
    assert len(retries) >= 2, events
    for r in retries:
        assert r["dropped"] == "upload" and type(r["went_bytes"]) is int and type(r["left_bytes"]) is int
        assert isinstance(r["next_attempt_s"], (int, float)) and r["next_attempt_s"] >= 0
        assert r["message"].startswith("The link dropped after ") and "Error" not in r["message"]
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert retries[-1]["left_bytes"] < retries[0]["left_bytes"]  # it went on where it stopped
    assert {e["event"] for e in events} == {"progress", "retry"}
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["attempts"] == len(retries) + 1 and out["sent_bytes"] > 400_000
