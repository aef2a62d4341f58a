"""The device as a person meets it: open a store, see its status, unlock it with the passphrase.

``Device`` is the locked view (``locked.LockedDevice``: identity, status, the
passphrase check) plus unlocking, which turns it into a ``Replica`` that can read
and change content and applies what an unattended sync brought in. It sits above
the replica (it builds one), so nothing the replica is made of imports it.
"""

from __future__ import annotations

from ..errors import WrongKeyError
from . import keyflow
from .locked import Identity, LockedDevice, forget_store_keys, now_ms  # noqa: F401 - re-exported
from .replica import Replica

__all__ = ["Device", "Identity", "forget_store_keys", "now_ms"]


class Device(LockedDevice):
    """An open store without the passphrase, which the passphrase unlocks."""

    def try_unlock(self, passphrase: str | None) -> Replica | None:
        """``unlock``, but a missing or wrong passphrase is None, not an error.

        For commands that need no passphrase but use one when given (sync, watch):
        a stale ``HBW_PASSPHRASE`` must not stop them; the caller says so instead.
        """
        if passphrase is None:
            return None
        try:
            store_key = self._store_key(passphrase)
        except WrongKeyError:
            return None  # only the passphrase check: a wrong team key later is still an error
        return self._open(store_key)

    def unlock(self, passphrase: str) -> Replica:
        """Open content with the passphrase, and apply what an unattended sync brought in.

        Raises:
            WrongKeyError ``access.wrong_key``: the passphrase does not open this store.
        """
        return self._open(self._store_key(passphrase))

    def _open(self, store_key: bytes) -> Replica:
        rep = Replica(self.store, store_key)
        if self.store.execute("SELECT 1 FROM inbox LIMIT 1").fetchone() or any(
            self.store.meta(k) for k in ("grants_in", "snapshot_in", "rebuild")
        ) or self.store.meta("key_epoch") is None:
            rep.apply_incoming()  # what an unattended sync brought in, now that content can be opened
        keyflow.rotate_if_wanted(rep.ledger)
        return rep
