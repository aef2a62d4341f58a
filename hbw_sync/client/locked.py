"""The device as seen without the passphrase: identity, status, and the passphrase check.

Everything here works for a scheduler at 3 a.m.: it reads routing columns,
counts and already sealed batches, never content. ``LockedDevice`` is what both
a ``Device`` (device.py: it can unlock) and an unlocked ``Replica`` are: the
replica builds on this module, and this module knows neither of them, so the
imports go one way (STYLE.md §3).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import clock, crypto, enroll, features, hlc
from ..errors import ConfigError, UsageError, WrongKeyError
from ..ops import is_member_name
from . import docchunks, keyflow, notices, received, vault
from .passphrase import require_strong
from .store import Store
from ..i18n import _


#: store keys already derived in this process (``Device._store_key``)
_STORE_KEYS: dict[bytes, bytes] = {}


def forget_store_keys() -> None:
    """Drop every store key derived in this process (the app calls it when it locks).

    Why: the cache lets ``watch`` skip scrypt on every sync, but a locked app must not keep, in
    memory, a key that reads the whole store: after this, opening the store needs the passphrase.
    """
    _STORE_KEYS.clear()


now_ms = clock.now_ms  # the one wall clock (hbw_sync/clock.py); callers import it from device.py too


@dataclass(frozen=True)
class Identity:
    member: str
    device_id: bytes
    team_id: bytes | None
    team_name: str | None
    relay_url: str | None
    role: str | None


def _wrong_passphrase(last: tuple[Any, ...] | None) -> bool:
    if last is None or not last[1] or not last[3]:
        return False
    try:
        detail = json.loads(last[3])
    except ValueError:
        return False
    return isinstance(detail, dict) and detail.get("wrong_passphrase") is True


_D = TypeVar("_D", bound="LockedDevice")


def _team_devices(s: Store, me: str) -> dict[str, Any]:
    """The roster as the last sync left it, with what each device reads (``features.py``), and how many
    active devices run an older hbw-sync (they lack a bit this one reads): documents they receive go in
    the older, larger form, and the person may wonder why a small edit still costs a full upload."""
    roster = s.meta("roster_keys") or {}
    reads = s.meta("roster_reads") or {}
    devices = [{"device": d, "member": e[0], "role": e[4] if len(e) > 4 else "member", "revoked": len(e) > 3 and e[3] is not None,
                "reads": int(reads.get(d, 0)), "this_device": d == me}
               for d, e in sorted(roster.items(), key=lambda kv: (str(kv[1][0]), kv[0]))]
    return {"devices": devices, "older_devices": len(features.lacking(roster, reads, me, features.READS))}


class LockedDevice:
    """An open store without the passphrase."""

    def __init__(self, store: Store):
        self.store = store

    # -- life cycle --------------------------------------------------------------------------

    @classmethod
    def init(
        cls: type[_D],
        home: Path | None,
        name: str,
        passphrase: str,
        relay_url: str | None = None,
        kdf: vault.KdfParams = vault.KdfParams(),
    ) -> _D:
        """Create the device identity and an empty store protected by ``passphrase``.

        Raises:
            UsageError ``usage``: a bad member name; ``usage.weak_passphrase``: a passphrase
            below ``passphrase.MIN_SCORE`` (see ``client/passphrase.py``). Nothing is created.
        """
        if not is_member_name(name):
            raise UsageError(
                _("{name!r} is not a valid member name").format(name=name), hint=_("use 1-32 lowercase letters, digits, '.', '_' or '-'")
            )
        require_strong(passphrase, [name])
        store = Store.create(home)
        store_key = os.urandom(32)
        sealer = vault.Sealer(store_key)
        author = crypto.DeviceKey.generate()
        transport = crypto.DeviceKey.generate()
        x_private = enroll.new_x25519()
        with store.transaction():
            store.set_meta("member", name)
            store.set_meta("kdf", kdf.to_list())
            store.set_meta("store_key", vault.wrap_store_key(passphrase, store_key, kdf))
            store.set_meta("author_key", sealer.seal(author.private, b"meta:author_key"))
            store.set_meta("author_public", author.public)
            store.set_meta("device_id", author.device_id)
            store.set_meta("transport_key", transport.private)
            store.set_meta("x25519_key", sealer.seal(x_private, b"meta:x25519_key"))
            store.set_meta("x25519_public", enroll.x25519_public(x_private))
            store.set_meta("relay_url", relay_url)
            store.set_meta("hlc", 0)
            store.set_meta("next_seq", 1)
            store.set_meta("pull_cursor", 0)
            store.set_meta("created_ms", now_ms())
        return cls(store)

    @classmethod
    def open(cls: type[_D], home: Path | None = None) -> _D:
        """The store in ``home`` (None: the platform's user data folder), without the passphrase.

        Raises:
            ConfigError: no store there yet (``hbw-sync init`` or ``join`` makes one).
            StoreError: a store of another schema version, or one the disk cannot open (``store.*``).
        """
        return cls(Store.open(home))

    def close(self) -> None:
        self.store.close()

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what anyone at the keyboard may see ----------------------------------------------------

    @property
    def identity(self) -> Identity:
        m = self.store.meta
        return Identity(
            member=m("member"),
            device_id=m("device_id"),
            team_id=m("team_id"),
            team_name=m("team_name"),
            relay_url=m("relay_url"),
            role=m("role"),
        )

    def require_team(self) -> bytes:
        team = self.store.meta("team_id")
        if team is None:
            raise ConfigError(
                _("this device is not in a team yet"), code="config.no_team",
            )
        return bytes(team)

    def status(self) -> dict[str, Any]:
        """What waits to be sent, what came in, the last sync, and conflicts; no passphrase needed.

        Raises nothing but ``StoreError`` from a failing disk.
        """
        s = self.store
        # The open batch's pieces count as the one batch they become when it closes (ChangeLog._queue).
        out = s.execute("SELECT COUNT(DISTINCT CASE WHEN state = 'open' THEN -1 ELSE seq END),"
                        " COALESCE(SUM(n_ops), 0), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        inbox = s.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        conflicts = s.execute("SELECT COUNT(*) FROM conflicts WHERE seen = 0").fetchone()[0]
        # Stored as (code, params) and worded now, in the language of this moment (notices.py).
        said = [notices.shown(r[1], r[2], r[0])
                for r in s.execute("SELECT text, code, params FROM notices WHERE seen = 0 ORDER BY id")]
        rejected = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'rejected'").fetchone()[0]
        unsealed = s.execute("SELECT COUNT(*) FROM oplog WHERE device = ? AND batch_seq IS NULL",
                             (s.meta("device_id"),)).fetchone()[0]
        last = s.execute("SELECT finished_ms, ok, how, detail, code, params FROM sync_log ORDER BY id DESC LIMIT 1"
                         ).fetchone()
        last_ok = s.execute("SELECT MAX(finished_ms) FROM sync_log WHERE ok = 1").fetchone()[0]
        ident = self.identity
        return {
            "member": ident.member,
            "device": ident.device_id.hex(),
            "team": ident.team_name,
            "relay": ident.relay_url,
            "outbox": {"batches": out[0], "changes": out[1], "bytes": out[2],
                       # sealed document chunks not yet confirmed at the relay (a sync or a bundle's reply does)
                       "document_bytes": docchunks.LocalChunks(s).unsent_bytes()},
            "inbox_batches": inbox,
            "received": received.locked_preview(s) if inbox else None,
            "conflicts": conflicts,
            "conflict_details": [notices.shown(r[1], r[2], r[0]) for r in s.execute(
                "SELECT detail, code, params FROM conflicts WHERE seen = 0 ORDER BY id")],
            "notices": said,
            "rejected_batches": rejected,
            "waiting_for_team_key": unsealed,
            "key_flow": keyflow.waiting(s),
            "last_sync": None
            if last is None
            else {"at_ms": last[0], "ok": bool(last[1]), "how": last[2], "detail": notices.shown(last[4], last[5], last[3])},
            "last_successful_sync_ms": last_ok,
            # A scheduler's HBW_PASSPHRASE that no longer opens the store: its syncs run locked, and
            # nobody reads cron's output, so status says it.
            "last_sync_wrong_passphrase": _wrong_passphrase(last),
            "hlc_ms": hlc.wall_ms(s.meta("hlc", 0)),
            **_team_devices(s, ident.device_id.hex()),
        }

    def mark_seen(self) -> None:
        """Notices and conflicts were shown to the person: do not repeat them in the next status."""
        with self.store.transaction():
            self.store.execute("UPDATE notices SET seen = 1 WHERE seen = 0")
            self.store.execute("UPDATE conflicts SET seen = 1 WHERE seen = 0")

    def transport_key(self) -> crypto.DeviceKey:
        return crypto.DeviceKey(self.store.meta("transport_key"))

    # -- unlocking -----------------------------------------------------------------------------

    def _store_key(self, passphrase: str) -> bytes:
        """The store key, from scrypt once per process and store (``watch`` unlocks every sync: ~95 ms each).

        Cached by the wrapped key, its cost and a hash of the passphrase, so a changed passphrase
        or a re-wrapped key is derived afresh and a wrong passphrase is never remembered. The key
        stays in this process's memory, where an unlocked replica holds it anyway.
        """
        wrapped, kdf = self.store.meta("store_key"), self.store.meta("kdf")
        ident = hashlib.sha256(repr([wrapped, kdf]).encode() + b"\0" + passphrase.encode("utf-8")).digest()
        key = _STORE_KEYS.get(ident)
        if key is None:
            key = vault.unwrap_store_key(passphrase, wrapped, vault.KdfParams.from_list(kdf))
            _STORE_KEYS[ident] = key
        return key

    def opens_with(self, passphrase: str) -> bool:
        """Whether ``passphrase`` opens this store; changes nothing (applies nothing received)."""
        try:
            self._store_key(passphrase)
        except WrongKeyError:
            return False
        return True
