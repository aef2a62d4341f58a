"""The passphrase's life: weak ones refused by the library, changing it (kill -9 safe), checking it,
choosing it at a real terminal (asked twice), and a stale HBW_PASSPHRASE that never breaks a sync."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client import passphrase as pp
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli
from hbw_sync.client.store import DB_NAME, Store
from hbw_sync.client.vault import KdfParams, unwrap_store_key, wrap_store_key
from hbw_sync.errors import UsageError, WrongKeyError

from relay_helpers import FAST_KDF, STRONG, Team

OLD = "amina orchid lantern 52 ferry"
NEW = "quartz meadow 17 kettle drum"
WEAK = ["", "pw", "abc", "password1", "Password1!", "amina2026", "qwertyuiop", "hunter2hunter2"]
ROOT = Path(__file__).resolve().parent.parent


def make_device(home: Path, passphrase: str = OLD) -> None:
    with Device.init(home, "amina", passphrase, kdf=FAST_KDF) as dev:
        rep = dev.unlock(passphrase)
        rep.create_team("District Finance")
        rep.add_task("Reconcile October invoices")


def opens(home: Path, passphrase: str) -> bool:
    with Device.open(home) as dev:
        return dev.opens_with(passphrase)


def titles(home: Path, passphrase: str) -> list[str]:
    with Device.open(home) as dev:
        return [t.title for t in dev.unlock(passphrase).tasks()]


def run(home: Path, *args: str, env: dict[str, str | None] | None = None):
    base: dict[str, str | None] = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": None, "HBW_NEW_PASSPHRASE": None}
    return CliRunner().invoke(cli, list(args), env=base | (env or {}))


# -- strength: the library refuses, not only the CLI -------------------------------------------------


@pytest.mark.parametrize("weak", WEAK)
def test_device_init_refuses_a_weak_passphrase_and_creates_nothing(tmp_path: Path, weak: str) -> None:
    with pytest.raises(UsageError) as e:
        Device.init(tmp_path / "h", "amina", weak, kdf=FAST_KDF)
    assert e.value.code == "usage.weak_passphrase"
    assert not (tmp_path / "h" / DB_NAME).exists()


def test_the_rule_is_the_top_score_and_counts_the_members_name(tmp_path: Path) -> None:
    assert pp.MIN_SCORE == 4
    assert pp.strength(STRONG).ok and pp.strength(STRONG).score == 4
    # The same string is weaker once the guesser is told it holds the member's name.
    assert pp.strength("mwangikaranja", ["mwangikaranja"]).guesses_log10 < pp.strength("mwangikaranja").guesses_log10
    with pytest.raises(UsageError, match="too easy to guess"):
        Device.init(tmp_path / "h", "mwangikaranja", "mwangikaranja", kdf=FAST_KDF)


def test_passphrase_length_is_bounded_before_any_work(tmp_path: Path) -> None:
    long_ok = STRONG + " " + "x" * 500  # judged by its first 72 characters, which are strong
    make_device(tmp_path / "a", long_ok)
    assert opens(tmp_path / "a", long_ok)
    with pytest.raises(UsageError, match="longer than"):
        Device.init(tmp_path / "b", "amina", STRONG + "y" * pp.MAX_CHARS, kdf=FAST_KDF)
    assert not (tmp_path / "b" / DB_NAME).exists()


def test_join_refuses_a_weak_passphrase_before_using_the_invite(tmp_path: Path) -> None:
    with Team(tmp_path) as team:
        invite = team.invite("amina")
        with pytest.raises(UsageError) as e:
            syncing.join(tmp_path / "amina", invite, "amina1", kdf=FAST_KDF)
        assert e.value.code == "usage.weak_passphrase"
        assert not (tmp_path / "amina" / DB_NAME).exists()
        out = syncing.join(tmp_path / "amina", invite, OLD, kdf=FAST_KDF)  # the invite is still unused
        assert out["member"] == "amina"


# -- change ------------------------------------------------------------------------------------------


def test_change_rewraps_the_store_key_and_keeps_everything(tmp_path: Path) -> None:
    home = tmp_path / "h"
    make_device(home)
    with Device.open(home) as dev:
        pp.change(dev, OLD, NEW)
        assert KdfParams.from_list(dev.store.meta("kdf")) == FAST_KDF  # the store's cost is kept
    assert not opens(home, OLD) and opens(home, NEW)
    assert titles(home, NEW) == ["Reconcile October invoices"]


@pytest.mark.parametrize(
    "old, new, error, code",
    [
        ("not the passphrase", NEW, WrongKeyError, "access.wrong_key"),
        (OLD, "amina123", UsageError, "usage.weak_passphrase"),
        (OLD, "", UsageError, "usage.weak_passphrase"),
        (OLD, OLD, UsageError, "usage.same_passphrase"),
    ],
)
def test_a_refused_change_changes_nothing(tmp_path: Path, old: str, new: str, error: type, code: str) -> None:
    home = tmp_path / "h"
    make_device(home)
    with Device.open(home) as dev:
        before = dev.store.meta("store_key")
        with pytest.raises(error) as e:
            pp.change(dev, old, new)
        assert e.value.code == code
        assert dev.store.meta("store_key") == before
    assert opens(home, OLD)


def test_change_can_set_a_new_kdf_cost(tmp_path: Path) -> None:
    home = tmp_path / "h"
    make_device(home)
    with Device.open(home) as dev:
        pp.change(dev, OLD, NEW, kdf=KdfParams(n=2**11))
        assert dev.store.meta("kdf") == [2**11, 8, 1]
    assert titles(home, NEW) == ["Reconcile October invoices"]


CHANGER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hbw_sync.client import Device
    from hbw_sync.client import passphrase as pp

    home, old, new, stop_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

    def step(name):
        print(name, flush=True)
        if name == stop_at:
            time.sleep(3600)  # killed here by the test

    with Device.open(home) as dev:
        pp.change(dev, old, new, on_step=step)
    print("returned", flush=True)
    time.sleep(3600)
    """
)


@pytest.mark.parametrize(
    "stop_at, survivor",
    [("unwrapped", OLD), ("wrapped", OLD), ("written", OLD), ("committed", NEW), ("returned", NEW)],
)
def test_kill_9_during_change_leaves_exactly_one_passphrase(tmp_path: Path, stop_at: str, survivor: str) -> None:
    """kill -9 at each step of a change: the store opens with exactly one of old and new, content intact."""
    home = tmp_path / "h"
    make_device(home)
    proc = subprocess.Popen([sys.executable, "-c", CHANGER, str(home), OLD, NEW, stop_at],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.strip())
            if seen[-1] == stop_at:
                break
        assert seen and seen[-1] == stop_at, seen
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    other = NEW if survivor == OLD else OLD
    assert opens(home, survivor) and not opens(home, other)
    assert titles(home, survivor) == ["Reconcile October invoices"]


# -- CLI ---------------------------------------------------------------------------------------------


def test_cli_init_refuses_weak_and_states_the_recovery_story(tmp_path: Path) -> None:
    res = run(tmp_path / "h", "init", "--name", "amina", env={"HBW_PASSPHRASE": "amina"})
    assert res.exit_code == 2 and "too easy to guess" in res.output and "orchid lantern" in res.output
    assert not (tmp_path / "h" / DB_NAME).exists()
    res = run(tmp_path / "h", "init", "--name", "amina", env={"HBW_NEW_PASSPHRASE": OLD})
    assert res.exit_code == 0, res.output
    assert "lose your passphrase" in res.output and "only changes this device had not yet sent are lost" in res.output
    assert opens(tmp_path / "h", OLD)


def test_cli_init_without_a_terminal_or_env_never_prompts(tmp_path: Path) -> None:
    res = run(tmp_path / "h", "init", "--name", "amina")
    assert res.exit_code == 2 and "HBW_NEW_PASSPHRASE" in res.output
    assert not (tmp_path / "h" / DB_NAME).exists()


def test_cli_passphrase_change_and_check(tmp_path: Path) -> None:
    home = tmp_path / "h"
    make_device(home)
    # No new passphrase and no terminal: refused, nothing changed.
    res = run(home, "passphrase", "change", env={"HBW_PASSPHRASE": OLD})
    assert res.exit_code == 2 and "HBW_NEW_PASSPHRASE" in res.output
    # A wrong current one is told before anything else.
    res = run(home, "passphrase", "change", env={"HBW_PASSPHRASE": "wrong one", "HBW_NEW_PASSPHRASE": NEW})
    assert res.exit_code == 77 and "wrong passphrase" in res.output
    res = run(home, "passphrase", "change", env={"HBW_PASSPHRASE": OLD, "HBW_NEW_PASSPHRASE": "abc123"})
    assert res.exit_code == 2 and "too easy to guess" in res.output
    assert opens(home, OLD)
    res = run(home, "passphrase", "change", env={"HBW_PASSPHRASE": OLD, "HBW_NEW_PASSPHRASE": NEW})
    assert res.exit_code == 0, res.output
    assert "only the new one opens" in res.output
    res = run(home, "passphrase", "check", "--json", env={"HBW_PASSPHRASE": NEW})
    assert res.exit_code == 0 and json.loads(res.stdout)["opens"] is True
    assert json.loads(res.stdout)["strength"]["ok"] is True
    res = run(home, "passphrase", "check", env={"HBW_PASSPHRASE": OLD})
    assert res.exit_code == 77 and "does not open this device" in res.output
    assert run(home, "task", "list", env={"HBW_PASSPHRASE": NEW}).exit_code == 0


def test_check_tells_a_store_made_before_the_rule_that_its_passphrase_is_weak(tmp_path: Path) -> None:
    home = tmp_path / "h"
    make_device(home)
    with Store.open(home) as s:  # as an older hbw-sync would have left it: wrapped under "pw"
        key = unwrap_store_key(OLD, s.meta("store_key"), FAST_KDF)
        with s.transaction():
            s.set_meta("store_key", wrap_store_key("pw", key, FAST_KDF))
    res = run(home, "passphrase", "check", env={"HBW_PASSPHRASE": "pw"})
    assert res.exit_code == 0 and "weaker than a new one may be" in res.output
    assert run(home, "task", "list", env={"HBW_PASSPHRASE": "pw"}).exit_code == 0  # still opens: rule is for choosing
    res = run(home, "passphrase", "change", env={"HBW_PASSPHRASE": "pw", "HBW_NEW_PASSPHRASE": NEW})
    assert res.exit_code == 0 and opens(home, NEW)


PROMPTS = (b"New passphrase:", b"Type it again to confirm:", b"Current passphrase:", b"Passphrase:")


def _terminal(args: list[str], home: Path, answers: list[str]) -> tuple[int, str]:
    """Run the real hbw-sync on a pseudo-terminal, answering each hidden prompt in turn."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HBW_PASSPHRASE", "HBW_NEW_PASSPHRASE")}
    env["HBW_SYNC_HOME"] = str(home)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hbw_sync.client.cli", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    out = b""
    pending = list(answers)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:  # a hang is a failure, not a wait
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            prompts = sum(out.count(p) for p in PROMPTS)
            while pending and prompts > len(answers) - len(pending):  # one answer per prompt shown
                os.write(master, pending.pop(0).encode() + b"\n")
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    return proc.returncode, out.decode(errors="replace")


def test_choosing_at_a_terminal_says_so_refuses_weak_and_asks_twice(tmp_path: Path) -> None:
    home = tmp_path / "h"
    # weak first (refused with a reason), then a mismatched confirmation, then the real one twice.
    code, out = _terminal(["init", "--name", "amina"], home, ["abc", OLD, "typo", OLD, OLD])
    assert code == 0, out
    assert "Choose a passphrase for this device" in out
    assert "Too easy to guess" in out
    assert out.count("Type it again to confirm") == 2
    assert "The two entries differ" in out
    assert "lose your passphrase" in out
    assert opens(home, OLD)


# -- a stale HBW_PASSPHRASE never breaks commands that need none ---------------------------------------


def test_sync_with_a_stale_passphrase_transfers_warns_and_exits_0(tmp_path: Path) -> None:
    with Team(tmp_path) as team:
        dana, amina = team.pair("dana", "amina")
        with dana.open() as rep:
            rep.add_task("for amina", assignee="amina")
        with amina.open() as rep:
            rep.add_task("from amina")
        dana.sync()
        env = {"HBW_SYNC_HOME": str(amina.home), "HBW_PASSPHRASE": "an old passphrase of hers"}
        res = CliRunner().invoke(cli, ["sync", "--json"], env=env)
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert report["wrong_passphrase"] is True
        assert report["sent_batches"] >= 1 and report["received_batches"] >= 1
        assert report["waiting_to_apply"] >= 1  # locked: what arrived waits, sealed
        assert "HBW_PASSPHRASE does not open this device" in res.stderr
        res = CliRunner().invoke(cli, ["sync", "--quiet"], env=env)
        assert res.exit_code == 0 and "HBW_PASSPHRASE does not open" in res.stderr  # said even when quiet
        res = CliRunner().invoke(cli, ["status"], env=env)
        assert res.exit_code == 0 and "received; unlock to read" in res.output
        assert "does not open this device" in res.output  # the scheduler's stale passphrase is told
        res = CliRunner().invoke(cli, ["bundle", "export", str(tmp_path / "b.hbw")], env=env)
        assert res.exit_code == 0, res.output
        dana.sync()
        with dana.open() as rep:
            assert "from amina" in [t.title for t in rep.tasks()]
        assert "for amina" in titles(amina.home, amina.passphrase)  # the right passphrase applies the inbox
        assert syncing.sync(amina.home, amina.passphrase).wrong_passphrase is False
        with Device.open(amina.home) as dev:
            assert dev.status()["last_sync_wrong_passphrase"] is False


def test_watch_with_a_stale_passphrase_keeps_syncing_and_says_so_once(tmp_path: Path) -> None:
    from hbw_sync.client import watch as watching

    with Team(tmp_path) as team:
        dana, amina = team.pair("dana", "amina")
        with amina.open() as rep:
            rep.add_task("from amina")
        lines: list[str] = []
        stop = threading.Event()

        def log(line: str) -> None:
            lines.append(line)
            if sum("sync ok" in x for x in lines) >= 2:
                stop.set()

        with amina.open() as rep:
            rep.add_task("second")
        code = watching.watch(amina.home, "an old passphrase of hers", interval=0, log=log, stop=stop,
                              install_signals=False)
        assert code == 0
        assert sum("HBW_PASSPHRASE does not open this device" in x for x in lines) == 1, lines
        assert sum("sync ok" in x for x in lines) == 2
        with Device.open(amina.home) as dev:
            assert dev.status()["outbox"]["batches"] == 0


def test_two_changes_at_once_keep_exactly_one_result(tmp_path: Path) -> None:
    """A second change that commits while the first one derives its key wins; the first changes nothing."""
    home = tmp_path / "h"
    make_device(home)
    third = "copper willow 64 saddle"

    def meanwhile(step: str) -> None:
        if step == "wrapped":
            with Device.open(home) as other:
                pp.change(other, OLD, third)

    with Device.open(home) as dev:
        with pytest.raises(UsageError) as e:
            pp.change(dev, OLD, NEW, on_step=meanwhile)
        assert e.value.code == "usage.changed_meanwhile"
    assert opens(home, third) and not opens(home, NEW) and not opens(home, OLD)


def test_changing_at_a_terminal_asks_the_current_one_then_the_new_one_twice(tmp_path: Path) -> None:
    home = tmp_path / "h"
    make_device(home)
    code, out = _terminal(["passphrase", "change"], home, ["wrong one"])
    assert code == 77 and "wrong passphrase" in out and "New passphrase" not in out  # told before choosing
    code, out = _terminal(["passphrase", "change"], home, [OLD, NEW, NEW])
    assert code == 0, out
    assert out.count("Current passphrase:") == 1 and out.count("Type it again to confirm") == 1
    assert "only the new one opens" in out
    code, out = _terminal(["passphrase", "check"], home, [NEW])
    assert code == 0 and "This passphrase opens this device." in out
    assert opens(home, NEW) and not opens(home, OLD)


def test_kill_9_of_the_real_cli_at_any_moment_leaves_exactly_one_passphrase(tmp_path: Path) -> None:
    """No hook: the real 'hbw-sync passphrase change' killed after a range of delays, so some kills land
    inside SQLite's commit. Whatever the moment, exactly one passphrase opens the store, content intact."""
    home = tmp_path / "h"
    make_device(home)
    current, other = OLD, NEW
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"HBW_SYNC_HOME": str(home)}
    for delay in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 2.0):
        proc = subprocess.Popen([sys.executable, "-m", "hbw_sync.client.cli", "passphrase", "change"], cwd=ROOT,
                                env=env | {"HBW_PASSPHRASE": current, "HBW_NEW_PASSPHRASE": other},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if opens(home, other):  # the change committed before the kill: the new one is now current
            current, other = other, current
        assert opens(home, current) and not opens(home, other)
        assert titles(home, current) == ["Reconcile October invoices"]
