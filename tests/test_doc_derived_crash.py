"""A device killed while it works out a derived manifest (PROTOCOL.md §18e), then opened again.

The real CLI runs in its own process (``doc get`` on a device without the base, ``sync`` on one
holding it). So that the kill lands inside the derivation, not before or after it, the process
is started through a two-line hook that, once the derivation has kept two chunks, leaves a mark
and sleeps; the test then sends SIGKILL. Reopened, the store must be consistent: the version
still pending (its manifest and the chunks cut so far all gone with the transaction), never
refused, no problem logged; and the next ``doc get`` (or ``sync``) makes it local byte-exact.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay_helpers import Team, save_version, shared_doc
from relay_helpers import member_cli as cli
from hbw_sync.client.store import DB_NAME
from test_doc_derived import ROWS, _version, sheet_zip

HOOK = """
import os, sys, time
from hbw_sync import derived
_init = derived.Deriver.__init__
def init(self, keys, want, sha256, max_size, keep):
    n = [0]
    def kept(cid, plain):
        keep(cid, plain)
        n[0] += 1
        if n[0] == 2:
            open(os.environ["DERIVING_MARK"], "w").close()
            time.sleep(600)
    _init(self, keys, want, sha256, max_size, kept)
derived.Deriver.__init__ = init
from hbw_sync.client.cli import cli
cli.main(sys.argv[1:], prog_name="hbw-sync")
"""


def killed_mid_derivation(m, tmp_path: Path, *args: str) -> None:
    """Run ``hbw-sync args`` as ``m`` and SIGKILL it once the derivation has kept two chunks."""
    mark = tmp_path / "deriving"
    env = {**os.environ, "HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": m.passphrase, "DERIVING_MARK": str(mark)}
    proc = subprocess.Popen([sys.executable, "-c", HOOK, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # a bound on a hung test, not a timed assertion
        while not mark.exists():
            if proc.poll() is not None:
                raise AssertionError(f"ended before deriving: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "never started deriving"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("how", ["doc get", "sync"])
def test_a_device_killed_while_deriving_is_consistent_and_the_next_try_succeeds(
        team: Team, tmp_path: Path, how: str) -> None:
    v1, v2 = sheet_zip(ROWS), sheet_zip(ROWS, 200)
    dana, chidi, doc, f = shared_doc(team, tmp_path, v1, policy="none" if how == "doc get" else "all")
    save_version(dana, doc, f, v2)
    if how == "doc get":
        chidi.sync()  # the version arrives pending: no base here
        killed_mid_derivation(chidi, tmp_path, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"))
        assert not (tmp_path / "got.xlsx").exists()
    else:
        with chidi.open() as rep:
            chunks_before = rep.store.execute("SELECT count(*) FROM doc_chunks").fetchone()[0]
        killed_mid_derivation(chidi, tmp_path, "sync")
        # As the kill left it, before hbw-sync opens it again (that applies what waits in the inbox):
        # the batch's transaction undone, the chunks the derivation cut gone with it.
        with contextlib.closing(sqlite3.connect(chidi.home / DB_NAME)) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert raw.execute("SELECT count(*) FROM doc_chunks").fetchone()[0] == chunks_before
            assert raw.execute("SELECT count(*) FROM oplog WHERE entity = ?",
                               (bytes.fromhex(doc.id),)).fetchone()[0] == 1, "version 2 not logged"
    with chidi.open() as rep:
        assert rep.store.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert rep.doc_bytes(doc.id, version=1)[1] == v1
        problems = [r[0] for r in rep.store.execute("SELECT detail FROM sync_log WHERE how = 'apply'")]
        assert not problems, problems
        held = {r[0] for r in rep.store.execute("SELECT cid FROM doc_chunks")}
        base_ids = set(rep.versions.version_manifest(*_version(rep, doc.id, 1)[:2]).ids)
        if how == "doc get":
            did, digest, _op = _version(rep, doc.id, 2)
            assert held <= base_ids, "no chunk the killed derivation cut was kept"
            assert rep.versions.is_pending(did, digest), "still pending: never refused, never half-kept"
            assert rep.versions.version_manifest(did, digest) is None
        else:
            # The received batch waited in the inbox (kept before it was applied); opening the store
            # applied it again, whole: the version resolved, every chunk of its manifest kept.
            did, digest, _op = _version(rep, doc.id, 2)
            assert not rep.versions.is_pending(did, digest)
            m2 = rep.versions.version_manifest(did, digest)
            assert m2 is not None and held == base_ids | set(m2.ids)
            assert rep.doc_bytes(doc.id)[1] == v2
    if how == "sync":
        assert chidi.sync().ok
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"))
    assert code == 0, out
    assert (tmp_path / "got.xlsx").read_bytes() == v2
    with chidi.open() as rep:
        did, digest, _op = _version(rep, doc.id, 2)
        assert not rep.versions.is_pending(did, digest)
        assert rep.doc_bytes(doc.id)[1] == v2
