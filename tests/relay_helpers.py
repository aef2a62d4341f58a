"""Shared set-up for tests that need a real relay on a loopback port and enrolled devices.

Everything is real: the relay runs in its own thread (``RelayThread``) with its
SQLite data dir in tmp_path; devices are real stores that join with real
invites. Only the KDF cost is lowered (the store records it), to keep the suite fast.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from click.testing import CliRunner

from hbw_sync.client import Device, Replica
from hbw_sync.client import sync as syncing
from hbw_sync.client import team as teams
from hbw_sync.client.vault import KdfParams
from hbw_sync.server import admin, storage
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.runner import RelayThread

FAST_KDF = KdfParams(n=2**10)
#: Set by the ``backend`` fixture (conftest.py): makes a fresh PostgreSQL schema's URL for each new relay;
#: None: relays keep their data in SQLite in their data directory.
NEW_DATABASE: Callable[[], str] | None = None


def init_relay(data: Path, name: str, url: str | None = None) -> dict:
    """``admin.init`` on the backend under test (SQLite, or a fresh PostgreSQL schema)."""
    return admin.init(data, name, url, database=NEW_DATABASE() if NEW_DATABASE else None)


def member_cli(m: "Member", *args: str) -> tuple[int, str]:
    """The real ``hbw-sync`` CLI run as member ``m`` (their home and passphrase): (exit code, output)."""
    from hbw_sync.client.cli import cli as client_cli

    env = {"HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": m.passphrase}
    res = CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)
    return res.exit_code, res.output


def incompressible(size: int, seed: int = 1) -> bytes:
    """Bytes no compressor shrinks, as a scan or a PDF's images are; the same for the same seed."""
    return random.Random(seed).randbytes(size)


# A passphrase strong enough for the rule in client/passphrase.py (zxcvbn score 4); member m uses f"{m} {STRONG}".
STRONG = "orchid lantern 52 ferry"


@dataclass
class Member:
    name: str
    home: Path
    passphrase: str
    role: str = "member"

    def replica(self) -> Replica:
        """An unlocked replica; close it after use (or use ``with member.open() as rep``)."""
        return Device.open(self.home).unlock(self.passphrase)

    def open(self) -> Replica:
        return self.replica()

    def sync(self, url: str | None = None, unlocked: bool = True, **kw) -> syncing.SyncReport:
        return syncing.sync(self.home, self.passphrase if unlocked else None, **kw)


class Team:
    """A relay plus helpers to enroll members; use as a context manager."""

    def __init__(self, tmp: Path, name: str = "District Finance", **relay: object):
        """``relay``: RelayConfig fields to change (e.g. ``chunk_quota``)."""
        self.tmp = tmp
        self.data = tmp / "relay"
        self.relay_options = relay
        init_relay(self.data, name)
        self.thread = RelayThread(RelayConfig(data=self.data, port=0, access_log=False, **relay))  # type: ignore[arg-type]
        self.url = ""
        self.members: dict[str, Member] = {}

    @classmethod
    def existing(cls, tmp: Path, data: Path) -> "Team":
        """A Team around a relay data directory that already exists (an upgraded one, say): no init."""
        team = cls.__new__(cls)
        team.tmp, team.data, team.url, team.members = tmp, data, "", {}
        team.thread = RelayThread(RelayConfig(data=data, port=0, access_log=False))
        return team

    def __enter__(self) -> "Team":
        self.url = self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()

    def sql(self, query: str, params: tuple = ()) -> list[Any]:
        """Rows of ``query`` (portable SQL, see ``storage/base.py``) run in one transaction of the relay's
        store, whichever backend holds it: tests read and age relay state without tying themselves to SQLite."""
        store = storage.open_store(self.data)
        try:
            return store.transact(lambda t: (lambda c: c.fetchall() if c.description else [])(t.execute(query, params)))
        finally:
            store.close()

    def chunk_ids(self) -> list[bytes]:
        """The document chunk ids the relay holds (its ``chunks`` index, either backend), sorted.

        On SQLite the bytes are files under ``DATA/chunks``: each held id must have its file, and
        any other file must be one garbage collection unindexed (older than the grace period,
        removed by its next sweep): a refused upload keeps nothing."""
        import time

        from hbw_sync.server import limits

        ids = sorted(bytes(r[0]) for r in self.sql("SELECT cid FROM chunks"))
        if not storage.database_url(self.data):
            files = {bytes.fromhex(p.name): p for p in (self.data / "chunks").rglob("*") if p.is_file()}
            assert set(ids) <= set(files), "a held chunk has no file"
            young = time.time() - limits.CHUNK_GRACE_MS / 1000
            assert all(p.stat().st_mtime < young for cid, p in files.items() if cid not in ids), \
                "a file the chunk index does not name (a refused upload left bytes behind)"
        return ids

    def chunk_bytes(self) -> int:
        """Bytes of document chunks the relay holds (either backend)."""
        return int(self.sql("SELECT COALESCE(SUM(size), 0) FROM chunks")[0][0])

    def drop_chunks(self) -> None:
        """Lose every chunk the relay holds (a disk lost, or what GC does to unreferenced ones), either backend."""
        import shutil

        self.sql("DELETE FROM chunks")
        shutil.rmtree(self.data / "chunks", ignore_errors=True)

    def invite(self, name: str, role: str = "member", url: str | None = None) -> str:
        """A team invite from the first supervisor's device once there is one (the device gets the key when
        it joins); before that, office IT's invite (``it_invite``)."""
        sup = next((m for m in self.members.values() if m.role == "supervisor"), None)
        if sup is None:
            return self.it_invite(name, role, url)
        return teams.make_invite(sup.home, sup.passphrase, name, role, url=url or self.url).encode()

    def it_invite(self, name: str, role: str = "member", url: str | None = None) -> str:
        """An invite made by office IT alone (``hbw-relay invite``): the device must then be approved."""
        return admin.invite(self.data, name, role, url=url or self.url).encode()

    def join(self, name: str, role: str = "member", url: str | None = None) -> Member:
        m = Member(name, self.tmp / f"dev-{name}", f"{name} {STRONG}", role)
        syncing.join(m.home, self.invite(name, role, url), m.passphrase, kdf=FAST_KDF)
        self.members[name] = m
        return m

    def pair(self, supervisor: str = "dana", member: str = "chidi") -> tuple[Member, Member]:
        """A supervisor and a member, both synced once (so the member holds the team key)."""
        sup, mem = self.join(supervisor, "supervisor"), self.join(member)
        sup.sync()
        mem.sync()
        return sup, mem

    def restart(self) -> None:
        """Stop the relay and start it again on a new port (devices keep the old URL: callers fix it)."""
        self.thread.stop()
        self.thread = RelayThread(RelayConfig(data=self.data, port=0, access_log=False,
                                              **self.relay_options))  # type: ignore[arg-type]
        self.url = self.thread.start()


def set_relay_url(member: Member, url: str) -> None:
    with Device.open(member.home) as dev:
        with dev.store.transaction():
            dev.store.set_meta("relay_url", url)


def shared_doc(team: Team, tmp_path: Path, data: bytes, *, policy: str = "all",
               name: str = "plan.xlsx") -> tuple[Member, Member, Any, Path]:
    """A supervisor's document a member's device has heard of: dana adds ``data`` as ``name`` and syncs,
    then chidi (fetch policy ``policy``) syncs. Returns (dana, chidi, the document's view, the file)."""
    dana, chidi = team.pair("dana", "chidi")
    member_cli(chidi, "doc", "policy", policy)
    f = tmp_path / name
    f.write_bytes(data)
    with dana.open() as rep:
        doc = rep.add_doc(f)
    dana.sync()
    chidi.sync()
    return dana, chidi, doc, f


def save_version(m: Member, doc: Any, f: Path, data: bytes) -> None:
    """``data`` saved as the next version of ``doc`` on member ``m``'s device, then synced up."""
    f.write_bytes(data)
    with m.open() as rep:
        rep.update_doc(doc.id, f)
    m.sync()
