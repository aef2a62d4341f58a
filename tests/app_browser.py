"""Shared set-up for the local app's real-browser tests: the app in a thread, Debian's Chromium.

The app (``hbw_sync.client.app.server.serve``) runs on its own event loop in a thread on a free
loopback port, exactly as ``hbw-sync app`` serves it; Playwright drives the system Chromium
found by ``external.need("chromium")`` (never a downloaded browser). The checks every page gets
(labels, a skip link with a visible focus, contrast, no sideways scrolling) are here, so each
test calls ``check_page`` on the pages it visits.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from hbw_sync.client.app.server import serve

#: Sizes the issue asks for: a 1366×768 laptop and a 390×844 phone.
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class AppThread:
    """``hbw-sync app`` for one store, in a thread; ``url`` is the launch address with its token."""

    def __init__(self, home: Path):
        self.home = home
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(url: str) -> None:
                self.url = url
                self._ready.set()

            await serve(self.home, 0, ready, self._stop)

        asyncio.run(main())

    def __enter__(self) -> "AppThread":
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the app did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop and self._stop
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    @property
    def base(self) -> str:
        return self.url.split("/start")[0]


def sync_api() -> Any:
    """``playwright.sync_api``; without it, skip loudly (laptop) or fail (CI requires chromium)."""
    import pytest
    from external import need, required

    need("chromium")
    try:
        import playwright.sync_api as api
    except ImportError:
        reason = "the playwright package is not installed (it is in the test extra: pip install -e '.[test]')"
        if "chromium" in required():
            pytest.fail(f"HBW_REQUIRE names chromium, but {reason}", pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    return api


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless; never a browser Playwright would download."""
    from external import need

    return playwright.chromium.launch(executable_path=need("chromium"), headless=True, args=CHROMIUM_ARGS)


def open_app(browser: Any, app: AppThread, passphrase: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A new browser context and page, at the app, unlocked with ``passphrase``."""
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(app.url)
    page.get_by_label("Passphrase").fill(passphrase)
    page.get_by_role("button", name="Unlock").click()
    page.wait_for_selector("nav")
    return page


def shot(page: Any, out: Path, name: str) -> Path:
    """Save a screenshot of the page under the test's tmp dir (and HBW_SCREENSHOTS, to refresh the docs)."""
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    dest = os.environ.get("HBW_SCREENSHOTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)
    return path


# Runs in the page: every problem a keyboard or screen-reader user, or a low-vision one, would meet.
_AUDIT_JS = r"""
() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label')
                     || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!labelled) problems.push(`no label: ${el.outerHTML.slice(0, 80)}`);
  }
  const lum = (c) => {
    const m = c.match(/rgba?\(([\d.]+), ([\d.]+), ([\d.]+)(?:, ([\d.]+))?\)/);
    if (!m) return null;
    const [r, g, b] = [m[1], m[2], m[3]].map(v => { v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return {l: 0.2126 * r + 0.7152 * g + 0.0722 * b, a: m[4] === undefined ? 1 : +m[4]};
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = lum(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c.l;
    }
    return 1;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el) || el.closest('svg')) continue;
    seen.add(el);
    const st = getComputedStyle(el);
    if (st.visibility === 'hidden' || st.display === 'none' || el.offsetParent === null && st.position !== 'fixed') continue;
    const fg = lum(st.color).l, bg = background(el);
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: ${el.tagName} "${el.textContent.trim().slice(0, 40)}"`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    problems.push(`scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
  return problems;
}
"""


def check_page(page: Any, keyboard: bool = True) -> None:
    """Labels on every input, contrast of at least 4.5:1, no sideways scroll; with ``keyboard`` (a page
    reached by GET: it is loaded afresh), the first Tab reaches a visible skip link that moves focus
    to the content."""
    problems = page.evaluate(_AUDIT_JS)
    assert not problems, f"{page.url}: {problems}"
    if not keyboard:
        return
    page.goto(page.url)
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.className, document.activeElement.getBoundingClientRect().top,"
                            " getComputedStyle(document.activeElement).outlineStyle]")
    assert focused[0] == "skip" and focused[1] >= 0 and focused[2] != "none", focused
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the first control of the content: its focus ring shows too
    ring = page.evaluate("() => [document.activeElement.tagName, getComputedStyle(document.activeElement).outlineStyle,"
                         " document.activeElement.closest('main') !== null]")
    assert ring[1] != "none" and ring[2], ring
