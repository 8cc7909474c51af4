"""The ``Store`` protocol: what the room layer keeps outside the process."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


class StoreUnavailable(Exception):
    """The store does not answer and nothing known can stand in for the answer."""


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
    node: str = ""  # the node that held the room then: a stay left open by a dead node is closed by the next

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return f"{self.participant_id}|{self.joined_at!r}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A server process as its heartbeat describes it; placement picks the lowest ``load``."""

    node: str
    participants: int
    rooms: int
    cpu: float  # cores used by the process over the last heartbeat interval
    at: float
    url: str = ""  # where clients reach this node (its own address, or the one a balancer gives it)

    @property
    def load(self) -> float:
        return self.participants + CORE_PARTICIPANTS * self.cpu

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CORE_PARTICIPANTS = 200  # one busy core weighs as much as this many participants in placement


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

    async def hand(self, room: str, participant_id: str) -> float | None:
        """When this participant's hand went up, if it is up."""

    async def answer_poll(self, room: str, poll_id: str, participant_id: str, choice: int) -> bool:
        """Keep a participant's answer; False when they had answered (the first answer stands)."""

    async def poll_answers(self, room: str, poll_id: str) -> dict[str, int]:
        """Participant -> choice."""

    async def record_stay(self, room: str, stay: Stay) -> None:
        """Attendance: write a stay (keyed by participant and join time), open or closed."""

    async def attendance(self, room: str) -> list[Stay]:
        """Every stay in the room, by join time."""

    async def open_stays(self, room: str) -> list[Stay]:
        """The stays not closed yet (people in the room now, or left open by a node that died)."""

    # Recorded lessons (the catalog every node lists; the files are on the recording node's disk) ---

    async def save_recording(self, recording: dict[str, Any]) -> None:
        """Add or update a recording's entry (``id``, ``room`` and ``started_at`` are required)."""

    async def recordings(self, room: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Newest first; ``room`` narrows to one class."""

    async def recording(self, recording_id: str) -> dict[str, Any] | None: ...

    # The denylist: revoked tokens and participants, participants banned from a room ---------------

    async def deny(self, keys: list[str], ttl_s: float) -> None:
        """Put ``keys`` on the denylist for ``ttl_s`` seconds (no longer than what they deny lives)."""

    async def denied(self, keys: list[str]) -> bool:
        """True when any of ``keys`` is on the denylist."""

    # Nodes and where rooms live -----------------------------------------------------------------

    async def heartbeat(self, info: NodeInfo, ttl_s: float) -> None:
        """The node is alive for ``ttl_s`` more seconds, with this load."""

    async def nodes(self) -> list[NodeInfo]:
        """Nodes whose heartbeat has not lapsed."""

    async def node_seen(self, node: str) -> float | None:
        """When ``node`` last sent a heartbeat (kept after it lapses), if ever."""

    async def room_owner(self, room: str) -> str | None: ...

    async def claim_room(self, room: str, node: str, ttl_s: float, replacing: str | None = None) -> str:
        """Make ``node`` the room's owner if it has none (or ``replacing`` owns it); returns the owner."""

    async def renew_rooms(self, node: str, rooms: list[str], ttl_s: float) -> list[str]:
        """Extend ``node``'s lease on its rooms; returns those another node owns now."""

    async def release_room(self, room: str, node: str) -> None:
        """The room is empty: forget its owner, if it is still ``node``."""

    # The city view: each node's summary of its rooms ---------------------------------------------

    async def save_room_summaries(self, node: str, summaries: list[dict[str, Any]], ttl_s: float) -> None:
        """``node``'s summary of each room it holds or has sessions of (each with ``room``), replacing
        its last one; it lapses after ``ttl_s`` unless saved again."""

    async def room_summaries(self) -> list[dict[str, Any]]:
        """The summaries of every node whose last ones have not lapsed, each with its ``node``."""

    async def close(self) -> None: ...
