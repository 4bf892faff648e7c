"""Whether a new session fits: per client, and by what the device measurably sustains (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from jam.serve.protocol import ProtocolError

RETRY_AFTER = 15.0  # seconds: about one idle sweep, when abandoned sessions have been freed


@dataclass(frozen=True)
class Admission:
    """``max_sessions`` at most; ``per_client`` live sessions per client address; and a new
    generating session only while every session would still get ``headroom`` x real time.

    Speed is measured per session (seconds of audio per second waited for its tiles, queueing
    included: jam's one real-time factor). The device's throughput is shared, so one more
    session is expected to leave each ``speed * measured / (generating + 1)``, where
    ``measured`` is how many sessions were generating when ``speed`` was measured (sessions
    admitted since count as a share each). On the embedded model on a 2-core CPU this admits 4
    sessions; a 5th is where underruns begin (benchmarks/bench_admission.py).
    """

    max_sessions: int = 16
    per_client: int = 4
    # 30% spare on what the stream needs: a tile's audio holds its overlap beat too (9 beats
    # for 8 of advance), so sessions need 8/9 x real time and 1.3 x 9/8 = 1.5 of measured speed
    headroom: float = 1.5

    def check(
        self,
        live: int,
        generating: int,
        client_live: int,
        speed: float | None = None,
        measured: int = 0,
    ) -> None:
        """Raise ProtocolError (``too_many_sessions``, ``server_full``) when refused."""
        if client_live >= self.per_client:
            raise ProtocolError(
                "too_many_sessions",
                f"you already run {client_live} jams; close one to start another",
                retry_after=RETRY_AFTER,
            )
        if live >= self.max_sessions:
            raise ProtocolError("server_full", "too many sessions; try again later", RETRY_AFTER)
        if speed is not None and measured > 0:
            projected = speed * measured / (generating + 1)
            if projected < self.headroom:
                raise ProtocolError(
                    "server_full",
                    f"the device renders {speed:.2f}x real time for each of {generating} jams; "
                    f"another would leave {projected:.2f}x, under the {self.headroom}x margin. "
                    "Try again later",
                    RETRY_AFTER,
                )
