"""What a session holds for its room: the room itself (``LocalHandle``) when this node holds it,
or a proxy that calls the node holding it (``RemoteHandle``). Both speak ``RoomHandle``; the
holding node runs every remote call through a ``LocalHandle`` of a ``RemoteMember``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..rooms import ClassroomError, Member, Room, Rooms
from ..rooms import events as ev
from ..rooms.stream import Delivery
from ..tokens import PUBLISHERS, Role
from .edge import Edge, Origin
from .link import Link

Target = Literal["publish", "subscribe"]


@dataclass(frozen=True, slots=True)
class JoinResult:
    resumed: bool  # a dropped session of the same participant came back within the resume window
    live: bool  # the teacher broadcasts now
    hand: bool  # this participant's hand is up
    incarnation: str = ""  # which holding of the room this is (a room held again is another)
    hls: str | None = None  # the playlist this viewer watches instead of a WebRTC subscription


class RoomHandle(Protocol):
    """A member's actions in its room; roles are checked by the caller."""

    name: str

    async def publish(self, sdp: str, tracks: list[str] | None = None) -> str: ...
    async def unpublish(self) -> None: ...
    async def subscribe(self) -> str: ...
    async def accept_answer(self, sdp: str) -> None: ...
    async def add_ice_candidate(
        self, target: Target, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...
    async def chat(self, text: str) -> None: ...
    async def set_hand(self, raised: bool) -> None: ...
    async def open_poll(self, question: str, options: list[str]) -> str: ...
    async def answer_poll(self, poll_id: str, choice: int) -> None: ...
    async def close_poll(self, poll_id: str, show: bool) -> None: ...
    async def remove(self, participant_id: str) -> None: ...
    async def invite(self, participant_id: str) -> None: ...
    async def end_turn(self) -> None: ...
    async def mute(self, participant_id: str, muted: bool) -> None: ...
    async def end_lesson(self) -> None: ...
    async def disconnect(self) -> None:
        """The connection dropped: the member may come back within the resume window."""

    async def leave(self) -> None: ...


# The operations a remote call may name (every RoomHandle method but join's own).
OPERATIONS = frozenset(
    {
        "publish",
        "unpublish",
        "subscribe",
        "accept_answer",
        "add_ice_candidate",
        "chat",
        "set_hand",
        "open_poll",
        "answer_poll",
        "close_poll",
        "remove",
        "invite",
        "end_turn",
        "mute",
        "end_lesson",
        "disconnect",
        "leave",
    }
)


class LocalHandle:
    def __init__(self, rooms: Rooms, room: Room, member: Member) -> None:
        self.name = room.name
        self._rooms = rooms
        self._room = room
        self._member = member

    async def join_result(self, resumed: bool, delivery: Delivery) -> JoinResult:
        hand = await self._room.hand_raised(self._member.participant_id)
        hls = await self._room.delivery(self._member, delivery)
        return JoinResult(resumed, self._room.live, hand, self._room.incarnation, hls)

    async def publish(self, sdp: str, tracks: list[str] | None = None) -> str:
        if self._member.role in PUBLISHERS:
            return await self._room.publish(self._member, sdp, tracks)
        return await self._room.publish_stage(self._member, sdp, tracks)  # a student, when invited on stage

    async def unpublish(self) -> None:
        if self._member.role in PUBLISHERS:
            await self._room.unpublish(self._member)
        elif self._room.invited == self._member.participant_id:
            await self._room.end_turn()
        else:
            raise ClassroomError("forbidden", f"A {self._member.role.value} may not unpublish; only teacher")

    async def subscribe(self) -> str:
        return await self._room.subscribe(self._member)

    async def accept_answer(self, sdp: str) -> None:
        await self._room.accept_answer(self._member, sdp)

    async def add_ice_candidate(
        self, target: Target, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._room.add_ice_candidate(self._member, target, candidate, sdp_mid, sdp_mline_index)

    async def chat(self, text: str) -> None:
        self._room.chat(self._member, text)

    async def set_hand(self, raised: bool) -> None:
        await self._room.set_hand(self._member, raised)

    async def open_poll(self, question: str, options: list[str]) -> str:
        return self._room.open_poll(question, options)

    async def answer_poll(self, poll_id: str, choice: int) -> None:
        await self._room.answer_poll(self._member, poll_id, choice)

    async def close_poll(self, poll_id: str, show: bool) -> None:
        await self._room.close_poll(poll_id, show)

    async def remove(self, participant_id: str) -> None:
        await self._room.remove(participant_id)

    async def invite(self, participant_id: str) -> None:
        self._room.invite(participant_id)

    async def end_turn(self) -> None:
        await self._room.end_turn()

    async def mute(self, participant_id: str, muted: bool) -> None:
        await self._room.mute_stage(participant_id, muted)

    async def end_lesson(self) -> None:
        await self._room.end_lesson(self._member)

    async def disconnect(self) -> None:
        self._rooms.disconnect(self._room, self._member)

    async def leave(self) -> None:
        await self._rooms.leave(self._room, self._member)


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
    media comes through this node's ``Edge``."""

    def __init__(self, link: Link, edge: Edge, owner: str, name: str, member: Member, key: str) -> None:
        self.name = name
        self.owner = owner
        self.key = key
        self._link = link
        self._edge = edge
        self._member = member
        self._origin = Origin(name, owner, "")

    def _payload(self, **args: Any) -> dict[str, Any]:
        member = self._member
        return {
            "room": self.name,
            "node": self._link.node,
            "key": self.key,
            "member": {"participant_id": member.participant_id, "name": member.name, "role": member.role.value},
            "args": args,
        }

    async def _call(self, op: str, **args: Any) -> Any:
        return await self._link.call(self.owner, op, self._payload(**args))

    async def join(self, delivery: Delivery) -> JoinResult:
        result = JoinResult(**await self._call("join", delivery=delivery))
        self._origin = Origin(self.name, self.owner, result.incarnation)
        return result

    async def publish(self, sdp: str, tracks: list[str] | None = None) -> str:
        return str(await self._call("publish", sdp=sdp, tracks=tracks))

    async def unpublish(self) -> None:
        await self._call("unpublish")

    async def subscribe(self) -> str:
        return await self._edge.subscribe(self._origin, self.key, self._member)

    async def accept_answer(self, sdp: str) -> None:
        await self._edge.accept_answer(self._origin, self.key, sdp)

    async def add_ice_candidate(
        self, target: Target, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        if target == "subscribe":
            await self._edge.add_ice_candidate(self._origin, self.key, candidate, sdp_mid, sdp_mline_index)
            return
        await self._call(
            "add_ice_candidate", target=target, candidate=candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index
        )

    async def chat(self, text: str) -> None:
        await self._call("chat", text=text)

    async def set_hand(self, raised: bool) -> None:
        await self._call("set_hand", raised=raised)

    async def open_poll(self, question: str, options: list[str]) -> str:
        return str(await self._call("open_poll", question=question, options=options))

    async def answer_poll(self, poll_id: str, choice: int) -> None:
        await self._call("answer_poll", poll_id=poll_id, choice=choice)

    async def close_poll(self, poll_id: str, show: bool) -> None:
        await self._call("close_poll", poll_id=poll_id, show=show)

    async def remove(self, participant_id: str) -> None:
        await self._call("remove", participant_id=participant_id)

    async def invite(self, participant_id: str) -> None:
        await self._call("invite", participant_id=participant_id)

    async def end_turn(self) -> None:
        await self._call("end_turn")

    async def mute(self, participant_id: str, muted: bool) -> None:
        await self._call("mute", participant_id=participant_id, muted=muted)

    async def end_lesson(self) -> None:
        await self._call("end_lesson")

    async def disconnect(self) -> None:
        await self._edge.drop(self._origin, self.key)  # a resumed session subscribes afresh
        await self._call("disconnect")

    async def leave(self) -> None:
        await self._edge.drop(self._origin, self.key)
        await self._call("leave")
