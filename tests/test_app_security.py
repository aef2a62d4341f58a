"""The local app's gate (hbw_sync/client/app/security.py): hostile requests are refused."""

from hbw_sync.client.app.security import Gate


def test_host_must_be_our_loopback_port():
    g = Gate(port=8123)
    assert g.host_ok("127.0.0.1:8123") and g.host_ok("localhost:8123")
    for bad in (None, "evil.example:8123", "127.0.0.1:8124", "127.0.0.1", "127.0.0.1.evil:8123"):
        assert not g.host_ok(bad)


def test_foreign_origin_is_refused():
    g = Gate(port=8123)
    assert g.origin_ok(None) and g.origin_ok("http://127.0.0.1:8123")
    for bad in ("http://evil.example", "http://127.0.0.1:9", "https://127.0.0.1:8123", "null"):
        assert not g.origin_ok(bad)


def test_only_the_launch_token_opens_a_session_and_csrf_is_per_session():
    g = Gate(port=1)
    assert g.open_session(None) is None and g.open_session("guess") is None
    sid = g.open_session(g.launch_token)
    other = g.open_session(g.launch_token)
    assert sid and other and sid != other
    assert g.csrf_ok(sid, g.csrf_for(sid))
    assert not g.csrf_ok(sid, None) and not g.csrf_ok(sid, g.csrf_for(other)) and not g.csrf_ok(None, "x")


def test_locks_after_inactivity_and_forgets_the_passphrase():
    g = Gate(port=1, idle_s=900)
    assert g.touch(0) is None  # sealed until unlocked
    g.unlock("pp", now=1000)
    assert g.touch(1800) == "pp"  # 800 s idle: still open, clock restarts
    assert g.touch(2600) == "pp"
    assert g.touch(3501) is None  # 901 s idle: locked
    assert g.passphrase is None and g.touch(3502) is None
