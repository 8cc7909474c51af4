"""What a session holds for its room: the room itself (``LocalHandle``) when this node holds it,
or a proxy that calls the node holding it (``RemoteHandle``). Both speak ``RoomHandle`` and take
every action from the one table in ``rooms.actions``; the holding node runs a remote call through
a ``LocalHandle`` of a ``RemoteMember``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..rooms import Member, Room, Rooms
from ..rooms import events as ev
from ..rooms.actions import Message, Viewing, operation_of, perform
from ..rooms.cascade import EdgeSide, Origin
from ..rooms.quality import QualityBook, QualityReport
from ..rooms.stream import Delivery
from ..tokens import Role
from .link import Link


@dataclass(frozen=True, slots=True)
class JoinResult:
    resumed: bool  # a dropped session of the same participant came back within the resume window
    live: bool  # the teacher broadcasts now
    hand: bool  # this participant's hand is up
    incarnation: str = ""  # which holding of the room this is (a room held again is another)
    hls: str | None = None  # the playlist this viewer watches instead of a WebRTC subscription
    resume: str = ""  # the secret that lets a later connection take this seat over
    broadcast: str = ""  # the room is a part of this broadcast, whose media its members watch
    section: str = ""  # the part's class name, when it is a class (a section)


class RoomHandle(Protocol):
    """A member's hold on its room: the room's actions (``rooms.actions``; the caller checks roles),
    and leaving."""

    name: str

    async def perform(self, action: Message) -> Message | None:
        """Run ``action``; its reply to the member, if it has one."""

    async def disconnect(self) -> None:
        """The connection dropped: the member may come back within the resume window."""

    async def leave(self) -> None: ...


class SessionViewing(Viewing, Protocol):
    async def drop(self, member: Member) -> None:
        """The session is gone: its subscription goes, unless the room keeps it for a resume."""

    async def watch_hls(self, member: Member) -> None:
        """The member watches the broadcast's playlist, written on this node."""


BroadcastViewer = Callable[[str, str], Awaitable[SessionViewing]]  # (broadcast, session key) -> its viewing


class LocalHandle:
    def __init__(
        self, rooms: Rooms, room: Room, member: Member, quality: QualityBook, viewing: SessionViewing | None = None
    ) -> None:
        self.name = room.name
        self._rooms = rooms
        self._room = room
        self._member = member
        self._quality = quality
        self._here = viewing or Here(room, quality)
        self._watches_broadcast = viewing is not None  # a part's member whose session is here

    async def join_result(self, resumed: bool, seat: str, delivery: Delivery) -> JoinResult:
        # a fresh join's hand is down (leaving lowers it), unless a dead node's room was taken over
        known = resumed or self._room.members.taken_over
        hand = known and await self._room.interaction.hand_raised(self._member.participant_id)
        hls = await self._room.delivery(self._member, delivery)
        part = self._room.part
        if hls is not None and self._watches_broadcast:
            await self._here.watch_hls(self._member)
        broadcast, section = (part.broadcast, "" if part.shard else part.label) if part else ("", "")
        return JoinResult(resumed, self._room.live, hand, self._room.incarnation, hls, seat, broadcast, section)

    async def perform(self, action: Message) -> Message | None:
        return await perform(self._room, self._here, self._member, action)

    async def disconnect(self) -> None:
        await self._here.drop(self._member)
        self._rooms.disconnect(self._room, self._member)

    async def leave(self) -> None:
        self._quality.forget(self.name, self._member.participant_id)
        await self._here.drop(self._member)
        await self._rooms.leave(self._room, self._member)


class BroadcastView:
    """``Viewing`` for a member of a broadcast's part: the broadcast's own media, from this node
    (found at the first subscription, again after a drop)."""

    def __init__(self, viewer: BroadcastViewer, broadcast: str, key: str) -> None:
        self._viewer = viewer
        self._broadcast = broadcast
        self._key = key
        self._viewing: SessionViewing | None = None

    async def _at(self) -> SessionViewing:
        if self._viewing is None:
            self._viewing = await self._viewer(self._broadcast, self._key)
        return self._viewing

    async def subscribe(self, member: Member) -> str:
        return await (await self._at()).subscribe(member)

    async def accept_answer(self, member: Member, sdp: str) -> None:
        await (await self._at()).accept_answer(member, sdp)

    async def add_subscriber_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await (await self._at()).add_subscriber_candidate(member, candidate, sdp_mid, sdp_mline_index)

    async def save_data(self, member: Member, on: bool) -> None:
        await (await self._at()).save_data(member, on)

    async def report_quality(self, member: Member, report: QualityReport) -> None:
        await (await self._at()).report_quality(member, report)

    async def watch_hls(self, member: Member) -> None:
        await (await self._at()).watch_hls(member)

    async def drop(self, member: Member) -> None:
        viewing, self._viewing = self._viewing, None
        if viewing is not None:
            await viewing.drop(member)


class Here:
    """``Viewing`` for a session whose room is held here: the room's subscriptions; its pupil's
    reports go to this node's book. A ``guest`` watches a broadcast held here from one of its
    parts: its subscription goes with its session."""

    def __init__(self, room: Room, quality: QualityBook, guest: bool = False) -> None:
        self._room = room
        self.quality = quality
        self._guest = guest

    async def drop(self, member: Member) -> None:
        if self._guest:
            await self._room.broadcast.unsubscribe(member.participant_id)

    async def watch_hls(self, member: Member) -> None:
        """The broadcast held here writes its playlist (from now until the room closes)."""
        await self._room.broadcast.stream.add_viewer(self._room.broadcast.publication)

    async def subscribe(self, member: Member) -> str:
        return await self._room.subscribe(member)

    async def accept_answer(self, member: Member, sdp: str) -> None:
        await self._room.accept_answer(member, sdp)

    async def add_subscriber_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._room.add_subscriber_candidate(member, candidate, sdp_mid, sdp_mline_index)

    async def save_data(self, member: Member, on: bool) -> None:
        await self._room.save_data(member, on)

    async def report_quality(self, member: Member, report: QualityReport) -> None:
        self.quality.report(self._room.name, member.participant_id, report)


@dataclass(eq=False)
class RemoteMember:
    """On the node holding the room: a member whose session is on another node."""

    participant_id: str
    name: str
    role: Role
    room: str
    node: str  # where the session is
    key: str  # which session there
    link: Link = field(repr=False)

    def deliver(self, event: ev.Event) -> None:
        self.link.deliver(self.node, self.key, event)


class RemoteHandle:
    """On the session's node: the room held by ``owner``, reached by calls over the link; its
    media comes through this node's edge side of the cascade."""

    def __init__(
        self,
        link: Link,
        edges: EdgeSide,
        owner: str,
        name: str,
        member: Member,
        key: str,
        quality: QualityBook,
        viewer: BroadcastViewer,
    ) -> None:
        self.name = name
        self.quality = quality  # this node's pupils' reports: kept here, not at the room
        self.owner = owner
        self.key = key
        self._link = link
        self._edges = edges
        self._member = member
        self._viewer = viewer
        self.origin = Origin(name, owner, "")
        self._view: SessionViewing = AtEdge(edges, self.origin, key, quality)

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        member = self._member
        payload = {
            "room": self.name,
            "node": self._link.node,
            "key": self.key,
            "member": {"participant_id": member.participant_id, "name": member.name, "role": member.role.value},
            "args": args,
        }
        return await self._link.call(self.owner, op, payload)

    async def join(self, delivery: Delivery, resume: str | None) -> JoinResult:
        result = JoinResult(**await self._call("join", {"delivery": delivery, "resume": resume}))
        self.origin = Origin(self.name, self.owner, result.incarnation)
        if result.broadcast:
            self._view = BroadcastView(self._viewer, result.broadcast, self.key)
        else:
            self._view = AtEdge(self._edges, self.origin, self.key, self.quality)
        if result.hls is not None and result.broadcast:  # a part's pupil: the playlist is written here
            await self._view.watch_hls(self._member)
        return result

    async def perform(self, action: Message) -> Message | None:
        operation = operation_of(action)
        if operation.for_viewer(action):
            assert operation.view is not None
            return await operation.view(self._view, self._member, action)
        reply = await self._call(operation.name, action.model_dump(mode="json"))
        return operation.reply.model_validate(reply) if operation.reply is not None and reply is not None else None

    async def disconnect(self) -> None:
        await self._view.drop(self._member)  # a resumed session subscribes afresh
        await self._call("disconnect", {})

    async def leave(self) -> None:
        self.quality.forget(self.name, self._member.participant_id)
        await self._view.drop(self._member)
        await self._call("leave", {})


class AtEdge:
    """``Viewing`` for a session whose room is held elsewhere: its subscription is served here."""

    def __init__(self, edges: EdgeSide, origin: Origin, key: str, quality: QualityBook, watcher: bool = False) -> None:
        self._edges = edges
        self._origin = origin
        self._key = key
        self._quality = quality
        self._watcher = watcher  # watches the teacher's broadcast whatever its role (a part's member)

    async def drop(self, member: Member) -> None:
        await self._edges.drop(self._origin, self._key)

    async def watch_hls(self, member: Member) -> None:
        await self._edges.watch_hls(self._origin, self._key)

    async def subscribe(self, member: Member) -> str:
        return await self._edges.subscribe(self._origin, self._key, member, self._watcher)

    async def accept_answer(self, member: Member, sdp: str) -> None:
        await self._edges.accept_answer(self._origin, self._key, sdp)

    async def add_subscriber_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._edges.add_ice_candidate(self._origin, self._key, candidate, sdp_mid, sdp_mline_index)

    async def save_data(self, member: Member, on: bool) -> None:
        await self._edges.save_data(self._origin, self._key, on)

    async def report_quality(self, member: Member, report: QualityReport) -> None:
        self._quality.report(self._origin.room, member.participant_id, report)
