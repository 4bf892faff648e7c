"""The hub's registry on the real app (stand-in renderer) in virtual time: admission, reaping."""

from __future__ import annotations

import json

import pytest

from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve import protocol
from jam.serve.admission import Admission
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


async def test_sessions_beyond_the_cap_or_a_clients_share_are_refused_with_a_retry_hint(seeds):
    admission = Admission(max_sessions=3, per_client=2)
    server = await standin_app(seeds).server(ServerSettings(admission=admission), FakeClock())
    hub = server.hub
    try:
        with pytest.raises(protocol.ProtocolError, match="unknown seed image 'nope'") as e:
            hub.create(protocol.Create(seed_image="nope"), client="10.0.0.1")
        assert e.value.code == "bad_value"
        for name in ("drone", "breakbeat"):
            session = hub.create(protocol.Create(seed_image=name), client="10.0.0.1")
            assert session.state.controls.seed_image == name
        with pytest.raises(protocol.ProtocolError) as e:
            hub.create(protocol.Create(), client="10.0.0.1")
        assert e.value.code == "too_many_sessions" and e.value.retry_after
        last = hub.create(protocol.Create(), client="10.0.0.2")  # another client still fits
        with pytest.raises(protocol.ProtocolError) as e:
            hub.create(protocol.Create(), client="10.0.0.3")
        assert e.value.code == "server_full" and e.value.retry_after
        await hub.stop_session(last.id)
        assert hub.create(protocol.Create(), client="10.0.0.3"), "a freed slot is given again"
    finally:
        await hub.close()


async def test_status_shows_aggregates_and_session_ids_only_to_the_operator(seeds):
    settings = ServerSettings(operator_token="s3cret")
    server = await standin_app(seeds).server(settings, FakeClock())
    try:
        session = server.hub.create(protocol.Create())
        public = server.status()
        assert public["sessions"] == 1 and "detail" not in public
        assert session.id not in json.dumps(public)
        assert [d["id"] for d in server.status(detail=True)["detail"]] == [session.id]
    finally:
        await server.hub.close()
