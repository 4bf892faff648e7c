"""What steers one session, and the walk from tile to tile it implies (pure).

A session's controller changes :class:`Controls`; the producer asks for one tile after another.
:func:`switch_request` starts a glide toward changed controls (in :func:`glide_steps` steps of
alpha, each heard on a beat), and :func:`next_request` continues a slot: drifting to a new
noise seed so a steady prompt keeps evolving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass

from jam.model.folder import ModelDefaults
from jam.model.types import Blend, Continuation, Endpoint, TileRequest, blend, blend_label

DEFAULT_GLIDE_BEATS = 2  # a change reaches full weight two beats after it is first heard
MAX_GLIDE_BEATS = 16
BEATS_PER_GLIDE_STEP = 4  # past one crossfade's length, a glide walks alpha a bar per step


@dataclass(frozen=True)
class Controls:
    """What a session's controller can change; a snapshot is taken per tile request."""

    prompts: Blend
    seed_image: str
    strength: float
    guidance: float
    bpm: float  # the tempo every tile is stretched to
    glide: int = DEFAULT_GLIDE_BEATS  # beats from a change being heard to its full weight
    negative_prompt: str = ""

    @property
    def prompt(self) -> str:
        return blend_label(self.prompts)

    @classmethod
    def start(cls, prompt: str, defaults: ModelDefaults, seed_image: str, bpm: float) -> Controls:
        """A prompt with a model's recommended settings on a seed loop at a tempo."""
        return cls(blend(prompt), seed_image, defaults.strength, defaults.guidance, bpm)

    def grid_changes(self, other: Controls) -> bool:
        """Whether going to ``other`` moves the beat grid (a new loop or tempo): such changes
        land on a bar line, the others on the next beat."""
        return (self.seed_image, self.bpm) != (other.seed_image, other.bpm)


class SessionState:
    """The live controls of one session. The server writes; the producer reads per tile, and
    takes a change back (:meth:`revert`) when its tile could not be rendered."""

    def __init__(self, controls: Controls, *, seed: int, steps: int) -> None:
        self.controls = controls
        self.seed = seed
        self.steps = steps
        self.version = 0
        self.changed = asyncio.Event()

    def change(self, new: Controls) -> None:
        """Steer to ``new`` (the producer sees the new version at its next chunk)."""
        if new != self.controls:
            self.controls = new
            self.version += 1
            self.changed.set()

    def set_prompts(self, prompts: Blend) -> None:
        self.change(dataclasses.replace(self.controls, prompts=prompts))

    def set_prompt(self, prompt: str) -> None:
        self.set_prompts(blend(prompt))

    def set_seed_image(self, name: str) -> None:
        self.change(dataclasses.replace(self.controls, seed_image=name))

    def set_strength(self, strength: float) -> None:
        self.change(dataclasses.replace(self.controls, strength=float(strength)))

    def set_guidance(self, guidance: float) -> None:
        self.change(dataclasses.replace(self.controls, guidance=float(guidance)))

    def set_bpm(self, bpm: float) -> None:
        self.change(dataclasses.replace(self.controls, bpm=float(bpm)))

    def set_glide(self, beats: int) -> None:
        self.change(dataclasses.replace(self.controls, glide=int(beats)))

    def revert(self, controls: Controls, version: int) -> bool:
        """Go back to ``controls`` (what plays) if nothing changed since ``version``: a change
        whose tile failed. Not a new change: nothing is rendered for it."""
        if self.version != version or controls == self.controls:
            return False
        self.controls = controls
        return True

    def snapshot(self) -> dict[str, object]:
        """The state as the wire shows it (``welcome`` and ``state`` messages)."""
        c = self.controls
        return {
            "prompt": c.prompt,
            "prompts": [{"text": p.text, "weight": p.weight} for p in c.prompts],
            "seed_image": c.seed_image,
            "strength": c.strength,
            "guidance": c.guidance,
            "negative_prompt": c.negative_prompt,
            "bpm": round(c.bpm, 3),
            "glide": c.glide,
            "seed": self.seed,
            "steps": self.steps,
        }


def first_request(state: SessionState) -> TileRequest:
    c = state.controls
    here = Endpoint(c.prompts, state.seed, c.strength, c.guidance, c.negative_prompt)
    return TileRequest(here, here, 0.0, c.seed_image, state.steps, c.bpm)


def glide_steps(beats: int) -> tuple[int, int]:
    """(steps, beats each step's crossfade lasts) for a glide of ``beats``.

    Up to a bar it is one crossfade straight to the new controls (0 and 1: one beat); longer
    glides walk alpha in steps of about a bar, each its own tile crossfaded in on a beat.
    """
    if beats <= BEATS_PER_GLIDE_STEP:
        return 1, max(1, beats)
    steps = math.ceil(beats / BEATS_PER_GLIDE_STEP)
    return steps, max(1, round(beats / steps))


def switch_request(prev: TileRequest, controls: Controls, steps: int, alpha: float) -> TileRequest:
    """The tile ``alpha`` of the way from where ``prev`` was toward changed ``controls``.

    The walk starts from ``prev``'s nearer endpoint with the same noise seed, so the first
    step sounds like what plays now; its seed loop and tempo are the new controls' already.
    """
    c = controls
    here = prev.start if prev.alpha < 0.5 else prev.end
    there = Endpoint(c.prompts, here.seed, c.strength, c.guidance, c.negative_prompt)
    return TileRequest(here, there, alpha, c.seed_image, steps, c.bpm)


def next_request(
    prev: TileRequest, steps: int, evolve: float, continuation: Continuation | None = None
) -> TileRequest:
    """The tile for the slot after ``prev``'s, the controls unchanged, continuing
    ``continuation`` (never ``prev``'s own: that was the audio before ``prev``).

    Arrived (or never moved): drift from there toward the next noise seed by ``evolve`` per
    tile, so a steady prompt keeps evolving. Mid-glide: the same point (the glide's own steps
    move it). Mid-drift: ``evolve`` further.
    """
    if prev.start == prev.end or prev.alpha >= 1.0 - 1e-6:
        here = prev.end
        return dataclasses.replace(
            prev,
            start=here,
            end=dataclasses.replace(here, seed=here.seed + 1),
            alpha=evolve,
            steps=steps,
            continuation=continuation,
        )
    gliding = dataclasses.replace(prev.start, seed=prev.end.seed) != prev.end
    alpha = prev.alpha if gliding else min(1.0, prev.alpha + evolve)
    return dataclasses.replace(prev, alpha=alpha, steps=steps, continuation=continuation)
