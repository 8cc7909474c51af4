"""The Redis store, for many server processes sharing rooms.

Keys (``{room}`` in braces keeps a room's keys in one cluster slot):
- ``sky:{room}:roster``  hash  participant id -> JSON record
- ``sky:{room}:counts``  hash  role -> count, changed in the same script as the roster
- ``sky:{room}:broadcaster``  string  participant id of the teacher broadcasting now
- ``sky:{room}:hands``  sorted set  participant id, scored by the time the hand went up
- ``sky:{room}:poll:{poll}``  hash  participant id -> choice (HSETNX: the first answer stands)
- ``sky:{room}:stays``  hash  "participant|joined_at" -> JSON stay (attendance)
- ``sky:{room}:open``  hash  the same, for the stays not closed yet
- ``sky:{room}:owner``  string  the node holding the room; a lease its owner renews (PX)
- ``sky:node:{node}``  string  JSON load of a live node; lapses (PX) when heartbeats stop
- ``sky:nodes``  hash  node -> JSON of its latest heartbeat, kept after it lapses (when it was last seen)
- ``sky:recording:{id}``  string  JSON entry of a recorded lesson
- ``sky:recordings``, ``sky:{room}:recordings``  sorted sets  recording ids by start time
- ``sky:city:{node}``  string  JSON list of the node's room summaries (the city view); lapses (PX)
- ``sky:city``  sorted set  node -> when its summaries lapse (ms), so they are read without a scan
Every key carries a TTL refreshed on each change (``ttl_s``; attendance ``record_ttl_s``), so a
crashed node leaves no permanent debris. No command scans the keyspace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from .base import NodeInfo, ParticipantRecord, Stay
from .bus import BusUnavailable, Handler

log = logging.getLogger(__name__)

_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

_REMOVE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local role = cjson.decode(record)['role']
if redis.call('HINCRBY', KEYS[2], role, -1) <= 0 then redis.call('HDEL', KEYS[2], role) end
return 1
"""

_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[3] then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


CITY_FORGET_MS = 3_600_000  # an index entry this long past its node's last summary goes (clocks may differ)

class RedisStore:
    def __init__(
        self, client: Redis, *, prefix: str = "sky", ttl_s: int = 24 * 3600, record_ttl_s: int = 180 * 86400
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._record_ttl_s = record_ttl_s
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisStore:
        return cls(connect(url), **kwargs)  # type: ignore[arg-type]

    def _key(self, room: str, name: str) -> str:
        return f"{self._prefix}:{{{room}}}:{name}"

    async def ping(self) -> None:
        await self._redis.ping()

    async def add_participant(self, room: str, record: ParticipantRecord) -> bool:
        keys = [self._key(room, "roster"), self._key(room, "counts")]
        args: list[str | int] = [record.participant_id, json.dumps(record.to_dict()), record.role, self._ttl_s]
        return bool(await self._add(keys=keys, args=args))

    async def remove_participant(self, room: str, participant_id: str) -> bool:
        keys = [self._key(room, "roster"), self._key(room, "counts")]
        return bool(await self._remove(keys=keys, args=[participant_id]))

    async def participants(self, room: str) -> list[ParticipantRecord]:
        values = await self._redis.hvals(self._key(room, "roster"))
        return [ParticipantRecord.from_dict(json.loads(v)) for v in values]

    async def count(self, room: str, role: str) -> int:
        value = await self._redis.hget(self._key(room, "counts"), role)
        return int(value) if value else 0

    async def set_broadcaster(self, room: str, participant_id: str | None) -> None:
        key = self._key(room, "broadcaster")
        if participant_id is None:
            await self._redis.delete(key)
        else:
            await self._redis.set(key, participant_id, ex=self._ttl_s)

    async def broadcaster(self, room: str) -> str | None:
        value = await self._redis.get(self._key(room, "broadcaster"))
        return str(value) if value is not None else None

    async def set_hand(self, room: str, participant_id: str, raised_at: float | None) -> None:
        key = self._key(room, "hands")
        async with self._redis.pipeline(transaction=True) as pipe:
            if raised_at is None:
                pipe.zrem(key, participant_id)
            else:
                pipe.zadd(key, {participant_id: raised_at}, nx=True)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def hands(self, room: str) -> list[tuple[str, float]]:
        raised: list[Any] = await self._redis.zrange(self._key(room, "hands"), 0, -1, withscores=True)
        return [(str(pair[0]), float(pair[1])) for pair in raised]

    async def hand(self, room: str, participant_id: str) -> float | None:
        raised_at = await self._redis.zscore(self._key(room, "hands"), participant_id)
        return float(raised_at) if raised_at is not None else None

    async def answer_poll(self, room: str, poll_id: str, participant_id: str, choice: int) -> bool:
        key = self._key(room, f"poll:{poll_id}")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, participant_id, choice)
            pipe.expire(key, self._ttl_s)
            added, _ = await pipe.execute()
        return bool(added)

    async def poll_answers(self, room: str, poll_id: str) -> dict[str, int]:
        answers = await self._redis.hgetall(self._key(room, f"poll:{poll_id}"))
        return {str(k): int(v) for k, v in answers.items()}

    async def record_stay(self, room: str, stay: Stay) -> None:
        stays, open_ = self._key(room, "stays"), self._key(room, "open")
        value = json.dumps(stay.to_dict())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(stays, stay.key, value)
            pipe.expire(stays, self._record_ttl_s)
            if stay.left_at is None:
                pipe.hset(open_, stay.key, value)
                pipe.expire(open_, self._record_ttl_s)
            else:
                pipe.hdel(open_, stay.key)
            await pipe.execute()

    async def attendance(self, room: str) -> list[Stay]:
        values = await self._redis.hvals(self._key(room, "stays"))
        return sorted((Stay(**json.loads(v)) for v in values), key=lambda s: s.joined_at)

    async def open_stays(self, room: str) -> list[Stay]:
        values = await self._redis.hvals(self._key(room, "open"))
        return sorted((Stay(**json.loads(v)) for v in values), key=lambda s: s.joined_at)

    async def deny(self, keys: list[str], ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(f"{self._prefix}:deny:{key}", 1, px=max(1, int(ttl_s * 1000)))
            await pipe.execute()

    async def denied(self, keys: list[str]) -> bool:
        return bool(keys) and int(await self._redis.exists(*(f"{self._prefix}:deny:{key}" for key in keys))) > 0

    async def save_recording(self, recording: dict[str, Any]) -> None:
        recording_id, started_at = recording["id"], float(recording["started_at"])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self._prefix}:recording:{recording_id}", json.dumps(recording), ex=self._record_ttl_s)
            pipe.zadd(f"{self._prefix}:recordings", {recording_id: started_at})
            pipe.zadd(self._key(recording["room"], "recordings"), {recording_id: started_at})
            await pipe.execute()

    async def recordings(self, room: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        index = self._key(room, "recordings") if room is not None else f"{self._prefix}:recordings"
        ids = [str(i) for i in await self._redis.zrevrange(index, 0, limit - 1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for recording_id in ids:
                pipe.get(f"{self._prefix}:recording:{recording_id}")
            values = await pipe.execute()
        return [json.loads(v) for v in values if v]

    async def recording(self, recording_id: str) -> dict[str, Any] | None:
        value = await self._redis.get(f"{self._prefix}:recording:{recording_id}")
        return json.loads(value) if value else None

    async def heartbeat(self, info: NodeInfo, ttl_s: float) -> None:
        value = json.dumps(info.to_dict())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{self._prefix}:node:{info.node}", value, px=int(ttl_s * 1000))
            pipe.hset(f"{self._prefix}:nodes", info.node, value)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        names = [str(n) for n in await self._redis.hkeys(f"{self._prefix}:nodes")]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(f"{self._prefix}:node:{name}")
            values = await pipe.execute()
        return [NodeInfo(**json.loads(v)) for v in values if v]

    async def node_seen(self, node: str) -> float | None:
        value = await self._redis.hget(f"{self._prefix}:nodes", node)
        return float(json.loads(value)["at"]) if value else None

    async def room_owner(self, room: str) -> str | None:
        value = await self._redis.get(self._key(room, "owner"))
        return str(value) if value is not None else None

    async def claim_room(self, room: str, node: str, ttl_s: float, replacing: str | None = None) -> str:
        args: list[str | int] = [node, int(ttl_s * 1000), replacing or ""]
        return str(await self._claim(keys=[self._key(room, "owner")], args=args))

    async def renew_rooms(self, node: str, rooms: list[str], ttl_s: float) -> list[str]:
        if not rooms:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:  # one script per key: a room's keys share a cluster slot, rooms do not
                await self._claim(keys=[self._key(room, "owner")], args=[node, int(ttl_s * 1000), node], client=pipe)
            owners = await pipe.execute()
        return [room for room, owner in zip(rooms, owners, strict=True) if owner != node]

    async def release_room(self, room: str, node: str) -> None:
        await self._release(keys=[self._key(room, "owner")], args=[node])

    async def save_room_summaries(self, node: str, summaries: list[dict[str, Any]], ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        now_ms = int(time.time() * 1000)
        index = f"{self._prefix}:city"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{index}:{node}", json.dumps(summaries, separators=(",", ":")), px=ttl_ms)
            pipe.zadd(index, {node: now_ms + ttl_ms})
            # nodes that stopped saving long ago (whose keys lapsed: reads rely on those, not on clocks)
            pipe.zremrangebyscore(index, "-inf", now_ms - CITY_FORGET_MS)
            pipe.expire(index, self._ttl_s)
            await pipe.execute()

    async def room_summaries(self) -> list[dict[str, Any]]:
        index = f"{self._prefix}:city"
        nodes = [str(n) for n in await self._redis.zrange(index, 0, -1)]
        if not nodes:
            return []
        values = await self._redis.mget([f"{index}:{node}" for node in nodes])
        found = [(node, json.loads(value)) for node, value in zip(nodes, values, strict=True) if value]
        return [{**s, "node": node} for node, summaries in found for s in summaries]

    async def close(self) -> None:
        await self._redis.aclose()


POOL_SIZE = 32  # connections per process: a join storm waits for one instead of opening thousands


def connect(url: str) -> Redis:
    """A client that fails fast while Redis is unreachable instead of hanging the caller, retries
    once on a fresh connection (after a Redis restart the pooled ones are dead), and shares a
    bounded pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=None,  # wait for a free connection (callers are bounded); a dead Redis still fails fast
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis(connection_pool=pool)


class RedisBus:
    """Pub/sub on its own connection; listening survives Redis restarts (it subscribes again)."""

    def __init__(self, client: Redis) -> None:
        self._redis = client
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_url(cls, url: str) -> RedisBus:
        return cls(connect(url))

    async def listen(self, channel: str, handler: Handler) -> None:
        subscribed = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._listen(channel, handler, subscribed)))
        await subscribed

    async def _listen(self, channel: str, handler: Handler, subscribed: asyncio.Future[None]) -> None:
        lost = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                if not subscribed.done():
                    subscribed.set_result(None)
                if lost:
                    log.warning("bus: listening on %s again", channel)
                    lost = False
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        handler(message["data"])
            except (ConnectionError, TimeoutError, OSError) as exc:
                if not lost:
                    log.warning("bus: lost channel %s (%s); subscribing again until Redis answers", channel, exc)
                    lost = True
                await asyncio.sleep(0.25)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def publish(self, messages: list[tuple[str, str]]) -> list[int]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, message)
                return [int(n) for n in await pipe.execute()]
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc

    async def listeners(self, channel: str) -> int:
        try:
            counts = await self._redis.pubsub_numsub(channel)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise BusUnavailable(str(exc)) from exc
        return int(counts[0][1]) if counts else 0

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
