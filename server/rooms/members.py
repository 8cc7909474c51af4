"""Who is in a room: admission, drops and resuming within ``RESUME_S``, leaving, attendance stays,
and telling members what happened."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..state import ParticipantRecord, Stay, Store
from ..tokens import SEES_PRESENCE, Role
from . import events as ev

RESUME_S = 30.0  # a dropped participant keeps role, hand, answer, subscription and broadcast this long
BAN_S = 12 * 3600.0  # a removed participant stays out this long (the longest a join token lives)


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


def tell(members: Iterable[Member], event: ev.Event) -> None:
    for member in members:
        member.deliver(event)


def quality_teller(member: Member) -> Callable[[str, str], None]:
    """Tells ``member`` which layer of the teacher's camera its link gets, when that changes."""
    return lambda layer, reason: member.deliver(ev.Quality(layer, reason))


class Members:
    def __init__(self, room: str, store: Store, node: str) -> None:
        self._room = room
        self._store = store
        self._node = node
        self.present: dict[str, Member] = {}
        self.away: dict[str, asyncio.TimerHandle] = {}  # dropped, may resume
        self._stays: dict[str, Stay] = {}  # the open stay of each member
        self._orphans: dict[str, Stay] = {}  # open stays left by a node that held this room and died
        self._left: dict[str, tuple[Stay, float]] = {}  # stays that ended lately: a rejoin continues them
        self.seats: dict[str, str] = {}  # participant -> the secret that takes their seat over
        self.taken_over = False  # held before by a node that died: the store may hold its members' hands

    def __len__(self) -> int:
        return len(self.present)

    def get(self, participant_id: str) -> Member | None:
        return self.present.get(participant_id)

    def everyone(self) -> list[Member]:
        return list(self.present.values())

    def watchers(self) -> list[Member]:
        """Those who see the class: counts, roster, hands, poll results."""
        return [m for m in self.present.values() if m.role in SEES_PRESENCE]

    def students(self) -> list[Member]:
        return [m for m in self.present.values() if m.role is Role.STUDENT]

    def connected(self) -> list[Member]:
        return [m for pid, m in self.present.items() if pid not in self.away]

    def _ban_keys(self, member: Member) -> list[str]:
        return [f"ban:{self._room}:participant:{member.participant_id}", f"ban:{self._room}:name:{member.name}"]

    async def ban(self, member: Member) -> None:
        """``member`` may not come back, with this token or another in the same name."""
        await self._store.deny(self._ban_keys(member), BAN_S)

    async def admit(self, member: Member, resume: str | None = None) -> tuple[bool, str]:
        """Admit ``member``; whether it resumes a session that dropped within ``RESUME_S``, and the
        secret that lets a later connection take its seat over."""
        pid = member.participant_id
        if member.role is Role.STUDENT and await self._store.denied(self._ban_keys(member)):
            raise ClassroomError("removed", "The teacher removed you from this lesson")
        previous = self.present.get(pid)
        if previous is not None and previous is not member and pid not in self.away:
            if resume is None or resume != self.seats.get(pid):
                # Connected elsewhere: a leaked link or a second device, not a reconnect.
                tell(self.watchers(), ev.SeatTaken(pid, member.name))
                raise ClassroomError("seat_taken", "You are connected on another device; close it first")
            previous.deliver(ev.Replaced())  # the old connection hangs: the new one takes over
        timer = self.away.pop(pid, None)
        if timer is not None:
            timer.cancel()
        resumed = previous is not None and previous is not member
        self.present[pid] = member
        if not resumed:
            await self._open_stay(member)
        seat = self.seats[pid] = secrets.token_urlsafe(16)
        return resumed, seat

    async def _open_stay(self, member: Member) -> None:
        pid, now = member.participant_id, time.time()
        record = ParticipantRecord(pid, member.name, member.role.value, self._node, now)
        await self._store.add_participant(self._room, record)
        orphan = self._orphans.pop(pid, None)  # back after a node failed: one stay
        left = self._left.pop(pid, None)  # back right after leaving: one stay
        if left is not None and time.monotonic() - left[1] < RESUME_S:
            stay = dataclasses.replace(left[0], left_at=None)
        else:
            joined_at = orphan.joined_at if orphan is not None else now
            stay = Stay(pid, member.name, member.role.value, joined_at, node=self._node)
        self._stays[pid] = stay
        await self._store.record_stay(self._room, stay)

    def adopt(self, orphans: list[Stay], last_seen: dict[str, float]) -> None:
        """Stays left open by the node that held this room before it died. A participant back
        within ``RESUME_S`` continues theirs; the rest close when that node was last seen."""
        self._orphans = {stay.participant_id: stay for stay in orphans}
        self.taken_over = True

        async def close_the_rest() -> None:
            for pid, stay in list(self._orphans.items()):
                await self._store.record_stay(self._room, dataclasses.replace(stay, left_at=last_seen[pid]))
            self._orphans.clear()

        asyncio.get_running_loop().call_later(RESUME_S, lambda: asyncio.ensure_future(close_the_rest()))

    def drop(self, member: Member, on_expired: Callable[[], object]) -> bool:
        """The member's connection dropped: kept for ``RESUME_S``, then ``on_expired``. False when
        ``member`` is not (or no longer) the one in the room."""
        if self.present.get(member.participant_id) is not member:
            return False
        self.away[member.participant_id] = asyncio.get_running_loop().call_later(RESUME_S, on_expired)
        return True

    async def remove(self, member: Member) -> bool:
        """``member`` leaves; False when it was not (or no longer) the one in the room."""
        if self.present.get(member.participant_id) is not member:
            return False
        timer = self.away.pop(member.participant_id, None)
        if timer is not None:
            timer.cancel()
        del self.present[member.participant_id]
        self.seats.pop(member.participant_id, None)
        await self._store.remove_participant(self._room, member.participant_id)
        stay = self._stays.pop(member.participant_id, None)
        if stay is not None:
            await self._store.record_stay(self._room, dataclasses.replace(stay, left_at=time.time()))
            now = time.monotonic()
            self._left = {pid: kept for pid, kept in self._left.items() if now - kept[1] < RESUME_S}
            self._left[member.participant_id] = (stay, now)
        return True

    async def resync(self) -> None:
        """Write who is here to the store again (it came back after losing it)."""
        for pid, member in list(self.present.items()):
            stay = self._stays.get(pid)
            joined_at = stay.joined_at if stay is not None else time.time()
            record = ParticipantRecord(pid, member.name, member.role.value, self._node, joined_at)
            await self._store.add_participant(self._room, record)
        for stay in list(self._stays.values()):
            await self._store.record_stay(self._room, stay)
