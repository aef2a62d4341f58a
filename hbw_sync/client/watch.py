"""``hbw-sync watch``: stay running, and sync whenever the relay can be reached.

Why a probe first: on a dead 3G dongle or away from the office, a full sync
attempt costs a TLS-less HTTP exchange and a timeout every time; a TCP connect to
the relay's port costs nothing and answers in milliseconds when the office
network appears. So watch probes with a short, jittered backoff (capped low, so
plugging in at the office syncs within seconds), and syncs when the probe
succeeds and something is due: changes in the outbox, or the interval since the
last sync has passed. One log line per sync; SIGTERM stops it between steps, and
a sync cut short loses nothing anyway.
"""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..errors import AccessError, HbwError, TransientError, VersionError, exit_code_for
from .device import Device, now_ms
from .retry import PERSON_DEADLINE_S, RetryPolicy
from .sync import sync
from .views import iso_ms
from ..i18n import _


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Can a TCP connection to the relay's host and port be opened right now?"""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def watch(home: Path | None, passphrase: str | None = None, *, interval: float = 1800, min_backoff: float = 1.0,
          max_backoff: float = 30.0, log: Callable[[str], None] = print, stop: threading.Event | None = None,
          install_signals: bool = True, on_event: Callable[[str, str | None], None] | None = None,
          sync_now: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT); returns an exit code (0, or 77 if revoked).

    ``on_event(kind, detail)`` hears what the tray shows: "unreachable", "syncing", "synced",
    "interrupted" (the link dropped or the relay is busy: retried), "failed" (detail: the error in
    words; the loop goes on) and "refused" (it stops). Setting
    ``sync_now`` makes the next turn sync even with nothing waiting (the tray's "Sync now").
    """
    stop = stop or threading.Event()
    tell = on_event or (lambda kind, detail: None)
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_args: stop.set())
    with Device.open(home) as dev:
        url = dev.store.meta("relay_url")
    if not url:
        raise AccessError(_("this device has not joined a relay"), code="access.not_joined")
    log(f"{iso_ms(now_ms())} watching {url} (sync every {interval:.0f} s or when changes wait)")
    backoff = min_backoff
    last_ok = 0.0
    said_unreachable = False
    said_wrong_passphrase = False
    while not stop.is_set():
        if not reachable(url):
            tell("unreachable", None)
            if not said_unreachable:
                log(f"{iso_ms(now_ms())} relay unreachable; will keep trying")
                said_unreachable = True
            stop.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, max_backoff)
            continue
        said_unreachable = False
        backoff = min_backoff
        with Device.open(home) as dev:
            waiting = dev.status()["outbox"]["batches"] or dev.store.execute(
                "SELECT COUNT(*) FROM oplog WHERE batch_seq IS NULL").fetchone()[0]
        asked = sync_now is not None and sync_now.is_set()
        if waiting or asked or time.monotonic() - last_ok >= interval or last_ok == 0:
            if sync_now is not None:
                sync_now.clear()
            now = iso_ms(now_ms())
            tell("syncing", None)
            try:
                # The same loop as 'hbw-sync sync': a link that drops mid-way is resumed at once, not at
                # the next probe; SIGTERM ends the wait between attempts.
                r = sync(home, passphrase, deadline=min(max(interval, 60.0), PERSON_DEADLINE_S),
                         policy=RetryPolicy(max_wait_s=max_backoff, wait=stop.wait),
                         on_retry=lambda n: log(f"{iso_ms(now_ms())} {n.text()}"))
                last_ok = time.monotonic()
                tell("synced", None)
                if r.wrong_passphrase and not said_wrong_passphrase:
                    log(f"{now} warning: HBW_PASSPHRASE does not open this device; syncing without it "
                        "(received changes wait until a command with the right passphrase)")
                    said_wrong_passphrase = True
                log(f"{now} sync ok: sent_batches={r.sent_batches} sent_bytes={r.sent_bytes} "
                    f"received_batches={r.received_batches} received_bytes={r.received_bytes} "
                    f"round_trips={r.round_trips} seconds={r.duration_s:.1f}")
            except TransientError as e:
                # The relay may say how long (a full disk: minutes): retrying sooner would only resend bytes.
                wait = backoff * random.uniform(0.8, 1.2)
                if e.retry_after_s:
                    wait = max(wait, min(float(e.retry_after_s), interval))
                if stop.is_set():  # the stop cut the sync short: that is no failure to report
                    break
                tell("interrupted", str(e))
                log(f"{now} sync interrupted (will retry in {wait:.0f} s): {e}")
                stop.wait(wait)
                continue
            except (AccessError, VersionError) as e:
                tell("refused", str(e))
                log(f"{now} sync refused, stopping: {e}")
                return exit_code_for(e)
            except HbwError as e:
                tell("failed", str(e))
                log(f"{now} sync failed: {e}")
                stop.wait(max_backoff)
                continue
        # "Sync now" ends this wait early; whoever sets ``stop`` with a ``sync_now`` sets both.
        (sync_now if sync_now is not None else stop).wait(min(5.0, interval))
    log(f"{iso_ms(now_ms())} stopped")
    return 0
