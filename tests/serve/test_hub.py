"""The hub's registry on the real app (stand-in renderer) in virtual time: admission, reaping."""

from __future__ import annotations

import pytest

from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve import protocol
from jam.serve.settings import ServerSettings
from tests.fakeclock import FakeClock
from tests.standin import standin_app


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=256)


async def test_a_session_nobody_listens_to_is_freed_after_idle_seconds(seeds):
    clock = FakeClock()
    server = await standin_app(seeds).server(ServerSettings(idle_seconds=30.0), clock)
    hub = server.hub
    try:
        kept, left = hub.create(protocol.Create("kept")), hub.create(protocol.Create("left"))
        listener = kept.join(control=True)
        await clock.advance(10.0)
        other = left.join(control=True)
        left.leave(other)  # empty from t = 10 s
        await clock.advance(29.0)
        assert await hub.reap(clock.now()) == [], "29 s idle: kept"
        await clock.advance(1.0)
        assert await hub.reap(clock.now()) == [left.id]
        assert hub.get(left.id) is None and hub.get(kept.id) is kept
        await clock.advance(600.0)
        assert await hub.reap(clock.now()) == [], "a session with a listener is never idle"
        kept.leave(listener)
    finally:
        await hub.close()
    assert hub.sessions == {}


async def test_sessions_beyond_the_cap_are_refused_and_unknown_seeds_are_bad_values(seeds):
    server = await standin_app(seeds).server(ServerSettings(max_sessions=2), FakeClock())
    hub = server.hub
    try:
        with pytest.raises(protocol.ProtocolError, match="unknown seed image 'nope'") as e:
            hub.create(protocol.Create(seed_image="nope"))
        assert e.value.code == "bad_value"
        for name in ("drone", "breakbeat"):
            assert hub.create(protocol.Create(seed_image=name)).state.controls.seed_image == name
        with pytest.raises(protocol.ProtocolError) as e:
            hub.create(protocol.Create())
        assert e.value.code == "server_full"
    finally:
        await hub.close()
