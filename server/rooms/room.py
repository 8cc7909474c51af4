"""A room on this node: its members, the teacher's broadcast, and each subscriber's media."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from ..lessons.catalog import Catalog
from ..media.pool import MediaPeer, MediaPool
from ..state import ParticipantRecord, Store
from ..tokens import SEES_PRESENCE, Role

log = logging.getLogger(__name__)

PRESENCE_INTERVAL_S = 0.25  # presence updates to teachers are coalesced to at most 4 a second


class Member(Protocol):
    """What the room needs of a participant's session."""

    participant_id: str
    name: str
    role: Role

    def broadcast_changed(self, live: bool) -> None: ...

    def presence_changed(self, students: int) -> None: ...


class Room:
    def __init__(
        self,
        name: str,
        media: MediaPool,
        store: Store,
        node: str,
        catalog: Catalog | None,
        title: Callable[[str], str] = str,
    ) -> None:
        self.name = name
        self._media = media
        self._catalog = catalog
        self._title = title  # what a recording of this room is called (the lesson now)
        self._recording_id: str | None = None
        self._store = store
        self._node = node
        self.members: dict[str, Member] = {}
        self.subscriptions: dict[str, MediaPeer] = {}
        self.publication: MediaPeer | None = None
        self.publisher_id: str | None = None
        self._presence_timer: asyncio.TimerHandle | None = None

    @property
    def live(self) -> bool:
        return self.publication is not None

    async def join(self, member: Member) -> None:
        previous = self.members.get(member.participant_id)
        if previous is not None and previous is not member:
            await self.leave(previous)  # the same person again: the newer session wins
        self.members[member.participant_id] = member
        record = ParticipantRecord(member.participant_id, member.name, member.role.value, self._node, time.time())
        await self._store.add_participant(self.name, record)
        if member.role in SEES_PRESENCE:
            member.presence_changed(await self._store.count(self.name, Role.STUDENT))
        if member.role is Role.STUDENT:
            self._schedule_presence()

    async def leave(self, member: Member) -> None:
        if self.members.get(member.participant_id) is not member:
            return
        del self.members[member.participant_id]
        await self._store.remove_participant(self.name, member.participant_id)
        if self.publisher_id == member.participant_id:
            await self.unpublish(member)
        subscription = self.subscriptions.pop(member.participant_id, None)
        if subscription is not None:
            await self._media.close(subscription)
        if member.role is Role.STUDENT:
            self._schedule_presence()

    # Teacher's broadcast ------------------------------------------------------------------------

    async def publish(self, member: Member, offer_sdp: str) -> str:
        """Start (or restart) the broadcast from ``member``'s offer; returns the answer."""

        def on_failed() -> None:
            asyncio.ensure_future(self._publication_failed(member))

        publication, answer = await self._media.publish(self.name, offer_sdp, on_failed=on_failed)
        old = self.publication
        self.publication, self.publisher_id = publication, member.participant_id
        await self._attach_all(publication)
        if old is not None:
            await self._finish_recording(old)
            await self._media.close(old)
        await self._start_recording(publication, member)
        await self._store.set_broadcaster(self.name, member.participant_id)
        if old is None:
            self._tell_subscribers(live=True)
        log.info("room %s: %s broadcasts", self.name, member.name)
        return answer

    async def unpublish(self, member: Member) -> None:
        if self.publisher_id != member.participant_id or self.publication is None:
            return
        publication, self.publication, self.publisher_id = self.publication, None, None
        await self._attach_all(None)
        self._tell_subscribers(live=False)  # first: students switch to the recording at once
        await self._finish_recording(publication)
        await self._media.close(publication)
        await self._store.set_broadcaster(self.name, None)
        log.info("room %s: broadcast ended", self.name)

    async def _start_recording(self, publication: MediaPeer, member: Member) -> None:
        if self._catalog is None:
            return
        recording = self._catalog.begin(self.name, member.name, self._title(self.name))
        try:
            await self._media.start_recording(publication, str(self._catalog.media_path(recording)))
        except (LookupError, RuntimeError) as exc:
            log.error("room %s: recording did not start: %s", self.name, exc)
            self._catalog.finish(recording.id, {"error": str(exc)})
            return
        self._recording_id = recording.id

    async def _finish_recording(self, publication: MediaPeer) -> None:
        recording_id, self._recording_id = self._recording_id, None
        if recording_id is None or self._catalog is None:
            return
        info = await self._media.stop_recording(publication)
        recording = self._catalog.finish(recording_id, info)
        if recording is not None:
            log.info(
                "room %s: recorded %s (%.1f s, %s)",
                self.name,
                recording.file,
                recording.duration_s or 0,
                recording.status,
            )

    async def _attach_all(self, publication: MediaPeer | None) -> None:
        await asyncio.gather(*(self._media.attach(s, publication) for s in list(self.subscriptions.values())))

    async def _publication_failed(self, member: Member) -> None:
        log.warning("room %s: the teacher's connection failed", self.name)
        await self.unpublish(member)

    # Subscribers --------------------------------------------------------------------------------

    async def subscribe(self, member: Member) -> str:
        """A fresh subscription for ``member``, fed by the current broadcast; returns the offer."""
        old = self.subscriptions.pop(member.participant_id, None)
        if old is not None:
            await self._media.close(old)
        subscription, offer = await self._media.subscribe(self.name)
        self.subscriptions[member.participant_id] = subscription
        await self._media.attach(subscription, self.publication)
        return offer

    async def accept_answer(self, member: Member, sdp: str) -> None:
        subscription = self.subscriptions.get(member.participant_id)
        if subscription is None:
            raise LookupError("No subscription is waiting for an answer")
        await self._media.accept_answer(subscription, sdp)

    async def add_ice_candidate(
        self,
        member: Member,
        target: Literal["publish", "subscribe"],
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        peer: MediaPeer | None
        if target == "publish":
            peer = self.publication if self.publisher_id == member.participant_id else None
        else:
            peer = self.subscriptions.get(member.participant_id)
        if peer is None:
            raise LookupError(f"There is no {target} connection for this participant")
        await self._media.add_ice_candidate(peer, candidate, sdp_mid, sdp_mline_index)

    # Notifications ------------------------------------------------------------------------------

    def _tell_subscribers(self, *, live: bool) -> None:
        for participant_id in self.subscriptions:
            member = self.members.get(participant_id)
            if member is not None:
                member.broadcast_changed(live)

    def _schedule_presence(self) -> None:
        if self._presence_timer is None:
            loop = asyncio.get_running_loop()
            self._presence_timer = loop.call_later(
                PRESENCE_INTERVAL_S, lambda: asyncio.ensure_future(self._send_presence())
            )

    async def _send_presence(self) -> None:
        self._presence_timer = None
        watchers = [m for m in self.members.values() if m.role in SEES_PRESENCE]
        if not watchers:
            return
        students = await self._store.count(self.name, Role.STUDENT)
        for member in watchers:
            member.presence_changed(students)

    async def close(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
        for member in list(self.members.values()):
            await self.leave(member)


class Rooms:
    """The rooms held on this node."""

    def __init__(
        self,
        media: MediaPool,
        store: Store,
        node: str,
        catalog: Catalog | None = None,
        title: Callable[[str], str] = str,
    ) -> None:
        self.media = media
        self.catalog = catalog
        self.title = title
        self.store = store
        self.node = node
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    async def join(self, name: str, member: Member) -> Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self.media, self.store, self.node, self.catalog, self.title)
        await room.join(member)
        return room

    async def leave(self, room: Room, member: Member) -> None:
        await room.leave(member)
        if not room.members and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            await room.close()
            self.media.release(room.name)

    async def close(self) -> None:
        for room in list(self._rooms.values()):
            await room.close()
        self._rooms.clear()
