"""The equipment register (issue 17 item 2): CLI with --json/--csv, invite --asset, lost -> revoked, backup/restore."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.errors import RevokedError, UsageError
from hbw_sync.server import admin
from hbw_sync.server.cli import cli as relay_cli

from relay_helpers import FAST_KDF, STRONG, Member, Team, init_relay


# Every test here runs against each relay storage backend (SQLite, PostgreSQL): conftest.py ``backend``.
pytestmark = pytest.mark.usefixtures("backend")


def run(*args: str):
    return CliRunner().invoke(relay_cli, [str(a) for a in args], catch_exceptions=False)


def test_register_cli_json_and_csv(tmp_path) -> None:
    data = tmp_path / "relay"
    init_relay(data, "District Finance", "http://127.0.0.1:9")
    assert run("equipment", "add", "--data", data, "LT-001", "--serial", "SN-1", "--model", "ThinkPad T14").exit_code == 0
    assert run("equipment", "add", "--data", data, "LT-002").exit_code == 0
    dup = run("equipment", "add", "--data", data, "LT-001")
    assert dup.exit_code != 0 and "already in the register" in dup.output
    assert run("equipment", "lend", "--data", data, "LT-002", "bosco").exit_code == 0
    refused = run("equipment", "lend", "--data", data, "LT-002", "amina")
    assert refused.exit_code != 0 and "lent to bosco" in refused.output
    assert run("equipment", "return", "--data", data, "LT-002").exit_code == 0
    rows = json.loads(run("equipment", "list", "--data", data, "--json").stdout)
    by = {r["asset"]: r for r in rows}
    assert by["LT-001"]["state"] == "in_stock" and by["LT-001"]["serial"] == "SN-1"
    assert by["LT-002"]["holder"] == "bosco" and by["LT-002"]["returned"].endswith("Z")
    assert not any(k.endswith("_ms") for r in rows for k in r)
    table = list(csv.DictReader(io.StringIO(run("equipment", "list", "--data", data, "--csv").stdout)))
    assert [r["asset"] for r in table] == ["LT-001", "LT-002"]
    assert table[0]["model"] == "ThinkPad T14" and table[1]["returned"].endswith("Z")
    text = run("equipment", "list", "--data", data).stdout
    assert "returned by bosco" in text and "{" not in text
    # Lost needs a confirmation when not interactive; unknown tags are refused in words.
    assert run("equipment", "lost", "--data", data, "LT-001").exit_code != 0
    assert "no equipment" in run("equipment", "lost", "--data", data, "NOPE", "--yes").output
    audit = run("audit", "--data", data).stdout
    assert "lent LT-002 to bosco" in audit and "recorded LT-002 as returned by bosco" in audit and "?" not in audit


def test_lost_laptop_is_revoked_and_can_no_longer_sync(tmp_path) -> None:
    with Team(tmp_path) as team:
        dana = team.join("dana", "supervisor")
        dana.sync()
        admin.equipment_add(team.data, "LT-007", serial="SN-7", model="Latitude")
        # IT's invite tied to the asset: the device that joins is the laptop's.
        code = admin.invite(team.data, "chidi", url=team.url, asset="LT-007").encode()
        chidi = Member("chidi", tmp_path / "dev-chidi", f"chidi {STRONG}")
        syncing.join(chidi.home, code, chidi.passphrase, kdf=FAST_KDF)
        with Device.open(chidi.home) as dev:
            device_id = dev.identity.device_id.hex()
        item = next(i for i in admin.equipment_list(team.data) if i["asset"] == "LT-007")
        assert item["holder"] == "chidi" and item["device"] == device_id and item["state"] == "lent"
        res = run("equipment", "lost", "--data", team.data, "LT-007", "--yes")
        assert res.exit_code == 0 and f"device {device_id[:8]} (chidi) is revoked" in res.output.replace("Its device", "device")
        with pytest.raises(RevokedError):
            chidi.sync()
        assert next(d for d in admin.devices(team.data) if d["device"] == device_id)["revoked_ms"]
        with pytest.raises(UsageError):  # a lost asset gets no new device
            admin.invite(team.data, "chidi", url=team.url, asset="LT-007")
        assert "recorded LT-007 as lost" in run("audit", "--data", team.data).stdout


def test_register_survives_backup_and_restore(tmp_path, backend: str) -> None:
    data = tmp_path / "relay"
    init_relay(data, "District Finance", "http://127.0.0.1:9")
    admin.equipment_add(data, "LT-001", serial="SN-1")
    admin.equipment_lend(data, "LT-001", "amina")
    admin.backup(data, tmp_path / "b.db")  # either backend: one portable file
    back = tmp_path / "restored"
    admin.restore(tmp_path / "b.db", back, data / "relay.key")
    assert admin.equipment_list(back) == admin.equipment_list(data)
    assert admin.equipment_list(back)[0]["holder"] == "amina"
