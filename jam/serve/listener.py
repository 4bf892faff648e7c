"""One receiver's bounded queue of encoded frames, and the drop/kick policy for slow ones.

No sockets and no clock of its own: the caller passes ``now`` to :meth:`Listener.offer`, so the
policy is tested with plain numbers; the server moves :meth:`Listener.next` onto the socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from jam.serve import protocol

Frame = bytes | str


@dataclass(frozen=True)
class Outgoing:
    """One encoded frame and what the queue policy needs to know about it."""

    data: Frame
    seconds: float = 0.0  # audio duration (0 for text and images)
    offset: int = 0  # stream sample where it starts
    end: int = 0  # stream sample where it ends


class ListenerClosed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Listener:
    """A bounded queue. ``offer`` never blocks: a full queue drops its oldest audio frames.

    A listener that keeps dropping for ``kick_after`` seconds is closed with ``CLOSE_TOO_SLOW``;
    the server watches ``closed`` and closes the socket.
    """

    def __init__(
        self,
        listener_id: int,
        control: bool,
        max_seconds: float,
        kick_after: float,
        codec: str = "pcm",
    ) -> None:
        self.id = listener_id
        self.control = control
        self.codec = codec  # which encoding of the session's audio this listener gets
        self.max_seconds = max_seconds
        self.kick_after = kick_after
        self.dropped = 0
        self.sent = 0
        self.behind_since: float | None = None
        self.closed = asyncio.Event()
        self.drained = asyncio.Event()  # closed, and nothing left to send
        self.close_code = protocol.CLOSE_GOING_AWAY
        self.close_reason = ""
        self._drain = False
        self._queue: deque[Outgoing] = deque()
        self._queued_seconds = 0.0
        self._wake = asyncio.Event()

    @property
    def queued_seconds(self) -> float:
        return self._queued_seconds

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, item: Outgoing, now: float) -> None:
        if self.closed.is_set():
            return
        self._queue.append(item)
        self._queued_seconds += item.seconds
        self._wake.set()
        if self._queued_seconds <= self.max_seconds:
            return
        dropped = 0
        kept: deque[Outgoing] = deque()
        while self._queue and self._queued_seconds > self.max_seconds:
            old = self._queue.popleft()
            if isinstance(old.data, str):
                kept.append(old)  # control messages are tiny and matter; keep them
                continue
            self._queued_seconds -= old.seconds
            dropped += old.seconds > 0
        self._queue.extendleft(reversed(kept))
        self.dropped += dropped
        self._queue.append(
            Outgoing(protocol.encode_message("dropped", count=dropped, total=self.dropped))
        )
        if self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since >= self.kick_after:
            self.close(protocol.CLOSE_TOO_SLOW, "listener fell behind the live stream")

    def withdraw(self, offset: int) -> None:
        """Take back queued audio from stream sample ``offset`` on: a splice replaces it."""
        kept = deque(i for i in self._queue if i.seconds == 0 or i.offset < offset)
        self._queued_seconds = sum(i.seconds for i in kept)
        self._queue = kept

    @property
    def pending_text(self) -> int:
        """Text messages waiting (a client that does not read gets no more error replies)."""
        return sum(isinstance(item.data, str) for item in self._queue)

    async def next(self) -> Frame:
        """The next frame to send; raises ListenerClosed once the listener is closed (after
        what was queued, when it was closed with ``drain``)."""
        while not self._queue:
            if self.closed.is_set():
                self.drained.set()
                raise ListenerClosed(self.close_code, self.close_reason)
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            closer = asyncio.ensure_future(self.closed.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()
        if self.closed.is_set() and not self._drain:
            raise ListenerClosed(self.close_code, self.close_reason)
        item = self._queue.popleft()
        self._queued_seconds -= item.seconds
        if self._queued_seconds <= self.max_seconds / 2:
            self.behind_since = None
        self.sent += 1
        return item.data

    def close(self, code: int, reason: str, drain: bool = False) -> None:
        """Stop taking frames. With ``drain`` what is queued (e.g. the error that says why
        the session ended) is still sent before the socket closes."""
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self._drain = drain
            if not drain or not self._queue:
                self.drained.set()
            self.closed.set()
