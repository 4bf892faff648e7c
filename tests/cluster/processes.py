"""``jam`` processes for the fault tests, and what a listener hears of a stream (a player model).

Each process is the real command line (``python -m jam serve --redis ...``, ``jam worker``),
started with the tiny model, so a ``kill -9`` is a real crash.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


class Jam:
    """One ``jam`` subprocess; ``ready`` waits for the line that says it serves or works."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.args = args
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jam.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.port: int | None = None
        self.lines: list[str] = []
        self._partial = b""
        self._drain: threading.Thread | None = None

    def ready(self, timeout: float = 60.0) -> Jam:
        """Wait for ``jam: open URL`` (a server: its port) or ``jam worker NAME`` (a worker)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jam {self.args[0]} exited: {self.output()}")
            readable, _, _ = select.select([fd], [], [], 0.2)
            if not readable:
                continue
            self._partial += os.read(fd, 65536)  # unbuffered: select sees what is left
            *lines, self._partial = self._partial.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace") + "\n"
                self.lines.append(line)
                if m := re.search(r"jam: open http://[^:]+:(\d+)/", line):
                    self.port = int(m.group(1))
                if self.port is not None or line.startswith("jam worker "):
                    self._drain = threading.Thread(target=self._read_rest, daemon=True)
                    self._drain.start()
                    return self
        raise AssertionError(f"jam {self.args[0]} not ready after {timeout} s: {self.output()}")

    def _read_rest(self) -> None:
        """Keep reading its output (a full pipe would stall the process)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self._partial += chunk
            *lines, self._partial = self._partial.split(b"\n")
            self.lines += [raw.decode(errors="replace") + "\n" for raw in lines]

    @property
    def name(self) -> str:
        """A worker's name, as it printed it."""
        line = next(x for x in self.lines if x.startswith("jam worker "))
        return line.split()[2].rstrip(":")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no cleanup, no lease released, sockets dropped by the kernel."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        """What it printed so far (all of it, once it has exited)."""
        if self._drain is not None and not self.alive():
            self._drain.join(5)
        elif self.process.stdout is not None and not self.alive():
            self.lines.append(
                os.read(self.process.stdout.fileno(), 1 << 20).decode(errors="replace")
            )
        text = "".join(self.lines) + self._partial.decode(errors="replace")
        self.log.write_text(text)
        return text[-3000:]


@dataclass
class Playout:
    """What a listener hears: audio arrives (wall time, stream samples); the player starts once
    ``jitter`` seconds are held, plays in real time, and after running dry re-buffers
    ``jitter`` before it plays again, as the page's worklet does. Audio that replaces what is
    held (a splice) adds nothing; a jump ahead in offsets is appended, as the page does."""

    sample_rate: int
    jitter: float = 0.3
    silences: list[tuple[float, float]] = field(default_factory=list)  # (ran dry at, seconds)
    _held_end: int | None = None
    _buffered: float = 0.0  # seconds held while not playing
    _ends_at: float | None = None  # while playing: when what is held runs out
    _dry_since: float | None = None

    def arrive(self, t: float, offset: int, frames: int) -> None:
        end = offset + frames
        if self._held_end is not None and end <= self._held_end:
            return
        new = frames if self._held_end is None or offset >= self._held_end else end - self._held_end
        self._held_end = end
        seconds = new / self.sample_rate
        if self._ends_at is not None:
            if t <= self._ends_at:
                self._ends_at += seconds
                return
            self._dry_since, self._ends_at, self._buffered = self._ends_at, None, 0.0
        self._buffered += seconds
        if self._buffered >= self.jitter:
            if self._dry_since is not None:
                self.silences.append((self._dry_since, t - self._dry_since))
                self._dry_since = None
            self._ends_at = t + self._buffered

    def longest_silence(self, now: float) -> float:
        """The longest silence after the first sound, counting one still going on at ``now``."""
        ongoing = 0.0
        if self._ends_at is not None and now > self._ends_at:
            ongoing = now - self._ends_at
        elif self._dry_since is not None:
            ongoing = now - self._dry_since
        return max([s for _, s in self.silences] + [ongoing])
