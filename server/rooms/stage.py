"""On stage: the student the teacher invites publishes camera and microphone to the whole class."""

from __future__ import annotations

import asyncio

from ..media.pool import MediaPeer, MediaPool
from ..tokens import Role
from . import events as ev
from .broadcast import Broadcast
from .members import ClassroomError, Member, Members, tell


class Stage:
    def __init__(self, room: str, media: MediaPool, members: Members, broadcast: Broadcast) -> None:
        self._room = room
        self._media = media
        self._members = members
        self._broadcast = broadcast
        self.invited: str | None = None  # the student invited on stage
        self.publication: MediaPeer | None = None  # what that student publishes
        self.muted = False

    def event(self) -> ev.StageChanged:
        member = self._members.get(self.invited or "") if self.publication is not None else None
        if member is None:
            return ev.StageChanged(None, None)
        return ev.StageChanged(member.participant_id, member.name, self.muted)

    def greet(self) -> list[ev.Event]:
        """What a joiner is told now: who is on stage, if anyone."""
        return [self.event()] if self.publication is not None else []

    def invite(self, participant_id: str) -> None:
        member = self._members.get(participant_id)
        if member is None or member.role is not Role.STUDENT:
            raise ClassroomError("bad_state", f"No student {participant_id!r} in this room")
        if self.publication is not None and self.invited != participant_id:
            raise ClassroomError("bad_state", "Another student is on stage; end their turn first")
        self.invited = participant_id
        member.deliver(ev.Invited())

    async def publish(self, member: Member, offer_sdp: str, tracks: list[str] | None = None) -> str:
        """The invited student's camera and microphone, to every other participant."""
        if member.participant_id != self.invited:
            raise ClassroomError("forbidden", "A student may publish only when the teacher invites them on stage")

        def on_failed() -> None:
            asyncio.ensure_future(self.end_turn())

        publication, answer = await self._media.publish(self._room, offer_sdp, on_failed, tracks)
        old, self.publication, self.muted = self.publication, publication, False
        others = [s for pid, s in self._broadcast.subscriptions.items() if pid != member.participant_id]
        await asyncio.gather(*(self._media.attach(s, publication, "stage") for s in others))
        await self._broadcast.edges.source_changed("stage", publication)
        if old is not None:
            await self._media.close(old)
        tell(self._members.everyone(), self.event())
        return answer

    async def attach(self, subscription: MediaPeer, member: Member) -> None:
        """A new subscription of ``member`` takes the stage too (not their own, when it is them)."""
        if self.publication is not None and member.participant_id != self.invited:
            await self._media.attach(subscription, self.publication, "stage")

    async def end_turn(self) -> None:
        """The student on stage goes back to watching (or the invitation lapses)."""
        publication, self.publication, invited, self.invited = self.publication, None, self.invited, None
        if publication is None and invited is None:
            return
        if publication is not None:
            subscriptions = list(self._broadcast.subscriptions.values())
            await asyncio.gather(*(self._media.attach(s, None, "stage") for s in subscriptions))
            await self._broadcast.edges.source_changed("stage", None)
            await self._media.close(publication)
        tell(self._members.everyone(), ev.StageChanged(None, None))  # also withdraws an invitation

    async def mute(self, participant_id: str, muted: bool) -> None:
        if self.publication is None or participant_id != self.invited:
            raise ClassroomError("bad_state", f"{participant_id!r} is not on stage")
        await self._media.set_muted(self.publication, "audio", muted)
        self.muted = muted
        tell(self._members.everyone(), self.event())
