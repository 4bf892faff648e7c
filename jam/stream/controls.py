"""What steers one session, and the walk from tile to tile it implies (pure).

A session's controller changes :class:`Controls`; the producer asks for one tile after another,
and :func:`next_request` decides where each lies on the path between two endpoints: gliding
toward changed controls, or drifting to a new noise seed so a steady prompt keeps evolving.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from jam.model.folder import ModelDefaults
from jam.model.types import Endpoint, TileRequest


@dataclass(frozen=True)
class Controls:
    """What a session's controller can change; a snapshot is taken per tile request."""

    prompt: str
    seed_image: str
    strength: float
    guidance: float
    negative_prompt: str = ""

    @classmethod
    def start(cls, prompt: str, defaults: ModelDefaults, seed_image: str | None = None) -> Controls:
        """A prompt with a model's recommended settings (and its default seed loop)."""
        return cls(prompt, seed_image or defaults.seed_image, defaults.strength, defaults.guidance)


class SessionState:
    """The live controls of one session. The server writes; the producer reads per tile."""

    def __init__(self, controls: Controls, *, seed: int, steps: int) -> None:
        self.controls = controls
        self.seed = seed
        self.steps = steps
        self.version = 0
        self.changed = asyncio.Event()

    def _replace(self, new: Controls) -> None:
        if new != self.controls:
            self.controls = new
            self.version += 1
            self.changed.set()

    def set_prompt(self, prompt: str) -> None:
        self._replace(dataclasses.replace(self.controls, prompt=prompt))

    def set_seed_image(self, name: str) -> None:
        self._replace(dataclasses.replace(self.controls, seed_image=name))

    def set_strength(self, strength: float) -> None:
        self._replace(dataclasses.replace(self.controls, strength=float(strength)))

    def set_guidance(self, guidance: float) -> None:
        self._replace(dataclasses.replace(self.controls, guidance=float(guidance)))

    def snapshot(self) -> dict[str, object]:
        """The state as the wire shows it (``welcome`` and ``state`` messages)."""
        return dataclasses.asdict(self.controls) | {"seed": self.seed, "steps": self.steps}


def first_request(state: SessionState) -> TileRequest:
    c = state.controls
    here = Endpoint(c.prompt, state.seed, c.strength, c.guidance, c.negative_prompt)
    return TileRequest(here, here, 0.0, c.seed_image, state.steps)


def next_request(
    prev: TileRequest,
    controls: Controls,
    steps: int,
    changed: bool,
    evolve: float,
    glide_tiles: int,
) -> TileRequest:
    """The request after ``prev``: glide toward changed controls, else drift to a new seed.

    A change starts a new walk from the endpoint nearest to where ``prev`` was, toward the new
    controls with the same noise, reaching them in ``glide_tiles`` tiles. A steady prompt
    walks alpha by ``evolve`` per tile toward the next seed, so the music keeps evolving.
    """
    c = controls
    if changed:
        here = prev.start if prev.alpha < 0.5 else prev.end
        there = Endpoint(c.prompt, here.seed, c.strength, c.guidance, c.negative_prompt)
        return TileRequest(here, there, 1.0 / glide_tiles, c.seed_image, steps)
    if prev.start == prev.end or prev.alpha >= 1.0 - 1e-6:
        here = prev.end  # arrived: drift from here toward the next seed
        return TileRequest(
            here, dataclasses.replace(here, seed=here.seed + 1), evolve, prev.seed_image, steps
        )
    gliding = dataclasses.replace(prev.start, seed=prev.end.seed) != prev.end
    step = 1.0 / glide_tiles if gliding else evolve
    return dataclasses.replace(prev, alpha=min(1.0, prev.alpha + step), steps=steps)
