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
class QuestionItem:
    question_id: str
    name: str
    section: str
    text: str
    at: float
    answer: str = ""
    answered: bool = False
    passed: bool = False


@dataclass(frozen=True, slots=True)
class Questions:
    """To the teachers: the questions waiting for them."""

    waiting: tuple[QuestionItem, ...]


@dataclass(frozen=True, slots=True)
class QuestionAnswered:
    """To everyone the answer reaches: a question and its answer."""

    question: QuestionItem


@dataclass(frozen=True, slots=True)
class SectionRow:
    """One part of a broadcast as its host sees it: a class (its section) or the pupils of one node
    who watch without a class."""

    part: str
    label: str
    pupils: int
    hands: int
    questions: int  # waiting for the class teacher
    poll_counts: tuple[int, ...] = ()  # this part's answers to the host's open poll


@dataclass(frozen=True, slots=True)
class Sections:
    """To a broadcast's hosts: its parts as rows, and the totals (never the pupils' names)."""

    rows: tuple[SectionRow, ...]
    pupils: int
    hands: int


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
    | Questions
    | QuestionAnswered
    | Sections
    | Invited
    | StageChanged
    | Removed
    | LessonEnded
    | Replaced
    | Moved
)
