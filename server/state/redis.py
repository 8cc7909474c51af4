"""The Redis store, for many server processes sharing rooms.

Keys (``{room}`` in braces keeps a room's keys in one cluster slot):
- ``sky:{room}:roster``  hash  participant id -> JSON record
- ``sky:{room}:counts``  hash  role -> count, changed in the same script as the roster
- ``sky:{room}:broadcaster``  string  participant id of the teacher broadcasting now
- ``sky:{room}:hands``  sorted set  participant id, scored by the time the hand went up
- ``sky:{room}:poll:{poll}``  hash  participant id -> choice (HSETNX: the first answer stands)
- ``sky:{room}:stays``  hash  "participant|joined_at" -> JSON stay (attendance)
Every key carries a TTL refreshed on each change (``ttl_s``; attendance ``record_ttl_s``), so a
crashed node leaves no permanent debris.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from .base import ParticipantRecord, Stay

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

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisStore:
        return cls(Redis.from_url(url, decode_responses=True), **kwargs)  # type: ignore[arg-type]

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
        key = self._key(room, "stays")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, f"{stay.participant_id}|{stay.joined_at!r}", json.dumps(stay.to_dict()))
            pipe.expire(key, self._record_ttl_s)
            await pipe.execute()

    async def attendance(self, room: str) -> list[Stay]:
        values = await self._redis.hvals(self._key(room, "stays"))
        return sorted((Stay(**json.loads(v)) for v in values), key=lambda s: s.joined_at)

    async def close(self) -> None:
        await self._redis.aclose()
