"""The websocket server: one port for the page, health, status and the stream.

Thin on purpose: HTTP goes through websockets' ``process_request`` hook to
:mod:`jam.serve.http`, messages are parsed by :mod:`jam.serve.protocol` and everything stateful
lives in a hub of :class:`Rooms`: :mod:`jam.serve.hub` (all in one process) or
:mod:`jam.cluster.edge` (sessions in Redis). Each connection runs three things: the receive
loop (control messages), a pump that moves its listener's queue onto the socket, and a watcher
that closes the socket when the hub closes the listener (too slow, session ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import logging
import signal
import socket
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from jam.serve import protocol
from jam.serve.clock import Clock
from jam.serve.http import Routes, response, same_origin, text
from jam.serve.limits import TokenBucket
from jam.serve.listener import Listener, ListenerClosed, Outgoing
from jam.serve.recording import FORMATS, RECORDING_SECONDS, Recording, encode_file
from jam.serve.settings import ServerSettings

log = logging.getLogger(__name__)

WS_PATH = "/ws"
RECORDING_PATH = "/recording/"
MAX_ENCODING = 2
# Frames above this are refused by websockets itself (close 1009); smaller ones that break
# protocol.MAX_MESSAGE_BYTES get an error message and the connection stays open.
WS_MAX_SIZE = 64 * 1024
# Kernel send buffer per connection: small, so a slow listener shows up in its hub queue (where
# the drop policy acts) within a second or two instead of hiding in megabytes of socket buffer.
SEND_BUFFER_BYTES = 32 * 1024
HELLO_TIMEOUT = 15.0
CLOSE_TIMEOUT = 2.0
FLOODER_CLOSE_TIMEOUT = 0.2
HELLO_ATTEMPTS = 5
MAX_PENDING_REPLIES = 32  # text messages queued for one client before error replies are dropped


class Room(Protocol):
    """One session as a connection sees it (``Session`` here, ``RemoteSession`` on an edge)."""

    id: str

    @property
    def recording(self) -> Recording: ...

    def join(
        self, control: bool, codecs: tuple[str, ...] = (), token: str | None = None
    ) -> Listener: ...

    def leave(self, listener: Listener) -> None: ...

    def check_token(self, token: str) -> bool: ...

    async def steer(self, message: protocol.ClientMessage, raw: str, listener: Listener) -> None:
        """Apply a control (ProtocolError explains a refusal)."""
        ...

    def state_message(self) -> str: ...


class Rooms(Protocol):
    """The sessions a server serves (``Hub``, or an edge's ``EdgeHub``)."""

    clock: Clock

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open(self, request: protocol.Create, client: str) -> Room:
        """A new session (ProtocolError when refused)."""
        ...

    async def find(self, session_id: str) -> Room | None: ...

    def get(self, session_id: str) -> Room | None:
        """A session served here now (for its recording)."""
        ...

    def stats(self, detail: bool = False) -> dict[str, object]: ...


class JamServer:
    """A running jam server: the websocket endpoint, HTTP routes and the hub of sessions."""

    def __init__(self, hub: Rooms, settings: ServerSettings, info: dict[str, object]) -> None:
        self.hub = hub
        self.settings = settings
        self.routes = Routes(settings.web_dir, info, self.status, settings.operator_token)
        self.started = hub.clock.now()
        self._server: Server | None = None
        self._encoding = asyncio.Semaphore(MAX_ENCODING)  # recordings being encoded at once

    async def start(self) -> None:
        """Listen on the settings' host and port (0: a free one) and start the hub."""
        self.hub.start()
        self._server = await ws_serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._process_request,
            max_size=WS_MAX_SIZE,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=CLOSE_TIMEOUT,
            write_limit=SEND_BUFFER_BYTES,
            server_header="jam",
            compression=None,  # PCM barely compresses; per-listener deflate would undo encode-once
        )
        log.debug("jam serving on %s", self.url)

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

    def status(self, detail: bool = False) -> dict[str, object]:
        uptime = round(self.hub.clock.now() - self.started, 1)
        return {"uptime": uptime, **self.hub.stats(detail)}

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        if path.startswith(RECORDING_PATH) and request.method in ("GET", "HEAD"):
            return await self._recording(request)
        if path != WS_PATH:
            return self.routes.respond(request.method, request.path)
        origin = request.headers.get("Origin")
        host = request.headers.get("Host")
        if origin is not None and not same_origin(origin, host, self.settings.allow_origins):
            log.info("refused a websocket from origin %r", origin[:100])
            return text(http.HTTPStatus.FORBIDDEN, "this origin may not open the jam stream\n")
        return None  # websockets performs the handshake (or answers 426 to plain HTTP)

    async def _recording(self, request: Request) -> Response:
        """``/recording/<session>.<fmt>?seconds=N``: the session's last N seconds as a file,
        encoded off the event loop, a few at a time."""
        url = urlsplit(request.path)
        name = url.path[len(RECORDING_PATH) :]
        session_id, _, fmt = name.rpartition(".")
        if fmt not in FORMATS:
            return text(
                http.HTTPStatus.BAD_REQUEST, f"format must be one of {', '.join(FORMATS)}\n"
            )
        try:
            seconds = float(parse_qs(url.query).get("seconds", [RECORDING_SECONDS])[0])
        except ValueError:
            seconds = -1.0
        if not 1 <= seconds <= RECORDING_SECONDS:
            limit = f"{RECORDING_SECONDS:.0f}"
            return text(http.HTTPStatus.BAD_REQUEST, f"seconds must be between 1 and {limit}\n")
        session = self.hub.get(session_id)
        if session is None or session.recording.seconds == 0:
            return text(http.HTTPStatus.NOT_FOUND, "no such jam, or nothing recorded yet\n")
        if self._encoding.locked():
            return text(http.HTTPStatus.SERVICE_UNAVAILABLE, "busy encoding; try again\n")
        async with self._encoding:
            pcm = session.recording.last(seconds)
            rate = session.recording.sample_rate
            body = await asyncio.to_thread(encode_file, pcm, rate, fmt)
        disposition = f'attachment; filename="jam-{session_id}.{fmt}"'
        answer = response(
            http.HTTPStatus.OK, body, FORMATS[fmt], {"Content-Disposition": disposition}
        )
        return answer if request.method == "GET" else dataclasses.replace(answer, body=b"")

    # -- websocket ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        clock = self.hub.clock
        traffic = TokenBucket(self.settings.traffic, clock.now())
        joined = await self._hello(ws, traffic)
        if joined is None:
            return
        session, listener = joined
        pump = asyncio.create_task(self._pump(ws, listener), name=f"pump-{listener.id}")
        watcher = asyncio.create_task(
            self._close_when_told(ws, listener), name=f"watch-{listener.id}"
        )
        try:
            async for raw in ws:
                if not traffic.take(len(raw), clock.now()):
                    await self._close_flooder(ws)
                    break
                await self._control(session, listener, raw)
        except ConnectionClosed:
            pass
        finally:
            session.leave(listener)
            for task in (pump, watcher):
                task.cancel()
            for task in (pump, watcher):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _hello(
        self, ws: ServerConnection, traffic: TokenBucket
    ) -> tuple[Room, Listener] | None:
        """Wait for ``create`` or ``join``; errors are answered and the client may try again."""
        for _ in range(HELLO_ATTEMPTS):
            try:
                raw = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT)
            except TimeoutError:
                await ws.close(protocol.CLOSE_POLICY, "expected a create or join message")
                return None
            except ConnectionClosed:
                return None
            if not traffic.take(len(raw), self.hub.clock.now()):
                await self._close_flooder(ws)
                return None
            try:
                message = protocol.parse_client_message(raw)
                if isinstance(message, protocol.Create):
                    client = ws.remote_address[0] if ws.remote_address else ""
                    session = await self.hub.open(message, client=str(client))
                    return session, session.join(control=True, codecs=message.codecs)
                if isinstance(message, protocol.Join):
                    session = await self.hub.find(message.session)
                    if session is None:
                        raise protocol.ProtocolError(
                            "unknown_session", f"no live session {message.session!r}"
                        )
                    token = message.token
                    control = token is not None and session.check_token(token)
                    if token is not None and not control:
                        raise protocol.ProtocolError("bad_token", "that control token is not valid")
                    joined = session.join(control, message.codecs, token if control else None)
                    return session, joined
                raise protocol.ProtocolError("not_joined", "send create or join first")
            except protocol.ProtocolError as e:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(e.to_message())
                if e.code == "unavailable":  # the page reconnects, with its backoff
                    await ws.close(protocol.CLOSE_TRY_AGAIN, "try again in a moment")
                    return None
        await ws.close(protocol.CLOSE_POLICY, "too many bad messages before joining")
        return None

    @staticmethod
    async def _close_flooder(ws: ServerConnection) -> None:
        """Close 1008 at once; a flooder that does not read the close frame is not waited for
        (its unread backlog would hold the connection open for seconds)."""
        log.info("closing a connection that sends too much (%s)", ws.remote_address)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(
                ws.close(protocol.CLOSE_POLICY, "too many messages; see the protocol's limits"),
                FLOODER_CLOSE_TIMEOUT,
            )
        ws.transport.abort()

    async def _control(self, session: Room, listener: Listener, raw: str | bytes) -> None:
        try:
            message = protocol.parse_client_message(raw)
            if not isinstance(message, protocol.CONTROL_MESSAGES):
                raise protocol.ProtocolError("already_joined", "this connection already joined")
            if not listener.control:
                raise protocol.ProtocolError(
                    "not_controller", "this link can listen only; ask for the control link"
                )
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            await session.steer(message, text, listener)
        except protocol.ProtocolError as e:
            # a client that does not read its replies gets no more of them (bounded queue)
            if listener.pending_text < MAX_PENDING_REPLIES:
                now = self.hub.clock.now()
                listener.offer(Outgoing(e.to_message()), now)
                # the truth after a refusal, so a page snaps its control back
                listener.offer(Outgoing(session.state_message()), now)

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
        with contextlib.suppress(TimeoutError):  # let the pump send what explains the close
            await asyncio.wait_for(listener.drained.wait(), CLOSE_TIMEOUT)
        try:
            await asyncio.wait_for(
                ws.close(listener.close_code, listener.close_reason), CLOSE_TIMEOUT
            )
        except TimeoutError:
            # A peer that stopped reading cannot even receive the close frame: drop the TCP
            # connection so its handler (and the queue it holds) goes away now.
            ws.transport.abort()


async def until_signalled() -> None:
    """Return on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("signal received: shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve_until_signalled(server: JamServer) -> None:
    """Serve until SIGTERM or SIGINT, then close sockets with 1001 and stop all producers."""
    await server.start()
    print(f"jam: open {server.url}", flush=True)
    try:
        await until_signalled()
    finally:
        await server.close()
