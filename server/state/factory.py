"""Pick the store from settings: Redis when a URL is given, the embedded one otherwise."""

from __future__ import annotations

from .base import Store
from .memory import MemoryStore


async def open_store(redis_url: str | None) -> Store:
    if not redis_url:
        return MemoryStore()
    from .redis import RedisStore

    store = RedisStore.from_url(redis_url)
    await store.ping()  # fail at start-up, not at the first join
    return store
