"""Records people can read: the audit in words and JSON, options where a person puts them, revoking with a
confirmation, a failed join that leaves nothing behind, log lines with their time.

A real relay on loopback (tests/relay_helpers.py), real stores, the real command lines (CliRunner, and a
pseudo-terminal for the one question that is asked only of a person).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pty
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import codec, timefmt, wordcode
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.enroll import Invite
from hbw_sync.errors import IntegrityError, ProtocolError, TransientError, UsageError
from hbw_sync.ops import Need
from hbw_sync.server import admin
from hbw_sync.server.app import log_line
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.runner import StampedFormatter

from netem import LinkProxy, Toxics, closed_port
from relay_helpers import FAST_KDF, Team

PASS = "orchid lantern 52 ferry"
EAT = dt.timezone(dt.timedelta(hours=3), "EAT")
MS = 1_796_210_709_123  # 2026-12-02 11:25:09.123 UTC


def relay(*args: str, env: dict | None = None, input: str | None = None):
    return CliRunner().invoke(relay_cli, list(args), env=env or {}, input=input)


def test_times_as_people_read_them() -> None:
    assert timefmt.human(MS, EAT) == "Wed 2 Dec 2026, 14:25 EAT"
    assert timefmt.iso_local(MS, EAT) == "2026-12-02T14:25:09+03:00"
    assert timefmt.iso_utc(MS, millis=True) == "2026-12-02T11:25:09.123Z"
    assert timefmt.human(None) == "never" and timefmt.iso_utc(None) is None
    assert [timefmt.ago(MS - s * 1000, MS) for s in (5, 300, 7200, 86_400, 3 * 86_400)] == \
        ["just now", "5 min ago", "2 h ago", "1 day ago", "3 days ago"]
    assert [timefmt.human_bytes(n) for n in (812, 4_200, 1_300_000)] == ["812 B", "4.2 KB", "1.3 MB"]


def _busy_team(team: Team) -> dict:
    dana = team.join("dana", "supervisor")
    chidi = team.join("chidi")
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        rep.set_profile(laptop=False)
    with dana.open() as rep:
        rep.add_task("Spreadsheet", assignee="chidi", needs=int(Need.LAPTOP))
        rep.set_profile(takes_work=True)
    chidi.sync()
    dana.sync()
    admin.rebalance(team.data, apply=True)
    devs = {d["member"]: d["device"] for d in admin.devices(team.data)}
    admin.revoke(team.data, devs["chidi"])
    return devs


def test_audit_in_words_and_json(team: Team) -> None:
    devs = _busy_team(team)
    res = relay("audit", "--data", str(team.data))
    out = res.output
    assert res.exit_code == 0, out
    assert "?" not in out and "{" not in out and "'device'" not in out
    assert f"office IT revoked device {devs['chidi'][:8]}" in out and "of chidi: it can no longer sync." in out
    assert f"dana enrolled device {devs['dana'][:8]}" in out
    assert "dana invited chidi as a member from device " in out and "(a secret invite), valid 14 days." in out
    assert "dana approved device " in out and "of chidi as a member" in out
    assert "the relay moved 1 task by rebalancing: task " in out and "from chidi to dana" in out
    assert "chidi sent " in out and f"from device {devs['chidi'][:8]}" in out
    assert "office IT created the relay for team 'District Finance'." in out
    # every line starts with a local time a person reads
    first = out.splitlines()[0]
    assert first[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun") and first[3] == " "
    rows = json.loads(relay("audit", "--data", str(team.data), "--json").stdout)
    revoke = next(r for r in rows if r["action"] == "revoke")
    assert revoke["who"] == "office IT" and revoke["device"] == devs["chidi"] and revoke["detail"]["member"] == "chidi"
    # JSON has the one form (tests/test_json_forms.py): UTC with Z; the local time is the text's
    assert revoke["time"].endswith("Z") and dt.datetime.fromisoformat(revoke["time"].replace("Z", "+00:00"))
    assert all(r["who"] and r["what"] and r["time"] for r in rows)
    batches = [r for r in rows if r["action"] == "batch"]
    assert {r["who"] for r in batches} >= {"dana", "chidi", "the relay"}


def test_data_where_a_person_puts_it(team: Team) -> None:
    team.join("dana", "supervisor")
    dev = admin.devices(team.data)[0]["device"]
    data = str(team.data)
    assert relay("devices", "--data", data, "--json").exit_code == 0
    assert relay("--data", data, "devices", "--json").exit_code == 0
    assert relay("--data", data, "audit").exit_code == 0
    res = relay("audit", env={"HBW_RELAY_DATA": data})
    assert res.exit_code == 0 and "enrolled device" in res.output
    res = relay("devices", "revoke", dev[:6])
    assert res.exit_code == 2 and "Missing option '--data'" in res.output and "HBW_RELAY_DATA" in res.output
    # the form from the issue: the group's option, then the subcommand
    res = relay("devices", "--data", data, "revoke", dev[:6], "--yes")
    assert res.exit_code == 0, res.output
    assert "is revoked" in res.output and admin.devices(team.data)[0]["revoked_ms"]
    res = relay("devices", "revoke", dev[:6], "--yes", env={"HBW_RELAY_DATA": data})
    assert res.exit_code == 0 and "already revoked" in res.output and "nothing changed" in res.output


def test_revoke_asks_a_person_and_refuses_a_script(team: Team) -> None:
    team.join("dana", "supervisor")
    dev = admin.devices(team.data)[0]["device"]
    res = relay("devices", "revoke", "--data", str(team.data), dev[:6])  # no terminal, no --yes
    assert res.exit_code == 2 and "cannot be undone: add --yes" in res.output
    assert admin.devices(team.data)[0]["revoked_ms"] is None

    def at_terminal(answer: bytes) -> str:
        """Run the real command in a pseudo-terminal and answer its question."""
        leader, follower = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        p = subprocess.Popen([sys.executable, "-m", "hbw_sync.server.cli", "devices", "revoke", dev[:6],
                              "--data", str(team.data)], stdin=follower, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        out = b""
        while b"undone" not in out:
            out += os.read(leader, 1024)
        os.write(leader, answer)
        try:
            while chunk := os.read(leader, 1024):
                out += chunk
        except OSError:  # the terminal closes when the process ends
            pass
        p.wait(60)
        os.close(leader)
        return out.decode()

    out = at_terminal(b"n\n")
    assert f"Revoke device {dev[:8]} of dana" in out and "Nothing changed." in out
    assert admin.devices(team.data)[0]["revoked_ms"] is None
    out = at_terminal(b"y\n")
    assert "is revoked" in out and admin.devices(team.data)[0]["revoked_ms"]


def test_a_failed_join_leaves_nothing_behind(team: Team, tmp_path: Path) -> None:
    home = tmp_path / "amina-laptop"
    env = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": PASS}
    dead = admin.invite(team.data, "amina", url=f"http://127.0.0.1:{closed_port()}").encode()
    res = CliRunner().invoke(client_cli, ["join", dead], env=env)
    assert res.exit_code == 75 and "nothing was kept on this device" in res.output
    assert not home.exists()
    used = team.invite("amina")
    assert CliRunner().invoke(client_cli, ["join", used], env={**env, "HBW_SYNC_HOME": str(tmp_path / "first")}).exit_code == 0
    res = CliRunner().invoke(client_cli, ["join", used], env=env)
    assert res.exit_code == 77 and "already used" in res.output and "nothing was kept" in res.output
    assert not home.exists()
    home.mkdir()  # a directory the person made stays; only what join created goes
    res = CliRunner().invoke(client_cli, ["join", used], env=env)
    assert res.exit_code == 77 and home.exists() and list(home.iterdir()) == []
    res = CliRunner().invoke(client_cli, ["join", team.invite("amina")], env=env)  # a new invite: a clean start
    assert res.exit_code == 0, res.output


def test_log_lines_carry_their_time() -> None:
    line = json.loads(log_line(action="sync", status=200))
    assert list(line)[0] == "time" and line["time"].endswith("Z") and line["action"] == "sync"
    dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    fmt = StampedFormatter()
    rec = logging.LogRecord("hbw.relay", logging.WARNING, __file__, 1, "disk nearly full", None, None)
    rec.created = MS / 1000
    assert fmt.format(rec) == "2026-12-02T11:25:09.123Z warning disk nearly full"
    rec = logging.LogRecord("hbw.relay", logging.INFO, __file__, 1, log_line(action="x"), None, None)
    assert fmt.format(rec).startswith('{"time": "')


# -- invites by phone (word codes) and by QR code ---------------------------------------------------------


def test_word_code_parsing_is_forgiving_and_precise() -> None:
    slot, words = wordcode.new_code()
    assert len(words) == 5 and all(w in wordcode.WORDS for w in words) and 1000 <= slot <= 9999
    typed = f" {slot}  " + " ".join(w[:4].upper() for w in words)  # first four letters, any case
    assert wordcode.parse_code(typed) == (slot, words)
    assert wordcode.parse_code(wordcode.format_code(slot, words)) == (slot, words)
    for bad, says in ((f"{slot} " + " ".join(words[:4]), "has 5 words"), ("orchid lantern", "4-digit number"),
                      (f"{slot} {' '.join(words[:4])} zzzz", "'zzzz' is not one of the code words"),
                      (f"99 {' '.join(words)}", "4-digit number")):
        with pytest.raises(UsageError, match=says):
            wordcode.parse_code(bad)


def test_word_code_requests_are_bounded_before_anything_is_looked_up() -> None:
    good = wordcode.fetch_request(4821, bytes(32))
    assert wordcode.parse_fetch_request(good) == (4821, bytes(32))
    for cut in range(len(good)):
        with pytest.raises(ProtocolError) as e:
            wordcode.parse_fetch_request(good[:cut])
        assert e.value.code == "protocol.schema"
    for bad in (good + b"\x00", codec.pack([1, 4821, bytes(31)]), codec.pack([2, 4821, bytes(32)]),
                codec.pack([1, 999, bytes(32)]), codec.pack([1, True, bytes(32)]), codec.pack({"slot": 4821})):
        with pytest.raises(ProtocolError) as e:
            wordcode.parse_fetch_request(bad)
        assert e.value.code == "protocol.schema"
    with pytest.raises(ProtocolError) as e:
        wordcode.parse_fetch_request(bytes(65))
    assert e.value.code == "protocol.limit"


def _post_code(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/code", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_join_by_word_code_read_out_by_phone(team: Team, tmp_path: Path) -> None:
    res = relay("invite", "amina", "--words", "--data", str(team.data), "--url", team.url)
    assert res.exit_code == 0 and "By phone (valid 24 hours, ends when used): read out" in res.output
    rows = json.loads(relay("invite", "chidi", "--words", "--json", "--data", str(team.data), "--url", team.url).stdout)
    slot, words = wordcode.parse_code(rows["words"])
    spoken = [str(slot), *(w[:4] for w in words)]  # what a person types after hearing it
    env = {"HBW_SYNC_HOME": str(tmp_path / "chidi"), "HBW_PASSPHRASE": PASS}
    res = CliRunner().invoke(client_cli, ["join", *spoken], env=env)
    assert res.exit_code == 2 and "needs the relay's address" in res.output and not (tmp_path / "chidi").exists()
    wrong = [str(slot), *words[:4], "zoo" if words[4] != "zoo" else "zone"]
    res = CliRunner().invoke(client_cli, ["join", "--relay", team.url, *wrong], env=env)
    assert res.exit_code == 77 and "do not match" in res.output and "4 tries left" in res.output
    assert not (tmp_path / "chidi").exists()
    res = CliRunner().invoke(client_cli, ["join", "--relay", team.url.removeprefix("http://"), *spoken], env=env)
    assert res.exit_code == 0, res.output
    assert "Joined team 'District Finance' as chidi" in res.output
    with Device.open(tmp_path / "chidi") as dev:  # the pinned relay key came from the sealed invite
        assert dev.store.meta("relay_public") == Invite.decode(rows["invite"]).relay_public
    # one-time: the code ended with its invite
    res = CliRunner().invoke(client_cli, ["join", "--relay", team.url, *spoken],
                             env={**env, "HBW_SYNC_HOME": str(tmp_path / "again")})
    assert res.exit_code == 77 and f"no invite waits under code {slot}" in res.output
    out = relay("audit", "--data", str(team.data)).output
    assert f"refused a word code for invite slot {slot}" in out and "(also as a word code)" in out


def test_a_relay_without_the_words_cannot_hand_out_an_invite(team: Team) -> None:
    """Whoever answers at the address without the words: the sealed invite does not open, nothing is pinned."""
    inv, code = admin.invite_with_code(team.data, "amina", url=team.url)
    slot, words = wordcode.parse_code(code)
    impostor = Invite(team.url, bytes(32), inv.team, bytes(16), "amina", "member")  # its own relay key

    guessed = wordcode.derive(slot, (words[1], words[0], *words[2:]))[1]  # close is not enough
    for sealed in (wordcode.seal_invite(guessed, slot, impostor.encode()), os.urandom(120)):
        async def transport(url, body, timeout, sealed=sealed, **kw):
            return codec.pack(sealed)
        with pytest.raises(IntegrityError) as e:
            syncing.resolve_word_code(team.url, code, transport=transport)
        assert e.value.code == "integrity.code"
    # the real relay's answer opens, and gives the invite office IT made
    assert Invite.decode(syncing.resolve_word_code(team.url, code)) == inv


def test_wrong_words_are_counted_and_then_refused(team: Team) -> None:
    _inv, code = admin.invite_with_code(team.data, "amina", url=team.url)
    slot, _ = wordcode.parse_code(code)
    for i in range(wordcode.MAX_FAILURES_PER_SLOT):
        status, err = _post_code(team.url, wordcode.fetch_request(slot, os.urandom(32)))
        assert status == 403 and err["code"] == "access.code"
    assert "cancelled" in err["message"]
    status, err = _post_code(team.url, wordcode.fetch_request(slot, os.urandom(32)))
    assert "no invite waits" in err["message"]  # five wrong tries ended the code
    for i in range(wordcode.MAX_FAILURES_PER_WINDOW - wordcode.MAX_FAILURES_PER_SLOT - 1):
        _post_code(team.url, wordcode.fetch_request(1000 + i, os.urandom(32)))
    _inv, code = admin.invite_with_code(team.data, "bosco", url=team.url)
    status, err = _post_code(team.url, wordcode.fetch_request(*_proof(code)))
    assert status == 503 and err["code"] == "transient.code_rate"  # even the right words wait now
    status, err = _post_code(team.url, bytes(65))
    assert status == 413 and err["code"] == "protocol.limit"


def _proof(code: str) -> tuple[int, bytes]:
    slot, words = wordcode.parse_code(code)
    return slot, wordcode.derive(slot, words)[0]


def test_invite_as_a_qr_code(team: Team, tmp_path: Path) -> None:
    png = tmp_path / "amina-invite.png"
    res = relay("invite", "amina", "--qr", "--qr-file", str(png), "--data", str(team.data), "--url", team.url)
    assert res.exit_code == 0 and "Or scan this QR code:" in res.output and "█" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"QR code saved to {png}" in res.output
    rows = json.loads(relay("invite", "bosco", "--qr-file", str(tmp_path / "b.svg"), "--json", "--data",
                            str(team.data), "--url", team.url).stdout)
    assert rows["qr_file"].endswith("b.svg") and "<svg" in (tmp_path / "b.svg").read_text()
    assert Invite.decode(rows["invite"].upper()).member == "bosco"  # the QR carries it in upper case


def test_new_core_modules_stay_sans_io() -> None:
    """allocation, timefmt and wordcode belong to the core: no aiohttp, SQLite or click behind them."""
    code = ("import sys, hbw_sync.allocation, hbw_sync.timefmt, hbw_sync.wordcode; "
            "print(','.join(m for m in ('aiohttp', 'sqlite3', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_a_join_whose_answer_was_lost_keeps_only_its_keys_and_gives_way(team: Team, tmp_path: Path) -> None:
    """The link drops after the relay may have enrolled the keys: they stay for the same join to finish;
    a join for someone else on this computer then starts clean instead of refusing."""
    home = tmp_path / "desk"
    with LinkProxy(int(team.url.rsplit(":", 1)[1]), down=Toxics(cut_after=0)) as proxy:
        with pytest.raises(TransientError) as e:
            syncing.join(home, team.invite("amina", url=proxy.url), PASS, kdf=FAST_KDF)
    assert "keys are kept so that the same 'hbw-sync join' can finish" in (e.value.hint or "")
    assert (home / "store.db").exists()
    out = syncing.join(home, team.invite("bosco"), PASS, kdf=FAST_KDF)
    assert out["member"] == "bosco" and out["synced"] is True
    with Device.open(home) as dev:
        assert dev.store.meta("member") == "bosco" and not dev.store.meta("join_pending")


def test_a_running_relay_stamps_every_log_line(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    admin.init(data, "District Finance")
    p = subprocess.Popen([sys.executable, "-m", "hbw_sync.server.cli", "serve", "--data", str(data), "--port", "0"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert p.stderr is not None
        first = p.stderr.readline()
        stamp, rest = first.split(" ", 1)
        assert rest.startswith("hbw-relay listening on http://")
        dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        url = first.strip().rsplit(" ", 1)[-1]
        status, _ = _post_code(url, b"\x00" * 10)  # a bad request is logged like any other
        assert status == 400
        line = json.loads(p.stderr.readline())
        assert list(line)[:2] == ["time", "action"] and line["action"] == "code" and line["status"] == 400
    finally:
        p.terminate()
        p.wait(30)
