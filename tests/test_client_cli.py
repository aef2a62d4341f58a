"""The hbw-sync CLI end to end on a temporary home, through click's CliRunner (no mocks)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.vault import KdfParams
from hbw_sync.ops import Kind
from hbw_sync.server.cli import cli as relay_cli

PASS = "orchid lantern 52 ferry"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke hbw-sync with a home and passphrase; returns the click Result."""
    monkeypatch.chdir(tmp_path)

    def _run(*args: str, passphrase: str | None = PASS, ok: bool | None = True):
        env = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": passphrase}
        result = CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)
        if ok is True:
            assert result.exit_code == 0, result.output
        elif ok is False:
            assert result.exit_code != 0, result.output
        return result

    return _run


FAST_KDF = KdfParams(n=2**10)  # the CLI reads the cost from the store: keeps the suite quick


@pytest.fixture
def team(run, home: Path):
    """A store made through the library (cheap KDF) and used through the CLI."""
    with Device.init(home, "amina", PASS, kdf=FAST_KDF) as dev:
        dev.unlock(PASS).create_team("District Finance")
    return run


def test_init_and_team_create_through_the_cli(run, home: Path) -> None:
    out = json.loads(run("init", "--name", "amina", "--json").stdout)
    assert out["member"] == "amina" and len(out["device"]) == 16
    assert "created" in run("team", "create", "District Finance").stdout
    assert run("team", "create", "Again", ok=False).exit_code == 2
    assert json.loads(run("status", "--json").stdout)["team"] == "District Finance"


def dump(home: Path) -> list:
    """Every row of every table except the sync log: what 'nothing changed' compares."""
    conn = sqlite3.connect(home / "store.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    out = [(t, sorted(map(repr, conn.execute(f"SELECT * FROM [{t}]").fetchall()))) for t in tables]
    conn.close()
    return out


def task_ids(run) -> list[str]:
    return [t["id"] for t in json.loads(run("task", "list", "--json").stdout)]


# -- help ---------------------------------------------------------------------------------------


def _walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, path + (name,))


@pytest.mark.parametrize("root", [client_cli, relay_cli], ids=["hbw-sync", "hbw-relay"])
def test_every_command_and_option_has_help(root: click.Group) -> None:
    missing = []
    for path, cmd in _walk(root):
        if not (cmd.help or "").strip():
            missing.append(" ".join(path) or "<root>")
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip() and p.name not in ("help", "version"):
                missing.append(f"{' '.join(path)} {p.opts[0]}")
        res = CliRunner().invoke(root, [*path, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output
    assert not missing, f"commands or options without help: {missing}"


@pytest.mark.parametrize("root,name", [(client_cli, "hbw-sync"), (relay_cli, "hbw-relay")])
def test_version(root: click.Group, name: str) -> None:
    res = CliRunner().invoke(root, ["--version"])
    assert res.exit_code == 0 and name in res.output and "0." in res.output


# -- the working day ------------------------------------------------------------------------------


def test_task_life_cycle(team, home: Path) -> None:
    run = team
    out = run("task", "add", "Reconcile invoices", "-d", "All of October", "--due", "2026-12-01",
              "--priority", "high", "--needs", "laptop,internet", "--json")
    t = json.loads(out.stdout)
    assert t["title"] == "Reconcile invoices" and t["assignee"] == "amina" and t["due"] == "2026-12-01"
    assert t["priority"] == "high" and sorted(t["needs"]) == ["internet", "laptop"] and t["status"] == "open"
    tid = t["id"][:5]
    run("task", "note", tid, "Called the supplier")
    run("task", "start", tid)
    run("task", "assign", tid, "chidi")
    run("task", "edit", tid, "--title", "Reconcile October invoices", "--due", "none", "--pin")
    shown = json.loads(run("task", "show", tid, "--json").stdout)
    assert shown["title"] == "Reconcile October invoices"
    assert shown["status"] == "in_progress" and shown["assignee"] == "chidi" and shown["due"] is None
    assert shown["pinned"] is True and [n["text"] for n in shown["notes"]] == ["Called the supplier"]
    assert shown["notes"][0]["by"] == "amina"
    run("task", "done", tid)
    assert json.loads(run("task", "list", "--status", "done", "--json").stdout)[0]["status"] == "done"
    assert json.loads(run("task", "list", "--mine", "--json").stdout) == []  # it went to chidi
    human = run("task", "show", tid).stdout
    assert "Reconcile October invoices" in human and "Called the supplier" in human
    status = json.loads(run("status", "--json", passphrase=None).stdout)
    assert status["outbox"]["changes"] == 6 and status["outbox"]["batches"] == 1 and status["outbox"]["bytes"] > 0
    assert run("check").exit_code == 0


def test_import_csv_and_json(team, tmp_path: Path) -> None:
    run = team
    (tmp_path / "week.csv").write_text(
        "Title,Description,Assignee,Due,Priority,Needs\n"
        'Permits,Stamp them,bosco,2026-12-01,normal,office\n'
        '"Invoices, October","Match, then flag",amina,+2d,urgent,"laptop,internet"\n'
        ",,,,,\n"
    )
    res = json.loads(run("task", "import", "week.csv", "--new-member", "bosco", "--json").stdout)
    assert res["imported"] == 2
    (tmp_path / "more.json").write_text(json.dumps({"tasks": [{"title": "Budget", "needs": "laptop"}]}))
    run("task", "import", "more.json")
    titles = {t["title"]: t for t in json.loads(run("task", "list", "--json").stdout)}
    assert set(titles) == {"Permits", "Invoices, October", "Budget"}
    assert titles["Invoices, October"]["priority"] == "urgent" and titles["Permits"]["needs"] == ["office"]
    assert titles["Budget"]["assignee"] is None


BAD_IMPORTS = {
    "bad date": ("csv", "title,due\nA,2026-01-01\nB,2026-02-30\n", "line 3"),
    "bad member": ("csv", "title,assignee\nA,amina\nB,Bo Sco\n", "line 3"),
    "empty title": ("csv", "title,due\nA,+1d\n,+1d\n", "line 3"),
    "unknown column": ("csv", "title,asignee\nA,amina\n", "unknown column"),
    "no title column": ("csv", "name,due\nA,+1d\n", "no 'title' column"),
    "extra cells": ("csv", "title\nA,B,C\n", "line 2"),
    "bad priority": ("csv", "title,priority\nA,top\n", "bad priority"),
    "bad need": ("csv", "title,needs\nA,car\n", "unknown need"),
    "broken json": ("json", '[{"title": "A"},\n {"title": ', "not valid JSON"),
    "json not list": ("json", '"hello"', "expected a JSON array"),
    "json bad row": ("json", '[\n {"title": "A"},\n {"title": "B", "due": "soon"}\n]', "line 3"),
    "json no title": ("json", '[\n {"title": "A"},\n {"description": "B"}\n]', "line 3: title is empty"),
    "json wrong type": ("json", '[{"title": ["A"]}]', "expected text"),
    "empty": ("csv", "", "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_bad_import_changes_nothing(team, home: Path, tmp_path: Path, case: str) -> None:
    run = team
    run("task", "add", "Existing")
    ext, text, expected = BAD_IMPORTS[case]
    (tmp_path / f"in.{ext}").write_text(text)
    before = dump(home)
    res = run("task", "import", f"in.{ext}", ok=False)
    assert res.exit_code == 2
    assert expected in res.output
    assert dump(home) == before


def test_documents_versions_and_safe_names(team, tmp_path: Path) -> None:
    run = team
    (tmp_path / "report.txt").write_bytes(b"first version\n")
    tid = json.loads(run("task", "add", "Report", "--json").stdout)["id"]
    d = json.loads(run("doc", "add", "report.txt", "--task", tid[:4], "--name", "../../evil/CON.txt", "--json").stdout)
    (tmp_path / "report.txt").write_bytes(b"second version, longer\n")
    run("doc", "update", d["id"][:4], "report.txt")
    docs = json.loads(run("doc", "list", "--json").stdout)
    assert len(docs) == 1 and docs[0]["versions"] == 2 and docs[0]["size"] == 23 and docs[0]["task"] == tid
    out = tmp_path / "got"
    out.mkdir()
    got = json.loads(run("doc", "get", d["id"][:4], "-o", str(out), "--json").stdout)
    written = Path(got["path"])
    assert written.parent == out and written.read_bytes() == b"second version, longer\n"
    assert ".." not in written.name and "/" not in written.name
    run("doc", "get", d["id"][:4], "-o", "v1.txt", "--version", "1")
    assert (tmp_path / "v1.txt").read_bytes() == b"first version\n"
    res = run("doc", "get", d["id"][:4], "-o", "v1.txt", ok=False)
    assert "exists" in res.output and (tmp_path / "v1.txt").read_bytes() == b"first version\n"
    assert json.loads(run("task", "show", tid[:4], "--json").stdout)["docs"] == [d["id"]]


def test_profile(team) -> None:
    run = team
    p = json.loads(run("profile", "--no-laptop", "--internet", "--office-days", "mon,thu", "--away-until",
                       "2026-12-24", "--json").stdout)
    assert p == {"member": "amina", "laptop": False, "internet": True, "office_days": ["mon", "thu"],
                 "away_until": "2026-12-24", "capacity": None, "takes_work": None, "role": "supervisor"}
    assert json.loads(run("profile", "--json").stdout) == p


# -- errors: clear message, documented exit code, nothing changed ----------------------------------


def test_wrong_passphrase_changes_nothing(team, home: Path) -> None:
    run = team
    run("task", "add", "Something")
    before = dump(home)
    res = run("task", "add", "Other", passphrase="not it", ok=False)
    assert res.exit_code == 77 and "wrong passphrase" in res.output
    res = run("task", "list", "--json", passphrase="not it", ok=False)
    assert json.loads(res.stdout)["code"] == "access.wrong_key"
    assert dump(home) == before


def test_no_passphrase_and_no_terminal_never_prompts(team) -> None:
    res = team("task", "list", passphrase=None, ok=False)
    assert res.exit_code == 77 and "HBW_PASSPHRASE" in res.output
    assert team("status", passphrase=None).exit_code == 0


def test_not_initialised(run) -> None:
    res = run("status", ok=False)
    assert res.exit_code == 78 and "hbw-sync init" in res.output


def test_no_team_yet(run) -> None:
    run("init", "--name", "amina")
    res = run("task", "add", "x", ok=False)
    assert res.exit_code == 78 and "team create" in res.output


def test_init_twice_and_bad_name(run) -> None:  # noqa: D103
    assert run("init", "--name", "Amina Z", ok=False).exit_code == 2
    run("init", "--name", "amina")
    res = run("init", "--name", "amina", ok=False)
    assert res.exit_code == 78 and "already" in res.output


@pytest.mark.parametrize(
    "args,expected",
    [
        (("task", "show", "ffffffff"), "no task with id"),
        (("task", "show", "zz"), "not a task id"),
        (("task", "done", "f"), "not a task id"),
        (("task", "add", "x", "--due", "2026-13-45"), "bad date"),
        (("task", "add", "x", "--needs", "car"), "unknown need"),
        (("task", "add", "x", "--assign", "Not Valid"), "not a valid member"),
        (("task", "add", "  "), "needs a title"),
        (("task", "edit", "AMBIG"), "ambiguous"),
        (("task", "edit", "FIRST"), "nothing to change"),
        (("task", "note", "FIRST", " "), "must not be empty"),
        (("doc", "add", "missing.pdf"), "no such file"),
        (("doc", "add", "."), "directory"),
        (("doc", "get", "abcdef"), "no doc"),
        (("task", "import", "missing.csv"), "no such file"),
        (("task", "import", "plan.xlsx"), "not a readable spreadsheet"),
        (("task", "import", "plan.pdf"), "cannot tell the format"),
        (("profile", "--office-days", "someday"), "unknown weekday"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(team, home: Path, tmp_path: Path, args, expected) -> None:
    run = team
    # Two tasks whose ids share a prefix make an ambiguous one.
    with Device.open(home) as dev:
        rep = dev.unlock(PASS)
        rep.change([(Kind.TASK, bytes.fromhex(h), {"title": h, "status": 0}) for h in ("ab01020304050607", "ab11121314151617")])
    (tmp_path / "plan.xlsx").write_bytes(b"PK\x03\x04")
    args = tuple({"AMBIG": "ab", "FIRST": "ab01"}.get(a, a) for a in args)
    before = dump(home)
    res = run(*args, ok=False)
    assert res.exit_code == 2, res.output
    assert expected in res.output
    assert "Traceback" not in res.output
    assert dump(home) == before


def test_unreadable_file(team, tmp_path: Path, home: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    f = tmp_path / "secret.pdf"
    f.write_bytes(b"x")
    f.chmod(0)
    res = team("doc", "add", str(f), ok=False)
    assert res.exit_code == 2 and "permission denied" in res.output
