"""The cascade, edge side: this node's viewers of rooms held on other nodes.

Each such room's broadcast arrives here once, into standing relay feeds (one for the teacher, one
for the student on stage) that the room's node feeds; this node's viewers subscribe here, so a big
room's fan-out is spread over every node that holds its sessions. A joiner starts from the
picture group the feed keeps, without a keyframe request travelling to the teacher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from ..media.pool import MediaPeer, MediaPool
from ..rooms import Member
from ..rooms.feeds import FeedRole
from ..rooms.room import quality_teller
from ..tokens import PUBLISHERS
from .link import Link, NodeUnreachable, RemoteFailure, RoomUnavailable

log = logging.getLogger(__name__)

ROLES: tuple[FeedRole, FeedRole] = ("teacher", "stage")


@dataclass(frozen=True, slots=True)
class Origin:
    """A room as held by one node: a room held again (moved, or restarted) is another origin."""

    room: str
    node: str
    incarnation: str


@dataclass
class _Feed:
    feeds: dict[FeedRole, MediaPeer]
    subscriptions: dict[str, MediaPeer] = field(default_factory=dict)  # by session key


class Edge:
    def __init__(self, node: str, media: MediaPool, link: Link, host: str) -> None:
        self._node = node
        self._media = media
        self._link = link
        self._host = host
        self._feeds: dict[Origin, asyncio.Task[_Feed]] = {}

    @property
    def rooms(self) -> int:
        """Rooms held elsewhere whose broadcast this node receives."""
        return len(self._feeds)

    async def subscribe(self, origin: Origin, key: str, member: Member) -> str:
        """A fresh subscription for ``member``'s session ``key``, fed from ``origin``'s broadcast; its offer."""
        feed = await self._feed(origin)
        await self._close_subscription(feed, key)
        subscription, offer = await self._media.subscribe(origin.room, on_quality=quality_teller(member))
        feed.subscriptions[key] = subscription
        if member.role not in PUBLISHERS:
            await self._media.attach(subscription, feed.feeds["teacher"])
        await self._media.attach(subscription, feed.feeds["stage"], "stage")
        return offer

    async def accept_answer(self, origin: Origin, key: str, sdp: str) -> None:
        await self._media.accept_answer(self._subscription(origin, key), sdp)

    async def add_ice_candidate(
        self, origin: Origin, key: str, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._media.add_ice_candidate(self._subscription(origin, key), candidate, sdp_mid, sdp_mline_index)

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
        if not feed.subscriptions:
            await self._close(origin)
            with contextlib.suppress(NodeUnreachable, RoomUnavailable, RemoteFailure, LookupError):
                await self._link.call(origin.node, "unfeed", {"room": origin.room, "node": self._node})

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
        feeds: dict[FeedRole, MediaPeer] = {}
        addresses: dict[str, tuple[str, int]] = {}
        try:
            for role in ROLES:
                feeds[role], port = await self._media.open_feed(origin.room, self._host)
                addresses[role] = (self._host, port)
            await self._link.call(origin.node, "feed", {"room": origin.room, "node": self._node, "feeds": addresses})
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
