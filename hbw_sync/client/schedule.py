"""Scheduled syncs: the systemd user timer, the cron lines or the Windows Task Scheduler entry.

Why a command rather than files to copy: the files must name the *installed*
hbw-sync (pipx puts it in ~/.local/bin, ``pip install --user`` on Windows in
%APPDATA%\\Python\\...\\Scripts), and a person who never opened a terminal cannot
be asked to edit a path inside a unit file. ``plan`` is pure: it turns the
kind, the binary's real path and the store's home into the exact files,
crontab block or schtasks command; ``install``, ``remove`` and ``show`` carry a
plan out with the system's own tools (systemctl, crontab, schtasks). The unit
templates live in ``hbw_sync/data/schedulers/``.

The scheduled command is ``sync --quiet``: it never prompts, prints only when a
person must act, and exits 75 when the link is down (nothing lost), which the
systemd unit counts as success and cron does not mail.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, UsageError
from ..i18n import _

KINDS = ("systemd", "cron", "windows")
INTERVALS = (10, 15, 20, 30, 60)  # minutes that divide an hour, so cron's */N means "every N minutes"
#: What each scheduled run does (the sync's own defaults otherwise; no passphrase: it never prompts).
SYNC_ARGS = ("sync", "--quiet", "--timeout", "120")
WATCH_ARGS = ("watch",)
TASK_NAME = "hbw-sync"
CRON_BEGIN = "# >>> hbw-sync schedule (managed by 'hbw-sync schedule'; edit with it) >>>"
CRON_END = "# <<< hbw-sync schedule <<<"
SCHTASKS_TR_MAX = 261  # schtasks refuses a longer /TR


@dataclass
class Plan:
    """Everything one ``install`` would do, as data: shown by ``--dry-run``, carried out by ``install``."""

    kind: str
    binary: str
    command: list[str]  # one scheduled run, as argv
    files: dict[str, str] = field(default_factory=dict)  # path -> content (systemd)
    cron_block: str = ""  # the lines added to the user's crontab (cron)
    run: list[list[str]] = field(default_factory=list)  # commands run after the files are written

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "binary": self.binary, "command": self.command, "files": self.files,
                "cron": self.cron_block.splitlines(), "run": self.run}

    def describe(self) -> str:
        """What would be written and run, in the order it happens, for a person to read (or copy)."""
        out = []
        for path, text in self.files.items():
            out += [f"--- would write {path}:", text.rstrip("\n")]
        if self.cron_block:
            out += ["--- would add to your crontab (crontab -l shows it):", self.cron_block.rstrip("\n")]
        for cmd in self.run:
            out += ["--- would run:", display(self.kind, cmd)]
        return "\n".join(out)


def display(kind: str, argv: list[str]) -> str:
    """A command line as the kind's own shell would take it (cmd.exe for windows)."""
    return subprocess.list2cmdline(argv) if kind == "windows" else shlex.join(argv)


def detect_kind(platform: str = sys.platform) -> str:
    """Task Scheduler on Windows; a systemd user timer where systemd runs this session; else cron."""
    if platform == "win32":
        return "windows"
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        return "systemd"
    return "cron"


def find_binary(argv0: str | None = None) -> str:
    """The real path of the installed ``hbw-sync``: the one running now if it is that, else the one on PATH.

    Not resolved through symlinks: pipx's ~/.local/bin/hbw-sync is a link that
    survives upgrades, while the file it points to moves.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    here = Path(argv0)
    if here.name.lower() in ("hbw-sync", "hbw-sync.exe"):
        # pip's Windows launcher runs us with argv[0] stripped of its ".exe"
        for candidate in (here, here.with_name(here.name + ".exe")):
            if candidate.is_file():
                return str(candidate.absolute())
    found = shutil.which("hbw-sync")
    if found:
        return str(Path(found).absolute())
    raise ConfigError(_("cannot find the installed hbw-sync program to schedule"),
                      hint=_("install it (pipx install hbw-sync) so 'hbw-sync' runs from a "
                            "terminal, or name it with --binary"))


def windowless(python: str | None = None) -> list[str] | None:
    """On Windows, how to run hbw-sync with no console window: ``pythonw.exe -m hbw_sync.client.cli``.

    Why: Task Scheduler runs a console program (hbw-sync.exe) in a new console
    window, which takes the focus from whatever the official is typing, every
    30 minutes. pythonw.exe beside the interpreter that runs hbw-sync now (the
    pipx or user install's own) opens none. None where there is no pythonw.exe.
    """
    pyw = Path(python or sys.executable).with_name("pythonw.exe")
    return [str(pyw), "-m", "hbw_sync.client.cli"] if pyw.is_file() else None


def _template(name: str) -> str:
    return (resources.files("hbw_sync") / "data" / "schedulers" / name).read_text(encoding="utf-8")


def _systemd_arg(arg: str) -> str:
    """One ExecStart argument: '%' doubled (systemd's specifiers), quoted if it holds a space or quote."""
    arg = arg.replace("%", "%%")
    if any(c in arg for c in ' \t"\'\\'):
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def systemd_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where systemd looks for a user's units: $XDG_CONFIG_HOME/systemd/user (default ~/.config)."""
    env = {} if env is None else env  # the front end passes XDG_CONFIG_HOME (ClientConfig.scheduler_env)
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def plan(kind: str, binary: str, home: Path | None = None, interval: int = 30, watch: bool = False,
         env: dict[str, str] | None = None, launcher: list[str] | None = None) -> Plan:
    """The exact files, crontab block or schtasks command for ``kind`` (pure: reads only the templates).

    ``launcher`` runs hbw-sync instead of ``binary`` (``windowless()`` on Windows).
    """
    if kind not in KINDS:
        raise UsageError(_("unknown scheduler {kind!r}").format(kind=kind), hint=_("one of: {KINDS}").format(KINDS=', '.join(KINDS)))
    if interval not in INTERVALS:
        raise UsageError(_("cannot sync every {interval} minutes").format(interval=interval), hint=_("choose one of {INTERVALS}").format(INTERVALS=INTERVALS))
    if watch and kind != "systemd":
        raise UsageError(_("'watch' as a service is for systemd only"), hint=_("use the scheduled sync here"))
    base = (launcher or [binary]) + (["--home", str(Path(home).absolute())] if home else [])
    command = base + list(WATCH_ARGS if watch else SYNC_ARGS)
    p = Plan(kind=kind, binary=binary, command=command)
    if kind == "systemd":
        d = systemd_dir(env)
        exec_line = " ".join(_systemd_arg(a) for a in command)
        if watch:
            p.files[str(d / "hbw-sync-watch.service")] = _template("hbw-sync-watch.service").replace(
                "{watch_command}", exec_line)
            p.run = [["systemctl", "--user", "daemon-reload"],
                     ["systemctl", "--user", "enable", "--now", "hbw-sync-watch.service"]]
        else:
            p.files[str(d / "hbw-sync.service")] = _template("hbw-sync.service").replace("{command}", exec_line)
            p.files[str(d / "hbw-sync.timer")] = _template("hbw-sync.timer").replace("{interval}", str(interval))
            p.run = [["systemctl", "--user", "daemon-reload"],
                     ["systemctl", "--user", "enable", "--now", "hbw-sync.timer"]]
    elif kind == "cron":
        line = shlex.join(command).replace("%", "\\%")  # cron turns a bare % into a newline
        body = _template("hbw-sync.cron").replace("{interval}", str(interval)).replace("{command}", line)
        p.cron_block = f"{CRON_BEGIN}\n{body.rstrip()}\n{CRON_END}\n"
        p.run = [["crontab", "-"]]
    else:
        tr = subprocess.list2cmdline(command)
        if len(tr) > SCHTASKS_TR_MAX:
            raise UsageError(_("the scheduled command is {n} characters; Task Scheduler takes at most "
                  "{SCHTASKS_TR_MAX}").format(n=len(tr), SCHTASKS_TR_MAX=SCHTASKS_TR_MAX), hint=_("use a shorter --home path"))
        p.run = [["schtasks", "/Create", "/F", "/TN", TASK_NAME, "/SC", "MINUTE", "/MO", str(interval), "/TR", tr]]
    return p


# -- carrying a plan out ---------------------------------------------------------------------------------


def _run(argv: list[str], stdin: str | None = None, check: bool = True,
         hint: str = "nothing else was changed") -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError(_("'{v}' is not installed here, so this scheduler cannot be used").format(v=argv[0]),
                          hint=_("choose another with --kind")) from None
    if check and r.returncode != 0:
        said = (r.stderr or r.stdout).strip().splitlines()
        raise ConfigError(f"'{' '.join(argv[:3])}' failed" + (f": {said[-1]}" if said else ""),
                          hint=hint)
    return r


def _crontab() -> str:
    """The user's crontab now ('' if they have none)."""
    r = _run(["crontab", "-l"], check=False)
    return r.stdout if r.returncode == 0 else ""


def strip_block(crontab: str) -> str:
    """``crontab`` without our block (every other line kept as it was)."""
    out, inside = [], False
    for line in crontab.splitlines(keepends=True):
        if line.rstrip("\n") == CRON_BEGIN:
            inside = True
        elif line.rstrip("\n") == CRON_END and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def block_of(crontab: str) -> list[str]:
    """Our block's lines in ``crontab``, markers included ([] if there is none)."""
    lines = crontab.splitlines()
    if CRON_BEGIN not in lines:
        return []
    start = lines.index(CRON_BEGIN)
    end = lines.index(CRON_END, start) if CRON_END in lines[start:] else len(lines) - 1
    return lines[start:end + 1]


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def install(p: Plan) -> dict[str, Any]:
    """Write the plan's files (or crontab block) and run its commands; installing again replaces, never adds."""
    for path, text in p.files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    if p.kind == "cron":
        _run(["crontab", "-"], stdin=_with_newline(strip_block(_crontab())) + p.cron_block)
    else:
        hint = "nothing else was changed"
        if p.files:
            hint = (f"the files were written ({', '.join(Path(f).name for f in p.files)}); where no systemd user "
                    "session runs (e.g. over ssh), use --kind cron, and 'hbw-sync schedule remove --kind systemd' "
                    "deletes them")
        for cmd in p.run:
            _run(cmd, hint=hint)
    return p.to_dict()


def remove(kind: str, env: dict[str, str] | None = None) -> list[str]:
    """Stop and delete what ``install`` made for ``kind``; what was removed, in words (empty: nothing was there)."""
    done: list[str] = []
    if kind == "systemd":
        d = systemd_dir(env)
        for unit in ("hbw-sync.timer", "hbw-sync-watch.service"):
            if (d / unit).exists():
                _run(["systemctl", "--user", "disable", "--now", unit], check=False)
        for name in ("hbw-sync.timer", "hbw-sync.service", "hbw-sync-watch.service"):
            if (d / name).exists():
                (d / name).unlink()
                done.append(f"deleted {d / name}")
        if done:
            _run(["systemctl", "--user", "daemon-reload"], check=False)
    elif kind == "cron":
        now = _crontab()
        kept = strip_block(now)
        if kept != now:
            _run(["crontab", "-"], stdin=kept)
            done.append("removed the hbw-sync lines from your crontab")
    elif kind == "windows":
        if _run(["schtasks", "/Query", "/TN", TASK_NAME], check=False).returncode == 0:
            _run(["schtasks", "/Delete", "/F", "/TN", TASK_NAME])
            done.append(f"deleted the Task Scheduler task {TASK_NAME!r}")
    else:
        raise UsageError(_("unknown scheduler {kind!r}").format(kind=kind), hint=_("one of: {KINDS}").format(KINDS=', '.join(KINDS)))
    return done


def show(kind: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What is installed now for ``kind``: the files, our crontab block or the task, as they stand."""
    found: dict[str, Any] = {"kind": kind, "installed": False, "files": {}, "cron": [], "task": ""}
    if kind == "systemd":
        d = systemd_dir(env)
        for name in ("hbw-sync.service", "hbw-sync.timer", "hbw-sync-watch.service"):
            if (d / name).exists():
                found["files"][str(d / name)] = (d / name).read_text(encoding="utf-8")
        found["installed"] = bool(found["files"])
    elif kind == "cron":
        block = block_of(_crontab())
        found["cron"], found["installed"] = block, bool(block)
    elif kind == "windows":
        r = _run(["schtasks", "/Query", "/TN", TASK_NAME, "/V", "/FO", "LIST"], check=False)
        found["task"], found["installed"] = (r.stdout.strip(), True) if r.returncode == 0 else ("", False)
    else:
        raise UsageError(_("unknown scheduler {kind!r}").format(kind=kind), hint=_("one of: {KINDS}").format(KINDS=', '.join(KINDS)))
    return found
