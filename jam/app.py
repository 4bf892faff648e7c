"""The composition root: the one place that builds the parts and wires them together.

``jam serve``, ``jam worker``, ``jam render``, the benchmarks and the tests all start here:
:meth:`App.load` builds the engine (model + seed library) and one device queue; :meth:`App.serve`
adds the hub and the websocket server; :meth:`App.cluster_server` and :meth:`App.worker` do the
same on Redis (an edge, and generation); :meth:`App.render` streams a prompt to a tensor through
the same producer a session uses. Tests build an :class:`App` around a stand-in renderer instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jam.cluster.edge import EdgeHub
from jam.cluster.record import ClusterSettings
from jam.cluster.store import Store
from jam.cluster.worker import Worker
from jam.model.device_queue import DeviceQueue
from jam.model.engine import load_engine
from jam.model.folder import DEFAULT_MODEL_DIR, ModelDefaults
from jam.model.types import Blend, Renderer, blend, blend_label
from jam.seeds.library import SeedLibrary, default_seed_dir
from jam.serve import protocol
from jam.serve.clock import Clock, SystemClock
from jam.serve.hub import Hub
from jam.serve.server import JamServer
from jam.serve.session import SessionContext
from jam.serve.settings import ServerSettings
from jam.sound import opus
from jam.sound.opus import default_bitrate
from jam.sound.params import SpectrogramParams
from jam.sound.tempo import BPM_RANGE
from jam.stream.controls import Controls, SessionState
from jam.stream.producer import (
    Audience,
    Chunk,
    Producer,
    RenderFailure,
    StreamSettings,
    TileImage,
)

log = logging.getLogger(__name__)

EXAMPLE_PROMPTS = (
    "jazzy lofi hip hop with warm rhodes",
    "funky bass groove with slap guitar",
    "deep house with a rolling bassline",
    "acoustic folk guitar by a campfire",
    "synthwave with shimmering arpeggios",
    "techno kick with dark industrial pads",
)


@dataclass(frozen=True)
class RenderRequest:
    """``jam render``: a prompt or blend (or a glide to another) for ``seconds`` of audio.

    Unset settings come from the model's defaults (``bpm``: the tempo of the style the prompt
    names, else the seed loop's own);
    ``seed_image`` is a seed name or an audio file to use as one.
    """

    prompts: Blend
    seconds: float = 30.0
    to: Blend | None = None
    seed_image: str | None = None
    seed: int = 0
    steps: int | None = None
    strength: float | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    bpm: float | None = None

    def __post_init__(self) -> None:
        """Refuse bad input before any model is loaded (blends come validated: ``blend``)."""
        if not 0 < self.seconds <= 3600:
            raise ValueError(f"seconds must be between 0 and 3600, got {self.seconds}")
        lo, hi = BPM_RANGE
        if self.bpm is not None and not lo <= self.bpm <= hi:
            raise ValueError(f"bpm must be between {lo:g} and {hi:g}, got {self.bpm:g}")


@dataclass
class App:
    """The parts of a running jam: a renderer, its seed library, the model's defaults.

    An edge of a cluster has no renderer (``renderer`` None): it loads only what the model's
    folder says about its format and defaults, never its weights."""

    renderer: Renderer | None
    seeds: SeedLibrary
    defaults: ModelDefaults
    stream_settings: StreamSettings = field(default_factory=StreamSettings)
    queue: DeviceQueue | None = None  # owned (closed by close()) when the app built it
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        device: str | None = None,
        seed_dir: Path | None = None,
        stream_settings: StreamSettings | None = None,
    ) -> App:
        """Load a model once (None: the embedded one) and share it through one device queue."""
        engine = load_engine(model, device, seed_dir=seed_dir or default_seed_dir())
        queue = DeviceQueue(engine.render, engine.params.sample_rate)
        settings = stream_settings or StreamSettings()
        return cls(queue, engine.seeds, engine.defaults, settings, queue=queue)

    @classmethod
    def load_format(cls, model: str | Path | None = None, seed_dir: Path | None = None) -> App:
        """The seed loops and defaults of a model folder, without the model (an edge)."""
        folder = Path(model) if model else DEFAULT_MODEL_DIR
        if folder.is_dir():
            params, defaults = SpectrogramParams.load(folder), ModelDefaults.load(folder)
        else:  # a hub id or single file: Riffusion's format
            params, defaults = SpectrogramParams(), ModelDefaults()
        seeds = SeedLibrary(params, defaults.tile_width, user_dir=seed_dir or default_seed_dir())
        return cls(None, seeds, defaults)

    @property
    def sample_rate(self) -> int:
        return self.seeds.params.sample_rate

    async def close(self) -> None:
        if self.queue is not None:
            await self.queue.close()

    # -- sessions (the hub's StreamSource) ------------------------------------------------------

    def default_seed(self, names: Sequence[str]) -> str | None:
        """The model's default seed loop if it is among ``names``, else the first of them."""
        if self.defaults.seed_image in names:
            return self.defaults.seed_image
        return names[0] if names else None

    def new_state(
        self, prompt: str | None, seed_image: str | None, seed: int | None = None
    ) -> SessionState:
        """A session's first state: the prompt (or an example) on a known seed loop, at the
        tempo of the style it names (the seed loop's when it names none)."""
        names = self.seeds.names()
        seed_image = seed_image or self.default_seed(names)
        if seed_image not in names:
            raise ValueError(f"unknown seed image {seed_image!r}; choose one of {names}")
        prompt = prompt or self.rng.choice(EXAMPLE_PROMPTS)
        bpm = self.defaults.tempo_for(prompt) or self.seeds.get(seed_image).bpm
        controls = Controls.start(prompt, self.defaults, seed_image, bpm)
        return SessionState(
            controls,
            seed=self.rng.randrange(2**31) if seed is None else seed,
            steps=self.defaults.steps,
        )

    def stream(
        self,
        state: SessionState,
        renderer: Renderer | None = None,
        audience: Audience | None = None,
        start_at: Callable[[int], int] | None = None,
    ) -> AsyncIterator[Chunk | TileImage | RenderFailure]:
        """A session's stream; its ``audience`` (the session) lets changes splice into audio
        already sent; ``start_at`` places a continued stream's first tile (see Producer)."""
        producer = Producer(
            state, self._renderer(renderer), self.seeds, self.stream_settings, audience, start_at
        )
        return producer.stream()

    def _renderer(self, renderer: Renderer | None = None) -> Renderer:
        if renderer is None and self.renderer is None:
            raise RuntimeError("this process loaded no model: it cannot generate")
        return renderer or self.renderer  # type: ignore[return-value]

    @property
    def chunk_seconds(self) -> float:
        return self.stream_settings.chunk_seconds

    # -- serving ------------------------------------------------------------------------------

    def seed_catalogue(self) -> list[dict[str, object]]:
        """Every usable seed loop with its tempo; builds (and caches) each one."""
        catalogue = []
        for name in self.seeds.names():
            try:
                loop = self.seeds.get(name)
            except Exception:  # a broken user seed should not take the server down
                log.exception("seed %r could not be loaded", name)
                continue
            catalogue.append(
                {
                    "name": name,
                    "bpm": loop.bpm,
                    "beats": loop.beats,
                    "description": loop.description,
                }
            )
        return catalogue

    async def context(self, settings: ServerSettings, clock: Clock | None = None) -> SessionContext:
        """What every session of a server (or worker) shares."""
        catalogue = await asyncio.to_thread(self.seed_catalogue)
        names = tuple(str(s["name"]) for s in catalogue)
        p = self.seeds.params
        bitrate = settings.bitrate
        if bitrate is None:
            bitrate = default_bitrate(p.sample_rate, p.channels)
        if bitrate and not opus.available():
            log.warning("PyAV with libopus is missing: streaming 16-bit PCM only")
            bitrate = 0
        return SessionContext(
            settings=settings.session,
            clock=clock or SystemClock(),
            sample_rate=p.sample_rate,
            channels=p.channels,
            seed_names=names,
            welcome_extra={"seeds": catalogue},
            opus_bitrate=bitrate or None,
        )

    async def server(self, settings: ServerSettings, clock: Clock | None = None) -> JamServer:
        """A hub and websocket server for this app (not yet listening)."""
        context = await self.context(settings, clock)
        hub = Hub(
            self,
            self._renderer(),
            context,
            admission=settings.admission,
            idle_seconds=settings.idle_seconds,
            device_load=self.queue.utilization if self.queue is not None else None,
        )
        return JamServer(hub, settings, self.info(context))

    async def cluster_server(
        self,
        settings: ServerSettings,
        store: Store,
        cluster: ClusterSettings | None = None,
        clock: Clock | None = None,
        *,
        name: str | None = None,
    ) -> JamServer:
        """An edge: the page and websockets for the sessions in ``store`` (not yet listening)."""
        context = await self.context(settings, clock)
        hub = EdgeHub(
            store,
            self,
            context,
            cluster,
            admission=settings.admission,
            name=name,
            linger=settings.idle_seconds,
        )
        return JamServer(hub, settings, self.info(context))

    async def worker(
        self,
        settings: ServerSettings,
        store: Store,
        cluster: ClusterSettings | None = None,
        clock: Clock | None = None,
        *,
        name: str | None = None,
    ) -> Worker:
        """Generation for the sessions in ``store`` (not yet started)."""
        context = await self.context(settings, clock)
        return Worker(
            store,
            self,
            self._renderer(),
            context,
            cluster,
            idle_seconds=settings.idle_seconds,
            name=name,
        )

    def info(self, context: SessionContext) -> dict[str, object]:
        """``/api/info``: what the page needs before it connects."""
        p = self.seeds.params
        catalogue = context.welcome_extra["seeds"]
        names = context.seed_names
        bitrate = context.opus_bitrate
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "sample_rate": p.sample_rate,
            "channels": p.channels,
            "hop_length": p.hop_length,
            "tile_width": self.seeds.width,
            "codecs": ["opus", "pcm"] if bitrate else ["pcm"],
            "seeds": catalogue,
            "default_seed": self.default_seed(names),
            "examples": list(EXAMPLE_PROMPTS),
            "limits": {
                "prompt_chars": protocol.MAX_PROMPT_CHARS,
                "strength": list(protocol.STRENGTH_RANGE),
                "guidance": list(protocol.GUIDANCE_RANGE),
                "bpm": list(BPM_RANGE),
                "glide": list(protocol.GLIDE_RANGE),
                "blend": protocol.MAX_BLEND,
                "prompt_changes": protocol.PROMPT_CHANGES_PER_WINDOW,
                "prompt_window": protocol.PROMPT_WINDOW_SECONDS,
                "message_bytes": protocol.MAX_MESSAGE_BYTES,
            },
        }

    async def serve(self, settings: ServerSettings, clock: Clock | None = None) -> JamServer:
        """Start serving (``port=0`` picks a free port); returns the running server."""
        server = await self.server(settings, clock)
        await server.start()
        return server

    # -- rendering to a file --------------------------------------------------------------------

    async def render(
        self, request: RenderRequest, progress: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        """``request.seconds`` of the stream a session would play, as ``(channels, samples)``.

        With ``to``, the stream glides toward it over the whole length, from the first tile's
        end on (in steps of a bar: see :func:`jam.stream.controls.glide_steps`).
        """
        seed_image = request.seed_image
        if seed_image is not None and seed_image not in self.seeds.names():
            seed_image = self.seeds.add_file(seed_image).name  # a path; clear error if unusable
        d = self.defaults
        seed_image = seed_image or d.seed_image
        loop = self.seeds.get(seed_image)
        bpm = request.bpm or d.tempo_for(blend_label(request.prompts)) or loop.bpm
        controls = Controls(
            request.prompts,
            seed_image,
            d.strength if request.strength is None else request.strength,
            d.guidance if request.guidance is None else request.guidance,
            bpm,
            negative_prompt=request.negative_prompt,
        )
        state = SessionState(controls, seed=request.seed, steps=request.steps or d.steps)
        total = round(request.seconds * self.sample_rate)
        producer = Producer(state, self._renderer(), self.seeds, self.stream_settings)
        parts: list[torch.Tensor] = []
        got = 0
        async for item in producer.stream():
            if isinstance(item, TileImage) and request.to and item.tile == 0:
                beats = request.seconds * bpm / 60.0 - loop.beats  # the rest of the file
                glide = max(1, math.floor(beats))
                state.change(dataclasses.replace(controls, prompts=request.to, glide=glide))
            if isinstance(item, RenderFailure):
                log.warning("a tile failed (%s); its slot repeats the last good one", item.reason)
            if not isinstance(item, Chunk):
                continue
            parts.append(torch.from_numpy(item.audio))
            got += item.audio.shape[-1]
            if progress is not None:
                progress(min(got, total) / self.sample_rate)
            if got >= total:
                break
        return torch.cat(parts, dim=-1)[:, :total]


def parse_blend(specs: Sequence[str]) -> Blend:
    """``["a:0.7", "b:0.3"]`` (a weight after the last colon; none is 1) as a blend."""
    pairs: list[tuple[str, float]] = []
    for spec in specs:
        text, sep, weight = spec.rpartition(":")
        try:
            pairs.append((text, float(weight)) if sep and text.strip() else (spec, 1.0))
        except ValueError:  # a colon inside the prompt itself
            pairs.append((spec, 1.0))
    return blend(*pairs)
