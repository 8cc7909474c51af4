"""A room on this node: its members, the teacher's broadcast, each subscriber's media, and the
classroom around them: hands, polls, chat, moderation, attendance, and resuming after a drop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from ..lessons.catalog import Catalog
from ..media.pool import MediaPeer, MediaPool
from ..state import ParticipantRecord, Stay, Store
from ..tokens import SEES_PRESENCE, Role
from . import events as ev
from .feeds import EdgeFeeds
from .stream import Delivery, HlsPolicy, RoomStream

log = logging.getLogger(__name__)

NOTIFY_INTERVAL_S = 0.25  # what teachers watch (count, roster, hands, poll results): at most 4 a second
RESUME_S = 30.0  # a dropped participant keeps role, hand, answer, subscription and broadcast this long
CLASS_PRESENCE_INTERVAL_S = 5.0  # students and inspectors hear the class size at most this often
ROSTER_LIMIT = 500  # a roster longer than this is cut (with the total); counts stay exact
POLL_OPTIONS = 6
TELL_BATCH = 500  # a whole-class message to a big room goes out this many members at a time


class ClassroomError(Exception):
    """An action refused for a reason the participant should hear (``code`` is a protocol code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Member(Protocol):
    """What the room needs of a participant's session."""

    participant_id: str
    name: str
    role: Role

    def deliver(self, event: ev.Event) -> None: ...


@dataclass
class Poll:
    poll_id: str
    question: str
    options: tuple[str, ...]
    open: bool = True


class Room:
    def __init__(
        self,
        name: str,
        media: MediaPool,
        store: Store,
        node: str,
        catalog: Catalog | None,
        title: Callable[[str], str] = str,
        hls: HlsPolicy | None = None,
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
        self.away: dict[str, asyncio.TimerHandle] = {}  # dropped, may resume
        self.removed: set[str] = set()  # participants the teacher removed: no way back this lesson
        self.poll: Poll | None = None
        self.invited: str | None = None  # the student invited on stage
        self.stage: MediaPeer | None = None  # what that student publishes
        self.stage_muted = False
        self._stays: dict[str, Stay] = {}  # the open stay of each member
        self._orphans: dict[str, Stay] = {}  # open stays left by a node that held this room and died
        self._notify_timer: asyncio.TimerHandle | None = None
        self._class_told_at = -CLASS_PRESENCE_INTERVAL_S
        self.edges = EdgeFeeds(name, media)  # other nodes' viewers, fed once per node
        self.incarnation = secrets.token_hex(4)  # an edge's feed belongs to this very room object
        self.stream = RoomStream(name, media, hls)

    @property
    def live(self) -> bool:
        return self.publication is not None

    def media_peers(self) -> list[MediaPeer]:
        peers = [self.publication, self.stage, *self.subscriptions.values(), *self.edges.egresses]
        return [peer for peer in peers if peer is not None]

    def _watchers(self) -> Iterable[Member]:
        return (m for m in self.members.values() if m.role in SEES_PRESENCE)

    def _tell(self, members: Iterable[Member], event: ev.Event) -> None:
        for member in members:
            member.deliver(event)

    def tell_all(self, event: ev.Event) -> None:
        self._tell(list(self.members.values()), event)

    # Membership ---------------------------------------------------------------------------------

    async def join(self, member: Member) -> bool:
        """Admit ``member``; True when it resumes a session that dropped within ``RESUME_S``."""
        if member.participant_id in self.removed:
            raise ClassroomError("removed", "The teacher removed you from this lesson")
        timer = self.away.pop(member.participant_id, None)
        if timer is not None:
            timer.cancel()
        previous = self.members.get(member.participant_id)
        if previous is not None and previous is not member and timer is None:
            # The same person again before we noticed the old connection drop: the newer session
            # takes over everything (a reconnect), the old one is closed.
            previous.deliver(ev.Replaced())
        resumed = previous is not None and previous is not member
        self.members[member.participant_id] = member
        if not resumed:
            now = time.time()
            record = ParticipantRecord(member.participant_id, member.name, member.role.value, self._node, now)
            await self._store.add_participant(self.name, record)
            orphan = self._orphans.pop(member.participant_id, None)
            joined_at = orphan.joined_at if orphan is not None else now  # back after a node failed: one stay
            stay = Stay(member.participant_id, member.name, member.role.value, joined_at, node=self._node)
            self._stays[member.participant_id] = stay
            await self._store.record_stay(self.name, stay)
        if member.role in SEES_PRESENCE:
            member.deliver(ev.Presence(await self._store.count(self.name, Role.STUDENT)))
            member.deliver(await self._hands())
            if self.poll is not None:
                member.deliver(await self._poll_results(final=not self.poll.open))
        elif self.poll is not None and self.poll.open:
            answers = await self._store.poll_answers(self.name, self.poll.poll_id)
            poll = self.poll
            member.deliver(ev.PollOpened(poll.poll_id, poll.question, poll.options, answers.get(member.participant_id)))
        if self.stage is not None:
            member.deliver(self._stage_event())
        self._schedule_notify()
        return resumed

    async def delivery(self, member: Member, wanted: Delivery) -> str | None:
        """The HLS playlist ``member`` watches instead of a WebRTC subscription, if any."""
        if not self.stream.assigns(member.role, wanted, len(self.members)):
            return None
        await self.stream.add_viewer(self.publication)
        return self.stream.url

    def adopt(self, orphans: list[Stay], last_seen: dict[str, float]) -> None:
        """Stays left open by the node that held this room before it died. A participant back
        within ``RESUME_S`` continues theirs; the rest close when that node was last seen."""
        self._orphans = {stay.participant_id: stay for stay in orphans}

        async def close_the_rest() -> None:
            for pid, stay in list(self._orphans.items()):
                await self._store.record_stay(self.name, dataclasses.replace(stay, left_at=last_seen[pid]))
            self._orphans.clear()

        asyncio.get_running_loop().call_later(RESUME_S, lambda: asyncio.ensure_future(close_the_rest()))

    def disconnect(self, member: Member, on_expired: Callable[[], object]) -> None:
        """The member's connection dropped: keep everything for ``RESUME_S``, then leave."""
        if self.members.get(member.participant_id) is not member:
            return
        loop = asyncio.get_running_loop()
        self.away[member.participant_id] = loop.call_later(RESUME_S, on_expired)
        self._schedule_notify()

    async def leave(self, member: Member) -> None:
        if self.members.get(member.participant_id) is not member:
            return
        timer = self.away.pop(member.participant_id, None)
        if timer is not None:
            timer.cancel()
        del self.members[member.participant_id]
        await self._store.remove_participant(self.name, member.participant_id)
        await self._store.set_hand(self.name, member.participant_id, None)
        stay = self._stays.pop(member.participant_id, None)
        if stay is not None:
            await self._store.record_stay(self.name, dataclasses.replace(stay, left_at=time.time()))
        if self.publisher_id == member.participant_id:
            await self.unpublish(member)
        if self.invited == member.participant_id:
            await self.end_turn()
        subscription = self.subscriptions.pop(member.participant_id, None)
        if subscription is not None:
            await self._media.close(subscription)
        self._schedule_notify()

    # Classroom ----------------------------------------------------------------------------------

    def chat(self, member: Member, text: str) -> None:
        message = ev.ChatMessage(member.participant_id, member.name, member.role.value, text, time.time())
        self._tell((m for m in self.members.values() if m.participant_id not in self.away), message)

    async def set_hand(self, member: Member, raised: bool) -> None:
        await self._store.set_hand(self.name, member.participant_id, time.time() if raised else None)
        self._schedule_notify()

    async def hand_raised(self, participant_id: str) -> bool:
        return await self._store.hand(self.name, participant_id) is not None

    async def _hands(self) -> ev.HandsChanged:
        hands = []
        for participant_id, raised_at in await self._store.hands(self.name):
            member = self.members.get(participant_id)
            hands.append(ev.Hand(participant_id, member.name if member else participant_id, raised_at))
        return ev.HandsChanged(tuple(hands))

    def open_poll(self, question: str, options: list[str]) -> str:
        if not 2 <= len(options) <= POLL_OPTIONS:
            raise ClassroomError("bad_message", f"A poll needs 2 to {POLL_OPTIONS} options, not {len(options)}")
        poll = self.poll = Poll(secrets.token_hex(4), question, tuple(options))
        opened = ev.PollOpened(poll.poll_id, poll.question, poll.options)
        self._tell((m for m in self.members.values() if m.role is Role.STUDENT), opened)
        self._schedule_notify()
        return poll.poll_id

    async def answer_poll(self, member: Member, poll_id: str, choice: int) -> None:
        poll = self.poll
        if poll is None or poll.poll_id != poll_id or not poll.open:
            raise ClassroomError("bad_state", f"Poll {poll_id!r} is not open")
        if not 0 <= choice < len(poll.options):
            raise ClassroomError("bad_message", f"Expected a choice from 0 to {len(poll.options) - 1}, got {choice}")
        if not await self._store.answer_poll(self.name, poll_id, member.participant_id, choice):
            raise ClassroomError("already_answered", "You answered this poll already; the first answer counts")
        self._schedule_notify()

    async def close_poll(self, poll_id: str, show: bool) -> None:
        poll = self.poll
        if poll is None or poll.poll_id != poll_id or not poll.open:
            raise ClassroomError("bad_state", f"Poll {poll_id!r} is not open")
        poll.open = False
        results = await self._poll_results(final=True)
        self._tell(self._watchers(), results)
        students = [m for m in self.members.values() if m.role is Role.STUDENT]
        self._tell(students, results if show else ev.PollClosed(poll_id))

    async def _poll_results(self, final: bool) -> ev.PollResults:
        assert self.poll is not None
        poll = self.poll
        counts = [0] * len(poll.options)
        answers = await self._store.poll_answers(self.name, poll.poll_id)
        for choice in answers.values():
            counts[choice] += 1
        return ev.PollResults(poll.poll_id, poll.question, poll.options, tuple(counts), len(answers), final)

    # On stage -----------------------------------------------------------------------------------

    def invite(self, participant_id: str) -> None:
        member = self.members.get(participant_id)
        if member is None or member.role is not Role.STUDENT:
            raise ClassroomError("bad_state", f"No student {participant_id!r} in this room")
        if self.stage is not None and self.invited != participant_id:
            raise ClassroomError("bad_state", "Another student is on stage; end their turn first")
        self.invited = participant_id
        member.deliver(ev.Invited())

    def _stage_event(self) -> ev.StageChanged:
        member = self.members.get(self.invited or "") if self.stage is not None else None
        if member is None:
            return ev.StageChanged(None, None)
        return ev.StageChanged(member.participant_id, member.name, self.stage_muted)

    async def publish_stage(self, member: Member, offer_sdp: str, tracks: list[str] | None = None) -> str:
        """The invited student's camera and microphone, to every other participant."""
        if member.participant_id != self.invited:
            raise ClassroomError("forbidden", "A student may publish only when the teacher invites them on stage")

        def on_failed() -> None:
            asyncio.ensure_future(self.end_turn())

        publication, answer = await self._media.publish(self.name, offer_sdp, on_failed, tracks)
        old, self.stage, self.stage_muted = self.stage, publication, False
        others = [s for pid, s in self.subscriptions.items() if pid != member.participant_id]
        await asyncio.gather(*(self._media.attach(s, publication, "stage") for s in others))
        await self.edges.source_changed("stage", publication)
        if old is not None:
            await self._media.close(old)
        self._tell(list(self.members.values()), self._stage_event())
        return answer

    async def end_turn(self) -> None:
        """The student on stage goes back to watching (or the invitation lapses)."""
        stage, self.stage, invited, self.invited = self.stage, None, self.invited, None
        if stage is None and invited is None:
            return
        if stage is not None:
            await asyncio.gather(*(self._media.attach(s, None, "stage") for s in list(self.subscriptions.values())))
            await self.edges.source_changed("stage", None)
            await self._media.close(stage)
        self._tell(list(self.members.values()), ev.StageChanged(None, None))  # also withdraws an invitation

    async def mute_stage(self, participant_id: str, muted: bool) -> None:
        if self.stage is None or participant_id != self.invited:
            raise ClassroomError("bad_state", f"{participant_id!r} is not on stage")
        await self._media.set_muted(self.stage, "audio", muted)
        self.stage_muted = muted
        self._tell(list(self.members.values()), self._stage_event())

    async def remove(self, participant_id: str) -> None:
        member = self.members.get(participant_id)
        if member is None:
            raise ClassroomError("bad_state", f"No participant {participant_id!r} in this room")
        if member.role is not Role.STUDENT:
            raise ClassroomError("forbidden", "Only students can be removed")
        self.removed.add(participant_id)
        member.deliver(ev.Removed("The teacher removed you from this lesson"))
        await self.leave(member)

    async def end_lesson(self, by: Member) -> None:
        """Everyone is told and leaves; the broadcast and its recording end."""
        await self.end_turn()
        if self.publication is not None and self.publisher_id is not None:
            await self.unpublish(self.members.get(self.publisher_id, by))
        self._tell(list(self.members.values()), ev.LessonEnded())
        for member in list(self.members.values()):
            await self.leave(member)

    # Teacher's broadcast ------------------------------------------------------------------------

    async def publish(self, member: Member, offer_sdp: str, tracks: list[str] | None = None) -> str:
        """Start (or restart) the broadcast from ``member``'s offer (its m-lines named by
        ``tracks``); returns the answer."""

        def on_failed() -> None:
            asyncio.ensure_future(self._publication_failed(member))

        publication, answer = await self._media.publish(self.name, offer_sdp, on_failed, tracks)
        old = self.publication
        self.publication, self.publisher_id = publication, member.participant_id
        await self._attach_all(publication)
        await self.edges.source_changed("teacher", publication)
        if old is not None:
            await self._finish_recording(old)
            await self._media.close(old)
        await self.stream.publication_changed(publication)
        await self._start_recording(publication, member)
        await self._store.set_broadcaster(self.name, member.participant_id)
        if old is None:
            self._tell_viewers(live=True)
        log.info("room %s: %s broadcasts", self.name, member.name)
        return answer

    async def unpublish(self, member: Member) -> None:
        if self.publisher_id != member.participant_id or self.publication is None:
            return
        publication, self.publication, self.publisher_id = self.publication, None, None
        await self._attach_all(None)
        self._tell_viewers(live=False)  # first: students switch to the recording at once
        await self.edges.source_changed("teacher", None)
        await self.stream.publication_changed(None)
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
        """Every subscription but the publisher's own takes the teacher's broadcast."""
        targets = [s for pid, s in self.subscriptions.items() if publication is None or pid != self.publisher_id]
        await asyncio.gather(*(self._media.attach(s, publication) for s in targets))

    async def _publication_failed(self, member: Member) -> None:
        log.warning("room %s: the teacher's connection failed", self.name)
        await self.unpublish(member)

    # Subscribers --------------------------------------------------------------------------------

    async def subscribe(self, member: Member) -> str:
        """A fresh subscription for ``member``, fed by the current broadcast; returns the offer."""
        old = self.subscriptions.pop(member.participant_id, None)
        if old is not None:
            await self._media.close(old)
        subscription, offer = await self._media.subscribe(self.name, on_quality=quality_teller(member))
        self.subscriptions[member.participant_id] = subscription
        if member.participant_id != self.publisher_id:
            await self._media.attach(subscription, self.publication)
        if self.stage is not None and member.participant_id != self.invited:
            await self._media.attach(subscription, self.stage, "stage")
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
        if target == "publish" and member.participant_id == self.invited:
            peer = self.stage  # the student on stage
        elif target == "publish":
            peer = self.publication if self.publisher_id == member.participant_id else None
        else:
            peer = self.subscriptions.get(member.participant_id)
        if peer is None:
            raise LookupError(f"There is no {target} connection for this participant")
        await self._media.add_ice_candidate(peer, candidate, sdp_mid, sdp_mline_index)

    # Notifications ------------------------------------------------------------------------------

    def _tell_viewers(self, *, live: bool) -> None:
        """Everyone but the publisher: viewers whose media comes through another node too."""
        viewers = (m for pid, m in self.members.items() if pid != self.publisher_id)
        self._tell(list(viewers), ev.BroadcastChanged(live))

    def _schedule_notify(self) -> None:
        """Teachers' views (count, roster, hands, poll results) are refreshed together, coalesced:
        a join storm is a few updates a second to each teacher, not one per join to everyone."""
        if self._notify_timer is None:
            loop = asyncio.get_running_loop()
            self._notify_timer = loop.call_later(NOTIFY_INTERVAL_S, lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        self._notify_timer = None
        students = await self._store.count(self.name, Role.STUDENT)
        now = time.monotonic()
        if now - self._class_told_at >= CLASS_PRESENCE_INTERVAL_S:  # the class gets the count, rarely
            self._class_told_at = now
            class_members = [m for m in self.members.values() if m.role not in SEES_PRESENCE]
            presence = ev.Presence(students)
            for start in range(0, len(class_members), TELL_BATCH):  # joins go on between the slices
                self._tell(class_members[start : start + TELL_BATCH], presence)
                await asyncio.sleep(0)
        watchers = list(self._watchers())
        if not watchers:
            return
        hands = await self._hands()
        raised = {h.participant_id for h in hands.raised}
        listed = [m for m in self.members.values() if m.role is not Role.INSPECTOR]  # inspectors are unseen
        roster = ev.Roster(
            tuple(
                ev.RosterEntry(
                    m.participant_id, m.name, m.role.value, m.participant_id in raised, m.participant_id in self.away
                )
                for m in listed[:ROSTER_LIMIT]
            ),
            len(listed),
        )
        updates: list[ev.Event] = [ev.Presence(students), roster, hands]
        if self.poll is not None and self.poll.open:
            updates.append(await self._poll_results(final=False))
        for event in updates:
            self._tell(watchers, event)

    async def resync(self) -> None:
        """Write this room's facts to the store again (it came back after losing them)."""
        for pid, member in list(self.members.items()):
            stay = self._stays.get(pid)
            joined_at = stay.joined_at if stay is not None else time.time()
            record = ParticipantRecord(pid, member.name, member.role.value, self._node, joined_at)
            await self._store.add_participant(self.name, record)
        for stay in list(self._stays.values()):
            await self._store.record_stay(self.name, stay)
        await self._store.set_broadcaster(self.name, self.publisher_id)
        self._schedule_notify()

    async def close(self) -> None:
        if self._notify_timer is not None:
            self._notify_timer.cancel()
        for member in list(self.members.values()):
            await self.leave(member)
        await self.edges.close()
        await self.stream.close()


def quality_teller(member: Member) -> Callable[[str, str], None]:
    """Tells ``member`` which layer of the teacher's camera its link gets, when that changes."""
    return lambda layer, reason: member.deliver(ev.Quality(layer, reason))


class Rooms:
    """The rooms held on this node."""

    def __init__(
        self,
        media: MediaPool,
        store: Store,
        node: str,
        catalog: Catalog | None = None,
        title: Callable[[str], str] = str,
        hls: HlsPolicy | None = None,
    ) -> None:
        self.media = media
        self.catalog = catalog
        self.title = title
        self.hls = hls
        self.store = store
        self.node = node
        self.on_closed: Callable[[str], object] = lambda name: None  # a room emptied and was let go
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def create(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, self.media, self.store, self.node, self.catalog, self.title, self.hls)
        return room

    async def join(self, name: str, member: Member) -> tuple[Room, bool]:
        """The room ``member`` is now in, and whether it resumed a dropped session."""
        room = self.create(name)
        try:
            return room, await room.join(member)
        except ClassroomError:
            if not room.members and not room.away and self._rooms.get(name) is room:
                del self._rooms[name]
            raise

    def disconnect(self, room: Room, member: Member) -> None:
        """A dropped connection: the member may resume within ``RESUME_S``, else leaves."""
        room.disconnect(member, lambda: asyncio.ensure_future(self.leave(room, member)))

    async def leave(self, room: Room, member: Member) -> None:
        await room.leave(member)
        if not room.members and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            await room.close()
            self.media.release(room.name)
            self.on_closed(room.name)

    async def evict(self, room: Room) -> None:
        """Everyone is sent to reconnect (the room goes on elsewhere); it closes here."""
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
        room.tell_all(ev.Moved())
        await room.close()
        self.media.release(room.name)

    async def evict_backend(self, backend: int) -> int:
        """A media backend died: the rooms using it start again (their members reconnect)."""
        hit = [room for room in self if any(peer.backend == backend for peer in room.media_peers())]
        for room in hit:
            await self.evict(room)
        return len(hit)

    async def close(self) -> None:
        """Shutting down: members reconnect, to another node where there is one."""
        for room in list(self._rooms.values()):
            await self.evict(room)
