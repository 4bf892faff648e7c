"""The thin layer every cluster process talks to Redis through (redis-py's asyncio client).

Each method is one round trip (a pipeline where several commands must land together, in a
``MULTI`` so a reader never sees half of them). Redis being unreachable, busy loading or timing
out is one exception, :class:`StoreUnavailable`, that callers turn into a notice and a retry.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from jam.cluster.record import ClusterSettings, Entry, Keys, SessionRecord, entry_fields

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Renew a lease we hold; take it back if it lapsed while nobody else claimed it (Redis was
# away longer than the lease); 0 when another worker holds it now.
RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0 end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CONTROLS_MAXLEN = 1000  # a worker applies them as they come; this only bounds a backlog


class StoreUnavailable(RuntimeError):
    """Redis could not be reached or did not answer in time."""


def _unavailable(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from None
        except redis_errors.BusyLoadingError as e:
            raise StoreUnavailable(f"Redis is loading its data: {e}") from None

    return wrapper


class Store:
    """One process's connection pool to the cluster's Redis, in jam's terms."""

    def __init__(
        self, url: str, settings: ClusterSettings | None = None, block_ms: int = 1000
    ) -> None:
        self.url = url
        self.settings = settings = settings or ClusterSettings()
        self.keys = Keys(settings.prefix)
        self.block_ms = block_ms  # the longest a blocking read waits
        # a read that blocks for block_ms must not time out; a dead Redis must not hang us;
        # a pooled connection Redis dropped (it restarted) is retried once on a fresh one
        self.redis = aioredis.from_url(
            url,
            socket_timeout=block_ms / 1000 + 2,
            socket_connect_timeout=1.0,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
        )
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)

    async def close(self) -> None:
        await self.redis.aclose()

    @_unavailable
    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- records -------------------------------------------------------------------------------

    @property
    def record_ttl_ms(self) -> int:
        return round(self.settings.record_days * 86400 * 1000)

    @_unavailable
    async def create(self, record: SessionRecord) -> None:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.record(record.id), mapping=record.fields())
            pipe.pexpire(k.record(record.id), self.record_ttl_ms)
            pipe.sadd(k.sessions, record.id)
            await pipe.execute()

    @property
    def channel(self) -> str:
        """Where a new session is announced (pub/sub), so a worker claims it at once."""
        return f"{self.keys.prefix}new"

    @_unavailable
    async def announce(self, sid: str) -> None:
        await self.redis.publish(self.channel, sid)

    def news(self) -> News:
        return News(self)

    @_unavailable
    async def load(self, sid: str) -> SessionRecord | None:
        raw = await self.redis.hgetall(self.keys.record(sid))
        if not raw:
            return None
        try:
            return SessionRecord.parse(sid, raw)
        except (KeyError, ValueError) as e:
            log.error("session %s: its record is unreadable (%s); ignoring it", sid, e)
            return None

    @_unavailable
    async def update(self, sid: str, fields: dict[str, str]) -> bool:
        """Write fields of a live record (all at once); False if the session has ended."""
        key = self.keys.record(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hset(key, mapping={**fields, "updated": repr(time.time())})
            pipe.pexpire(key, self.record_ttl_ms)
            existed, *_ = await pipe.execute()
        if not existed:  # ended meanwhile: do not bring back a stub
            await self.redis.delete(key)
        return bool(existed)

    @_unavailable
    async def sessions(self) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.keys.sessions))

    @_unavailable
    async def end(self, sid: str, last_words: Entry) -> None:
        """Say the session ended (edges close their listeners) and drop everything else."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(k.frames(sid), entry_fields(last_words))
            pipe.pexpire(k.frames(sid), 60_000)  # long enough for every edge to read the end
            pipe.srem(k.sessions, sid)
            pipe.delete(k.record(sid), k.controls(sid), k.lease(sid), k.listeners(sid))
            await pipe.execute()

    # -- frames --------------------------------------------------------------------------------

    @_unavailable
    async def publish(self, sid: str, entries: list[Entry], maxlen: int | None = None) -> None:
        """Append to a session's frames; ``maxlen``: trim to about that many entries (the
        worker's job; an edge's occasional message leaves the length to it)."""
        key = self.keys.frames(sid)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(key, entry_fields(entry), maxlen=maxlen, approximate=maxlen is not None)
            pipe.pexpire(key, self.record_ttl_ms)
            await pipe.execute()

    @_unavailable
    async def read_frames(self, sid: str, after: str) -> list[tuple[str, dict[bytes, bytes]]]:
        """Entries after id ``after`` (``$``: only new ones), waiting up to ``block_ms``."""
        got = await self.redis.xread({self.keys.frames(sid): after}, count=200, block=self.block_ms)
        return [(i.decode(), fields) for _, entries in got for i, fields in entries]

    @_unavailable
    async def recent_frames(self, sid: str, seconds: float) -> list[tuple[str, dict[bytes, bytes]]]:
        """The entries of the last ``seconds`` (by Redis's clock), oldest first."""
        now_s, now_us = await self.redis.time()
        since = int(now_s * 1000 + now_us // 1000 - seconds * 1000)
        got = await self.redis.xrange(self.keys.frames(sid), min=f"{since}-0")
        return [(i.decode(), fields) for i, fields in got]

    @_unavailable
    async def last_frame_id(self, sid: str) -> str:
        """The newest entry's id ("0-0" when there is none yet)."""
        last = await self.redis.xrevrange(self.keys.frames(sid), count=1)
        return last[0][0].decode() if last else "0-0"

    @_unavailable
    async def audio_end(self, sid: str) -> int | None:
        """Where the audio published so far ends (None: none in the newest entries)."""
        for _, fields in await self.redis.xrevrange(self.keys.frames(sid), count=50):
            if fields.get(b"k") == b"a":
                return int(fields[b"pcm.e"])
        return None

    @_unavailable
    async def frames_age(self, sid: str) -> float | None:
        """Seconds since the newest frame was published (None: none yet)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self.keys.frames(sid), count=1)
            pipe.time()
            last, (now_s, now_us) = await pipe.execute()
        if not last:
            return None
        ms = int(last[0][0].decode().split("-")[0])
        return max(0.0, now_s + now_us / 1e6 - ms / 1000)

    # -- controls ------------------------------------------------------------------------------

    @_unavailable
    async def send_control(self, sid: str, raw: str, edge: str, listener: int) -> str:
        """Queue a control message for the session's worker; its id once Redis holds it."""
        fields = {"m": raw, "edge": edge, "listener": str(listener)}
        got = await self.redis.xadd(
            self.keys.controls(sid), fields, maxlen=CONTROLS_MAXLEN, approximate=True
        )
        return got.decode()

    @_unavailable
    async def read_controls(self, sid: str, after: str) -> list[tuple[str, str, str, int]]:
        """(id, message, edge, listener) after id ``after``, waiting up to ``block_ms``."""
        got = await self.redis.xread(
            {self.keys.controls(sid): after}, count=50, block=self.block_ms
        )
        return [
            (i.decode(), f[b"m"].decode(), f[b"edge"].decode(), int(f[b"listener"]))
            for _, entries in got
            for i, f in entries
        ]

    # -- leases --------------------------------------------------------------------------------

    @_unavailable
    async def claim(self, sid: str, worker: str) -> bool:
        key = self.keys.lease(sid)
        return bool(await self.redis.set(key, worker, nx=True, px=self.settings.lease_ms))

    @_unavailable
    async def renew(self, sid: str, worker: str) -> bool:
        """Keep the lease (or take it back if it lapsed unclaimed); False: another owns it."""
        got = await self._renew(keys=[self.keys.lease(sid)], args=[worker, self.settings.lease_ms])
        return bool(got)

    @_unavailable
    async def release(self, sid: str, worker: str) -> None:
        await self._release(keys=[self.keys.lease(sid)], args=[worker])

    @_unavailable
    async def unowned(self) -> list[str]:
        """The live sessions no worker holds a lease on (two round trips, however many)."""
        sids = await self.sessions()
        if not sids:
            return []
        owners = await self.redis.mget([self.keys.lease(sid) for sid in sids])
        return [sid for sid, owner in zip(sids, owners, strict=True) if owner is None]

    @_unavailable
    async def owner(self, sid: str) -> str | None:
        got = await self.redis.get(self.keys.lease(sid))
        return None if got is None else got.decode()

    # -- listeners -----------------------------------------------------------------------------

    @_unavailable
    async def set_listeners(self, sid: str, edge: str, count: int) -> int:
        """Say how many listen on this edge (valid for ``presence_ms``); the total listening
        on every edge whose count is still valid."""
        key = self.keys.listeners(sid)
        deadline = int(time.time() * 1000) + self.settings.presence_ms
        async with self.redis.pipeline(transaction=True) as pipe:
            if count:
                pipe.hset(key, edge, f"{count} {deadline}")
            else:
                pipe.hdel(key, edge)
            pipe.hgetall(key)
            *_, raw = await pipe.execute()
        return self._total(raw)

    @_unavailable
    async def listeners(self, sid: str) -> int:
        return self._total(await self.redis.hgetall(self.keys.listeners(sid)))

    @_unavailable
    async def totals(self, sids: list[str]) -> list[int]:
        """Everyone listening to each of ``sids`` (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(self.keys.listeners(sid))
            return [self._total(raw) for raw in await pipe.execute()]

    @staticmethod
    def _total(raw: dict[bytes, bytes]) -> int:
        now = time.time() * 1000
        total = 0
        for value in raw.values():
            count, _, deadline = value.decode().partition(" ")
            if int(deadline) > now:
                total += int(count)
        return total


class News:
    """Announcements of new sessions, waited for with a timeout (a worker's lease rounds)."""

    def __init__(self, store: Store) -> None:
        self.pubsub = store.redis.pubsub()
        self.channel = store.channel
        self.subscribed = False

    async def wait(self, timeout: float) -> bool:
        """Until an announcement or ``timeout``; False when Redis is away (wait elsewhere)."""
        try:
            if not self.subscribed:
                await self.pubsub.subscribe(self.channel)
                self.subscribed = True
            await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            return True
        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
            self.subscribed = False
            return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
