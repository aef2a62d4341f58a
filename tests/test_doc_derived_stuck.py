"""Pending for ever? A derived version (PROTOCOL.md §18e) whose base the relay lost (garbage collection).

Chidi's device keeps no documents; Dana's edit arrives pending. Then the relay loses the base's
chunks. Nothing on Chidi's device can work the version out any more, and nothing will until
someone saves the document again. What a person sees, in words (English and French), not silence:

* ``doc get`` fails with ``usage.doc_base_missing`` and says why and what to do;
* a sync with policy ``all`` does not claim each time that "the next sync fetches it": it leaves
  one notice, which ``status`` shows (in the language of the moment), once;
* the next version saved in full (every 8th save at the latest) makes the document readable again.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from relay_helpers import Team, save_version, shared_doc
from relay_helpers import member_cli as cli
from test_doc_derived import ROWS, _version, sheet_zip
from hbw_sync import i18n, messages
from hbw_sync.client import docdelta
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.documents import CHAIN_FULL_EVERY


def test_a_version_whose_base_the_relay_lost_is_said_plainly(team: Team, tmp_path: Path) -> None:
    v1, v2 = sheet_zip(ROWS), sheet_zip(ROWS, 200)
    dana, chidi, doc, f = shared_doc(team, tmp_path, v1, policy="none")
    with dana.open() as rep:
        base_ids = rep.versions.version_manifest(*_version(rep, doc.id, 1)[:2]).ids
    save_version(dana, doc, f, v2)
    chidi.sync()
    for cid in base_ids:  # lost at the relay (as a garbage collection that went wrong would)
        team.sql("DELETE FROM chunks WHERE cid = ?", (cid,))

    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"), "--json")
    assert code == 2 and "usage.doc_base_missing" in out, out
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "got.xlsx"))
    assert code == 2 and "not on this device and not at the relay" in out and "saved in full" in out, out
    assert not (tmp_path / "got.xlsx").exists()

    cli(chidi, "doc", "policy", "all")
    for _ in range(2):
        r = chidi.sync()
        assert r.ok and not any("next sync fetches" in n for n in r.notes), r.notes
    with chidi.open() as rep:
        assert rep.versions.is_pending(*_version(rep, doc.id)[:2])  # it could still come: not refused
        rows = rep.store.execute("SELECT code FROM notices WHERE code = 'notice.doc_base_missing'").fetchall()
        assert len(rows) == 1, "said once, not at every sync"
    env = {"HBW_SYNC_HOME": str(chidi.home), "HBW_PASSPHRASE": chidi.passphrase}
    fr = CliRunner().invoke(client_cli, ["status", "--keep-unseen"], env={**env, "HBW_LANG": "fr"})
    i18n.set_language("fr")
    try:
        french = i18n._(messages.MESSAGES["notice.doc_base_missing"])
    finally:
        i18n.set_language("en")
    assert french != messages.MESSAGES["notice.doc_base_missing"]
    assert "n'est plus au relais" in fr.output and doc.id[:6] in fr.output, fr.output
    en = CliRunner().invoke(client_cli, ["status"], env={**env, "HBW_LANG": "en"})
    assert "cannot be worked out on this device" in en.output and "plan.xlsx" in en.output, en.output

    # As the words say: Dana goes on saving; the next version saved in full (its chunks uploaded, no
    # delta) comes at the 8th save at the latest, and the document is readable from it.
    edits = [200]
    for _ in range(CHAIN_FULL_EVERY):
        edits.append(1000 + len(edits))
        latest = sheet_zip(ROWS, *edits)
        f.write_bytes(latest)
        with dana.open() as rep:
            rep.update_doc(doc.id, f)
            full = not docdelta.is_delta_version(_version(rep, doc.id)[2])
        if full:
            break
    assert full, "no version saved in full within 8 saves"
    dana.sync()
    chidi.sync()
    code, out = cli(chidi, "doc", "get", doc.id, "-o", str(tmp_path / "latest.xlsx"))
    assert code == 0 and (tmp_path / "latest.xlsx").read_bytes() == latest, out
