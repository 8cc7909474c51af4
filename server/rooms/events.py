"""What the room tells its members; the signaling layer turns each into a wire message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BroadcastChanged:
    live: bool


@dataclass(frozen=True, slots=True)
class Quality:
    """Which layer of the teacher's camera this member's link gets now ("high", "low", "still"), and why."""

    layer: str
    reason: str


@dataclass(frozen=True, slots=True)
class SeatTaken:
    """Someone joined with this participant's token while they are connected, and was refused."""

    participant_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Presence:
    students: int


@dataclass(frozen=True, slots=True)
class ChatMessage:
    sender_id: str
    name: str
    role: str
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Hand:
    participant_id: str
    name: str
    raised_at: float


@dataclass(frozen=True, slots=True)
class HandsChanged:
    raised: tuple[Hand, ...]


@dataclass(frozen=True, slots=True)
class PollOpened:
    poll_id: str
    question: str
    options: tuple[str, ...]
    answered: int | None = None  # this member's answer, when resuming


@dataclass(frozen=True, slots=True)
class PollResults:
    poll_id: str
    question: str
    options: tuple[str, ...]
    counts: tuple[int, ...]
    answered: int
    final: bool


@dataclass(frozen=True, slots=True)
class PollClosed:
    poll_id: str


@dataclass(frozen=True, slots=True)
class RosterEntry:
    participant_id: str
    name: str
    role: str
    hand: bool
    away: bool


@dataclass(frozen=True, slots=True)
class Roster:
    participants: tuple[RosterEntry, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Invited:
    """To a student: you may publish now (you are on stage)."""


@dataclass(frozen=True, slots=True)
class StageChanged:
    participant_id: str | None  # who is on stage now; None: nobody
    name: str | None
    muted: bool = False


@dataclass(frozen=True, slots=True)
class Removed:
    reason: str


@dataclass(frozen=True, slots=True)
class LessonEnded:
    pass


@dataclass(frozen=True, slots=True)
class Replaced:
    """This session was taken over by the same participant's newer one (a reconnect)."""


@dataclass(frozen=True, slots=True)
class Moved:
    """The room goes on on another node (this one failed, stopped or lost it): reconnect."""


Event = (
    BroadcastChanged
    | Quality
    | Presence
    | SeatTaken
    | ChatMessage
    | HandsChanged
    | PollOpened
    | PollResults
    | PollClosed
    | Roster
    | Invited
    | StageChanged
    | Removed
    | LessonEnded
    | Replaced
    | Moved
)
