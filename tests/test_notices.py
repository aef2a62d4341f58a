"""Notices, problems and conflicts are kept as (code, params) and worded when shown (issue 14).

A conflict settled while the person's language was English reads in French once it is French; a
store from schema 1 (sentences only) is migrated and its old sentences are shown as they were.
Real relay, real stores, the real CLI.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import i18n
from hbw_sync.client import Device, notices
from hbw_sync.client.cli import cli
from hbw_sync.client.store import DB_NAME, NOTICE_TABLES, SCHEMA_VERSION, Store
from hbw_sync.client.vault import KdfParams

from relay_helpers import Member, Team


@pytest.fixture(autouse=True)
def _english_after():
    i18n.set_language("en")
    yield
    i18n.set_language("en")


def run(m: Member, lang: str, *args: str) -> str:
    res = CliRunner().invoke(cli, ["--home", str(m.home), *args],
                             env={"HBW_LANG": lang, "HBW_PASSPHRASE": m.passphrase})
    assert res.exit_code == 0, res.output
    return res.output


def test_a_conflict_settled_in_english_reads_in_french(team: Team) -> None:
    """Wednesday: Dana (supervisor) and Chidi, both offline, reassign the same task; Chidi's device settles it."""
    dana, chidi = team.join("dana", "supervisor"), team.join("chidi")
    amina = team.join("amina")
    for m in (dana, chidi, amina, dana, chidi, amina):
        m.sync()
    with dana.open() as rep:
        tid = rep.add_task("Reconcile invoices", assignee="amina").id
    for m in (dana, chidi):
        m.sync()
    with dana.open() as rep:
        rep.assign(tid, "chidi")
    with chidi.open() as rep:
        rep.assign(tid, "amina")
    chidi.sync()
    dana.sync()
    chidi.sync()  # English is the language of this moment: the conflict is recorded now

    with sqlite3.connect(chidi.home / DB_NAME) as db:
        detail, code, params = db.execute("SELECT detail, code, params FROM conflicts").fetchone()
    assert "a supervisor's change beats a member's" in detail  # English kept for logs
    assert code == "conflict.field" and json.loads(params)["case"] == "supervisor"

    english = run(chidi, "en", "task", "show", tid[:6])
    assert "a supervisor's change beats a member's" in english
    french = run(chidi, "fr", "task", "show", tid[:6])
    assert "la modification d'un superviseur l'emporte sur celle d'un membre" in french
    assert "beats" not in french
    status = run(chidi, "fr", "status", "--keep-unseen")
    assert "a cédé devant" in status and "lost to" not in status
    # the library's view follows the language of the moment too (the app's task page reads it)
    i18n.set_language("fr")
    with chidi.open() as rep:
        assert "l'emporte" in rep.task(tid[:6]).conflicts[0]["detail"]


def test_a_notice_reads_in_the_language_it_is_shown_in(team: Team) -> None:
    dana, amina = team.join("dana", "supervisor"), team.join("amina")
    for m in (dana, amina, dana, amina):
        m.sync()
    with dana.open() as rep:
        tid = rep.add_task("Plan the week", assignee="amina").id
    dana.sync()
    amina.sync()  # written under English
    french = run(amina, "fr", "status", "--keep-unseen")
    assert f"nouvelle tâche {tid[:6]}" in french.lower() or f"tâche {tid[:6]}" in french
    english = run(amina, "en", "status")
    assert f"task {tid[:6]} \"Plan the week\" for you, from dana" in english


def test_a_schema_1_store_is_migrated_and_its_old_sentences_are_shown_as_they_are(tmp_path: Path) -> None:
    home = tmp_path / "amina"
    Device.init(home, "amina", "orchid lantern 52 ferry", kdf=KdfParams(n=2**10)).close()
    # Make it the shape schema 1 wrote: no code/params columns, sentences only.
    with sqlite3.connect(home / DB_NAME) as db:
        for table in NOTICE_TABLES:
            db.execute(f"ALTER TABLE {table} DROP COLUMN code")
            db.execute(f"ALTER TABLE {table} DROP COLUMN params")
        db.execute("INSERT INTO notices (created_ms, text, seen) VALUES (1, 'an old notice, in English', 0)")
        db.execute("INSERT INTO sync_log (started_ms, finished_ms, ok, how, detail) VALUES (1, 2, 0, 'relay', "
                   "'une vieille erreur, en français')")
    with Store.open(home) as s:
        s.set_meta("schema", 1)
        s.conn.commit()
    with Store.open(home) as s:  # migrated on open
        assert s.meta("schema") == SCHEMA_VERSION == 2
        for table in NOTICE_TABLES:
            assert {"code", "params"} <= {r[1] for r in s.conn.execute(f"PRAGMA table_info({table})")}
    i18n.set_language("fr")
    with Device.open(home) as dev:
        st = dev.status()
    assert st["notices"] == ["an old notice, in English"]
    assert st["last_sync"]["detail"] == "une vieille erreur, en français"


def test_stored_params_are_bounded_and_a_broken_row_falls_back_to_its_sentence() -> None:
    assert notices.shown(None, None, "as stored") == "as stored"
    assert notices.shown("notice.given", "{not json", "as stored") == "as stored"
    assert notices.shown("notice.given", json.dumps({"task": "abc123"}), "as stored") == "as stored"  # title missing
    assert notices.shown("no.such.code", "{}", "as stored") == "as stored"
    big = json.loads(notices.pack({"title": "x" * 10_000, "task": "abc123", "by": "@relay", "n": True}))
    assert len(big["title"]) == 200 and "n" not in big
    i18n.set_language("fr")
    said = notices.shown("notice.given", notices.pack({"task": "abc123", "title": "T", "by": "@relay"}), "x")
    assert "rééquilibrage" in said or "bureau" in said
    assert notices.shown("notice.many_given", notices.pack({"n": 1}), "x") != \
        notices.shown("notice.many_given", notices.pack({"n": 7}), "x")
