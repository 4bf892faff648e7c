"""Test helpers for the real server: a recording websocket client, raw HTTP, polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jam.app import App
from jam.serve import protocol
from jam.serve.server import JamServer
from jam.serve.settings import ServerSettings


@contextlib.asynccontextmanager
async def running(app: App, settings: ServerSettings) -> AsyncIterator[JamServer]:
    """A real server for ``app`` on a free port of 127.0.0.1, closed afterwards."""
    server = await app.serve(settings)
    try:
        yield server
    finally:
        await server.close()


class Client:
    """A websockets client that records everything it receives, with arrival times."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.audio: list[tuple[float, protocol.AudioFrame | protocol.OpusFrame, bytes]] = []
        self.images: list[protocol.ImageFrame] = []
        self.held: protocol.HeldAudio | None = None  # the PCM stream as held, splices applied
        self.closed = False
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: JamServer, hello: dict[str, Any], **kwargs: Any) -> Client:
        return await cls.connect(server.port, hello, **kwargs)

    @classmethod
    async def connect(cls, port: int, hello: dict[str, Any], **kwargs: Any) -> Client:
        ws = await connect(f"ws://127.0.0.1:{port}/ws", **kwargs)
        await ws.send(json.dumps(hello))
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if isinstance(raw, str):
                    self.messages.append((now, json.loads(raw)))
                else:
                    frame = protocol.decode_frame(raw)
                    if isinstance(frame, protocol.AudioFrame | protocol.OpusFrame):
                        self.audio.append((now, frame, raw))
                        if isinstance(frame, protocol.AudioFrame):
                            self.held = self.held or protocol.HeldAudio(frame.channels)
                            self.held.add(frame)
                    else:
                        self.images.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        self.closed = True  # a normal close (1000/1001) ends the iteration without raising
        self._changed.set()

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if self.closed and self._reader.done():
                raise AssertionError(f"connection closed ({self.ws.close_code}) waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return result

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m["type"] == kind]

    async def welcome(self) -> dict[str, Any]:
        return (await self.until(lambda: self.of_type("welcome"), 10, "welcome"))[0]

    async def error(self, code: str) -> dict[str, Any]:
        return await self.until(
            lambda: next((m for m in self.of_type("error") if m["code"] == code), None),
            5,
            f"error {code}",
        )

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll a server-side condition (the hub's own state) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP/1.1 request, so the path reaches the server exactly as written."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def new_prompt_weight(meta: dict[str, Any], prompt: str) -> float:
    """How much of a chunk's audio comes from ``prompt``, from the chunk's mix metadata."""
    total = 0.0
    for src in meta["mix"]:
        a = src["alpha"]
        total += src["weight"] * (
            (1 - a) * (src["prompt"] == prompt) + a * (src["prompt_to"] == prompt)
        )
    return total
