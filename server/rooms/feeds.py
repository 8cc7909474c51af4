"""The cascade, origin side: other nodes with viewers of a room held here get its broadcast once.

An edge node says where its standing relay feeds listen (one per role: the teacher's broadcast, the
student on stage); each gets an egress from the current publication of that role, made again
whenever the role's publication changes. The edge's viewers never reach this node's media.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from ..media.pool import MediaPeer, MediaPool

log = logging.getLogger(__name__)

FeedRole = Literal["teacher", "stage"]
Address = tuple[str, int]


class EdgeFeeds:
    def __init__(self, room: str, media: MediaPool) -> None:
        self._room = room
        self._media = media
        self._addresses: dict[tuple[str, FeedRole], Address] = {}  # (edge node, role) -> its feed
        self._egresses: dict[tuple[str, FeedRole], MediaPeer] = {}
        self._sources: dict[FeedRole, MediaPeer | None] = {"teacher": None, "stage": None}

    @property
    def nodes(self) -> set[str]:
        return {node for node, _ in self._addresses}

    @property
    def egresses(self) -> list[MediaPeer]:
        return list(self._egresses.values())

    async def add(self, node: str, addresses: dict[FeedRole, Address]) -> None:
        """Feed ``node``'s relay ingresses; a node that registers again gets fresh egresses."""
        for role, address in addresses.items():
            self._addresses[(node, role)] = address
            await self._feed(node, role)
        log.info("room %s: feeding edge %s", self._room, node)

    async def remove(self, node: str) -> None:
        for key in [key for key in self._addresses if key[0] == node]:
            del self._addresses[key]
            await self._stop(key)

    async def source_changed(self, role: FeedRole, source: MediaPeer | None) -> None:
        """``role``'s publication is now ``source`` (None: nobody publishes)."""
        self._sources[role] = source
        await asyncio.gather(*(self._feed(node, r) for node, r in list(self._addresses) if r == role))

    async def close(self) -> None:
        for key in list(self._egresses):
            await self._stop(key)
        self._addresses.clear()

    async def _feed(self, node: str, role: FeedRole) -> None:
        await self._stop((node, role))
        source, address = self._sources[role], self._addresses.get((node, role))
        if source is None or address is None:
            return
        try:
            self._egresses[(node, role)] = await self._media.feed(source, *address)
        except (LookupError, RuntimeError, OSError) as exc:
            log.warning("room %s: could not feed %s on %s: %s", self._room, role, node, exc)

    async def _stop(self, key: tuple[str, FeedRole]) -> None:
        egress = self._egresses.pop(key, None)
        if egress is not None:
            await self._media.close(egress)
