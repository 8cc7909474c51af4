"""The embedded store: plain dictionaries, for one process on one machine."""

from __future__ import annotations

from collections import Counter, defaultdict

from .base import ParticipantRecord, Stay


class MemoryStore:
    def __init__(self) -> None:
        self._rosters: defaultdict[str, dict[str, ParticipantRecord]] = defaultdict(dict)
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._broadcasters: dict[str, str] = {}
        self._hands: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._polls: defaultdict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self._stays: defaultdict[str, dict[tuple[str, float], Stay]] = defaultdict(dict)

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

    async def set_hand(self, room: str, participant_id: str, raised_at: float | None) -> None:
        if raised_at is None:
            self._hands[room].pop(participant_id, None)
        else:
            self._hands[room].setdefault(participant_id, raised_at)

    async def hands(self, room: str) -> list[tuple[str, float]]:
        return sorted(self._hands.get(room, {}).items(), key=lambda item: item[1])

    async def answer_poll(self, room: str, poll_id: str, participant_id: str, choice: int) -> bool:
        answers = self._polls[(room, poll_id)]
        if participant_id in answers:
            return False
        answers[participant_id] = choice
        return True

    async def poll_answers(self, room: str, poll_id: str) -> dict[str, int]:
        return dict(self._polls.get((room, poll_id), {}))

    async def record_stay(self, room: str, stay: Stay) -> None:
        self._stays[room][(stay.participant_id, stay.joined_at)] = stay

    async def attendance(self, room: str) -> list[Stay]:
        return sorted(self._stays.get(room, {}).values(), key=lambda s: s.joined_at)

    async def close(self) -> None:
        return None
