"""Where each room's media lives when there are several backends (media worker processes).

A room is pinned to one backend, its home, chosen by load when the room first needs media. A room
with more subscribers than a backend should hold spills new subscribers to the least loaded other
backend, which gets the teacher's tracks once through a relay (``relay.py``), not once per student.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .interfaces import MediaBackend, OnFailed, OnQuality, PeerId, SourceRole


@dataclass(frozen=True, slots=True)
class MediaPeer:
    """A peer connection somewhere in the pool."""

    backend: int
    peer: PeerId


class MediaPool:
    def __init__(self, backends: list[MediaBackend], max_subscribers_per_backend: int) -> None:
        if not backends:
            raise ValueError("Expected at least one media backend")
        self.backends = backends
        self.max_subscribers_per_backend = max_subscribers_per_backend
        self.load = [0] * len(backends)  # subscriptions held by each backend
        self._homes: dict[str, int] = {}
        self._down: set[int] = set()  # backends that died and are being replaced
        self._subscriptions: set[MediaPeer] = set()
        self.publications: set[MediaPeer] = set()
        # (publication, backend) -> the relayed copy there, and the egress feeding it
        self._relays: dict[tuple[MediaPeer, int], asyncio.Task[tuple[MediaPeer, MediaPeer]]] = {}

    @property
    def subscriptions(self) -> int:
        return len(self._subscriptions)

    def _least_loaded(self) -> int:
        up = [i for i in range(len(self.backends)) if i not in self._down] or list(range(len(self.backends)))
        return min(up, key=lambda i: (self.load[i], list(self._homes.values()).count(i)))

    def home(self, room: str) -> int:
        if self._homes.get(room, -1) in self._down or room not in self._homes:
            self._homes[room] = self._least_loaded()
        return self._homes[room]

    def lose(self, index: int) -> None:
        """Backend ``index`` died: place nothing more on it until it is replaced."""
        self._down.add(index)

    def release(self, room: str) -> None:
        self._homes.pop(room, None)

    async def publish(
        self, room: str, offer_sdp: str, on_failed: OnFailed = None, names: list[str] | None = None
    ) -> tuple[MediaPeer, str]:
        index = self.home(room)
        peer, answer = await self.backends[index].publish(offer_sdp, on_failed, names)
        publication = MediaPeer(index, peer)
        self.publications.add(publication)
        return publication, answer

    async def subscribe(
        self, room: str, on_failed: OnFailed = None, on_quality: OnQuality = None
    ) -> tuple[MediaPeer, str]:
        index = self.home(room)
        if self.load[index] >= self.max_subscribers_per_backend:
            index = self._least_loaded()
        self.load[index] += 1
        try:
            peer, offer = await self.backends[index].subscribe(on_failed, on_quality)
        except BaseException:
            self.load[index] -= 1
            raise
        subscription = MediaPeer(index, peer)
        self._subscriptions.add(subscription)
        return subscription, offer

    async def accept_answer(self, subscription: MediaPeer, sdp: str) -> None:
        await self.backends[subscription.backend].accept_answer(subscription.peer, sdp)

    async def add_ice_candidate(
        self, peer: MediaPeer, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self.backends[peer.backend].add_ice_candidate(peer.peer, candidate, sdp_mid, sdp_mline_index)

    async def attach(
        self, subscription: MediaPeer, publication: MediaPeer | None, role: SourceRole = "teacher"
    ) -> None:
        backend = self.backends[subscription.backend]
        if publication is None or publication.backend == subscription.backend:
            await backend.attach(subscription.peer, publication.peer if publication else None, role)
            return
        ingress, _ = await self._relay(publication, subscription.backend)
        await backend.attach(subscription.peer, ingress.peer, role)

    async def save_data(self, subscription: MediaPeer, on: bool) -> None:
        await self.backends[subscription.backend].save_data(subscription.peer, on)

    async def set_muted(self, publication: MediaPeer, kind: str, muted: bool) -> None:
        await self.backends[publication.backend].set_muted(publication.peer, kind, muted)

    def _relay(self, publication: MediaPeer, index: int) -> asyncio.Task[tuple[MediaPeer, MediaPeer]]:
        key = (publication, index)
        if key not in self._relays:  # one relay per publication and backend, however many attach at once
            self._relays[key] = asyncio.ensure_future(self._open_relay(publication, index))
        return self._relays[key]

    async def _open_relay(self, publication: MediaPeer, index: int) -> tuple[MediaPeer, MediaPeer]:
        ingress, port, key = await self.backends[index].open_relay_ingress()
        egress = await self.backends[publication.backend].open_relay_egress(publication.peer, port, key)
        return MediaPeer(index, ingress), MediaPeer(publication.backend, egress)

    async def open_feed(self, room: str, host: str) -> tuple[MediaPeer, int, str]:
        """A standing relay ingress on ``host`` for a broadcast held on another node (the cascade),
        on the room's home backend; returns it, its port and its key."""
        index = self.home(room)
        peer, port, key = await self.backends[index].open_relay_ingress(host, standing=True)
        return MediaPeer(index, peer), port, key

    async def feed(self, publication: MediaPeer, host: str, port: int, key: str) -> MediaPeer:
        """Send ``publication`` to another node's feed at ``host:port`` (opened by ``key``); returns the egress."""
        egress = await self.backends[publication.backend].open_relay_egress(publication.peer, port, key, host)
        return MediaPeer(publication.backend, egress)

    async def close(self, peer: MediaPeer) -> None:
        if peer in self._subscriptions:
            self._subscriptions.discard(peer)
            self.load[peer.backend] -= 1
        self.publications.discard(peer)
        for key in [k for k in self._relays if k[0] == peer]:  # its copies on other backends
            relay = self._relays.pop(key)
            if relay.done() and relay.exception() is None:
                for end in relay.result():
                    await self.backends[end.backend].close(end.peer)
            else:
                relay.cancel()
        await self.backends[peer.backend].close(peer.peer)

    def replace(self, index: int, backend: MediaBackend) -> None:
        """A fresh backend where one died; rooms that used the dead one have been moved off it."""
        self.backends[index] = backend
        self.load[index] = 0
        self._subscriptions = {s for s in self._subscriptions if s.backend != index}
        self.publications = {p for p in self.publications if p.backend != index}
        for key in [k for k in self._relays if index in (k[0].backend, k[1])]:
            self._relays.pop(key).cancel()
        self._homes = {room: home for room, home in self._homes.items() if home != index}
        self._down.discard(index)

    async def start_recording(self, publication: MediaPeer, path: str) -> None:
        await self.backends[publication.backend].start_recording(publication.peer, path)

    async def stop_recording(self, publication: MediaPeer) -> dict[str, object]:
        return await self.backends[publication.backend].stop_recording(publication.peer)

    async def start_hls(self, publication: MediaPeer, playlist: str) -> None:
        await self.backends[publication.backend].start_hls(publication.peer, playlist)

    async def stop_hls(self, publication: MediaPeer) -> None:
        await self.backends[publication.backend].stop_hls(publication.peer)
