"""The wire format (docs/protocol.md): every message both ways as a pydantic model, and the error codes."""

from __future__ import annotations

import functools
import json
import operator
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError

from ..rooms.actions import ACTIONS, Message
from ..rooms.actions import Offer as Offer  # the replies to room actions are part of the wire format too
from ..rooms.actions import PollOpened as PollOpened
from ..rooms.actions import PublishAnswer as PublishAnswer
from .turn import IceServer


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    TOO_LARGE = "too_large"
    BINARY_FRAME = "binary_frame"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    JOIN_TIMEOUT = "join_timeout"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    WRONG_ROOM = "wrong_room"
    FORBIDDEN = "forbidden"
    BAD_SDP = "bad_sdp"
    BAD_STATE = "bad_state"
    RATE_LIMITED = "rate_limited"
    ALREADY_ANSWERED = "already_answered"
    REMOVED = "removed"
    SEAT_TAKEN = "seat_taken"
    SERVER_FULL = "server_full"
    UNAVAILABLE = "unavailable"
    SERVER_ERROR = "server_error"


# Close codes sent after a fatal error.
CLOSE_CODES: dict[ErrorCode, int] = {
    ErrorCode.INVALID_TOKEN: 4401,
    ErrorCode.TOKEN_EXPIRED: 4401,
    ErrorCode.WRONG_ROOM: 4403,
    ErrorCode.JOIN_TIMEOUT: 4408,
    ErrorCode.SERVER_FULL: 4503,
    ErrorCode.REMOVED: 4403,
    ErrorCode.SEAT_TAKEN: 4409,  # this participant is connected elsewhere, and this join had not its resume secret
    ErrorCode.UNAVAILABLE: 1013,  # try again later: the client reconnects
}
CLOSE_PROTOCOL_ERROR = 4400


class ProtocolError(Exception):
    """Something the client sent that we refuse; becomes an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.retry_after = retry_after


# Client -> server --------------------------------------------------------------------------------


class Join(Message):
    type: Literal["join"]
    room: str = Field(min_length=1, max_length=128)
    token: str = Field(min_length=1, max_length=4096)
    subscribe: bool = True  # false: no media offer now (a `subscribe` message asks for it later)
    # how this viewer would like the broadcast: "auto" lets the server choose (HLS for a huge room)
    delivery: Literal["auto", "webrtc", "hls"] = "auto"
    # the secret `joined.resume` gave this participant's last connection: it takes over the seat
    # while that one still looks connected (a phone that changed networks); without it, refused
    resume: str | None = Field(default=None, max_length=64)


class Ping(Message):
    type: Literal["ping"]


class Leave(Message):
    type: Literal["leave"]


# Every message a client may send: the session's own, and the room actions (``rooms.actions``).
ClientMessage = Join | Ping | Leave | Message
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]  # a union built from the table, which the checker cannot follow
        functools.reduce(operator.or_, (Join, Ping, Leave, *(op.message for op in ACTIONS.values()))),
        Field(discriminator="type"),
    ]
)


def parse_client_message(text: str) -> ClientMessage:
    """Parse one text frame, or raise ``ProtocolError`` saying exactly what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"Expected a JSON object, but the frame is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, f"Expected a JSON object, but got {type(data).__name__}")
    try:
        return _client_message.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, _describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    if first["type"] == "union_tag_invalid":
        return (
            f"Unknown message type {first['input'].get('type')!r}" if isinstance(first["input"], dict) else first["msg"]
        )
    if first["type"] == "union_tag_not_found":
        return "Expected a 'type' field naming the message"
    return f"{where}: {first['msg']}"


# Server -> client ----------------------------------------------------------------------------------
# (the replies to room actions are defined with the actions: PublishAnswer, Offer, PollOpened)


class LessonRecording(Message):
    id: str
    url: str  # signed
    kind: Literal["video", "audio"] = "video"
    duration_s: float | None = None
    poster_url: str | None = None


class Lesson(Message):
    """The timetable slot of the room (a class) now: what a student should see."""

    mode: Literal["live", "recorded"]
    subject: str
    class_name: str
    recording: LessonRecording | None  # played by a recorded slot, and when a live one has no live
    starts_at: float  # the slot, in epoch seconds: a recorded slot plays in step, the whole class
    ends_at: float  # at the same point (at starts_at + however long ago the slot began)


class NextLesson(Message):
    subject: str
    starts_at: float  # epoch seconds: the page counts down


class Joined(Message):
    type: Literal["joined"] = "joined"
    participant_id: str
    room: str
    role: str
    name: str
    live: bool
    lesson: Lesson | None = None
    resumed: bool = False  # back within 30 s of a drop: hand, poll answer and broadcast kept
    hand: bool = False
    hls: str | None = None  # watch this HLS playlist (no offer comes); None: WebRTC
    resume: str = ""  # send this in the next join to take this seat over from a connection that hangs
    server_time: float = 0.0  # epoch seconds when this was sent: pages play a recorded slot in step by it
    next_lesson: NextLesson | None = None  # no slot now: the class's next one today
    ice_servers: list[IceServer] = Field(default_factory=list)  # TURN, with this participant's credentials
    broadcast: str | None = None  # the room is a part of this broadcast (大课堂) now: its members watch it
    section: str | None = None  # the class's name, when the part is a class


class ChatOut(Message):
    type: Literal["chat"] = "chat"
    from_id: str
    name: str
    role: str
    text: str
    at: float


class HandOut(Message):
    participant_id: str
    name: str
    at: float


class Hands(Message):
    type: Literal["hands"] = "hands"
    raised: list[HandOut]


class RosterEntry(Message):
    participant_id: str
    name: str
    role: str
    hand: bool
    away: bool


class Roster(Message):
    type: Literal["roster"] = "roster"
    participants: list[RosterEntry]
    total: int


class PollOut(Message):
    type: Literal["poll"] = "poll"
    poll_id: str
    question: str
    options: list[str]
    answered: int | None = None


class PollResults(Message):
    type: Literal["poll_results"] = "poll_results"
    poll_id: str
    question: str
    options: list[str]
    counts: list[int]
    answered: int
    final: bool


class PollClosed(Message):
    type: Literal["poll_closed"] = "poll_closed"
    poll_id: str


class QuestionOut(Message):
    question_id: str
    name: str
    section: str  # the class it came from; "" without one
    text: str
    at: float
    answer: str = ""
    answered: bool = False
    passed: bool = False  # sent on to the broadcast's host


class Questions(Message):
    """To the teachers: the questions waiting for them."""

    type: Literal["questions"] = "questions"
    waiting: list[QuestionOut]


class QuestionAnswered(Message):
    type: Literal["question_answered"] = "question_answered"
    question: QuestionOut


class SectionRow(Message):
    part: str
    label: str  # the class's name, or the node whose pupils watch without a class
    pupils: int
    hands: int
    questions: int
    poll_counts: list[int]


class Sections(Message):
    """To a broadcast's hosts: its sections as rows, and the totals."""

    type: Literal["sections"] = "sections"
    rows: list[SectionRow]
    pupils: int
    hands: int


class Invited(Message):
    type: Literal["invited"] = "invited"


class Stage(Message):
    type: Literal["stage"] = "stage"
    participant_id: str | None
    name: str | None
    muted: bool = False


class Removed(Message):
    type: Literal["removed"] = "removed"
    reason: str


class LessonEnded(Message):
    type: Literal["lesson_ended"] = "lesson_ended"


class Broadcast(Message):
    type: Literal["broadcast"] = "broadcast"
    live: bool


class Quality(Message):
    type: Literal["quality"] = "quality"
    layer: Literal["high", "low", "still"]  # still: audio, and a picture every few seconds
    reason: str


class SeatTaken(Message):
    """To the teachers: someone joined with a participant's token while they are connected (a
    leaked link, or a second device), and was refused."""

    type: Literal["seat_taken"] = "seat_taken"
    participant_id: str
    name: str


class Presence(Message):
    type: Literal["presence"] = "presence"
    students: int


class Pong(Message):
    type: Literal["pong"] = "pong"


class Error(Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    fatal: bool = False
    retry_after: float | None = None  # seconds to wait before connecting again (server_full, unavailable)


ServerMessage = Message  # the base of every message the server sends


def encode(message: Message) -> str:
    return message.model_dump_json()
