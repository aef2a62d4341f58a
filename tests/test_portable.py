"""The client on a machine without POSIX-only modules (what Windows lacks), through the real CLI.

Most officials' laptops run Windows, where ``fcntl``, ``termios``, ``pwd``, ``grp``
and ``os.getuid``/``os.uname`` do not exist. We cannot run Windows here, so each
command runs in a subprocess whose ``sitecustomize`` takes those away before
hbw-sync is imported: any client code that needs one fails these tests. The
relay is real (loopback), and so are the stores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync.server.cli import cli as relay_cli

from relay_helpers import STRONG, Team

#: Put first on sys.path, so Python imports it at start-up, before any test code or hbw-sync.
SITECUSTOMIZE = textwrap.dedent("""
    import os, sys
    for name in ("fcntl", "termios", "pwd", "grp", "resource"):
        sys.modules[name] = None  # 'import fcntl' now raises ImportError, as on Windows
    del os.uname  # (os.getuid stays: platformdirs' Linux code needs it; test_no_posix_only_calls guards ours)
""")


@pytest.fixture
def no_posix(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess without POSIX-only modules."""
    site = tmp_path / "no-posix"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def hbw(env: dict[str, str], home: Path, *args: str, passphrase: str | None = None, new: str | None = None,
        ok: bool = True) -> subprocess.CompletedProcess:
    e = {**env, "HBW_SYNC_HOME": str(home)}
    if passphrase:
        e["HBW_PASSPHRASE"] = passphrase
    if new:
        e["HBW_NEW_PASSPHRASE"] = new
    p = subprocess.run([sys.executable, "-m", "hbw_sync.client.cli", *args], env=e, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=120)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_the_subprocess_really_lacks_fcntl(no_posix: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, "-c", "import fcntl"], env=no_posix, capture_output=True, text=True)
    assert p.returncode != 0 and "import of fcntl halted" in p.stderr  # ModuleNotFoundError, an ImportError
    p = subprocess.run([sys.executable, "-c", "import os; print(hasattr(os, 'uname'))"],
                       env=no_posix, capture_output=True, text=True)
    assert p.stdout.split() == ["False"]


def test_client_commands_work_without_fcntl(no_posix: dict[str, str], tmp_path: Path) -> None:
    # init and task add on a store of its own (no relay)
    solo = tmp_path / "solo"
    pw = f"amina {STRONG}"
    out = json.loads(hbw(no_posix, solo, "init", "--name", "amina", "--json", new=pw).stdout)
    assert out["member"] == "amina"
    hbw(no_posix, solo, "team", "create", "District Finance", passphrase=pw)
    hbw(no_posix, solo, "task", "add", "Count the petty cash", passphrase=pw)
    listed = json.loads(hbw(no_posix, solo, "task", "list", "--json", passphrase=pw).stdout)
    assert [t["title"] for t in listed] == ["Count the petty cash"]

    with Team(tmp_path) as team:
        dana = team.join("dana", "supervisor")
        dana.sync()
        chidi_home, chidi_pw = tmp_path / "chidi", f"chidi {STRONG}"
        # join (which syncs once), work, sync against the real relay, status: all without fcntl
        hbw(no_posix, chidi_home, "join", team.invite("chidi"), new=chidi_pw)
        hbw(no_posix, chidi_home, "sync", passphrase=chidi_pw)
        hbw(no_posix, chidi_home, "task", "add", "Inspect the market stalls", passphrase=chidi_pw)
        st = json.loads(hbw(no_posix, chidi_home, "status", "--json").stdout)
        assert st["outbox"]["batches"] >= 1, st
        hbw(no_posix, chidi_home, "sync")  # a scheduler's sync: no passphrase
        st = json.loads(hbw(no_posix, chidi_home, "status", "--json").stdout)
        assert st["outbox"]["batches"] == 0, st
        dana.sync()
        with dana.open() as rep:
            assert "Inspect the market stalls" in {t.title for t in rep.tasks()}

        # bundle export, the office ingests it, bundle import of the reply
        hbw(no_posix, chidi_home, "task", "add", "Sent by email", passphrase=chidi_pw)
        r = json.loads(hbw(no_posix, chidi_home, "bundle", "export", str(tmp_path / "c.hbw"), "--json").stdout)
        assert r["changes"] == 1
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(tmp_path / "c.hbw"),
                                             "--reply-dir", str(tmp_path), "--json"])
        assert res.exit_code == 0, res.output
        reply = json.loads(res.stdout)["reply"]
        p = hbw(no_posix, chidi_home, "bundle", "import", reply, passphrase=chidi_pw)
        assert "1 of your batches confirmed" in p.stdout


def test_the_sync_lock_holds_without_fcntl(no_posix: dict[str, str], tmp_path: Path) -> None:
    """The seam's fallback still keeps a second sync off the store, and lets go after the first."""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from hbw_sync.client.synclock import sync_lock
        from hbw_sync.errors import TransientError
        home = Path({str(tmp_path)!r})
        with sync_lock(home):
            try:
                with sync_lock(home):
                    print("second lock taken")
            except TransientError as e:
                print("refused:", e)
        with sync_lock(home):
            print("taken again")
    """)
    p = subprocess.run([sys.executable, "-c", script], env=no_posix, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    refused, again = p.stdout.splitlines()
    assert refused.startswith("refused: another sync of this store is running"), p.stdout
    assert str(tmp_path / "sync.lock") in refused  # a lock file a killed process can leave: say which to delete
    assert again == "taken again"
    assert p.stderr == ""  # filelock's fallback warning stays out of a person's terminal


#: Calls that exist only on POSIX; the client may use one only behind ``getattr(os, name, None)``.
POSIX_ONLY = ("os.getuid", "os.geteuid", "os.getgid", "os.uname", "os.fork", "os.kill", "os.killpg", "os.setsid",
              "os.getpgid", "signal.SIGKILL", "signal.SIGHUP", "signal.SIGUSR1", "signal.SIGALRM", "os.statvfs",
              "import fcntl", "import termios", "import pwd", "import grp", "import resource",
              "from fcntl ", "from termios ", "from pwd ", "from grp ", "from resource ")


def posix_only(line: str) -> list[str]:
    code = line.split("#", 1)[0]
    return [name for name in POSIX_ONLY
            if name + "(" in code or code.strip().startswith(name) or name + " " in code + " "]


def test_no_posix_only_calls_in_the_client() -> None:
    """What the subprocess tests cannot take away (third-party Linux code needs os.getuid) is checked by reading."""
    assert posix_only("    import fcntl") and posix_only("if st.st_uid == os.getuid():")  # the scan can fail
    assert posix_only("        from pwd import getpwuid") and not posix_only("getuid = getattr(os, 'getuid', None)")
    root = Path(__file__).resolve().parent.parent / "hbw_sync"
    found = []
    for path in [*root.glob("*.py"), *(root / "client").rglob("*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(root)}:{n}: {name}" for name in posix_only(line)]
    assert found == []
