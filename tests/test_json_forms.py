"""Every ``--json`` output of the client CLI uses one form (issue 11 item 3), walked on a real relay.

Times are ISO 8601 UTC with Z (no ``*_ms`` integers beside ``updated`` strings,
no local offsets); sizes are integer bytes. The test finds the commands that
take ``--json`` in the click tree, so a new command is walked or named below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hbw_sync import timefmt
from hbw_sync.client.cli import cli as client_cli, local_time
from hbw_sync.server import admin

from relay_helpers import STRONG, Team

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
SIZE_KEYS = re.compile(r"(^|_)(bytes|size)$")


def json_commands(group: click.Group, path: tuple[str, ...] = ()) -> set[str]:
    found: set[str] = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found |= json_commands(cmd, path + (name,))
        elif any(isinstance(p, click.Option) and "--json" in p.opts for p in cmd.params):
            found.add(" ".join(path + (name,)))
    return found


def bad_forms(data: Any, where: str = "$") -> list[str]:
    """Every place in ``data`` where a time or a size is not in the one JSON form."""
    bad: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            at = f"{where}.{k}"
            if str(k).endswith("_ms"):
                bad.append(f"{at}: a time in milliseconds")
            if SIZE_KEYS.search(str(k)) and not (v is None or type(v) is int):
                bad.append(f"{at}: size {v!r} is not integer bytes")
            bad += bad_forms(v, at)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            bad += bad_forms(v, f"{where}[{i}]")
    elif isinstance(data, str) and LOOKS_LIKE_TIME.search(data) and not ISO_Z.match(data):
        if not data.startswith(("hbw1-",)) and " at " not in data:  # an invite; "dana at <time>" prose
            bad.append(f"{where}: time {data!r} is not ISO 8601 UTC with Z")
    return bad


class Cli:
    """The real CLI on one member's home, recording which --json commands ran and what they printed."""

    def __init__(self, home: Path, passphrase: str, seen: dict[str, Any]):
        self.home, self.passphrase, self.seen = home, passphrase, seen

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        full = {"HBW_SYNC_HOME": str(self.home), "HBW_PASSPHRASE": self.passphrase, **(env or {})}
        res = CliRunner().invoke(client_cli, [*args, "--json"], env=full, catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)
        out = json.loads(res.stdout)
        name = " ".join(a for a in args[:2] if not a.startswith("-") and a in _NAMES)
        self.seen[name] = out
        return out


_NAMES = {w for c in json_commands(client_cli) for w in c.split()}


def test_every_json_output_has_one_form_for_times_and_sizes(team: Team, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    seen: dict[str, Any] = {}
    dana = team.join("dana", "supervisor")
    chidi = team.join("chidi")
    dana.sync()
    chidi.sync()
    run = Cli(dana.home, dana.passphrase, seen)

    run("status")
    t = run("task", "add", "Inspect the market stalls", "--due", "tomorrow")["id"]
    gone = run("task", "add", "Duplicate line")["id"]
    run("task", "list")
    run("task", "edit", t, "--title", "Inspect the market stalls (north)")
    run("task", "assign", t, "chidi")
    run("task", "start", t)
    run("task", "note", t, "Half done; the rest on Thursday")
    run("task", "done", t)
    run("task", "show", t)
    run("task", "archive", t)
    run("task", "delete", gone, "--yes")
    run("task", "export", str(tmp_path / "week.csv"))
    (tmp_path / "plan.csv").write_text("title,assignee\nCount the ledgers,chidi\n", encoding="utf-8")
    run("task", "import", str(tmp_path / "plan.csv"))
    (tmp_path / "report.docx").write_bytes(b"report v1 " * 100)
    d = run("doc", "add", str(tmp_path / "report.docx"))["id"]
    (tmp_path / "report.docx").write_bytes(b"report v2 " * 120)
    run("doc", "update", d, str(tmp_path / "report.docx"))
    run("doc", "list")
    run("doc", "policy", "all")
    run("doc", "get", d, "-o", str(tmp_path / "copy.docx"))
    run("doc", "confidential", d)
    run("doc", "get", d, "-o", str(tmp_path / "copy2.docx"), "--reason", "printing for the council")
    assert run("doc", "list")[0]["exports"][0]["at"].endswith("Z")
    run("profile", "--office-days", "mon,thu")
    run("sync")
    run("audit", "export", str(tmp_path / "evidence.hbwe"))
    run("team", "invite", "erin")
    run("team", "rotate")
    run("check")
    run("config", "language")
    run("passphrase", "check")
    run("bundle", "export", str(tmp_path / "out.hbw"))
    reply = admin.ingest_bundle(team.data, tmp_path / "out.hbw", tmp_path)
    run("bundle", "import", reply["reply"])
    # The scheduler commands, kept off this machine: a dry run, and units looked for under tmp_path only.
    cfg = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    run("schedule", "install", "--kind", "systemd", "--binary", "/opt/bin/hbw-sync", "--dry-run", env=cfg)
    run("schedule", "show", "--kind", "systemd", env=cfg)
    run("schedule", "remove", "--kind", "systemd", env=cfg)

    # A device office IT enrolled waits for approval: pending, approve; another is rejected.
    codes = []
    for name in ("bosco", "fatou"):
        joined = Cli(tmp_path / f"dev-{name}", f"{name} {STRONG}", seen)(
            "join", team.it_invite(name), env={"HBW_NEW_PASSPHRASE": f"{name} {STRONG}"})
        codes += [w["code"] for w in joined["waiting"] if w.get("code")]
    assert len(codes) == 2 and len(run("team", "pending")["pending"]) == 2
    run("team", "approve", *codes[0].split())
    run("team", "reject", *codes[1].split())

    fresh = Cli(tmp_path / "dev-new", f"gina {STRONG}", seen)
    fresh("init", "--name", "gina", env={"HBW_NEW_PASSPHRASE": f"gina {STRONG}"})
    fresh("team", "create", "Another office")
    fresh("passphrase", "change", env={"HBW_NEW_PASSPHRASE": f"gina {STRONG} again"})

    assert json_commands(client_cli) - set(seen) == set(), "a --json command this test does not walk"
    problems = {cmd: bad_forms(out) for cmd, out in seen.items()}
    assert {cmd: p for cmd, p in problems.items() if p} == {}
    # The forms are really there, not merely absent.
    assert ISO_Z.match(seen["status"]["last_sync"]["at"])
    assert ISO_Z.match(seen["task show"]["updated"]) and ISO_Z.match(seen["task show"]["notes"][0]["at"])
    assert type(seen["doc list"][0]["size"]) is int


def test_machine_form_and_local_words() -> None:
    assert timefmt.machine_form({"at_ms": 0, "x": [{"since_ms": None, "size": 3}]}) == {
        "at": "1970-01-01T00:00:00Z", "x": [{"since": None, "size": 3}]}
    now = 1_780_000_000_000
    assert local_time(None) == "never"
    assert timefmt.when(now - 3_600_000 * 2, now, timefmt.UTC).startswith(("today ", "yesterday "))
    assert timefmt.when(now - 86_400_000 * 30, now, timefmt.UTC).endswith(" 2026 " + timefmt.when(
        now - 86_400_000 * 30, now, timefmt.UTC).rsplit(" ", 1)[1])
    assert timefmt.human_bytes(2_045_837) == "2.0 MB"


@pytest.mark.parametrize("ms_ago, words", [(0, "today"), (86_400_000, "yesterday")])
def test_when_says_today_and_yesterday(ms_ago: int, words: str) -> None:
    noon = 1_780_000_000_000 - 1_780_000_000_000 % 86_400_000 + 12 * 3_600_000  # noon UTC
    assert timefmt.when(noon - ms_ago, noon, timefmt.UTC) == f"{words} 12:00"


def test_the_walk_would_catch_the_old_forms() -> None:
    assert bad_forms({"last_sync": {"at_ms": 1_780_000_000_000}}) == ["$.last_sync.at_ms: a time in milliseconds"]
    assert bad_forms([{"when": "2026-12-02T17:05:09+03:00"}])  # local time with an offset
    assert bad_forms({"outbox": {"bytes": "2.0 MB"}})
    assert bad_forms({"updated": "2026-12-02T14:05:09Z", "size": 12, "reply_bytes": 40}) == []


def test_text_output_says_sizes_and_times_in_words(team: Team, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    dana = team.join("dana", "supervisor")
    dana.sync()
    env = {"HBW_SYNC_HOME": str(dana.home), "HBW_PASSPHRASE": dana.passphrase}

    def text(*args: str) -> str:
        res = CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.stdout

    (tmp_path / "scan.pdf").write_bytes(b"%PDF " + bytes(2_045_832))
    assert "(2.0 MB)" in text("doc", "add", str(tmp_path / "scan.pdf"))
    t = json.loads(text("task", "add", "Sign the ledger", "--json"))["id"]
    text("task", "note", t, "Signed")
    shown = text("task", "show", t)
    assert re.search(r"Updated:     (today|yesterday) \d\d:\d\d", shown) and "(dana, " in shown, shown
    status = text("status")
    assert re.search(r"Waiting to be sent: .* \d+(\.\d)? (B|KB|MB)\.", status), status
    assert re.search(r"Last sync (today|yesterday) \d\d:\d\d \((just now|\d+ min ago)\)", status), status
    assert "bytes" not in status and not LOOKS_LIKE_TIME.search(status)


def test_every_relay_json_output_has_the_same_one_form(team: Team, tmp_path: Path, monkeypatch) -> None:
    """The relay's --json outputs follow the client's rule: ``*_ms`` become ISO 8601 UTC with Z.

    One rule for both CLIs, applied in one place (``cli_common.emit``), so a script that reads
    ``hbw-relay devices --json`` and ``hbw-sync status --json`` parses times the same way.
    """
    from hbw_sync.server.cli import cli as relay_cli

    monkeypatch.chdir(tmp_path)
    seen: dict[str, Any] = {}
    names = {w for c in json_commands(relay_cli) for w in c.split()}

    def run(*args: str, expect: int = 0) -> Any:
        res = CliRunner().invoke(relay_cli, [*args, "--data", str(team.data), "--json"], catch_exceptions=False)
        assert res.exit_code == expect, (args, res.output)
        out = json.loads(res.stdout)
        seen[" ".join(a for a in args[:2] if a in names)] = out
        return out

    dana = team.join("dana", "supervisor")
    chidi = team.join("chidi")
    dana.sync()
    chidi.sync()
    with dana.open() as rep:
        rep.add_task("Count the ledgers", assignee="chidi")
    dana.sync()
    with chidi.open() as rep:
        rep.add_task("Visit the clinic")
    bundle_file = tmp_path / "chidi.hbw"
    CliRunner().invoke(client_cli, ["bundle", "export", str(bundle_file)],
                       env={"HBW_SYNC_HOME": str(chidi.home)}, catch_exceptions=False)

    run("invite", "erin", "--url", team.url)
    devices = run("devices")
    run("members")
    run("audit")
    run("rebalance")
    run("workload")
    run("conflicts")
    run("backup", str(tmp_path / "relay-backup.db"))
    migrated = run("migrate")  # already current: nothing changed
    assert migrated["from"] == migrated["to"] and migrated["backend"] == "sqlite"
    run("bundle", "ingest", str(bundle_file), "--reply-dir", str(tmp_path / "replies"))
    run("equipment", "add", "LAP-7", "--serial", "X1")
    run("equipment", "lend", "LAP-7", "chidi")
    run("equipment", "list")
    run("equipment", "return", "LAP-7")
    run("equipment", "lost", "LAP-7", "--yes")
    chidi_dev = next(d["device"] for d in devices if d["member"] == "chidi")
    run("devices", "revoke", chidi_dev, "--yes")
    restored = tmp_path / "restored"
    res = CliRunner().invoke(relay_cli, ["restore", str(tmp_path / "relay-backup.db"), "--data", str(restored),
                                         "--key", str(team.data / "relay.key"), "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    seen["restore"] = json.loads(res.stdout)
    res = CliRunner().invoke(relay_cli, ["init", "--data", str(tmp_path / "other"), "--team", "Water Office",
                                         "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    seen["init"] = json.loads(res.stdout)
    multi = tmp_path / "multi"  # the multi-team commands, on a multi-team directory
    res = CliRunner().invoke(relay_cli, ["init", "--multi", str(multi), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for args in (["team", "add", "Water Office", "--id", "water"], ["team", "quota", "water", "2"], ["team", "list"],
                 ["team", "remove", "water"]):
        res = CliRunner().invoke(relay_cli, [*args, "--data", str(multi), "--json"], catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)
        seen[" ".join(args[:2])] = json.loads(res.stdout)

    assert json_commands(relay_cli) - set(seen) == set(), "a relay --json command this test does not walk"
    problems = {cmd: bad_forms(out) for cmd, out in seen.items()}
    assert {cmd: p for cmd, p in problems.items() if p} == {}
    assert ISO_Z.match(seen["devices"][0]["enrolled"]) and ISO_Z.match(seen["audit"][0]["time"])
