"""Whether a new session fits: per client, and by what the device measurably sustains (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from jam.serve.protocol import ProtocolError

RETRY_AFTER = 15.0  # seconds: about one idle sweep, when abandoned sessions have been freed


@dataclass(frozen=True)
class Admission:
    """``max_sessions`` at most; ``per_client`` live sessions per client address; and a new
    generating session only while the device would still have ``headroom`` to spare."""

    max_sessions: int = 16
    per_client: int = 4
    headroom: float = 1.3

    def check(
        self, live: int, generating: int, client_live: int, utilization: float | None
    ) -> None:
        """Raise ProtocolError (``too_many_sessions``, ``server_full``) when refused.

        ``utilization`` is the device's busy share over recent seconds with ``generating``
        sessions rendering; one more is expected to add their average.
        """
        if client_live >= self.per_client:
            raise ProtocolError(
                "too_many_sessions",
                f"you already run {client_live} jams; close one to start another",
                retry_after=RETRY_AFTER,
            )
        if live >= self.max_sessions:
            raise ProtocolError("server_full", "too many sessions; try again later", RETRY_AFTER)
        if utilization is not None and generating > 0:
            projected = utilization * (generating + 1) / generating
            if projected * self.headroom > 1.0:
                raise ProtocolError(
                    "server_full",
                    f"the device is {utilization:.0%} busy with {generating} jams; another would "
                    "not keep up. Try again later",
                    RETRY_AFTER,
                )
