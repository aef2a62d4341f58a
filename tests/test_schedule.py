"""`hbw-sync schedule`: the generated systemd units, cron lines and schtasks command, and installing them.

Nothing is installed on this machine: XDG_CONFIG_HOME points into tmp_path, and
``systemctl``, ``crontab`` and ``schtasks`` are small stand-in scripts first on
PATH that record how they were called (crontab keeps its table in a file), so
the real CLI runs its real install, show and remove paths end to end.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hbw_sync.client import schedule as sched
from hbw_sync.errors import ConfigError, UsageError

BIN = "/home/amina/.local/bin/hbw-sync"
HBW = Path(sys.executable).with_name("hbw-sync")  # the console script pip installed beside this Python


def test_systemd_units_name_the_real_binary_and_quote_the_home(tmp_path: Path) -> None:
    home = tmp_path / "My Store 100%"
    p = sched.plan("systemd", BIN, home, 15, env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    unit_dir = tmp_path / "cfg" / "systemd" / "user"
    service, timer = p.files[str(unit_dir / "hbw-sync.service")], p.files[str(unit_dir / "hbw-sync.timer")]
    assert f'ExecStart={BIN} --home "{str(home).replace("%", "%%")}" sync --quiet --timeout 120\n' in service
    assert "SuccessExitStatus=75" in service and "Type=oneshot" in service
    assert "OnUnitActiveSec=15min" in timer and "OnBootSec=2min" in timer and "Persistent=true" in timer
    assert "{" not in service + timer  # every placeholder filled
    assert p.run == [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", "hbw-sync.timer"]]


def test_systemd_default_dir_is_under_the_users_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sched.systemd_dir({}) == tmp_path / ".config" / "systemd" / "user"


def test_watch_service_for_systemd_only() -> None:
    p = sched.plan("systemd", BIN, watch=True, env={"XDG_CONFIG_HOME": "/x"})
    (path, text), = p.files.items()
    assert path == "/x/systemd/user/hbw-sync-watch.service" and f"ExecStart={BIN} watch\n" in text
    assert "RestartPreventExitStatus=77" in text
    with pytest.raises(UsageError, match="systemd only"):
        sched.plan("cron", BIN, watch=True)


def test_cron_lines_run_the_real_binary_every_interval_and_at_boot(tmp_path: Path) -> None:
    home = tmp_path / "my store"
    block = sched.plan("cron", BIN, home, 30).cron_block.splitlines()
    assert block[0] == sched.CRON_BEGIN and block[-1] == sched.CRON_END
    jobs = [ln for ln in block if not ln.startswith("#")]
    assert len(jobs) == 2
    every, boot = jobs
    assert every.startswith("*/30 * * * * ") and boot.startswith("@reboot sleep 60 && ")
    assert shlex.split(every.removeprefix("*/30 * * * * ")) == [BIN, "--home", str(home), "sync", "--quiet",
                                                                 "--timeout", "120"]
    pct = sched.plan("cron", "/opt/100%/hbw-sync").cron_block
    assert "/opt/100\\%/hbw-sync" in pct  # cron would cut the line at a bare %


def test_task_scheduler_command_quotes_paths_with_spaces() -> None:
    exe = r"C:\Users\Amina Okafor\AppData\Roaming\Python\Python311\Scripts\hbw-sync.exe"
    p = sched.plan("windows", exe, None, 30)
    assert p.files == {} and p.cron_block == ""
    assert p.run == [["schtasks", "/Create", "/F", "/TN", "hbw-sync", "/SC", "MINUTE", "/MO", "30", "/TR",
                      f'"{exe}" sync --quiet --timeout 120']]
    shown = p.describe()
    assert f'/TR "\\"{exe}\\" sync --quiet --timeout 120"' in shown  # as cmd.exe takes it: inner quotes escaped
    with pytest.raises(UsageError, match="at most 261"):
        sched.plan("windows", exe, Path("C:/" + "x" * 250))


def test_task_scheduler_runs_pythonw_so_no_console_window_takes_the_focus(tmp_path: Path) -> None:
    scripts = tmp_path / "pipx" / "venvs" / "hbw-sync" / "Scripts"
    scripts.mkdir(parents=True)
    assert sched.windowless(str(scripts / "python.exe")) is None  # no pythonw.exe: the binary itself
    (scripts / "pythonw.exe").write_bytes(b"MZ")
    launcher = sched.windowless(str(scripts / "python.exe"))
    assert launcher == [str(scripts / "pythonw.exe"), "-m", "hbw_sync.client.cli"]
    p = sched.plan("windows", "hbw-sync.exe", None, 30, launcher=launcher)
    assert p.run[0][-1] == f"{scripts / 'pythonw.exe'} -m hbw_sync.client.cli sync --quiet --timeout 120"
    assert p.command[:3] == launcher


def test_bad_kind_and_interval_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown scheduler"):
        sched.plan("launchd", BIN)
    with pytest.raises(UsageError, match="every 45 minutes"):
        sched.plan("cron", BIN, interval=45)


def test_find_binary_prefers_the_running_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = tmp_path / "bin" / "hbw-sync"
    prog.parent.mkdir()
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    assert sched.find_binary(str(prog)) == str(prog)
    exe = tmp_path / "Scripts" / "hbw-sync.exe"
    exe.parent.mkdir()
    exe.write_bytes(b"MZ")
    assert sched.find_binary(str(tmp_path / "Scripts" / "hbw-sync")) == str(exe)  # pip's launcher drops ".exe"
    monkeypatch.setenv("PATH", str(prog.parent))
    assert sched.find_binary("/usr/lib/python3/pytest") == str(prog)  # run as 'python -m': the one on PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot find the installed hbw-sync"):
        sched.find_binary("/usr/lib/python3/pytest")


# -- the real CLI, with stand-ins for the system's tools -------------------------------------------------------

FAKE = {
    "systemctl": 'echo "systemctl $*" >> "$FAKE_LOG"\n',
    "schtasks": 'echo "schtasks $*" >> "$FAKE_LOG"\n'
                'if [ "$1" = /Query ]; then [ -f "$FAKE_DIR/task" ] || exit 1; cat "$FAKE_DIR/task"; fi\n'
                'if [ "$1" = /Create ]; then echo "TaskName: \\hbw-sync" > "$FAKE_DIR/task"; fi\n'
                'if [ "$1" = /Delete ]; then rm -f "$FAKE_DIR/task"; fi\n',
    "crontab": 'echo "crontab $*" >> "$FAKE_LOG"\n'
               'if [ "$1" = -l ]; then [ -f "$FAKE_DIR/tab" ] || { echo "no crontab for you" >&2; exit 1; }; '
               'cat "$FAKE_DIR/tab"; else cat > "$FAKE_DIR/tab"; fi\n',
}


@pytest.fixture
def system(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for name, body in FAKE.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBW_")}
    env.update(PATH=f"{fake}{os.pathsep}{env['PATH']}", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               FAKE_LOG=str(tmp_path / "calls.log"), FAKE_DIR=str(tmp_path), HBW_SYNC_HOME=str(tmp_path / "store"))
    return env


def hbw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([str(HBW), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=60)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_dry_run_prints_the_installed_binary_and_changes_nothing(system: dict[str, str], tmp_path: Path) -> None:
    for kind in sched.KINDS:
        out = hbw(system, "schedule", "install", "--kind", kind, "--dry-run").stdout
        assert str(HBW.absolute()) in out and "dry run: nothing was changed" in out
        assert str(tmp_path / "store") in out  # the home from HBW_SYNC_HOME, which a scheduler will not have
    data = json.loads(hbw(system, "schedule", "install", "--kind", "cron", "--dry-run", "--json").stdout)
    assert data["dry_run"] is True and data["command"][0] == str(HBW.absolute())
    assert calls(tmp_path) == [] and not (tmp_path / "cfg").exists()


def test_cron_install_keeps_the_users_lines_replaces_ours_and_removes_cleanly(system: dict[str, str],
                                                                               tmp_path: Path) -> None:
    (tmp_path / "tab").write_text("MAILTO=amina\n0 9 * * 1 /usr/local/bin/backup-home\n")
    hbw(system, "schedule", "install", "--kind", "cron", "--every", "15")
    hbw(system, "schedule", "install", "--kind", "cron")  # again: replaced, not doubled
    tab = (tmp_path / "tab").read_text()
    assert tab.startswith("MAILTO=amina\n0 9 * * 1 /usr/local/bin/backup-home\n")
    assert tab.count(sched.CRON_BEGIN) == 1 and "*/15" not in tab
    assert f"*/30 * * * * {HBW.absolute()} --home {tmp_path / 'store'} sync --quiet --timeout 120\n" in tab
    shown = json.loads(hbw(system, "schedule", "show", "--kind", "cron", "--json").stdout)
    assert shown["installed"] and shown["cron"][0] == sched.CRON_BEGIN
    assert "Removed the hbw-sync lines" in hbw(system, "schedule", "remove", "--kind", "cron").stdout
    assert (tmp_path / "tab").read_text() == "MAILTO=amina\n0 9 * * 1 /usr/local/bin/backup-home\n"
    assert "nothing to remove" in hbw(system, "schedule", "remove", "--kind", "cron").stdout
    assert "No scheduled sync" in hbw(system, "schedule", "show", "--kind", "cron").stdout


def test_systemd_install_writes_the_units_enables_the_timer_and_remove_undoes_it(system: dict[str, str],
                                                                                  tmp_path: Path) -> None:
    unit_dir = tmp_path / "cfg" / "systemd" / "user"
    out = hbw(system, "schedule", "install", "--kind", "systemd").stdout
    assert "syncs every 30 minutes" in out
    service = (unit_dir / "hbw-sync.service").read_text()
    assert f"ExecStart={HBW.absolute()} --home {tmp_path / 'store'} sync --quiet --timeout 120\n" in service
    assert (unit_dir / "hbw-sync.timer").exists()
    assert calls(tmp_path) == ["systemctl --user daemon-reload", "systemctl --user enable --now hbw-sync.timer"]
    shown = json.loads(hbw(system, "schedule", "show", "--kind", "systemd", "--json").stdout)
    assert set(shown["files"]) == {str(unit_dir / "hbw-sync.service"), str(unit_dir / "hbw-sync.timer")}
    hbw(system, "schedule", "remove", "--kind", "systemd")
    assert not list(unit_dir.iterdir())
    assert calls(tmp_path)[2:] == ["systemctl --user disable --now hbw-sync.timer", "systemctl --user daemon-reload"]


def test_task_scheduler_install_and_remove(system: dict[str, str], tmp_path: Path) -> None:
    out = hbw(system, "schedule", "install", "--kind", "windows").stdout
    assert "Task Scheduler task 'hbw-sync'" in out
    create = calls(tmp_path)[0]
    assert create.startswith("schtasks /Create /F /TN hbw-sync /SC MINUTE /MO 30 /TR ")
    assert create.endswith(f"{HBW.absolute()} --home {tmp_path / 'store'} sync --quiet --timeout 120")
    assert json.loads(hbw(system, "schedule", "show", "--kind", "windows", "--json").stdout)["installed"]
    assert "Deleted the Task Scheduler task" in hbw(system, "schedule", "remove", "--kind", "windows").stdout
    assert calls(tmp_path)[-1] == "schtasks /Delete /F /TN hbw-sync"
    assert not json.loads(hbw(system, "schedule", "show", "--kind", "windows", "--json").stdout)["installed"]


def test_a_missing_scheduler_tool_is_said_in_words(system: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "fakebin" / "crontab").unlink()
    env = {**system, "PATH": str(tmp_path / "fakebin")}
    p = subprocess.run([str(HBW), "schedule", "install", "--kind", "cron"], env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 78 and "'crontab' is not installed here" in p.stderr and "Traceback" not in p.stderr


def test_a_failing_systemctl_says_what_was_written_and_what_to_do(system: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "fakebin" / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\n"
                                                    "exit 1\n")
    p = subprocess.run([str(HBW), "schedule", "install", "--kind", "systemd"], env=system, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 78, p.stderr
    assert "Failed to connect to bus" in p.stderr and "use --kind cron" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_cli_runs_with_no_console_as_under_pythonw(tmp_path: Path) -> None:
    """pythonw.exe gives a program no stdout or stderr: a scheduled run must still finish with its exit code."""
    script = (
        "import sys\n"
        "sys.stdout = sys.stderr = None\n"
        "sys.argv = ['hbw-sync', 'sync', '--quiet']\n"
        "from hbw_sync.client.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        f"    open({str(tmp_path / 'rc')!r}, 'w').write(str(e.code))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBW_")}
    env["HBW_SYNC_HOME"] = str(tmp_path / "no-store-yet")
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (tmp_path / "rc").read_text() == "78"  # "not set up yet", said through the exit code alone
