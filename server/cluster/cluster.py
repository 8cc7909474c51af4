"""Rooms shared by every node on one Redis: a session lands on any node; its room lives on one.

A join asks the store which node holds the room (placing a new room on the least-loaded node).
Rooms held here are joined directly. For a room held elsewhere the session gets a ``RemoteHandle``:
its actions are calls to the holding node, where a ``RemoteMember`` stands in for it and the room
events it receives come back over the link. A teacher's (or on-stage student's) media goes straight
to the holding node, the origin; viewers subscribe on their own session's node, an edge, which the
origin feeds once per room (``edge.py``, ``rooms/feeds.py``).

Each heartbeat this node also looks after failures: sessions here whose room's node died are told
to reconnect (they join again, and the room is placed anew); members held here whose session's
node died are treated as dropped connections (they may resume through another node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ..media.interfaces import SourceRole
from ..rooms import Member, Room, Rooms
from ..rooms import events as ev
from ..rooms.actions import ACTIONS
from ..rooms.cascade import Address, EdgeSide, Origin
from ..rooms.quality import QualityBook
from ..rooms.sections import Part, State, node_part
from ..rooms.stream import Delivery
from ..state import Bus, Store, StoreUnavailable
from ..tokens import Role
from .handles import (
    AtEdge,
    BroadcastView,
    Here,
    JoinResult,
    LocalHandle,
    RemoteHandle,
    RemoteMember,
    RoomHandle,
    SessionViewing,
)
from .link import Link, NodeUnreachable, RemoteFailure, RoomUnavailable
from .node import HEARTBEAT_S, LEASE_S, Node

log = logging.getLogger(__name__)

RENEW_EVERY = 3  # heartbeats between lease renewals
JOINS_AT_ONCE = 64  # joins a node works on together; the rest wait their turn...
JOINS_WAITING = 2_000  # ...up to this many, beyond which a join is refused with a time to retry


class Cluster:
    def __init__(self, rooms: Rooms, store: Store, bus: Bus, relay_host: str = "127.0.0.1", url: str = "") -> None:
        self.id = rooms.node
        self.rooms = rooms
        self._store = store
        self._bus = bus
        self.link = Link(bus, self.id, self._on_call, self._on_events)
        self.edge = EdgeSide(rooms.media, self, relay_host, rooms.hls)
        self.node = Node(self.id, store, bus, self._load, url)
        self.quality = QualityBook()  # what this node's sessions' pupils see, wherever their room is held
        self._sessions: dict[str, tuple[Member, RemoteHandle]] = {}  # here, in rooms held elsewhere
        self._remote: dict[str, RemoteMember] = {}  # held here, sessions elsewhere
        self._adopting: dict[str, asyncio.Lock] = {}
        self._joining = asyncio.Semaphore(JOINS_AT_ONCE)
        self.joins_waiting = 0
        self._beats: asyncio.Task[None] | None = None
        rooms.on_closed = self._released
        rooms.uplink = self
        self.on_revoked: Callable[[list[str]], int] = lambda keys: 0  # closes this node's sessions of them

    def _load(self) -> tuple[int, int]:
        return sum(len(room.members) for room in self.rooms), len(self.rooms)

    async def start(self) -> None:
        await self.link.start()  # listen before the heartbeat says we are here
        await self.node.beat()
        self._beats = asyncio.create_task(self._beat_forever())

    async def close(self) -> None:
        if self._beats is not None:
            self._beats.cancel()
        await self.link.close()

    # Joining ------------------------------------------------------------------------------------

    async def join(
        self, room: str, member: Member, delivery: Delivery = "auto", resume: str | None = None
    ) -> tuple[RoomHandle, JoinResult]:
        """Join ``room`` wherever it is held; raises ``NodeUnreachable`` or ``StoreUnavailable``
        when it cannot be reached now (the client retries)."""
        if member.role is Role.STUDENT and self.rooms.is_broadcast(room):
            name, part = node_part(room, self.id)  # admitted here: no other node is asked
            return await self._join_here(name, member, delivery, resume, part)
        dead_owner: str | None = None
        while True:
            owner = await self.node.place(room, dead_owner)
            if owner == self.id:
                return await self._join_here(room, member, delivery, resume)
            key = secrets.token_hex(8)
            handle = RemoteHandle(self.link, self.edge, owner, room, member, key, self.quality, self.broadcast_viewing)
            self._sessions[key] = (member, handle)
            try:
                return handle, await handle.join(delivery, resume)
            except NodeUnreachable:
                self._sessions.pop(key, None)
                if dead_owner == owner or not await self.node.wait_dead(owner):
                    raise
                log.warning("room %s: node %s is dead; placing the room again", room, owner)
                dead_owner = owner
            except BaseException:
                self._sessions.pop(key, None)
                raise

    async def _join_here(
        self, room: str, member: Member, delivery: Delivery, resume: str | None, part: Part | None = None
    ) -> tuple[LocalHandle, JoinResult]:
        """Joins of the rooms held here, also those relayed by other nodes, pass one gate: a storm
        queues instead of piling thousands of half-done joins on the store."""
        if self.joins_waiting >= JOINS_WAITING:
            raise RoomUnavailable(f"Node {self.id} has {self.joins_waiting} joins waiting; retry shortly")
        self.joins_waiting += 1
        try:
            await self._joining.acquire()
        finally:
            self.joins_waiting -= 1
        try:
            return await self._admit(room, member, delivery, resume, part)
        finally:
            self._joining.release()

    async def _admit(
        self, room: str, member: Member, delivery: Delivery, resume: str | None, part: Part | None
    ) -> tuple[LocalHandle, JoinResult]:
        if part is not None:  # a node's part of a broadcast: this node's alone, never placed
            self.rooms.create(room, part)
        elif self.rooms.get(room) is None:
            lock = self._adopting.setdefault(room, asyncio.Lock())
            async with lock:
                if self.rooms.get(room) is None:
                    await self._adopt(room)
            self._adopting.pop(room, None)
        held, resumed, seat = await self.rooms.join(room, member, resume)
        viewing: SessionViewing | None = None
        if held.part is not None and not isinstance(member, RemoteMember):  # remote: viewed where its session is
            viewing = BroadcastView(self.broadcast_viewing, held.part.broadcast, secrets.token_hex(8))
        handle = LocalHandle(self.rooms, held, member, self.quality, viewing)
        return handle, await handle.join_result(resumed, seat, delivery)

    async def broadcast_viewing(self, broadcast: str, key: str) -> SessionViewing:
        """Where session ``key``, a member of one of ``broadcast``'s parts, watches it: the
        broadcast's room when held here, else this node's edge of it."""
        owner = await self.node.place(broadcast)
        if owner == self.id:
            return Here(self.rooms.get(broadcast) or self.rooms.create(broadcast), self.quality, guest=True)
        return AtEdge(self.edge, Origin(broadcast, owner, ""), key, self.quality, watcher=True)

    # Uplink: a broadcast and its parts, wherever each is held

    async def to_host(self, broadcast: str, message: dict[str, Any]) -> State:
        owner = await self.node.place(broadcast)
        if owner == self.id:
            return self.rooms.from_part(broadcast, message)
        state: State = await self.link.call(owner, "to_host", {"broadcast": broadcast, "message": message})
        return state

    async def to_parts(self, broadcast: str, nodes: set[str], state: State) -> None:
        async def tell(node: str) -> None:
            try:
                if node == self.id:
                    await self.rooms.to_parts(broadcast, state)
                else:
                    await self.link.call(node, "to_parts", {"broadcast": broadcast, "state": state})
            except (NodeUnreachable, RoomUnavailable, RemoteFailure) as exc:
                log.warning(
                    "broadcast %s: node %s did not hear its state (its next summary does): %s", broadcast, node, exc
                )

        await asyncio.gather(*(tell(node) for node in nodes))

    async def _adopt(self, room: str) -> None:
        """Take the room on. If a node that died held it, its roster entries go, and its open stays
        are handed to the room: a participant back within the resume window continues theirs."""
        records = await self._store.participants(room)
        stays = await self._store.open_stays(room)
        nodes = {r.node for r in records} | {s.node for s in stays}
        dead = {n for n in nodes - {self.id, ""} if await self.node.dead(n)}
        held = self.rooms.create(room)
        if not dead:
            return
        for record in records:
            if record.node in dead:
                await self._store.remove_participant(room, record.participant_id)
        if await self._store.broadcaster(room) in {r.participant_id for r in records if r.node in dead}:
            await self._store.set_broadcaster(room, None)
        seen = {n: await self._store.node_seen(n) or time.time() for n in dead}
        orphans = [s for s in stays if s.node in dead]
        held.adopt(orphans, {s.participant_id: seen[s.node] for s in orphans})
        log.warning("room %s: taken over from %s (%d open stays)", room, ", ".join(sorted(dead)), len(orphans))

    async def revoke(self, keys: list[str]) -> int:
        """Close every session, on every node, of these revoked tokens or participants; how many."""
        closed = self.on_revoked(keys)
        for node in await self._store.nodes():
            if node.node != self.id:
                try:
                    closed += int(await self.link.call(node.node, "revoke", {"keys": keys}))
                except (NodeUnreachable, RoomUnavailable, RemoteFailure) as exc:
                    log.warning(
                        "node %s did not hear of a revocation (its sessions are refused at their next join): %s",
                        node.node,
                        exc,
                    )
        return closed

    def _released(self, room: str) -> None:
        asyncio.ensure_future(self._store.release_room(room, self.id))

    async def resync(self) -> None:
        """Redis is back, perhaps empty: write again what the rooms held here know."""
        await self.node.beat()
        for room in self.rooms:
            await room.resync()
        await self._renew()
        log.warning("state written again for %d rooms", len(self.rooms))

    # Calls from other nodes ---------------------------------------------------------------------

    async def _on_call(self, op: str, payload: dict[str, Any]) -> Any:
        if op in ("feed", "unfeed"):
            return await self._on_feed(op, payload)
        if op == "revoke":
            return self.on_revoked(payload["keys"])
        if op == "to_host":
            broadcast = payload["broadcast"]
            if not await self._ours(broadcast):
                raise RoomUnavailable(f"Broadcast {broadcast!r} is moving to another node")
            return self.rooms.from_part(broadcast, payload["message"])
        if op == "to_parts":
            return await self.rooms.to_parts(payload["broadcast"], payload["state"])
        room_name, key, info = payload["room"], payload["key"], payload["member"]
        if op == "join":
            if not await self._ours(room_name):
                raise RoomUnavailable(f"Room {room_name!r} is moving to another node; join again")
            pid, name, role = info["participant_id"], info["name"], Role(info["role"])
            member = RemoteMember(pid, name, role, room_name, payload["node"], key, self.link)
            self._remote[key] = member
            args = payload["args"]
            _, result = await self._join_here(room_name, member, args.get("delivery", "auto"), args.get("resume"))
            return dataclasses.asdict(result)
        known = self._remote.get(key)
        room = self._room_of(known) if known is not None else None
        if op in ("disconnect", "leave"):
            if known is not None and room is not None:
                if op == "leave":
                    self._remote.pop(key, None)
                    await self.rooms.leave(room, known)
                else:
                    self.rooms.disconnect(room, known)
            return None
        operation = ACTIONS.get(op)
        if operation is None:
            raise LookupError(f"No operation {op!r}")
        if known is None or room is None:
            raise LookupError("You are not in this room any more; join again")
        handle = LocalHandle(self.rooms, room, known, self.quality)
        reply = await handle.perform(operation.message.model_validate(payload["args"]))
        return reply.model_dump(mode="json") if reply is not None else None

    async def _ours(self, room: str) -> bool:
        """Held here, or claimed for this node (a call may come before the room is made)."""
        return self.rooms.get(room) is not None or await self._store.room_owner(room) == self.id

    async def _on_feed(self, op: str, payload: dict[str, Any]) -> None:
        """An edge node asks for (or gives up) a room's broadcast."""
        room = self.rooms.get(payload["room"])
        if room is None and op == "feed" and await self._ours(payload["room"]):
            room = self.rooms.create(payload["room"])  # a broadcast its parts' viewers watch before its host joins
        if room is None:
            if op == "unfeed":
                return
            raise RoomUnavailable(f"Room {payload['room']!r} is not held here now; join again")
        if op == "feed":
            feeds = {role: (host, port, key) for role, (host, port, key) in payload["feeds"].items()}
            await room.edges.add(payload["node"], feeds)
        else:
            await room.edges.remove(payload["node"])

    # Origins: how this node's edge side asks for a broadcast held elsewhere

    async def feed(self, origin: Origin, addresses: dict[SourceRole, Address]) -> None:
        await self.link.call(origin.node, "feed", {"room": origin.room, "node": self.id, "feeds": addresses})

    async def unfeed(self, origin: Origin) -> None:
        try:
            await self.link.call(origin.node, "unfeed", {"room": origin.room, "node": self.id})
        except (NodeUnreachable, RoomUnavailable, RemoteFailure, LookupError) as exc:
            log.info(
                "room %s: node %s did not hear that its feed is no longer needed: %s", origin.room, origin.node, exc
            )

    def _on_events(self, keys: list[str], event: ev.Event) -> None:
        for key in keys:
            entry = self._sessions.get(key)
            if entry is not None:
                entry[0].deliver(event)

    def forget(self, handle: RoomHandle) -> None:
        """The session holding ``handle`` is over."""
        if isinstance(handle, RemoteHandle):
            self._sessions.pop(handle.key, None)

    # Heartbeat and failures ---------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beats += 1
            try:
                await self.node.beat()
                await self._watch_owners()
                await self._watch_sessions()
                if beats % RENEW_EVERY == 0:
                    await self._renew()
            except (StoreUnavailable, ConnectionError, OSError) as exc:
                log.warning("heartbeat: %s", exc)
            except Exception:
                log.exception("heartbeat failed")

    async def _watch_owners(self) -> None:
        """Sessions here whose room's node died: tell them to reconnect (the room moves)."""
        by_owner: defaultdict[str, list[str]] = defaultdict(list)
        for key, (_, handle) in self._sessions.items():
            by_owner[handle.owner].append(key)
        for owner, keys in by_owner.items():
            if await self.node.dead(owner):
                log.warning("node %s is dead: %d sessions here reconnect", owner, len(keys))
                for key in keys:
                    member, _ = self._sessions.pop(key)
                    member.deliver(ev.Moved())
                await self.edge.drop_node(owner)

    async def _watch_sessions(self) -> None:
        """Members held here whose session's node died are dropped connections; members that left
        are forgotten."""
        by_node: defaultdict[str, list[str]] = defaultdict(list)
        for key, member in list(self._remote.items()):
            if self._room_of(member) is None:
                del self._remote[key]
            else:
                by_node[member.node].append(key)
        for node, keys in by_node.items():
            if await self.node.dead(node):
                log.warning("node %s is dead: its %d members here may resume elsewhere", node, len(keys))
                for key in keys:
                    member = self._remote.pop(key)
                    room = self._room_of(member)
                    if room is not None:
                        self.rooms.disconnect(room, member)
        for room in list(self.rooms):
            for node in room.edges.nodes:
                if await self.node.dead(node):
                    await room.edges.remove(node)

    def _room_of(self, member: RemoteMember) -> Room | None:
        room = self.rooms.get(member.room)
        return room if room is not None and room.members.get(member.participant_id) is member else None

    async def _renew(self) -> None:
        names = [room.name for room in self.rooms if room.part is None or not room.part.shard]
        for name in await self._store.renew_rooms(self.id, names, LEASE_S):
            room = self.rooms.get(name)
            if room is not None:
                log.warning("room %s: another node holds it now; its members move there", name)
                await self.rooms.evict(room)
