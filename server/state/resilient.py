"""Lessons go on while Redis is briefly unreachable.

``ResilientStore`` wraps the Redis store. A write that fails is queued and replayed, in order, once
Redis answers again; a read that fails returns what the same read returned last. Placement (who
owns a room) cannot be guessed and raises ``StoreUnavailable``. Heartbeats and lease renewals
are not queued: a fresh one follows within a second of recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, cast

from redis.exceptions import ConnectionError, TimeoutError

from .base import Store, StoreUnavailable
from .redis import RedisStore

log = logging.getLogger(__name__)

FAILURES = (ConnectionError, TimeoutError, OSError)
RETRY_S = 0.5
QUEUE_LIMIT = 100_000  # writes kept while Redis is away; beyond this the oldest are dropped (and counted)
CACHE_LIMIT = 10_000

# Writes, and what each returns while queued.
_QUEUED: dict[str, object] = {
    "add_participant": True,
    "remove_participant": True,
    "set_broadcaster": None,
    "set_hand": None,
    "answer_poll": True,
    "record_stay": None,
    "release_room": None,
    "save_recording": None,
    "deny": None,
}
_SKIPPED: dict[str, object] = {"heartbeat": None, "renew_rooms": [], "save_room_summaries": None}
_READS = {
    "participants",
    "count",
    "broadcaster",
    "hands",
    "hand",
    "poll_answers",
    "attendance",
    "open_stays",
    "nodes",
    "node_seen",
    "room_owner",
    "recordings",
    "recording",
    "denied",
    "room_summaries",
}
# Reads that answer this while Redis is away and they were never read: the denylist cannot be
# consulted then, and lessons go on (a revocation still closes the sessions it names at once).
_READ_DEFAULTS: dict[str, object] = {"denied": False}


Kwargs = dict[str, Any]


class ResilientStore:
    def __init__(self, inner: RedisStore, on_recovered: Callable[[], object] = lambda: None) -> None:
        self._inner = inner
        self.on_recovered = on_recovered
        self.up = True
        self.failures = 0  # calls that failed
        self.dropped = 0  # queued writes dropped because the queue was full
        self.rtt_s = 0.0  # round trip of the latest ping
        self._queue: deque[tuple[str, tuple[Any, ...], Kwargs]] = deque(maxlen=QUEUE_LIMIT)
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._recovery: asyncio.Task[None] | None = None

    def as_store(self) -> Store:
        return cast(Store, self)  # the methods come from __getattr__

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def ping(self) -> float:
        """Round trip to Redis in seconds (also kept in ``rtt_s``)."""
        started = time.perf_counter()
        await self._inner.ping()
        self.rtt_s = time.perf_counter() - started
        return self.rtt_s

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        await self._inner.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._inner, name)
        if name in _QUEUED or name in _SKIPPED:
            return lambda *args, **kwargs: self._write(name, method, args, kwargs)
        if name in _READS:
            return lambda *args, **kwargs: self._read(name, method, args, kwargs)
        return lambda *args, **kwargs: self._other(method, args, kwargs)

    async def _write(self, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: Kwargs) -> Any:
        if self.up:
            try:
                return await method(*args, **kwargs)
            except FAILURES as exc:
                self._went_down(exc)
        if name in _SKIPPED:
            return _SKIPPED[name]
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((name, args, kwargs))
        return _QUEUED[name]

    async def _read(self, name: str, method: Callable[..., Any], args: tuple[Any, ...], kwargs: Kwargs) -> Any:
        if name in _READ_DEFAULTS:  # nothing to remember: a fresh answer, or the default
            if self.up:
                try:
                    return await method(*args, **kwargs)
                except FAILURES as exc:
                    self._went_down(exc)
            return _READ_DEFAULTS[name]
        key = (name, *args, *sorted(kwargs.items()))
        if self.up:
            try:
                value = await method(*args, **kwargs)
            except FAILURES as exc:
                self._went_down(exc)
            else:
                self._cache[key] = value
                self._cache.move_to_end(key)
                if len(self._cache) > CACHE_LIMIT:
                    self._cache.popitem(last=False)
                return value
        if key in self._cache:
            return self._cache[key]
        raise StoreUnavailable(f"Redis is unreachable and {name} was never read before")

    async def _other(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: Kwargs) -> Any:
        if not self.up:
            raise StoreUnavailable("Redis is unreachable")
        try:
            return await method(*args, **kwargs)
        except FAILURES as exc:
            self._went_down(exc)
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

    def _went_down(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.up:
            return
        self.up = False
        log.error("Redis is unreachable (%s): lessons go on, writes are queued until it answers", exc)
        self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        down_at = time.monotonic()
        while True:
            await asyncio.sleep(RETRY_S)
            try:
                await self.ping()
                while self._queue:
                    name, args, kwargs = self._queue[0]
                    await getattr(self._inner, name)(*args, **kwargs)
                    self._queue.popleft()
            except FAILURES:
                self.failures += 1
                continue
            break
        self.up = True
        log.warning(
            "Redis answers again after %.1f s; queued writes replayed (%d dropped)",
            time.monotonic() - down_at,
            self.dropped,
        )
        self.on_recovered()
