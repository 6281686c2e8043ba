"""The companion page server: a phone or tablet as the walker's screen, voice and buttons.

A thin edge on aiohttp, in the session's own event loop. It serves the page (plain HTML,
CSS and JavaScript from package data) and one WebSocket per page. What a page shows is
:func:`retrotread.presentation.present` of the session's snapshot, sent ``rate_hz``
times a second; what is said (:class:`~retrotread.presentation.Narration`) is sent at
once. Each page is fed from its own bounded queue that drops the oldest message when
full, so a slow or frozen page never holds up the control loop: the loop only ever
appends to a deque.

Pairing: a random token (128 bits or more) made for this run is in the URL. Without it
the page and the WebSocket answer 401, with a wrong one 403, and no command is taken.
The token is never logged (the access log is off; nothing here writes a URL) and never
leaves this module except in the URL printed for the person.

A page may send only ``{"command": "stop" | "pause" | "ready" | "start"}``; each goes
through ``Session.request(command, CommandSource.COMPANION)``, which decides. ``start``
is what the page sends after a 2-second hold; the page never asks for a speed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import hmac
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from retrotread.errors import RetrotreadError
from retrotread.events import Announcement, CommandSource, UserCommand
from retrotread.presentation import Narration, present
from retrotread.ratelimit import SuppressedLog, TokenBucket, describe_counts

if TYPE_CHECKING:
    from retrotread.session import Session

log = logging.getLogger(__name__)

DEFAULT_PORT = 8421
PORTS_TRIED = 20
TOKEN_BYTES = 16  # 128 bits
MAX_PAGES = 8
MAX_MESSAGE_BYTES = 512
QUEUE_SIZE = 32
RATE_HZ = 4.0
COMMANDS = {
    "stop": UserCommand.STOP,
    "pause": UserCommand.PAUSE,
    "ready": UserCommand.READY,
    "start": UserCommand.START,
}
STATIC_FILES = {
    "index.html": "text/html",
    "companion.css": "text/css",
    "companion.js": "text/javascript",
}


def new_token() -> str:
    """A fresh pairing token: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def parse_bind(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``:PORT`` or ``[v6]:PORT`` -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
            raise RetrotreadError(f"--companion-bind {text!r}: the port must be 1-65535 "
                                  "(0: any free port)")
        port = int(port_text)
    return host or "0.0.0.0", port


def lan_address() -> str:
    """This computer's address on the local network (for the URL); 127.0.0.1 if none.
    A UDP socket's connect sends nothing; it only picks the outgoing interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


PAGE_COMMANDS_PER_S = 2.0
PAGE_COMMAND_BURST = 5
"""A page's commands: at most 5 at once, then 2 per second (a person presses far less)."""


@dataclass(eq=False)
class Page:
    """One connected page: its bounded queue (drop the oldest) and its counters."""

    ws: web.WebSocketResponse
    queue: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=QUEUE_SIZE))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    # A page's commands are rate-limited; STOP has its own allowance (never held back).
    buckets: dict[str, TokenBucket] = field(default_factory=lambda: {
        kind: TokenBucket(PAGE_COMMANDS_PER_S, PAGE_COMMAND_BURST)
        for kind in ("stop", "other")})

    def put(self, message: str) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(message)
        self.wake.set()


class CompanionServer:
    """Serve the companion page for the session that ``session_source`` returns.

    ``narration``: the shared narrator (what is said reaches every page at once).
    ``speech_note``: why the host cannot speak (shown on the page), or None.
    """

    def __init__(
        self,
        session_source: Callable[[], Session | None],
        *,
        narration: Narration | None = None,
        host: str = "0.0.0.0",
        port: int | None = None,
        token: str | None = None,
        banner: str = "",
        speech_note: str | None = None,
        rate_hz: float = RATE_HZ,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.session_source = session_source
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.token = token or new_token()
        self.banner = banner
        self.speech_note = speech_note
        self.rate_hz = rate_hz
        self.max_pages = max_pages
        self.pages: set[Page] = set()
        self.rejected = 0
        self.dropped_messages = 0
        self._dropped_log = SuppressedLog(30.0)
        self.frames_sent = 0
        self._runner: web.AppRunner | None = None
        self._feeder: asyncio.Task[None] | None = None
        # Read once, before the workout: serving a page never touches the disk.
        static = resources.files(__package__).joinpath("static")
        self._files = {name: static.joinpath(name).read_bytes() for name in STATIC_FILES}
        self.narration = narration
        if narration is not None:
            narration.add(self.say)

    # ------------------------------------------------------------------ lifecycle
    def url(self, address: str | None = None) -> str:
        """The URL to open (with the token). ``address``: the host to name in it."""
        if address is None:
            address = lan_address() if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in address:
            address = f"[{address}]"
        return f"http://{address}:{self.port}/?t={self.token}"

    async def start(self) -> None:
        app = web.Application(client_max_size=4096)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/static/{name}", self._static)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ports = ([self.requested_port] if self.requested_port is not None else
                 range(DEFAULT_PORT, DEFAULT_PORT + PORTS_TRIED))
        last_error: OSError | None = None
        for port in ports:
            site = web.TCPSite(runner, self.host, port, reuse_address=False)
            try:
                await site.start()
            except OSError as exc:
                last_error = exc
                if exc.errno != errno.EADDRINUSE and port != 0:
                    break
                continue
            self.port = port
            if port == 0:
                server = site._server  # the OS chose: read the port back
                sockets = getattr(server, "sockets", None) or []
                self.port = sockets[0].getsockname()[1] if sockets else 0
            break
        if self.port is None:
            await runner.cleanup()
            raise RetrotreadError(f"cannot serve the companion page on {self.host}: "
                                  f"{last_error}")
        self._runner = runner
        self._feeder = asyncio.ensure_future(self._feed())

    async def close(self) -> None:
        """Tell every page the workout is over (its last state, then ``end``: the page
        says so instead of "connection lost"), then stop serving."""
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
        with contextlib.suppress(Exception):
            last = self.frame()
            if last is not None:
                self._broadcast(last)
            self._broadcast(json.dumps({"type": "end"}))
            for _ in range(50):  # up to 0.5 s for the pages to take it
                if not any(page.queue for page in self.pages):
                    break
                await asyncio.sleep(0.01)
        for page in list(self.pages):
            with contextlib.suppress(Exception):
                await page.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> CompanionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ feeding pages
    def say(self, announcement: Announcement) -> None:
        """A voice (Narration): every page says it now. Never blocks."""
        self._broadcast(json.dumps({"type": "say", "text": announcement.text,
                                    "level": announcement.level}))

    def _broadcast(self, message: str) -> None:
        for page in self.pages:
            page.put(message)

    def frame(self) -> str | None:
        """The state message for now (None before the session exists)."""
        session = self.session_source()
        if session is None:
            return json.dumps({"type": "state", "view": None, "pages": len(self.pages),
                               "speech_note": self.speech_note})
        view = present(session.snapshot(self.banner), self._said())
        return json.dumps({"type": "state", "view": view.to_json(), "pages": len(self.pages),
                           "speech_note": self.speech_note}, separators=(",", ":"))

    def _said(self) -> Announcement | None:
        return self.narration.said if self.narration is not None else None

    async def _feed(self) -> None:
        period = 1.0 / self.rate_hz
        while True:
            self._observe_pages()
            if self.pages:
                try:
                    message = self.frame()
                except Exception:  # the page must never take the session down
                    log.exception("companion: cannot build the page state")
                    message = None
                if message is not None:
                    self._broadcast(message)
            await asyncio.sleep(period)

    def _observe_pages(self) -> None:
        session = self.session_source()
        if session is not None and session.companion_rule is not None:
            session.companion_rule.observe(session.clock.now(), len(self.pages))

    # ------------------------------------------------------------------ HTTP
    def _check_token(self, request: web.Request) -> None:
        given = request.query.get("t")
        if not given:
            raise web.HTTPUnauthorized(text="Pair this page: open the URL (or scan the QR "
                                            "code) that retrotread printed.\n")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="Wrong pairing token: open the URL (or scan the "
                                         "QR code) that retrotread printed for this run.\n")

    async def _index(self, request: web.Request) -> web.Response:
        self._check_token(request)
        return web.Response(body=self._files["index.html"], content_type="text/html",
                            headers={"Cache-Control": "no-store",
                                     "Referrer-Policy": "no-referrer"})

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=self._files[name], content_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-store"})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._check_token(request)
        if len(self.pages) >= self.max_pages:
            self.rejected += 1
            log.warning("companion: a page was refused: already %d pages connected",
                        len(self.pages))
            raise web.HTTPServiceUnavailable(text="Too many pages connected.\n")
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=64 * 1024)
        await ws.prepare(request)
        page = Page(ws)
        self.pages.add(page)
        self._observe_pages()
        log.info("companion: a page connected (%d now)", len(self.pages))
        sender = asyncio.ensure_future(self._send_loop(page))
        try:
            first = self.frame()
            if first is not None:
                page.put(first)
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._on_message(page, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._drop("a binary message")
                elif message.type is WSMsgType.ERROR:
                    self._drop(f"a broken message ({ws.exception()})")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self.pages.discard(page)
            self._observe_pages()
            log.info("companion: a page disconnected (%d left)", len(self.pages))
        return ws

    async def _send_loop(self, page: Page) -> None:
        while True:
            await page.wake.wait()
            page.wake.clear()
            while page.queue:
                message = page.queue.popleft()
                await page.ws.send_str(message)
                self.frames_sent += 1

    def _drop(self, what: str) -> None:
        """Count a message that was not taken: the first of each kind is logged in full,
        the rest in one line every 30 s, so a flood grows neither the log nor stderr."""
        self.dropped_messages += 1
        now = asyncio.get_running_loop().time()
        if self._dropped_log.note(what, now):
            log.warning("companion: dropped %s from a page (more like it are counted)", what)
        counts = self._dropped_log.due(now)
        if counts:
            log.warning("companion: dropped %d more message(s) from pages in the last 30 s: %s",
                        sum(counts.values()), describe_counts(counts))

    def _on_message(self, page: Page, data: str) -> None:
        if len(data) > MAX_MESSAGE_BYTES:
            self._drop("an oversized message")
            return
        try:
            message = json.loads(data)
            name = message["command"]
            command = COMMANDS[name]
        except (ValueError, TypeError, KeyError):
            self._drop("a malformed message")
            return
        kind = "stop" if command is UserCommand.STOP else "other"
        if not page.buckets[kind].take(asyncio.get_running_loop().time()):
            self._drop("a command over the rate limit")
            return
        session = self.session_source()
        accepted = session is not None and session.request(command, CommandSource.COMPANION)
        reply: dict[str, Any] = {"type": "ack", "command": name, "accepted": accepted}
        if "id" in message and isinstance(message["id"], int):
            reply["id"] = message["id"]
        page.put(json.dumps(reply))
