"""The network layer: one websockets server for the page, static files, health and the stream.

Thin on purpose: HTTP goes through websockets' ``process_request`` hook, messages are parsed by
``jam.protocol`` and everything stateful lives in ``jam.hub``. Each connection runs three things:
the receive loop (control messages), a pump that moves its listener's queue onto the socket, and
a watcher that closes the socket when the hub closes the listener (too slow, session ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import mimetypes
import random
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from jam import protocol
from jam.hub import Hub, Listener, ListenerClosed, Outgoing, Session
from jam.params import SpectrogramParams
from jam.producer import Chunk, Renderer, TileImage

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WS_PATH = "/ws"
# Frames above this are refused by websockets itself (close 1009); smaller ones that break
# protocol.MAX_MESSAGE_BYTES get an error message and the connection stays open.
WS_MAX_SIZE = 64 * 1024
# Kernel send buffer per connection: small, so a slow listener shows up in its hub queue (where
# the drop policy acts) within a second or two instead of hiding in megabytes of socket buffer.
SEND_BUFFER_BYTES = 32 * 1024
HELLO_TIMEOUT = 15.0
CLOSE_TIMEOUT = 2.0
HELLO_ATTEMPTS = 5
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
DEFAULT_PROMPTS = (
    "jazzy lofi hip hop with warm rhodes",
    "funky bass groove with slap guitar",
    "deep house with a rolling bassline",
    "acoustic folk guitar by a campfire",
    "synthwave with shimmering arpeggios",
    "techno kick with dark industrial pads",
)


def _response(
    status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> Response:
    headers = Headers(
        {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **(extra or {}),
        }
    )
    return Response(status.value, status.phrase, headers, body)


def _text(status: http.HTTPStatus, text: str) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


def static_file(web_dir: Path, url_path: str) -> Path | None:
    """The file under ``web_dir`` that ``url_path`` names, or None (missing, hidden, outside)."""
    rel = unquote(url_path).lstrip("/")
    if not rel or "\\" in rel or "\x00" in rel:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    root = web_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    if path.suffix not in CONTENT_TYPES:
        return None
    return path


class JamServer:
    """A running jam server: the websocket endpoint, HTTP routes and the hub of sessions."""

    def __init__(
        self, hub: Hub, web_dir: Path = WEB_DIR, info: dict[str, Any] | None = None
    ) -> None:
        self.hub = hub
        self.web_dir = web_dir
        self.info = info or {}
        self.started = time.monotonic()
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> None:
        self.hub.start()
        self._server = await ws_serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=WS_MAX_SIZE,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=CLOSE_TIMEOUT,
            write_limit=SEND_BUFFER_BYTES,
            server_header="jam",
            compression=None,  # PCM barely compresses; per-listener deflate would undo encode-once
        )
        log.info("jam serving on %s", self.url)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[0]

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        """Close every socket with 1001, stop every producer and the hub; idempotent."""
        if self._server is not None:
            self._server.close(close_connections=True)  # 1001 going away
            await self._server.wait_closed()
            self._server = None
        await self.hub.close()
        log.info("jam server stopped")

    async def __aenter__(self) -> JamServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"uptime": round(time.monotonic() - self.started, 1), **self.hub.stats()}

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WS_PATH:
            return None  # websockets performs the handshake (or answers 426 to plain HTTP)
        if path == "/healthz":
            return _text(http.HTTPStatus.OK, "ok\n")
        if path == "/status":
            body = json.dumps(self.status(), indent=1).encode()
            return _response(http.HTTPStatus.OK, body, "application/json")
        if path == "/api/info":
            return _response(http.HTTPStatus.OK, json.dumps(self.info).encode(), "application/json")
        if path == "/" or (path.startswith("/s/") and path.count("/") == 2 and len(path) > 3):
            file = self.web_dir / "index.html"
        else:
            found = static_file(self.web_dir, path)
            if found is None:
                return _text(http.HTTPStatus.NOT_FOUND, f"not found: {path[:200]}\n")
            file = found
        content_type = CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        return _response(
            http.HTTPStatus.OK, file.read_bytes(), content_type or "application/octet-stream"
        )

    # -- websocket ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        joined = await self._hello(ws)
        if joined is None:
            return
        session, listener = joined
        pump = asyncio.create_task(self._pump(ws, listener), name=f"pump-{listener.id}")
        watcher = asyncio.create_task(
            self._close_when_told(ws, listener), name=f"watch-{listener.id}"
        )
        try:
            async for raw in ws:
                self._control(session, listener, raw)
        except ConnectionClosed:
            pass
        finally:
            session.leave(listener)
            for task in (pump, watcher):
                task.cancel()
            for task in (pump, watcher):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _hello(self, ws: ServerConnection) -> tuple[Session, Listener] | None:
        """Wait for ``create`` or ``join``; errors are answered and the client may try again."""
        for _ in range(HELLO_ATTEMPTS):
            try:
                raw = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT)
            except TimeoutError:
                await ws.close(1008, "expected a create or join message")
                return None
            except ConnectionClosed:
                return None
            try:
                message = protocol.parse_client_message(raw)
                if isinstance(message, protocol.Create):
                    session = self.hub.create(message)
                    return session, session.join(control=True)
                if isinstance(message, protocol.Join):
                    session = self.hub.get(message.session)
                    if session is None:
                        raise protocol.ProtocolError(
                            "unknown_session", f"no live session {message.session!r}"
                        )
                    control = message.token is not None and message.token == session.control_token
                    if message.token is not None and not control:
                        raise protocol.ProtocolError("bad_token", "that control token is not valid")
                    return session, session.join(control=control)
                raise protocol.ProtocolError("not_joined", "send create or join first")
            except protocol.ProtocolError as e:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(protocol.error_message(e.code, e.message))
        await ws.close(1008, "too many bad messages before joining")
        return None

    def _control(self, session: Session, listener: Listener, raw: str | bytes) -> None:
        try:
            message = protocol.parse_client_message(raw)
            if not isinstance(message, protocol.CONTROL_MESSAGES):
                raise protocol.ProtocolError("already_joined", "this connection already joined")
            if not listener.control:
                raise protocol.ProtocolError(
                    "not_controller", "this link can listen only; ask for the control link"
                )
            session.apply(message)
        except protocol.ProtocolError as e:
            listener.offer(Outgoing(protocol.error_message(e.code, e.message)), time.monotonic())

    @staticmethod
    async def _pump(ws: ServerConnection, listener: Listener) -> None:
        with contextlib.suppress(ListenerClosed, ConnectionClosed):
            while True:
                await ws.send(await listener.next())

    @staticmethod
    async def _close_when_told(ws: ServerConnection, listener: Listener) -> None:
        await listener.closed.wait()
        log.info(
            "closing listener %d: %s (%d)", listener.id, listener.close_reason, listener.close_code
        )
        try:
            await asyncio.wait_for(
                ws.close(listener.close_code, listener.close_reason), CLOSE_TIMEOUT
            )
        except TimeoutError:
            # A peer that stopped reading cannot even receive the close frame: drop the TCP
            # connection so its handler (and the queue it holds) goes away now.
            ws.transport.abort()


# ---------------------------------------------------------------------------------------------
# Entry points


def _producer_factories(
    seeds: Any,
    params: SpectrogramParams,
    default_seed_image: str | None,
    session_defaults: dict[str, Any],
    producer_options: dict[str, Any],
):
    """Session-state and stream factories backed by ``jam.producer``."""
    from jam.producer import Controls, Producer, SessionState

    names = list(seeds.names())
    steps = int(session_defaults.get("steps", 50))
    controls = {k: v for k, v in session_defaults.items() if k in ("strength", "guidance")}

    def make_state(request: protocol.Create) -> Any:
        seed_image = request.seed_image or default_seed_image or (names[0] if names else None)
        if seed_image not in names:
            raise ValueError(f"unknown seed image {seed_image!r}; choose one of {names}")
        prompt = request.prompt or random.choice(DEFAULT_PROMPTS)
        return SessionState(
            Controls(prompt, seed_image=seed_image, **controls),
            seed=random.randrange(2**31),
            steps=steps,
        )

    def make_stream(state: Any, renderer: Renderer) -> AsyncIterator[Chunk | TileImage]:
        return Producer(state, renderer, seeds, params.sample_rate, **producer_options).stream()

    return make_state, make_stream


def _seed_catalogue(seeds: Any) -> list[dict[str, Any]]:
    catalogue = []
    for name in seeds.names():
        try:
            loop = seeds.get(name)
            catalogue.append(
                {
                    "name": name,
                    "bpm": getattr(loop, "bpm", None),
                    "beats": getattr(loop, "beats", None),
                    "description": getattr(loop, "description", ""),
                }
            )
        except Exception:  # a broken user seed should not take the server down
            log.exception("seed %r could not be loaded", name)
    return catalogue


async def serve(
    host: str,
    port: int,
    renderer: Renderer,
    seeds: Any,
    params: SpectrogramParams,
    width: int,
    *,
    web_dir: Path = WEB_DIR,
    default_seed_image: str | None = "four_on_floor",
    session_defaults: dict[str, Any] | None = None,
    producer_options: dict[str, Any] | None = None,
    **hub_options: Any,
) -> JamServer:
    """Start serving (``port=0`` picks a free port); returns the running server.

    ``session_defaults``: ``steps``, ``strength``, ``guidance`` for new sessions (the engine's
    defaults). ``producer_options`` go to :class:`jam.producer.Producer` (``chunk_seconds``, ...),
    ``hub_options`` to :class:`jam.hub.Hub` (``lead``, ``idle_seconds``,
    ``listener_queue_seconds``, ``kick_after``, ``max_sessions``, ...).
    """
    catalogue = await asyncio.to_thread(_seed_catalogue, seeds)  # builds (caches) every seed
    names = [s["name"] for s in catalogue]
    if default_seed_image not in names:
        default_seed_image = names[0] if names else None
    make_state, make_stream = _producer_factories(
        seeds, params, default_seed_image, session_defaults or {}, producer_options or {}
    )
    info = {
        "protocol": protocol.PROTOCOL_VERSION,
        "sample_rate": params.sample_rate,
        "channels": params.channels,
        "hop_length": params.hop_length,
        "tile_width": width,
        "seeds": catalogue,
        "default_seed": default_seed_image,
        "examples": list(DEFAULT_PROMPTS),
        "limits": {
            "prompt_chars": protocol.MAX_PROMPT_CHARS,
            "strength": list(protocol.STRENGTH_RANGE),
            "prompt_changes": protocol.PROMPT_CHANGES_PER_WINDOW,
            "prompt_window": protocol.PROMPT_WINDOW_SECONDS,
            "message_bytes": protocol.MAX_MESSAGE_BYTES,
        },
    }
    hub = Hub(
        make_state,
        make_stream,
        renderer,
        sample_rate=params.sample_rate,
        channels=params.channels,
        welcome_extra={"seeds": catalogue},
        **hub_options,
    )
    server = JamServer(hub, web_dir, info)
    await server.start(host, port)
    return server


async def serve_forever(
    host: str,
    port: int,
    renderer: Renderer,
    seeds: Any,
    params: SpectrogramParams,
    width: int,
    **options: Any,
) -> None:
    """Serve until SIGTERM or SIGINT, then close sockets with 1001 and stop all producers."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await serve(host, port, renderer, seeds, params, width, **options)
        print(f"jam: open {server.url}", flush=True)
        try:
            await stop.wait()
            log.info("signal received: shutting down")
        finally:
            await server.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main_serve(args: Any) -> int:
    """``jam serve``: load the model once, share it through one device queue, serve until signalled.

    Reads ``args.host``, ``args.port``, ``args.model``, ``args.device``.
    """
    from jam.cli import default_seed_dir
    from jam.device_queue import DeviceQueue
    from jam.diffusion import load_engine

    engine = load_engine(args.model, args.device, seed_dir=default_seed_dir())
    d = engine.defaults
    defaults = {"steps": d.steps, "strength": d.strength, "guidance": d.guidance}

    async def main() -> None:
        queue = DeviceQueue(engine.render)
        try:
            await serve_forever(
                args.host,
                args.port,
                queue,
                engine.seeds,
                engine.params,
                d.tile_width,
                session_defaults=defaults,
            )
        finally:
            await queue.close()

    asyncio.run(main())
    return 0
