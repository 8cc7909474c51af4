"""Who is in a room: admission, drops and resuming within ``RESUME_S``, leaving, attendance stays,
and telling members what happened."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..state import ParticipantRecord, Stay, Store
from ..tokens import SEES_PRESENCE, Role
from . import events as ev

RESUME_S = 30.0  # a dropped participant keeps role, hand, answer, subscription and broadcast this long


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
        self.removed: set[str] = set()  # participants the teacher removed: no way back this lesson
        self._stays: dict[str, Stay] = {}  # the open stay of each member
        self._orphans: dict[str, Stay] = {}  # open stays left by a node that held this room and died

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

    async def admit(self, member: Member) -> bool:
        """Admit ``member``; True when it resumes a session that dropped within ``RESUME_S``."""
        if member.participant_id in self.removed:
            raise ClassroomError("removed", "The teacher removed you from this lesson")
        timer = self.away.pop(member.participant_id, None)
        if timer is not None:
            timer.cancel()
        previous = self.present.get(member.participant_id)
        if previous is not None and previous is not member and timer is None:
            # The same person again before we noticed the old connection drop: the newer session
            # takes over everything (a reconnect), the old one is closed.
            previous.deliver(ev.Replaced())
        resumed = previous is not None and previous is not member
        self.present[member.participant_id] = member
        if not resumed:
            now = time.time()
            record = ParticipantRecord(member.participant_id, member.name, member.role.value, self._node, now)
            await self._store.add_participant(self._room, record)
            orphan = self._orphans.pop(member.participant_id, None)
            joined_at = orphan.joined_at if orphan is not None else now  # back after a node failed: one stay
            stay = Stay(member.participant_id, member.name, member.role.value, joined_at, node=self._node)
            self._stays[member.participant_id] = stay
            await self._store.record_stay(self._room, stay)
        return resumed

    def adopt(self, orphans: list[Stay], last_seen: dict[str, float]) -> None:
        """Stays left open by the node that held this room before it died. A participant back
        within ``RESUME_S`` continues theirs; the rest close when that node was last seen."""
        self._orphans = {stay.participant_id: stay for stay in orphans}

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
        await self._store.remove_participant(self._room, member.participant_id)
        stay = self._stays.pop(member.participant_id, None)
        if stay is not None:
            await self._store.record_stay(self._room, dataclasses.replace(stay, left_at=time.time()))
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
