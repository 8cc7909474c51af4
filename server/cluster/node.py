"""This node's heartbeat, and what it knows of the others: who is alive, where a room goes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from ..state import Bus, NodeInfo, Store, StoreUnavailable
from ..state.bus import BusUnavailable
from .link import channel

HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 2.5  # a node silent this long, and not listening on its channel, is dead
LEASE_S = 10.0  # a room's owner renews its lease every few heartbeats
NEAR_LEAST = 0.1  # placement picks at random among nodes within 10% of the least load
OWNER_CACHE_S = 2.0  # a join storm into one room asks the store who holds it once per this


class Node:
    def __init__(
        self, node_id: str, store: Store, bus: Bus, load: Callable[[], tuple[int, int]], url: str = ""
    ) -> None:
        self.id = node_id
        self.url = url
        self._store = store
        self._bus = bus
        self._load = load  # (participants, rooms) held here
        self._cpu_at = (time.monotonic(), time.process_time())
        self.rtt_s = 0.0  # the latest heartbeat's round trip to the store
        self._owners: dict[str, tuple[str, float]] = {}  # room -> owner, known until (monotonic)

    async def beat(self) -> None:
        now, cpu = time.monotonic(), time.process_time()
        wall_then, cpu_then = self._cpu_at
        self._cpu_at = (now, cpu)
        participants, rooms = self._load()
        usage = (cpu - cpu_then) / (now - wall_then) if now > wall_then else 0.0
        info = NodeInfo(self.id, participants, rooms, round(usage, 3), time.time(), self.url)
        started = time.perf_counter()
        await self._store.heartbeat(info, HEARTBEAT_TTL_S)
        self.rtt_s = time.perf_counter() - started

    async def dead(self, node: str) -> bool:
        """True only for a node known to have lived that neither beats nor listens now; a node
        we know nothing of (Redis restarted empty), or cannot ask about now, gets the benefit of the doubt."""
        try:
            if node == self.id or await self._bus.listeners(channel(node)) > 0:
                return False
            if any(info.node == node for info in await self._store.nodes()):
                return False
            return await self._store.node_seen(node) is not None
        except (BusUnavailable, StoreUnavailable):
            return False

    async def wait_dead(self, node: str) -> bool:
        """Whether ``node`` is dead, waiting up to a heartbeat's lifetime for it to lapse."""
        deadline = time.monotonic() + HEARTBEAT_TTL_S + HEARTBEAT_S
        while time.monotonic() < deadline:
            if await self.dead(node):
                return True
            await asyncio.sleep(0.2)
        return False

    async def place(self, room: str, dead_owner: str | None = None) -> str:
        """The node that holds ``room``: its owner, or (none, or ``dead_owner``) the least-loaded node."""
        now = time.monotonic()
        cached = self._owners.get(room)
        if cached is not None and cached[1] > now and cached[0] != dead_owner:
            return cached[0]
        owner = await self._store.room_owner(room)
        if owner is not None and owner != dead_owner:
            self._remember(room, owner, now)
            return owner
        nodes = await self._store.nodes()
        candidate = self.id
        if nodes:
            least = min(info.load for info in nodes)
            near = [info.node for info in nodes if info.load <= least * (1 + NEAR_LEAST) + 1]
            if self.id not in near:  # this node, when it is as good as any: no hop for its sessions
                candidate = random.choice(near)
        owner = await self._store.claim_room(room, candidate, LEASE_S, replacing=owner)
        self._remember(room, owner, now)
        return owner

    async def least_loaded(self, capacity: int, avoid: str | None = None) -> NodeInfo | None:
        """The live node with the most room for another session, ``avoid`` only if it is the only
        one (None: every node holds ``capacity``). A node that missed its last heartbeat is passed over."""
        recent = time.time() - 1.5 * HEARTBEAT_S
        nodes = [info for info in await self._store.nodes() if info.participants < capacity and info.at > recent]
        return min(nodes, key=lambda info: (info.node == avoid, info.load), default=None)

    def _remember(self, room: str, owner: str, now: float) -> None:
        if len(self._owners) > 10_000:
            self._owners = {r: o for r, o in self._owners.items() if o[1] > now}
        self._owners[room] = (owner, now + OWNER_CACHE_S)
