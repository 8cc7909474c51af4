"""The embedded store: plain dictionaries, for one process on one machine."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from .base import NodeInfo, ParticipantRecord, Stay


class MemoryStore:
    def __init__(self) -> None:
        self._rosters: defaultdict[str, dict[str, ParticipantRecord]] = defaultdict(dict)
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._broadcasters: dict[str, str] = {}
        self._hands: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._polls: defaultdict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self._stays: defaultdict[str, dict[str, Stay]] = defaultdict(dict)
        self._open: defaultdict[str, dict[str, Stay]] = defaultdict(dict)
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}  # node -> info, lapses at (monotonic)
        self._owners: dict[str, tuple[str, float]] = {}  # room -> node, lease ends at (monotonic)
        self._recordings: dict[str, dict[str, Any]] = {}
        self._denied: dict[str, float] = {}  # key -> lapses at (monotonic)
        self._summaries: dict[str, tuple[list[dict[str, Any]], float]] = {}  # node -> rooms, lapse at

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

    async def hand(self, room: str, participant_id: str) -> float | None:
        return self._hands.get(room, {}).get(participant_id)

    async def answer_poll(self, room: str, poll_id: str, participant_id: str, choice: int) -> bool:
        answers = self._polls[(room, poll_id)]
        if participant_id in answers:
            return False
        answers[participant_id] = choice
        return True

    async def poll_answers(self, room: str, poll_id: str) -> dict[str, int]:
        return dict(self._polls.get((room, poll_id), {}))

    async def record_stay(self, room: str, stay: Stay) -> None:
        self._stays[room][stay.key] = stay
        if stay.left_at is None:
            self._open[room][stay.key] = stay
        else:
            self._open[room].pop(stay.key, None)

    async def attendance(self, room: str) -> list[Stay]:
        return sorted(self._stays.get(room, {}).values(), key=lambda s: s.joined_at)

    async def open_stays(self, room: str) -> list[Stay]:
        return sorted(self._open.get(room, {}).values(), key=lambda s: s.joined_at)

    async def deny(self, keys: list[str], ttl_s: float) -> None:
        now = time.monotonic()
        until = now + ttl_s
        self._denied = {key: at for key, at in self._denied.items() if at > now}  # forget what lapsed
        self._denied.update(dict.fromkeys(keys, until))

    async def denied(self, keys: list[str]) -> bool:
        now = time.monotonic()
        return any(self._denied.get(key, 0.0) > now for key in keys)

    async def save_recording(self, recording: dict[str, Any]) -> None:
        self._recordings[recording["id"]] = dict(recording)

    async def recordings(self, room: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        found = [r for r in self._recordings.values() if room is None or r["room"] == room]
        return sorted(found, key=lambda r: r["started_at"], reverse=True)[:limit]

    async def recording(self, recording_id: str) -> dict[str, Any] | None:
        found = self._recordings.get(recording_id)
        return dict(found) if found is not None else None

    async def heartbeat(self, info: NodeInfo, ttl_s: float) -> None:
        self._nodes[info.node] = (info, time.monotonic() + ttl_s)

    async def nodes(self) -> list[NodeInfo]:
        now = time.monotonic()
        return [info for info, lapses in self._nodes.values() if lapses > now]

    async def node_seen(self, node: str) -> float | None:
        entry = self._nodes.get(node)
        return entry[0].at if entry else None

    async def room_owner(self, room: str) -> str | None:
        entry = self._owners.get(room)
        return entry[0] if entry and entry[1] > time.monotonic() else None

    async def claim_room(self, room: str, node: str, ttl_s: float, replacing: str | None = None) -> str:
        owner = await self.room_owner(room)
        if owner is None or owner == replacing:
            self._owners[room] = (node, time.monotonic() + ttl_s)
            return node
        return owner

    async def renew_rooms(self, node: str, rooms: list[str], ttl_s: float) -> list[str]:
        lost = []
        for room in rooms:
            if await self.claim_room(room, node, ttl_s, replacing=node) != node:
                lost.append(room)
        return lost

    async def release_room(self, room: str, node: str) -> None:
        if await self.room_owner(room) == node:
            del self._owners[room]

    async def save_room_summaries(self, node: str, summaries: list[dict[str, Any]], ttl_s: float) -> None:
        self._summaries[node] = ([dict(s) for s in summaries], time.monotonic() + ttl_s)

    async def room_summaries(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        self._summaries = {node: entry for node, entry in self._summaries.items() if entry[1] > now}
        return [{**s, "node": node} for node, (summaries, _) in self._summaries.items() for s in summaries]

    async def close(self) -> None:
        return None
