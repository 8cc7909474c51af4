"""A room on this node, behind one facade over its parts, each with one job: who is in it
(``members``), the class talking back (``interaction``: chat, hands, polls), the teacher's
broadcast with its subscriptions and recording (``broadcast``), and the student on stage
(``stage``). The facade does what spans parts: joining, leaving, ending, and the teachers' view."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterator

from ..lessons.catalog import Catalog
from ..lessons.timetable import Timetable
from ..media.pool import MediaPeer, MediaPool
from ..state import Stay, Store
from ..tokens import SEES_PRESENCE, Role
from . import events as ev
from .broadcast import Broadcast
from .cascade import OriginSide
from .interaction import Interaction, Poll
from .journal import Journal
from .members import ClassroomError, Member, Members, tell
from .questions import Question, Questions
from .sections import HostSide, Part, PartSide, State, Uplink
from .stage import Stage
from .stream import Delivery, HlsPolicy, RoomStream, playlist_url

log = logging.getLogger(__name__)

NOTIFY_INTERVAL_S = 0.25  # what teachers watch (count, roster, hands, poll results): at most 4 a second
CLASS_PRESENCE_INTERVAL_S = 5.0  # students and inspectors hear the class size at most this often
ROSTER_LIMIT = 500  # a roster longer than this is cut (with the total); counts stay exact
TELL_BATCH = 500  # a whole-class message to a big room goes out this many members at a time


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
        timetable: Callable[[], Timetable] = Timetable,
        part: Part | None = None,
        uplink: Uplink | None = None,
    ) -> None:
        self.name = name
        self._media = media
        self._store = store
        self.incarnation = secrets.token_hex(4)  # an edge's feed belongs to this very room object
        self.members = Members(name, store, node)
        self.journal = Journal(name, timetable)
        self.interaction = Interaction(name, store, self.members, self._schedule_notify)
        stream = RoomStream(name, media, hls)
        self.broadcast = Broadcast(name, media, store, self.members, catalog, title, stream, self.journal)
        self.stage = Stage(name, media, self.members, self.broadcast)
        self.questions = Questions(self.members, self._schedule_notify)
        self._notify_timer: asyncio.TimerHandle | None = None
        self._class_told_at = -CLASS_PRESENCE_INTERVAL_S
        # a broadcast's parts report here; a part of one reports to it (``sections``)
        self.host = HostSide(name, uplink, self._schedule_notify) if uplink is not None else None
        self.part: PartSide | None = None
        if uplink is not None and part is not None:
            hands = self._count_hands
            self.part = PartSide(name, part, node, uplink, self.members, self.interaction, self.questions, hands)
        elif self.host is not None:
            self.interaction.counted_elsewhere = self.host.poll_counts
            self.broadcast.on_live_changed = self.push_state

    @property
    def live(self) -> bool:
        """The teacher broadcasts now (for a part: the broadcast's host)."""
        return self.part.live if self.part is not None else self.broadcast.live

    @property
    def edges(self) -> OriginSide:
        return self.broadcast.edges

    @property
    def poll(self) -> Poll | None:
        return self.interaction.poll

    def media_peers(self) -> list[MediaPeer]:
        return [*self.broadcast.media_peers(), *([self.stage.publication] if self.stage.publication else [])]

    def tell_all(self, event: ev.Event) -> None:
        tell(self.members.everyone(), event)

    # Membership ---------------------------------------------------------------------------------

    async def join(self, member: Member, resume: str | None = None) -> tuple[bool, str]:
        """Admit ``member``; whether it resumes a session that dropped within ``RESUME_S``, and
        the secret that lets a later connection take the seat over (``Members.admit``)."""
        resumed, seat = await self.members.admit(member, resume)
        if member.role is Role.TEACHER:
            self.journal.teacher_joined(member.participant_id)
        if member.role in SEES_PRESENCE:
            member.deliver(ev.Presence(await self._store.count(self.name, Role.STUDENT)))
        greeting = [*await self.interaction.greet(member), *self.stage.greet(), *self.questions.greet(member)]
        for event in [*greeting, *(self.part.greet() if self.part is not None else ())]:
            member.deliver(event)
        self._schedule_notify()
        return resumed, seat

    async def delivery(self, member: Member, wanted: Delivery) -> str | None:
        """The HLS playlist ``member`` watches instead of a WebRTC subscription, if any."""
        stream = self.broadcast.stream
        if self.part is not None:  # the broadcast's playlist, by the broadcast's audience; written where the session is
            audience = max(self.part.audience, len(self.members))
            return playlist_url(self.part.broadcast) if stream.assigns(member.role, wanted, audience) else None
        if not stream.assigns(member.role, wanted, len(self.members)):
            return None
        await stream.add_viewer(self.broadcast.publication)
        return stream.url

    def adopt(self, orphans: list[Stay], last_seen: dict[str, float]) -> None:
        self.members.adopt(orphans, last_seen)

    def disconnect(self, member: Member, on_expired: Callable[[], object]) -> None:
        """The member's connection dropped: keep everything for ``RESUME_S``, then leave."""
        if self.members.drop(member, on_expired):
            if member.role is Role.TEACHER:
                self.journal.teacher_dropped(member.participant_id)
            self._schedule_notify()

    async def leave(self, member: Member) -> None:
        if not await self.members.remove(member):
            return
        if not self.members:
            self.journal.ended("everyone_left")  # first: a broadcast no one watches ends with it
        await self.interaction.lower_hand(member.participant_id)
        cause = "teacher_not_back" if self.journal.dropped(member.participant_id) else "teacher_left"
        await self.broadcast.unpublish(member, cause)  # when it was them
        if self.stage.invited == member.participant_id:
            await self.stage.end_turn()
        await self.broadcast.unsubscribe(member.participant_id)
        self._schedule_notify()

    async def remove(self, participant_id: str) -> None:
        member = self.members.get(participant_id)
        if member is None:
            raise ClassroomError("bad_state", f"No participant {participant_id!r} in this room")
        if member.role is not Role.STUDENT:
            raise ClassroomError("forbidden", "Only students can be removed")
        await self.members.ban(member)
        member.deliver(ev.Removed("The teacher removed you from this lesson"))
        await self.leave(member)

    async def end_lesson(self, by: Member) -> None:
        """Everyone is told and leaves; the broadcast and its recording end."""
        self.journal.ended("ended")  # first: the broadcast stopping now is no fallback
        await self.stage.end_turn()
        publisher = self.broadcast.publisher_id
        if publisher is not None:
            await self.broadcast.unpublish(self.members.get(publisher) or by)
        self.tell_all(ev.LessonEnded())
        for member in self.members.everyone():
            await self.leave(member)

    # What members do that spans parts (``actions.py`` runs the rest on the parts themselves) ----

    async def add_publisher_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        if member.participant_id == self.stage.invited:
            peer = self.stage.publication  # the student on stage
        else:
            peer = self.broadcast.publication_of(member.participant_id)
        if peer is None:
            raise LookupError("There is no publish connection for this participant")
        await self._media.add_ice_candidate(peer, candidate, sdp_mid, sdp_mline_index)

    # Viewing (``actions.Viewing``): a member's own subscription ---------------------------------

    async def subscribe(self, member: Member) -> str:
        """A fresh subscription for ``member``, fed by the broadcast and the stage; returns the offer."""
        subscription, offer = await self.broadcast.subscribe(member)
        await self.stage.attach(subscription, member)
        return offer

    async def accept_answer(self, member: Member, sdp: str) -> None:
        subscription = self.broadcast.subscription(member.participant_id, "No subscription is waiting for an answer")
        await self._media.accept_answer(subscription, sdp)

    async def add_subscriber_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        subscription = self.broadcast.subscription(
            member.participant_id, "There is no subscribe connection for this participant"
        )
        await self._media.add_ice_candidate(subscription, candidate, sdp_mid, sdp_mline_index)

    async def save_data(self, member: Member, on: bool) -> None:
        subscription = self.broadcast.subscription(member.participant_id, "There is no subscription to save data on")
        await self._media.save_data(subscription, on)

    # The teachers' view -------------------------------------------------------------------------

    def _schedule_notify(self) -> None:
        """Teachers' views (count, roster, hands, poll results) are refreshed together, coalesced:
        a join storm is a few updates a second to each teacher, not one per join to everyone."""
        if self.part is not None:
            self.part.changed()
        if self._notify_timer is None:
            loop = asyncio.get_running_loop()
            self._notify_timer = loop.call_later(NOTIFY_INTERVAL_S, lambda: asyncio.ensure_future(self._notify()))

    async def _notify(self) -> None:
        self._notify_timer = None
        students = await self._store.count(self.name, Role.STUDENT) + (self.host.pupils if self.host else 0)
        now = time.monotonic()
        if now - self._class_told_at >= CLASS_PRESENCE_INTERVAL_S:  # the class gets the count, rarely
            self._class_told_at = now
            class_members = [m for m in self.members.everyone() if m.role not in SEES_PRESENCE]
            presence = ev.Presence(students)
            for start in range(0, len(class_members), TELL_BATCH):  # joins go on between the slices
                tell(class_members[start : start + TELL_BATCH], presence)
                await asyncio.sleep(0)
        watchers = self.members.watchers()
        if not watchers:
            return
        hands = await self.interaction.hands()
        raised = {h.participant_id for h in hands.raised}
        listed = [m for m in self.members.everyone() if m.role is not Role.INSPECTOR]  # inspectors are unseen
        away = self.members.away
        roster = ev.Roster(
            tuple(
                ev.RosterEntry(
                    m.participant_id, m.name, m.role.value, m.participant_id in raised, m.participant_id in away
                )
                for m in listed[:ROSTER_LIMIT]
            ),
            len(listed),
        )
        updates: list[ev.Event] = [ev.Presence(students), roster, hands, self.questions.view()]
        if self.poll is not None and self.poll.open:
            updates.append(await self.interaction.results())
        if self.host:
            updates.append(self.host.sections(self.poll.poll_id if self.poll is not None else None))
        for event in updates:
            tell(watchers, event)

    async def _count_hands(self) -> int:
        return len(await self._store.hands(self.name))

    # A broadcast's host and parts (``sections``) ------------------------------------------------

    def state(self) -> State:
        """What this broadcast's parts show their members."""
        poll = self.poll
        return {
            "live": self.broadcast.live,
            "pupils": self.host.pupils if self.host else 0,  # the audience: whether a joiner watches over HLS
            "poll": None
            if poll is None
            else {
                "poll_id": poll.poll_id,
                "question": poll.question,
                "options": list(poll.options),
                "open": poll.open,
                "shown": poll.shown,
                "counts": self.host.poll_counts(poll.poll_id, len(poll.options)) if self.host else [],
            },
            "answered": [dataclasses.asdict(q.to_event()) for q in self.questions.answered],
        }

    def push_state(self) -> None:
        if self.host:
            asyncio.ensure_future(self.host.push(self.state()))

    def from_part(self, message: dict[str, object]) -> State:
        """A part's summary, or a question for the host's queue; the broadcast's state in reply."""
        if self.host is None or self.part is not None:
            raise ClassroomError("bad_state", f"Room {self.name!r} is not a broadcast")
        if message.get("kind") == "question":
            self.questions.add(Question.of(ev.QuestionItem(**message["question"])))  # type: ignore[arg-type]
        else:
            self.host.heard(message)
        return self.state()

    async def ask(self, member: Member, text: str) -> None:
        part = self.part
        if part is not None and part.shard:  # no class teacher: the host's queue
            await part.ask_host(Question.new(member, text, ""))
        else:
            self.questions.add(Question.new(member, text, part.label if part is not None else ""))

    async def pass_on(self, question_id: str) -> None:
        if self.part is None:
            raise ClassroomError("bad_state", "This class is not a section of a broadcast now; answer it here")
        await self.part.ask_host(self.questions.passed_on(question_id))

    def answer_question(self, question_id: str, answer: str) -> None:
        """Shown to everyone here, and to every part when this is a broadcast."""
        self.tell_all(self.questions.answer(self.questions.take(question_id), answer))
        self.push_state()

    def dismiss_question(self, question_id: str) -> None:
        self.questions.take(question_id)

    async def resync(self) -> None:
        """Write this room's facts to the store again (it came back after losing them)."""
        await self.members.resync()
        await self._store.set_broadcaster(self.name, self.broadcast.publisher_id)
        self._schedule_notify()

    async def close(self) -> None:
        if self._notify_timer is not None:
            self._notify_timer.cancel()
        if self.part is not None:
            await self.part.close()
        for member in self.members.everyone():
            await self.leave(member)
        await self.broadcast.close()


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
        timetable: Callable[[], Timetable] = Timetable,
        broadcasts: frozenset[str] = frozenset(),
    ) -> None:
        self.media = media
        self.catalog = catalog
        self.title = title
        self.hls = hls
        self.timetable = timetable  # the one in force: a room's school, grade and slot
        self.store = store
        self.node = node
        self.on_closed: Callable[[str], object] = lambda name: None  # a room emptied and was let go
        self.broadcasts = broadcasts  # rooms always held as broadcasts, besides the timetable's
        self.uplink: Uplink | None = None  # how broadcasts and their parts reach each other
        self._broadcasts_now: tuple[float, Timetable | None, set[str]] = (-1.0, None, set())
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def create(self, name: str, part: Part | None = None) -> Room:
        """The room ``name`` held here; a class the timetable makes a broadcast's section now is
        held as that part of it."""
        room = self._rooms.get(name)
        if room is None:
            timetable = self.timetable()
            if part is None and (broadcast := timetable.broadcast_of(name)) is not None:
                school_class = timetable.classes.get(name)
                part = Part(broadcast, school_class.name if school_class else name, name)
            room = self._rooms[name] = Room(
                name,
                self.media,
                self.store,
                self.node,
                self.catalog,
                self.title,
                self.hls,
                self.timetable,
                part,
                self.uplink,
            )
        return room

    def is_broadcast(self, name: str) -> bool:
        """Whether ``name``'s pupils join it through their node's part (``sections``)."""
        return name in self.broadcasts or name in self._timetable_broadcasts()

    def _timetable_broadcasts(self) -> set[str]:
        """The timetable's broadcasts now, looked up at most once a second (a join storm asks for
        each pupil; a city's timetable has thousands of slots)."""
        now, timetable = time.monotonic(), self.timetable()
        at, of, names = self._broadcasts_now
        if now - at >= 1.0 or of is not timetable:
            names = timetable.broadcasts()
            self._broadcasts_now = (now, timetable, names)
        return names

    def from_part(self, broadcast: str, message: dict[str, object]) -> State:
        """A part's message for ``broadcast``, whose holding this node claimed."""
        return self.create(broadcast).from_part(message)

    async def to_parts(self, broadcast: str, state: State) -> None:
        """The broadcast's state, for its parts held here."""
        for room in self:
            if room.part is not None and room.part.broadcast == broadcast:
                await room.part.apply(state)

    async def join(self, name: str, member: Member, resume: str | None = None) -> tuple[Room, bool, str]:
        """The room ``member`` is now in, whether it resumed a dropped session, and its seat's secret."""
        room = self.create(name)
        try:
            return room, *await room.join(member, resume)
        except ClassroomError:
            if not room.members and not room.members.away and self._rooms.get(name) is room:
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
        room.journal.ended("moved")  # it starts again where its members reconnect
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
