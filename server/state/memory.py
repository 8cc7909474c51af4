"""The embedded store: plain dictionaries, for one process on one machine."""

from __future__ import annotations

from collections import Counter, defaultdict

from .base import ParticipantRecord


class MemoryStore:
    def __init__(self) -> None:
        self._rosters: defaultdict[str, dict[str, ParticipantRecord]] = defaultdict(dict)
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._broadcasters: dict[str, str] = {}

    async def add_participant(self, room: str, record: ParticipantRecord) -> bool:
        roster = self._rosters[room]
        if record.participant_id in roster:
            return False
        roster[record.participant_id] = record
        self._counts[room][record.role] += 1
        return True

    async def remove_participant(self, room: str, participant_id: str) -> bool:
        roster = self._rosters.get(room)
        record = roster.pop(participant_id, None) if roster is not None else None
        if record is None:
            return False
        self._counts[room][record.role] -= 1
        if not roster:
            del self._rosters[room]
            del self._counts[room]
        return True

    async def participants(self, room: str) -> list[ParticipantRecord]:
        return list(self._rosters.get(room, {}).values())

    async def count(self, room: str, role: str) -> int:
        counts = self._counts.get(room)
        return counts[role] if counts is not None else 0

    async def set_broadcaster(self, room: str, participant_id: str | None) -> None:
        if participant_id is None:
            self._broadcasters.pop(room, None)
        else:
            self._broadcasters[room] = participant_id

    async def broadcaster(self, room: str) -> str | None:
        return self._broadcasters.get(room)

    async def close(self) -> None:
        return None
