"""What a session holds for its room: the room itself (``LocalHandle``) when this node holds it,
or a proxy that calls the node holding it (``RemoteHandle``). Both speak ``RoomHandle`` and take
every action from the one table in ``rooms.actions``; the holding node runs a remote call through
a ``LocalHandle`` of a ``RemoteMember``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..rooms import Member, Room, Rooms
from ..rooms import events as ev
from ..rooms.actions import Message, operation_of, perform
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


class RoomHandle(Protocol):
    """A member's hold on its room: the room's actions (``rooms.actions``; the caller checks roles),
    and leaving."""

    name: str

    async def perform(self, action: Message) -> Message | None:
        """Run ``action``; its reply to the member, if it has one."""

    async def disconnect(self) -> None:
        """The connection dropped: the member may come back within the resume window."""

    async def leave(self) -> None: ...


class LocalHandle:
    def __init__(self, rooms: Rooms, room: Room, member: Member, quality: QualityBook) -> None:
        self.name = room.name
        self._rooms = rooms
        self._room = room
        self._member = member
        self._here = _Here(room, quality)

    async def join_result(self, resumed: bool, seat: str, delivery: Delivery) -> JoinResult:
        hand = await self._room.interaction.hand_raised(self._member.participant_id)
        hls = await self._room.delivery(self._member, delivery)
        return JoinResult(resumed, self._room.live, hand, self._room.incarnation, hls, seat)

    async def perform(self, action: Message) -> Message | None:
        return await perform(self._room, self._here, self._member, action)

    async def disconnect(self) -> None:
        self._rooms.disconnect(self._room, self._member)

    async def leave(self) -> None:
        self._here.quality.forget(self.name, self._member.participant_id)
        await self._rooms.leave(self._room, self._member)


class _Here:
    """``Viewing`` for a session whose room is held here: the room's subscriptions; its pupil's
    reports go to this node's book."""

    def __init__(self, room: Room, quality: QualityBook) -> None:
        self._room = room
        self.quality = quality

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
    ) -> None:
        self.name = name
        self.quality = quality  # this node's pupils' reports: kept here, not at the room
        self.owner = owner
        self.key = key
        self._link = link
        self._edges = edges
        self._member = member
        self.origin = Origin(name, owner, "")

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
        return result

    async def perform(self, action: Message) -> Message | None:
        operation = operation_of(action)
        if operation.for_viewer(action):
            assert operation.view is not None
            return await operation.view(_AtEdge(self), self._member, action)
        reply = await self._call(operation.name, action.model_dump(mode="json"))
        return operation.reply.model_validate(reply) if operation.reply is not None and reply is not None else None

    async def disconnect(self) -> None:
        await self._edges.drop(self.origin, self.key)  # a resumed session subscribes afresh
        await self._call("disconnect", {})

    async def leave(self) -> None:
        self.quality.forget(self.name, self._member.participant_id)
        await self._edges.drop(self.origin, self.key)
        await self._call("leave", {})


class _AtEdge:
    """``Viewing`` for a session whose room is held elsewhere: its subscription is served here."""

    def __init__(self, handle: RemoteHandle) -> None:
        self._edges = handle._edges
        self._origin = handle.origin
        self._key = handle.key
        self._quality = handle.quality

    async def subscribe(self, member: Member) -> str:
        return await self._edges.subscribe(self._origin, self._key, member)

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
