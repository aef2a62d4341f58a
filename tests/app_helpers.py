"""The local app served for a test: ``create_app`` on a free loopback port, unlocked, with its CSRF token.

Shared by the tests that talk HTTP to the app without a browser (pages, documents).
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp import web

from hbw_sync.client.app.security import Gate
from hbw_sync.client.app.server import create_app


class Running:
    def __init__(self, home, passphrase: str):
        self.passphrase = passphrase
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.gate = Gate(port=self.port)
        self.app = create_app(home, self.gate)
        self.base = f"http://127.0.0.1:{self.port}"
        self.me = {"Origin": self.base}

    async def __aenter__(self) -> "Running":
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await (await self.http.get(self.base + f"/start?token={self.gate.launch_token}")).release()
        self.csrf = self.gate.csrf_for(next(iter(self.gate.sessions)))
        r = await self.http.post(self.base + "/unlock", data={"passphrase": self.passphrase, "csrf": self.csrf}, headers=self.me)
        assert "My work" in await r.text()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.runner.cleanup()

    def form(self) -> aiohttp.FormData:
        """A multipart form that starts, as the app's own forms do, with the CSRF token (it must come first)."""
        form = aiohttp.FormData()
        form.add_field("csrf", self.csrf)
        return form

    async def post(self, path: str, data: dict | aiohttp.FormData | None = None, csrf: bool = True) -> tuple[int, str]:
        """POST ``data``; a dict gets the CSRF token, a FormData is sent as made (``form()`` puts it first)."""
        if not isinstance(data, aiohttp.FormData):
            data = dict(data or {}, **({"csrf": self.csrf} if csrf else {}))
        async with self.http.post(self.base + path, data=data, headers=self.me) as r:
            return r.status, await r.text()
