"""The cascade: a room held on one node (its origin) with viewers on others (edges).

Origin side: each edge says where its standing relay feeds listen (one per source: the teacher's
broadcast, the student on stage); each gets an egress from the source's current publication, made
again whenever that changes. The edge's viewers never reach the origin's media.

Edge side: a room held elsewhere arrives here once, into those standing feeds; this node's viewers
subscribe here, so a big room's fan-out is spread over every node that holds its sessions. A joiner
starts from the picture group the feed keeps, without a keyframe request travelling to the teacher.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from ..media.interfaces import PLAYLIST, SourceRole
from ..media.pool import MediaPeer, MediaPool
from ..tokens import PUBLISHERS
from .members import Member, quality_teller
from .stream import HlsPolicy

log = logging.getLogger(__name__)

Address = tuple[str, int, str]  # where a feed listens, and the key that opens it
SOURCES: tuple[SourceRole, SourceRole] = ("teacher", "stage")


class OriginSide:
    """A room held here: the other nodes with viewers of it, each fed its broadcast once."""

    def __init__(self, room: str, media: MediaPool) -> None:
        self._room = room
        self._media = media
        self._addresses: dict[tuple[str, SourceRole], Address] = {}  # (edge node, role) -> its feed
        self._egresses: dict[tuple[str, SourceRole], MediaPeer] = {}
        self._sources: dict[SourceRole, MediaPeer | None] = {"teacher": None, "stage": None}

    @property
    def nodes(self) -> set[str]:
        return {node for node, _ in self._addresses}

    @property
    def egresses(self) -> list[MediaPeer]:
        return list(self._egresses.values())

    async def add(self, node: str, addresses: dict[SourceRole, Address]) -> None:
        """Feed ``node``'s relay ingresses; a node that registers again gets fresh egresses."""
        for role, address in addresses.items():
            self._addresses[(node, role)] = address
            await self._feed(node, role)
        log.info("room %s: feeding edge %s", self._room, node)

    async def remove(self, node: str) -> None:
        for key in [key for key in self._addresses if key[0] == node]:
            del self._addresses[key]
            await self._stop(key)

    async def source_changed(self, role: SourceRole, source: MediaPeer | None) -> None:
        """``role``'s publication is now ``source`` (None: nobody publishes)."""
        self._sources[role] = source
        await asyncio.gather(*(self._feed(node, r) for node, r in list(self._addresses) if r == role))

    async def close(self) -> None:
        for key in list(self._egresses):
            await self._stop(key)
        self._addresses.clear()

    async def _feed(self, node: str, role: SourceRole) -> None:
        await self._stop((node, role))
        source, address = self._sources[role], self._addresses.get((node, role))
        if source is None or address is None:
            return
        try:
            self._egresses[(node, role)] = await self._media.feed(source, *address)
        except (LookupError, RuntimeError, OSError) as exc:
            log.warning("room %s: could not feed %s on %s: %s", self._room, role, node, exc)

    async def _stop(self, key: tuple[str, SourceRole]) -> None:
        egress = self._egresses.pop(key, None)
        if egress is not None:
            await self._media.close(egress)


@dataclass(frozen=True, slots=True)
class Origin:
    """A room as held by one node: a room held again (moved, or restarted) is another origin."""

    room: str
    node: str
    incarnation: str


@dataclass
class _Feed:
    feeds: dict[SourceRole, MediaPeer]
    subscriptions: dict[str, MediaPeer] = field(default_factory=dict)  # by session key
    hls: set[str] = field(default_factory=set)  # sessions watching the playlist written here from the feed

    @property
    def idle(self) -> bool:
        return not self.subscriptions and not self.hls


class Origins(Protocol):
    """How an edge asks a room's node for its broadcast (the cluster's link)."""

    async def feed(self, origin: Origin, addresses: dict[SourceRole, Address]) -> None: ...
    async def unfeed(self, origin: Origin) -> None:
        """Best effort: the origin also stops feeding an edge it finds dead."""


class EdgeSide:
    """This node's viewers of rooms held on other nodes, fed once per room into standing feeds."""

    def __init__(self, media: MediaPool, origins: Origins, host: str, hls: HlsPolicy | None = None) -> None:
        self._media = media
        self._origins = origins
        self._host = host
        self._hls = hls
        self._feeds: dict[Origin, asyncio.Task[_Feed]] = {}

    @property
    def rooms(self) -> int:
        """Rooms held elsewhere whose broadcast this node receives."""
        return len(self._feeds)

    async def subscribe(self, origin: Origin, key: str, member: Member, watcher: bool = False) -> str:
        """A fresh subscription for ``member``'s session ``key``, fed from ``origin``'s broadcast
        (the teacher's too when ``watcher``: a class teacher watching a broadcast); its offer."""
        feed = await self._feed(origin)
        await self._close_subscription(feed, key)
        subscription, offer = await self._media.subscribe(origin.room, on_quality=quality_teller(member))
        feed.subscriptions[key] = subscription
        if watcher or member.role not in PUBLISHERS:
            await self._media.attach(subscription, feed.feeds["teacher"])
        await self._media.attach(subscription, feed.feeds["stage"], "stage")
        return offer

    async def watch_hls(self, origin: Origin, key: str) -> None:
        """Session ``key`` watches ``origin``'s broadcast over HLS: the playlist is written here,
        from this node's feed (a broadcast's pupils on this node), while anyone here watches it."""
        if self._hls is None:
            raise LookupError("The HLS tier is off on this node")
        feed = await self._feed(origin)
        if not feed.hls:
            playlist = self._hls.room_directory(origin.room) / PLAYLIST
            await self._media.start_hls(feed.feeds["teacher"], str(playlist))
            log.info("room %s: writing HLS from %s's feed", origin.room, origin.node)
        feed.hls.add(key)

    async def accept_answer(self, origin: Origin, key: str, sdp: str) -> None:
        await self._media.accept_answer(self._subscription(origin, key), sdp)

    async def add_ice_candidate(
        self, origin: Origin, key: str, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._media.add_ice_candidate(self._subscription(origin, key), candidate, sdp_mid, sdp_mline_index)

    async def save_data(self, origin: Origin, key: str, on: bool) -> None:
        await self._media.save_data(self._subscription(origin, key), on)

    def _subscription(self, origin: Origin, key: str) -> MediaPeer:
        feed = _opened(self._feeds.get(origin))
        subscription = feed.subscriptions.get(key) if feed is not None else None
        if subscription is None:
            raise LookupError("There is no subscribe connection for this participant")
        return subscription

    async def drop(self, origin: Origin, key: str) -> None:
        """Session ``key`` is gone; the last viewer of a room closes its feeds."""
        feed = _opened(self._feeds.get(origin))
        if feed is None:
            return
        await self._close_subscription(feed, key)
        if key in feed.hls:
            feed.hls.discard(key)
            if not feed.hls:
                await self._stop_hls(origin, feed)
        if feed.idle:
            await self._close(origin)
            await self._origins.unfeed(origin)

    async def _stop_hls(self, origin: Origin, feed: _Feed) -> None:
        await self._media.stop_hls(feed.feeds["teacher"])
        if self._hls is not None:
            await self._hls.clear(origin.room)

    async def drop_node(self, node: str) -> None:
        """``node`` died: the feeds it sent are closed (its rooms' viewers join again elsewhere)."""
        for origin in [o for o in self._feeds if o.node == node]:
            await self._close(origin)

    def _feed(self, origin: Origin) -> asyncio.Task[_Feed]:
        task = self._feeds.get(origin)
        if task is None or (task.done() and _opened(task) is None):
            task = self._feeds[origin] = asyncio.ensure_future(self._open(origin))  # once for a storm
        return task

    async def _open(self, origin: Origin) -> _Feed:
        feeds: dict[SourceRole, MediaPeer] = {}
        addresses: dict[SourceRole, Address] = {}
        try:
            for role in SOURCES:
                feeds[role], port, key = await self._media.open_feed(origin.room, self._host)
                addresses[role] = (self._host, port, key)
            await self._origins.feed(origin, addresses)
        except BaseException:
            for peer in feeds.values():
                await self._media.close(peer)
            raise
        log.info("room %s: fed by %s", origin.room, origin.node)
        return _Feed(feeds)

    async def _close(self, origin: Origin) -> None:
        feed = _opened(self._feeds.pop(origin, None))
        if feed is None:
            return
        for key in list(feed.subscriptions):
            await self._close_subscription(feed, key)
        if feed.hls:
            feed.hls.clear()
            await self._stop_hls(origin, feed)
        for peer in feed.feeds.values():
            await self._media.close(peer)

    async def _close_subscription(self, feed: _Feed, key: str) -> None:
        subscription = feed.subscriptions.pop(key, None)
        if subscription is not None:
            await self._media.close(subscription)


def _opened(task: asyncio.Task[_Feed] | None) -> _Feed | None:
    """The feed, once it is open (None while opening, or if opening failed)."""
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
