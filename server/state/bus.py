"""The ``Bus``: messages between nodes, one channel per node. Redis pub/sub across processes;
in one process, direct calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

Handler = Callable[[str], None]


class BusUnavailable(Exception):
    """The bus (Redis) cannot be reached now."""


class Bus(Protocol):
    async def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with each message published on ``channel``, in order, until closed."""

    async def publish(self, messages: list[tuple[str, str]]) -> list[int]:
        """Publish (channel, message) pairs in order; returns how many listeners each reached
        (0: nobody listens on that channel now). Raises ``BusUnavailable``."""

    async def listeners(self, channel: str) -> int: ...

    async def close(self) -> None: ...


class MemoryBus:
    """The bus of a single process."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    async def listen(self, channel: str, handler: Handler) -> None:
        self._handlers[channel] = handler

    async def publish(self, messages: list[tuple[str, str]]) -> list[int]:
        loop = asyncio.get_running_loop()
        reached = []
        for channel, message in messages:
            handler = self._handlers.get(channel)
            if handler is not None:
                loop.call_soon(handler, message)
            reached.append(int(handler is not None))
        return reached

    async def listeners(self, channel: str) -> int:
        return int(channel in self._handlers)

    async def close(self) -> None:
        self._handlers.clear()
