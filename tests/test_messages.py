"""Error codes → words (STYLE.md §4): every code has words, rendered in the person's language when shown.

The relay's errors cross the wire in English; a French official must still read French, in the CLI
and in the app, and a hint must name only what that front end has.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import errors, i18n, messages
from hbw_sync.client.app.hints import APP_HINTS, app_words
from hbw_sync.client.cli import cli
from hbw_sync.client.cli_hints import CLI_HINTS
from hbw_sync.errors import AccessError, HbwError, RevokedError, clean_params, from_dict, from_peer
from hbw_sync.server import admin
import importlib
faults = importlib.import_module("hbw_sync.server.storage.faults")

from relay_helpers import Team

ROOT = Path(messages.__file__).parent
_CODE = re.compile(r'code="([a-z_][a-z0-9_.]*)"')
_CASE = re.compile(r'"case":\s*"([a-z_]+)"')


@pytest.fixture(autouse=True)
def _english_after():
    yield
    i18n.set_language("en")


def _codes_in_source() -> dict[str, list[str]]:
    """Every ``code="..."`` literal under hbw_sync/, with where it is (like tests/test_errors.py walks)."""
    found: dict[str, list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in _CODE.finditer(text):
            found.setdefault(m.group(1), []).append(f"{path.relative_to(ROOT.parent)}:{text.count(chr(10), 0, m.start()) + 1}")
    return found


def test_every_code_raised_in_hbw_sync_has_words() -> None:
    codes = _codes_in_source()
    assert len(codes) > 80  # the walk works
    codes.update({cls.code: ["errors.py (class default)"] for cls in errors.EXIT_CODES})
    codes.update({c: ["errors.RETRY_AFTER_S"] for c in errors.RETRY_AFTER_S})
    codes.update({c: ["storage/faults.py"] for c in faults._FAULT_WORDS})
    missing = {c: where for c, where in codes.items() if c not in messages.MESSAGES}
    assert not missing, f"add words to hbw_sync/messages.py MESSAGES for: {missing}"


def test_every_case_a_raise_site_names_has_its_own_words() -> None:
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for m in _CASE.finditer(text):
            before = _CODE.findall(text[max(0, m.start() - 400):m.start()])
            after = _CODE.findall(text[m.end():m.end() + 600])
            assert before or after, f"{path}: a case with no code near it"
            assert any(f"{c}/{m.group(1)}" in messages.MESSAGES for c in before[-1:] + after[:1]), (path, m.group(1))


def test_tables_are_consistent() -> None:
    for key, template in messages.MESSAGES.items():
        assert key.split("/")[0] in messages.MESSAGES, key  # a case refines a code that has words
        assert all(f.isidentifier() for f in messages.fields(template)), key
    for table in (messages.HINTS, CLI_HINTS, APP_HINTS):
        assert set(table) <= set(messages.MESSAGES), set(table) - set(messages.MESSAGES)
    # hints that name a command belong to the CLI's table only
    for table in (messages.HINTS, APP_HINTS):
        for code, hint in table.items():
            assert not re.search(r"'hbw-|hbw-sync [a-z]+ [A-Z]|--[a-z]|hbw-relay", hint), code


def test_no_client_library_hint_names_a_command_the_app_has_not() -> None:
    """The library modules the app calls raise no hint naming an ``hbw-sync`` command any more."""
    for name in ("bundles.py", "device.py", "docchunks.py", "documents.py", "passphrase.py", "replica.py",
                 "store.py", "team.py", "watch.py"):
        text = (ROOT / "client" / name).read_text(encoding="utf-8")
        for m in re.finditer(r"hint=_?\(?\"([^\"]*)", text):
            assert "hbw-sync " not in m.group(1), (name, m.group(1))


def test_a_relay_error_renders_from_its_code_and_params() -> None:
    body = {"error": "AccessError", "code": "access.code", "message": "the words do not match code 4821 (2 tries left)",
            "hint": "check the words with office IT", "params": {"case": "words", "slot": 4821, "left": 2}}
    e = from_peer(body, 403)
    assert e.from_peer and e.params == {"case": "words", "slot": 4821, "left": 2}
    i18n.set_language("fr")
    text, hint = messages.words(e)
    assert "4821" in text and "2" in text and "words" not in text and "ne correspondent pas" in text
    assert hint and "office IT" not in hint  # the neutral table's hint, in French, replaces the relay's English
    i18n.set_language("en")
    assert messages.words(e)[0] == "the words do not match code 4821 (2 tries left)"


def test_missing_or_hostile_params_fall_back_to_the_message() -> None:
    e = from_dict({"error": "AccessError", "code": "access.code", "message": "english words",
                   "params": {"case": "words", "slot": 1}})  # "left" is missing
    assert messages.words(e)[0] == "english words"
    hostile = {"error": "AccessError", "code": "x" * 5000, "message": "m" * 10_000, "hint": ["not text"],
               "params": {f"k{i}": "v" * 10_000 for i in range(100)} | {"Bad-Name": 1, "t": True, "f": 1.5,
                                                                        "big": 2**60, "nested": {"a": 1}}}
    e = from_dict(hostile)
    assert len(e.code) == 64 and len(e.message) == 2000 and e.hint is None
    assert len(e.params) <= errors.MAX_PARAMS
    assert all(isinstance(v, (str, int)) and len(str(v)) <= errors.MAX_PARAM_TEXT for v in e.params.values())
    assert clean_params({"Bad-Name": 1, "t": True, "f": 1.5, "big": 2**60, "nested": {}, "ok": "y"}) == {"ok": "y"}
    assert clean_params("not a dict") == {}
    assert messages.words(e)[0] == "m" * 2000  # an unknown code: the message as it came
    # params go on the wire with the error, and come back the same
    wire = json.loads(json.dumps(AccessError("x", code="access.invite", params={"case": "used"}).to_dict()))
    assert from_dict(wire).params == {"case": "used"}


def test_an_error_raised_here_keeps_its_own_words_unless_it_asks_for_the_table() -> None:
    local = HbwError("déjà en français", code="usage.code")
    assert messages.words(local) == ("déjà en français", None)
    asked = HbwError("english", code="usage.code", params={})
    i18n.set_language("fr")
    assert messages.words(asked)[0] != "english"
    assert messages.words(asked, CLI_HINTS)[1] != messages.words(asked, APP_HINTS)[1]
    assert "hbw-sync" in messages.words(asked, CLI_HINTS)[1] and "hbw-sync team" not in app_words(asked)[1]


def test_the_app_drops_a_hint_that_names_a_command() -> None:
    e = HbwError("x", code="usage", hint="run 'hbw-sync something'")
    assert app_words(e) == ("x", None)
    assert messages.words(e) == ("x", "run 'hbw-sync something'")


def test_a_revoked_device_reads_the_relays_refusal_in_french_in_the_cli_and_the_app(tmp_path: Path) -> None:
    """The relay answers in English with a code; the CLI (HBW_LANG=fr) and the app (French) show French."""
    from app_helpers import Running

    with Team(tmp_path) as team:
        dana = team.join("dana", "supervisor")
        dana.sync()
        chidi = team.join("chidi")
        chidi.sync()
        device = next(d["device"] for d in admin.devices(team.data) if d["member"] == "chidi")
        admin.revoke(team.data, device)
        with pytest.raises(RevokedError) as caught:
            chidi.sync()
        assert caught.value.from_peer and caught.value.message.startswith("this device was revoked")

        r = CliRunner().invoke(cli, ["--home", str(chidi.home), "sync"], env={"HBW_LANG": "fr"})
        assert r.exit_code == 77, r.output
        i18n.set_language("fr")
        french = i18n._(messages.MESSAGES["access.revoked"])
        assert french != messages.MESSAGES["access.revoked"]  # the catalog has it
        assert french in r.stderr and "this device was revoked" not in r.stderr
        assert i18n._(messages.HINTS["access.revoked"]) in r.stderr
        # the sync log keeps the code: 'status' words the last failure in the language of the moment
        r = CliRunner().invoke(cli, ["--home", str(chidi.home), "status"], env={"HBW_LANG": "fr"})
        assert french in r.output and "this device was revoked" not in r.output
        r = CliRunner().invoke(cli, ["--home", str(chidi.home), "status"], env={"HBW_LANG": "en"})
        assert "this device was revoked by the office" in r.output
        i18n.set_language("fr")

        # The app's Sync now, in French, says the same in French.
        async def app_sync() -> str:
            i18n.set_language("en")  # the helper unlocks in English; the page then speaks French
            async with Running(chidi.home, chidi.passphrase) as app:
                i18n.set_language("fr")
                await app.post("/sync")
                for _ in range(300):
                    async with app.http.get(app.base + "/sync/progress") as resp:
                        state = await resp.json()
                    if not state["running"]:
                        return state["text"]
                    await asyncio.sleep(0.1)
            raise AssertionError("the sync did not end")

        text = asyncio.run(app_sync())
        assert french in text and "this device was revoked" not in text


def test_a_core_error_is_english_in_english_and_its_codes_words_in_french(tmp_path: Path) -> None:
    """The sans-IO core knows no language: a damaged bundle file reads in French from its code."""
    from hbw_sync import bundle

    try:
        bundle.peek(b"this is a spreadsheet, not a bundle")
    except HbwError as caught:
        e = caught
    else:
        raise AssertionError("no error")
    assert e.params is None and not e.from_peer
    assert messages.words(e)[0] == e.message  # English: the core's own, precise sentence
    i18n.set_language("fr")
    text = messages.words(e)[0]
    assert text != e.message and text == i18n._(messages.MESSAGES[e.code])
    local = HbwError(i18n._("the passphrase must not be empty"), code="usage.weak_passphrase")
    assert messages.words(local)[0] == local.message  # raised here without a traceback: its own words


def test_an_offline_sync_says_so_in_french_with_its_counts() -> None:
    """The error Amina meets most (3G down): raised with params, worded when shown, plural by the count."""
    from hbw_sync.client import retry

    e = retry._unreachable_error("the relay at http://office:8765", 3, 95.0, 0, 0)
    assert e.message == "Could not reach the relay at http://office:8765 (3 tries in 95 s)."
    assert messages.words(e)[0] == e.message
    i18n.set_language("fr")
    assert messages.words(e)[0] == "Impossible de joindre the relay at http://office:8765 (3 essais en 95 s)."
    one = retry._unreachable_error("x", 1, 5.0, 2048, 1024)
    assert "l'essai suivant (1)" in messages.words(one)[0]
