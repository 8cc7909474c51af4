"""The ``Store`` protocol: what the room layer keeps outside the process."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    participant_id: str
    name: str
    role: str
    node: str
    joined_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParticipantRecord:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Stay:
    """One continuous presence of a participant in a room (attendance); ``left_at`` None while there."""

    participant_id: str
    name: str
    role: str
    joined_at: float
    left_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Store(Protocol):
    """Implemented by ``MemoryStore`` and ``RedisStore``; both pass ``tests/test_state_contract.py``."""

    async def add_participant(self, room: str, record: ParticipantRecord) -> bool:
        """Add to the room's roster; False when already there (nothing changes then)."""

    async def remove_participant(self, room: str, participant_id: str) -> bool:
        """Remove from the roster; False when not there."""

    async def participants(self, room: str) -> list[ParticipantRecord]: ...

    async def count(self, room: str, role: str) -> int:
        """How many of ``role`` are in the room, without reading the roster."""

    async def set_broadcaster(self, room: str, participant_id: str | None) -> None:
        """Who broadcasts in the room now (None: nobody)."""

    async def broadcaster(self, room: str) -> str | None: ...

    async def set_hand(self, room: str, participant_id: str, raised_at: float | None) -> None:
        """Raise a hand (at ``raised_at``) or lower it (None)."""

    async def hands(self, room: str) -> list[tuple[str, float]]:
        """Raised hands, earliest first."""

    async def answer_poll(self, room: str, poll_id: str, participant_id: str, choice: int) -> bool:
        """Keep a participant's answer; False when they had answered (the first answer stands)."""

    async def poll_answers(self, room: str, poll_id: str) -> dict[str, int]:
        """Participant -> choice."""

    async def record_stay(self, room: str, stay: Stay) -> None:
        """Attendance: write a stay (keyed by participant and join time), open or closed."""

    async def attendance(self, room: str) -> list[Stay]:
        """Every stay in the room, by join time."""

    async def close(self) -> None: ...
