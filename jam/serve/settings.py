"""How a server is tuned: small frozen settings, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jam.serve.admission import Admission
from jam.serve.limits import TrafficLimits

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"


@dataclass(frozen=True)
class SessionSettings:
    """Pacing and the slow-listener policy of every session."""

    lead: float = 1.5  # seconds published ahead of the playhead (the listeners' buffer)
    resume_buffer: float = 0.5  # lead rebuilt after generation fell behind
    # a change re-sends audio from this far past the playhead on: time for the frames to arrive
    # and for a page to decode them (on a busy 2-core machine 0.12 s was sometimes too little)
    splice_margin: float = 0.2
    listener_queue_seconds: float = 6.0  # lag a listener may have beyond the lead
    kick_after: float = 8.0  # seconds of continuous dropping before a listener is closed
    health_interval: float = 1.0  # seconds between health messages


@dataclass(frozen=True)
class ServerSettings:
    """Where to listen, who may connect, which sessions are admitted, and their settings."""

    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    web_dir: Path = WEB_DIR
    idle_seconds: float = 10.0  # a session nobody listens to is freed after this long
    admission: Admission = field(default_factory=Admission)
    traffic: TrafficLimits = field(default_factory=TrafficLimits)
    allow_origins: tuple[str, ...] = ()  # page origins besides the server's own ("*": any)
    operator_token: str | None = None  # shows per-session detail at /status?token=...
    bitrate: int | None = None  # Opus bits/s per stream (None: by the model's rate; 0: PCM only)
    session: SessionSettings = field(default_factory=SessionSettings)
