"""The store key is derived once per process (issue 11 item 7): watch and the tray unlock for every
sync, and scrypt costs ~95 ms each time. A wrong or changed passphrase is never served from memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbw_sync.client import Device
from hbw_sync.client import passphrase as pp
from hbw_sync.client import vault
from hbw_sync.client.vault import KdfParams

OLD = "amina orchid lantern 52 ferry"
NEW = "copper kettle 19 harbour mist"


def test_unlocking_again_derives_no_key_and_a_changed_passphrase_is_derived_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = vault.derive_kek

    def counting(*a, **kw):  # the real scrypt, counted
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(vault, "derive_kek", counting)
    home = tmp_path / "h"
    Device.init(home, "amina", OLD, kdf=KdfParams(n=2**10)).close()
    for _ in range(3):
        with Device.open(home) as dev:
            dev.unlock(OLD).close()
    assert len(calls) == 1 + 1  # init wraps once; the first unlock derives; the next two reuse it
    with Device.open(home) as dev:
        assert dev.try_unlock("not the passphrase") is None
        assert dev.try_unlock("not the passphrase") is None
        assert len(calls) == 4  # a wrong passphrase is tried every time, never remembered
        pp.change(dev, OLD, NEW)
        assert not dev.opens_with(OLD)  # the old key's entry no longer matches the re-wrapped key
        assert dev.opens_with(NEW)
