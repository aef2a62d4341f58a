"""Faults of the disk are told, and what hbw-sync writes is its owner's alone.

Disk faults (issue 10 item 5): SQLite's and the OS's error numbers become one
``StorageError`` at the relay's edge (``server/db.py``): a device's request is
answered 503 with Retry-After and the device exits 75 with plain words (its
changes stay queued); ``/healthz`` says why the relay is unhealthy; admin
commands exit 74 with words. The end-to-end test fills a real small filesystem
(a tmpfs, mounted when root; CI runs as root) under a real relay.

Permissions (item 4): stores, relay databases with their -wal/-shm files,
backups, bundles and reply bundles are 0600 and their directories 0700 even
under a permissive umask.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from external import required
from hbw_sync import fileio
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client import bundles as client_bundles
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.watch import watch
from hbw_sync.errors import (
    IntegrityError,
    StorageError,
    StoreError,
    TransientError,
    exit_code_for,
    from_peer,
    http_status_for,
    retry_after_for,
)
from hbw_sync.server import admin, db
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.runner import RelayThread
from relay_helpers import Team

STRONG = "orchid lantern 52 ferry"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# -- the mapping, on real SQLite faults --------------------------------------------------------


def test_real_sqlite_faults_become_storage_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (b BLOB)")
    # disk full: SQLite's own page cap gives the very error a full disk gives (SQLITE_FULL)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(200_000),))
    err = db.storage_error(full.value)
    assert isinstance(err, StorageError) and err.code == "store.disk_full"
    assert "disk is full" in err.message and "OperationalError" not in str(err)
    conn.execute("PRAGMA max_page_count = 1000000")

    # busy: another connection holds the write lock
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")
    assert db.storage_error(busy.value).code == "store.busy"

    # read-only: a connection opened read-only that tries to write
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (x'00')")
    assert db.storage_error(readonly.value).code == "store.read_only"

    # not faults of the disk: a constraint (a replay is a value), a bad statement
    conn.execute("CREATE TABLE u (k INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as dup:
        conn.execute("INSERT INTO u VALUES (1)")
    assert db.storage_error(dup.value) is None
    with pytest.raises(sqlite3.OperationalError) as syntax:
        conn.execute("SELEC 1")
    assert db.storage_error(syntax.value) is None
    for c in (conn, other, ro):
        c.close()

    assert db.storage_error(OSError(errno.ENOSPC, "No space left on device")).code == "store.disk_full"
    assert db.storage_error(OSError(errno.EROFS, "Read-only file system")).code == "store.read_only"
    assert db.storage_error(OSError(errno.EIO, "I/O error")).code == "store.io"
    assert db.storage_error(OSError(errno.ENOENT, "No such file")) is None
    assert db.storage_error(ValueError("x")) is None


def test_storage_error_is_74_here_503_with_retry_after_there_and_75_for_the_device() -> None:
    e = StorageError("the relay's disk is full", code="store.disk_full", hint="free space")
    assert isinstance(e, StoreError)
    assert exit_code_for(e) == 74 and http_status_for(e) == 503
    assert retry_after_for(e) == 600
    assert retry_after_for(StorageError("x", code="store.busy")) == 5
    assert retry_after_for(TransientError("x")) == 60
    assert retry_after_for(IntegrityError("x")) is None
    # what the device rebuilds from the relay's 503: transient (exit 75), same code and words
    back = from_peer(e.to_dict(), 503)
    assert type(back) is TransientError and exit_code_for(back) == 75
    assert (back.code, back.message, back.hint) == (e.code, e.message, e.hint)
    # Retry-After: whole seconds only, capped (error bodies are unsigned)
    assert from_peer(e.to_dict(), 503, "600").retry_after_s == 600
    assert from_peer(e.to_dict(), 503, "99999999").retry_after_s == 3600
    for junk in (None, "", "-5", "1.5", "Wed, 21 Oct 2026 07:28:00 GMT", "9" * 400):
        assert from_peer(e.to_dict(), 503, junk).retry_after_s is None
    # other statuses keep the peer's class
    assert type(from_peer(IntegrityError("bad", code="integrity.signature").to_dict(), 400)) is IntegrityError


def test_writer_turns_a_full_database_into_storage_error_and_recovers(tmp_path: Path) -> None:
    """One full transaction fails as a whole with StorageError (nothing kept); the next one commits."""
    admin.init(tmp_path / "r", "Registry")
    w = db.Writer(tmp_path / "r" / db.DB_NAME)
    w.start()
    try:
        def cap(conn: sqlite3.Connection) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

        def big(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('big', ?)", (os.urandom(300_000),))

        def small(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('small', x'01')")

        inside, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            inside.set()
            release.wait(30)

        w.call(cap)
        held = w.submit(hold)
        inside.wait(30)  # the writer is busy: the next two wait in its queue and form one group
        f_big, f_small = w.submit(big), w.submit(small)
        release.set()
        held.result()
        for f in (f_big, f_small):  # one group, one transaction: the fault fails both, neither is kept
            with pytest.raises(StorageError) as exc:
                f.result()
            assert exc.value.code == "store.disk_full"
        assert w.fault is not None and w.fault.code == "store.disk_full"
        assert w.call(lambda c: c.execute("SELECT COUNT(*) FROM meta WHERE key IN ('big', 'small')").fetchone()[0]) == 0
        w.call(lambda c: c.execute("PRAGMA max_page_count = 1000000"))
        assert w.call(lambda c: c.execute("SELECT COUNT(*) FROM meta").fetchone()[0]) > 0
        assert w.fault is None  # a commit clears it
    finally:
        w.stop()


# -- a real relay on a real full disk ---------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """``mount(path)``: a 16 MB tmpfs at ``path`` (needs root: CI runs as root). Skips loudly otherwise."""
    mounted: list[Path] = []

    def mount(mnt: Path) -> Path:
        mnt.mkdir()
        why = None
        if os.geteuid() != 0:
            why = "not root"
        else:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                why = f"mount failed: {r.stderr.strip()}"
        if why:
            msg = f"a small filesystem is needed to fill up (mount -t tmpfs): {why}"
            if "tmpfs" in required():
                pytest.fail(f"HBW_REQUIRE names tmpfs, but {msg}", pytrace=False)
            pytest.skip(f"SKIPPED LOUDLY: {msg}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in reversed(mounted):
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path, small_fs) -> Path:
    """The relay's data directory (tmp_path/'relay', where ``Team`` puts it) on a 16 MB tmpfs."""
    return small_fs(tmp_path / "relay")


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses: ENOSPC."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        chunk = b"\xa5" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def _healthz(url: str) -> tuple[int, dict, str | None]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            return r.status, json.loads(r.read()), r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers.get("Retry-After")


def _batches_at_relay(data: Path) -> int:
    return sum(1 for r in admin.audit_log(data, limit=10_000) if r["action"] == "batch")


def test_relay_disk_full_is_told_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    team = Team(tmp_path)
    team.thread.config.min_free_mb = 1
    with team:
        sup, mem = team.pair()
        assert _healthz(team.url)[0] == 200
        report = tmp_path / "report.bin"
        report.write_bytes(os.urandom(3_000_000))  # incompressible: the relay must grow its files
        with mem.open() as rep:
            rep.add_task("Quarterly report", description="see the attached file")
            rep.add_doc(report, name="report.bin")
        before = _batches_at_relay(team.data)

        filler = _fill(small_disk)
        env = {"HBW_SYNC_HOME": str(mem.home), "HBW_PASSPHRASE": mem.passphrase}
        res = CliRunner().invoke(client_cli, ["sync"], env=env)
        assert res.exit_code == 75, res.output
        assert "disk is full, so it could not finish this sync" in res.output and "nothing was lost" in res.output
        assert "OperationalError" not in res.output and "internal" not in res.output
        # nothing lost: the device still holds every change; the relay kept none of the failed ones
        with Device.open(mem.home) as dev:
            st = dev.status()
        assert st["outbox"]["changes"] >= 2, st
        assert not st["last_sync"]["ok"] and "disk is full" in st["last_sync"]["detail"]
        assert _batches_at_relay(team.data) == before

        # the scheduler's loop waits as long as the relay asks instead of resending megabytes every second
        lines: list[str] = []
        stop = threading.Event()

        def log(line: str) -> None:
            lines.append(line)
            if "sync interrupted" in line:
                stop.set()  # one round is enough to see what it would wait

        assert watch(mem.home, mem.passphrase, log=log, stop=stop, install_signals=False) == 0
        [told] = [ln for ln in lines if "sync interrupted" in ln]
        assert "will retry in 600 s" in told and "disk is full" in told, lines
        assert _batches_at_relay(team.data) == before

        status, body, retry = _healthz(team.url)
        assert status == 503 and body["ok"] is False and body["code"] == "store.disk_full"
        assert "full" in body["reason"] and retry is not None and int(retry) > 0

        # office IT's command on the same disk: words and exit 74, never a class name
        res = CliRunner().invoke(relay_cli, ["backup", "--data", str(team.data), str(small_disk / "b.db")])
        assert res.exit_code == 74, res.output
        assert "is full; no backup was written" in res.output and "free space on the disk that holds" in res.output
        assert "Error" not in res.output
        assert not (small_disk / "b.db").exists()

        # space again: the same sync goes through, and the supervisor gets all of it
        filler.unlink()
        res = CliRunner().invoke(client_cli, ["sync"], env=env)
        assert res.exit_code == 0, res.output
        with Device.open(mem.home) as dev:
            assert dev.status()["outbox"]["changes"] == 0
        assert _batches_at_relay(team.data) > before
        assert _healthz(team.url)[0] == 200
        assert "\nhbw_storage_healthy 1\n" in urllib.request.urlopen(team.url + "/metrics", timeout=10).read().decode()
        sup.sync()
        with sup.open() as rep:
            assert [t.title for t in rep.tasks()] == ["Quarterly report"]
            docs = rep.docs()
            assert [d.name for d in docs] == ["report.bin"]
            assert not docs[0].local  # the supervisor's policy is "mine": fetched on demand
            syncing.fetch_doc(rep, docs[0].id)
            assert rep.doc_bytes(docs[0].id)[1] == report.read_bytes()


# -- file permissions -----------------------------------------------------------------------------


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # the usual default: new files 0644, directories 0755
    try:
        yield
    finally:
        os.umask(old)


def _private_tree(root: Path) -> list[str]:
    """Paths under root (itself included) looser than 0700 for dirs or 0600 for files."""
    loose = []
    for p in [root, *root.rglob("*")]:
        want = fileio.DIR_MODE if p.is_dir() else fileio.FILE_MODE
        if _mode(p) & ~want & 0o777:
            loose.append(f"{p.relative_to(root.parent)} {oct(_mode(p))}")
    return loose


def test_stores_relay_data_backups_bundles_and_replies_are_private(tmp_path: Path, open_umask: None) -> None:
    with Team(tmp_path) as team:
        sup, mem = team.pair()
        with mem.open() as rep:
            rep.add_task("Field visit")
        mem.sync()
        bundle = tmp_path / "out" / "chidi.hbw"
        bundle.parent.mkdir()
        client_bundles.export_bundle(mem.home, bundle)
        r = admin.ingest_bundle(team.data, bundle, tmp_path / "replies")
        backup = tmp_path / "backups" / "relay-copy.db"
        backup.parent.mkdir()
        admin.backup(team.data, backup)
        restored = tmp_path / "restored"
        admin.restore(backup, restored, team.data / "relay.key")

        for home in (sup.home, mem.home):
            with Device.open(home):  # -wal and -shm exist while a connection is open
                assert (home / "store.db-wal").exists()
                assert _private_tree(home) == []
        assert (team.data / "relay.db-wal").exists() and (team.data / "relay.db-shm").exists()
        assert _private_tree(team.data) == []
        assert _mode(bundle) == 0o600
        assert _mode(Path(r["reply"])) == 0o600 and _mode(Path(r["reply"]).parent) == 0o700
        assert _mode(backup) == 0o600
        assert _private_tree(restored) == []
        assert not list(tmp_path.rglob("*.part"))


def test_an_existing_world_readable_database_is_tightened_on_open(tmp_path: Path, open_umask: None) -> None:
    admin.init(tmp_path / "r", "Registry")
    path = tmp_path / "r" / db.DB_NAME
    os.chmod(path, 0o644)  # as an older version left it
    os.chmod(path.parent, 0o755)
    admin.members(tmp_path / "r")
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_write_private_is_atomic_and_private(tmp_path: Path, open_umask: None) -> None:
    p = tmp_path / "x.hbw"
    fileio.write_private(p, b"one")
    assert p.read_bytes() == b"one" and _mode(p) == 0o600
    os.chmod(p, 0o644)
    fileio.write_private(p, b"two")
    assert p.read_bytes() == b"two" and _mode(p) == 0o600
    d = fileio.private_dir(tmp_path / "a" / "b")
    assert _mode(d) == 0o700


def test_a_reply_bundle_that_cannot_be_written_is_told_and_written_again(tmp_path: Path, small_fs) -> None:
    """The office ingests Chidi's bundle, but the reply's disk is full: applied, told, and the same bundle again
    writes the same reply once there is space."""
    replies = small_fs(tmp_path / "replies")
    with Team(tmp_path) as team:
        sup, mem = team.pair()
        with mem.open() as rep:
            rep.add_task("Inspection, ward 4")
        bundle = tmp_path / "chidi.hbw"
        client_bundles.export_bundle(mem.home, bundle)
        filler = _fill(replies)
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(bundle),
                                             "--reply-dir", str(replies)])
        assert res.exit_code == 74, res.output
        assert f"the disk that holds {replies} is full" in res.output
        assert "the bundle was applied and nothing is lost, but its reply was not written" in res.output
        assert "ingest the same bundle again" in res.output and "Error" not in res.output
        assert not list(replies.glob("hbw-reply-*"))
        sup.sync()
        with sup.open() as rep:
            assert [t.title for t in rep.tasks()] == ["Inspection, ward 4"]  # it was applied

        filler.unlink()
        res = CliRunner().invoke(relay_cli, ["bundle", "ingest", "--data", str(team.data), str(bundle),
                                             "--reply-dir", str(replies), "--json"])
        assert res.exit_code == 0, res.output
        reply = Path(json.loads(res.stdout)["reply"])
        assert _mode(reply) == 0o600
        out = client_bundles.import_bundle(mem.home, reply, mem.passphrase)
        assert out["acks"] == 1
        with Device.open(mem.home) as dev:
            assert dev.status()["outbox"]["changes"] == 0


def test_a_full_disk_on_the_laptop_is_told_and_loses_nothing(tmp_path: Path, small_fs) -> None:
    """Chidi's own disk fills up: adding a document and receiving the team's changes say so (exit 74), keep
    everything already there, and work once space is freed."""
    small_fs(tmp_path / "dev-chidi")  # where Team.join puts chidi's store
    big = tmp_path / "scan.pdf"
    big.write_bytes(os.urandom(3_000_000))
    with Team(tmp_path) as team:
        sup, mem = team.pair()
        with mem.open() as rep:
            rep.add_task("Ward 4 inspection")
            rep.set_doc_policy("all")  # downloads every document, as the office desk machine does (§18e)
        mem.sync()
        with sup.open() as rep:
            rep.add_doc(big, name="signed-form.pdf")
        sup.sync()

        filler = _fill(mem.home)
        env = {"HBW_SYNC_HOME": str(mem.home), "HBW_PASSPHRASE": mem.passphrase}
        for args in (["sync"], ["doc", "add", str(big)]):
            res = CliRunner().invoke(client_cli, args, env=env)
            assert res.exit_code == 74, (args, res.output)
            assert "this computer's disk is full; nothing was changed" in res.output, res.output
            assert "free space on this computer" in res.output
            assert "OperationalError" not in res.output and "internal" not in res.output

        filler.unlink()
        res = CliRunner().invoke(client_cli, ["sync"], env=env)
        assert res.exit_code == 0, res.output
        with mem.open() as rep:
            assert [t.title for t in rep.tasks()] == ["Ward 4 inspection"]
            [doc] = rep.docs()
            assert doc.name == "signed-form.pdf" and rep.doc_bytes(doc.id)[1] == big.read_bytes()
        res = CliRunner().invoke(client_cli, ["doc", "add", str(big)], env=env)
        assert res.exit_code == 0, res.output


def test_a_relay_that_cannot_start_on_a_full_disk_says_so(small_disk: Path) -> None:
    """After a restart on a full disk SQLite cannot even make its -shm file: start and admin commands say 'full'."""
    admin.init(small_disk, "Registry", "http://office:8765")
    filler = _fill(small_disk)
    with pytest.raises(StorageError) as exc:
        RelayThread(RelayConfig(data=small_disk, port=0, access_log=False)).start()
    assert exc.value.code == "store.disk_full" and exit_code_for(exc.value) == 74
    res = CliRunner().invoke(relay_cli, ["devices", "--data", str(small_disk)])
    assert res.exit_code == 74 and "the relay's disk is full" in res.output, res.output
    filler.unlink()
    res = CliRunner().invoke(relay_cli, ["devices", "--data", str(small_disk)])
    assert res.exit_code == 0 and "No devices enrolled." in res.output, res.output


def test_healthz_says_unhealthy_below_the_free_space_floor(tmp_path: Path) -> None:
    """Runs on any machine: a floor higher than any disk makes /healthz 503 with the reason; syncs still work."""
    team = Team(tmp_path)
    team.thread.config.min_free_mb = 10**12
    with team:
        status, body, retry = _healthz(team.url)
        assert status == 503 and body["ok"] is False and body["code"] == "store.disk_full"
        assert "nearly full" in body["reason"] and "MB free" in body["reason"] and int(retry) == 600
        assert body["free_bytes"] > 0 and body["team"] == "District Finance"
        metrics = urllib.request.urlopen(team.url + "/metrics", timeout=10).read().decode()
        assert "\nhbw_storage_healthy 0\n" in metrics and "\nhbw_data_free_bytes " in metrics
        sup, mem = team.pair()  # a floor warns IT; it does not refuse work the disk can still take
        assert mem.sync().ok
    res = CliRunner().invoke(relay_cli, ["serve", "--help"])
    assert "--min-free-mb" in res.output


def test_a_restore_onto_a_full_disk_leaves_nothing_half_done(tmp_path: Path, small_fs) -> None:
    with Team(tmp_path) as team:
        team.pair()
    backup = tmp_path / "relay-backup.db"
    admin.backup(team.data, backup)
    target = small_fs(tmp_path / "new-disk") / "hbw"
    filler = _fill(target.parent)
    res = CliRunner().invoke(relay_cli, ["restore", str(backup), "--data", str(target),
                                         "--key", str(team.data / "relay.key")])
    assert res.exit_code == 74, res.output
    assert f"the disk that holds {target} is full; nothing was restored" in res.output, res.output
    assert not (target / "relay.db").exists() and not (target / "relay.key").exists()
    filler.unlink()
    res = CliRunner().invoke(relay_cli, ["restore", str(backup), "--data", str(target),
                                         "--key", str(team.data / "relay.key")])
    assert res.exit_code == 0, res.output
    assert [m["member"] for m in admin.members(target)] == ["chidi", "dana"]
    assert _private_tree(target) == []
