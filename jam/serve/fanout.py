"""Everyone on this process listening to one session: their queues, what a late joiner starts
from, and the recording behind "download".

A fan-out takes frames already encoded (once per codec, however many listen) and offers them to
each listener's bounded queue. The session that generates the stream feeds one directly; an edge
of a Redis cluster feeds one from the session's frame stream (:mod:`jam.cluster.edge`). Both
speak :class:`Outlet`, the shape of what a generating session emits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from jam.serve import protocol
from jam.serve.listener import Listener, Outgoing
from jam.serve.recording import RECORDING_SECONDS, Recording
from jam.serve.settings import SessionSettings


class Outlet(Protocol):
    """Where a generating session's output goes: a local fan-out, or a Redis stream."""

    def audio(self, encoded: dict[str, Outgoing], audio: np.ndarray, splice: int | None) -> None:
        """One chunk, encoded per codec, and its float audio ``(channels, n)``. With
        ``splice``, it replaces everything sent from that stream sample on."""
        ...

    def image(self, item: Outgoing) -> None: ...

    def text(self, message: str, *, controllers: bool = False, to: int | None = None) -> None:
        """A JSON message for everyone, only the controllers, or only listener ``to``."""
        ...

    def clock(self, t0: float | None) -> None:
        """The stream clock moved: stream sample 0 plays at ``t0`` (the session's clock)."""
        ...


class Fanout:
    """The listeners of one session on this process, and the frames a late joiner starts from
    (the chunk playing now and on, the last tile images)."""

    def __init__(
        self,
        settings: SessionSettings,
        sample_rate: int,
        channels: int,
        codecs: tuple[str, ...],
        playhead: Callable[[], int],
        now: Callable[[], float],
        listener_ids: Iterator[int],
    ) -> None:
        self.settings = settings
        self.codecs = codecs
        self.playhead = playhead
        self.now = now
        self.listener_ids = listener_ids
        self.listeners: dict[int, Listener] = {}
        self.empty_since: float | None = now()
        self.recording = Recording(sample_rate, channels, RECORDING_SECONDS)
        self._recent_audio: dict[str, deque[Outgoing]] = {c: deque() for c in codecs}
        self._recent_images: deque[Outgoing] = deque(maxlen=3)

    def add(
        self, control: bool, offered: tuple[str, ...], welcome: Callable[[Listener], str]
    ) -> Listener:
        """A new listener at the live edge: its welcome, the recent tile images, then audio
        from the playhead on, in the first of ``offered`` this session encodes."""
        now = self.now()
        # The queue holds the lead (published ahead of the playhead) plus the allowed lag.
        listener = Listener(
            next(self.listener_ids),
            control,
            self.settings.lead + self.settings.listener_queue_seconds,
            self.settings.kick_after,
            codec=protocol.choose_codec(offered, self.codecs),
        )
        self.listeners[listener.id] = listener
        self.empty_since = None
        listener.offer(Outgoing(welcome(listener)), now)
        playhead = self.playhead()
        for image in self._recent_images:
            listener.offer(image, now)
        for audio in self._recent_audio[listener.codec]:
            if audio.end > playhead:
                listener.offer(audio, now)
        return listener

    def remove(self, listener: Listener) -> bool:
        """Take a listener off (closing its queue); False if it was not here."""
        if self.listeners.pop(listener.id, None) is None:
            return False
        listener.close(protocol.CLOSE_GOING_AWAY, "left")
        if not self.listeners:
            self.empty_since = self.now()
        return True

    def close_all(self, code: int, reason: str) -> None:
        """The session ended: every listener gets what is queued, then the close."""
        for listener in list(self.listeners.values()):
            listener.close(code, reason, drain=True)

    def broadcast(self, item: Outgoing) -> None:
        now = self.now()
        for listener in list(self.listeners.values()):
            listener.offer(item, now)

    # -- the Outlet ---------------------------------------------------------------------------

    def audio(self, encoded: dict[str, Outgoing], audio: np.ndarray, splice: int | None) -> None:
        """Offer each listener its codec's frame; a splice first takes back what it replaces
        from the recording, the late joiners' frames and every queue."""
        if splice is not None:
            self.recording.truncate(splice)
            for recent in self._recent_audio.values():
                while recent and recent[-1].offset >= splice:
                    recent.pop()
            for listener in self.listeners.values():
                listener.withdraw(splice)
        self.recording.add(encoded["pcm"].offset, audio)  # every session encodes PCM
        playhead = self.playhead()
        for codec, item in encoded.items():
            if (recent := self._recent_audio.get(codec)) is None:
                continue
            recent.append(item)
            while recent and recent[0].end <= playhead:
                recent.popleft()
        now = self.now()
        for listener in list(self.listeners.values()):
            if (item := encoded.get(listener.codec)) is not None:
                listener.offer(item, now)

    def image(self, item: Outgoing) -> None:
        self._recent_images.append(item)
        self.broadcast(item)

    def text(self, message: str, *, controllers: bool = False, to: int | None = None) -> None:
        item, now = Outgoing(message), self.now()
        for listener in list(self.listeners.values()):
            if (to is None or listener.id == to) and (listener.control or not controllers):
                listener.offer(item, now)

    def clock(self, t0: float | None) -> None:
        """(The playhead is read from the session's own clock.)"""
