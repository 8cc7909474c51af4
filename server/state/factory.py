"""Pick the state from settings: Redis when a URL is given, the embedded one otherwise."""

from __future__ import annotations

from .base import Store
from .bus import Bus, MemoryBus
from .memory import MemoryStore


async def open_state(redis_url: str | None) -> tuple[Store, Bus]:
    if not redis_url:
        return MemoryStore(), MemoryBus()
    from .redis import RedisBus, RedisStore
    from .resilient import ResilientStore

    store = ResilientStore(RedisStore.from_url(redis_url))
    await store.ping()  # fail at start-up, not at the first join
    return store.as_store(), RedisBus.from_url(redis_url)
