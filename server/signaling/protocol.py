"""The wire format (docs/protocol.md): every message both ways as a pydantic model, and the error codes."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..media.sfu import SLOTS

MAX_SDP = 60_000


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


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Client -> server --------------------------------------------------------------------------------


class Join(_Message):
    type: Literal["join"]
    room: str = Field(min_length=1, max_length=128)
    token: str = Field(min_length=1, max_length=4096)
    subscribe: bool = True  # false: no media offer now (a `subscribe` message asks for it later)
    # how this viewer would like the broadcast: "auto" lets the server choose (HLS for a huge room)
    delivery: Literal["auto", "webrtc", "hls"] = "auto"


class Publish(_Message):
    type: Literal["publish"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP)
    # what each audio/video m-line carries: "audio", "video", "video_low" (the camera again, smaller:
    # the layer weak links get), "screen"; without it: the audio, the camera, then the screen
    tracks: list[Literal["audio", "video", "video_low", "screen"]] | None = Field(default=None, max_length=4)


class Subscribe(_Message):
    type: Literal["subscribe"]


class Unpublish(_Message):
    type: Literal["unpublish"]


class Answer(_Message):
    type: Literal["answer"]
    target: Literal["subscribe"] = "subscribe"
    sdp: str = Field(min_length=1, max_length=MAX_SDP)


class Ice(_Message):
    type: Literal["ice"]
    target: Literal["publish", "subscribe"]
    candidate: str | None = Field(default=None, max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=64)  # noqa: N815 (browser's spelling)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)  # noqa: N815
    usernameFragment: str | None = Field(default=None, max_length=256)  # noqa: N815


class Chat(_Message):
    type: Literal["chat"]
    text: str = Field(min_length=1, max_length=500)


class RaiseHand(_Message):
    type: Literal["hand"]
    raised: bool


class PollOpen(_Message):
    type: Literal["poll_open"]
    question: str = Field(min_length=1, max_length=300)
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=2, max_length=6)


class PollAnswer(_Message):
    type: Literal["poll_answer"]
    poll_id: str = Field(min_length=1, max_length=32)
    choice: int = Field(ge=0, le=5)


class PollClose(_Message):
    type: Literal["poll_close"]
    poll_id: str = Field(min_length=1, max_length=32)
    show: bool = False  # show the results to the class


class Remove(_Message):
    type: Literal["remove"]
    participant_id: str = Field(min_length=1, max_length=64)


class EndLesson(_Message):
    type: Literal["end_lesson"]


class Invite(_Message):
    type: Literal["invite"]
    participant_id: str = Field(min_length=1, max_length=64)


class EndTurn(_Message):
    type: Literal["end_turn"]


class Mute(_Message):
    type: Literal["mute"]
    participant_id: str = Field(min_length=1, max_length=64)
    muted: bool = True


class Ping(_Message):
    type: Literal["ping"]


class Leave(_Message):
    type: Literal["leave"]


ClientMessage = Annotated[
    Join
    | Publish
    | Unpublish
    | Subscribe
    | Answer
    | Ice
    | Chat
    | RaiseHand
    | PollOpen
    | PollAnswer
    | PollClose
    | Remove
    | EndLesson
    | Invite
    | EndTurn
    | Mute
    | Ping
    | Leave,
    Field(discriminator="type"),
]
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


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


# Server -> client --------------------------------------------------------------------------------


class LessonRecording(_Message):
    id: str
    url: str


class Lesson(_Message):
    """The timetable slot of the room (a class) now: what a student should see."""

    mode: Literal["live", "recorded"]
    subject: str
    class_name: str
    recording: LessonRecording | None  # played by a recorded slot, and when a live one has no live


class Joined(_Message):
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


class ChatOut(_Message):
    type: Literal["chat"] = "chat"
    from_id: str
    name: str
    role: str
    text: str
    at: float


class HandOut(_Message):
    participant_id: str
    name: str
    at: float


class Hands(_Message):
    type: Literal["hands"] = "hands"
    raised: list[HandOut]


class RosterEntry(_Message):
    participant_id: str
    name: str
    role: str
    hand: bool
    away: bool


class Roster(_Message):
    type: Literal["roster"] = "roster"
    participants: list[RosterEntry]
    total: int


class PollOut(_Message):
    type: Literal["poll"] = "poll"
    poll_id: str
    question: str
    options: list[str]
    answered: int | None = None


class PollResults(_Message):
    type: Literal["poll_results"] = "poll_results"
    poll_id: str
    question: str
    options: list[str]
    counts: list[int]
    answered: int
    final: bool


class PollClosed(_Message):
    type: Literal["poll_closed"] = "poll_closed"
    poll_id: str


class PollOpened(_Message):
    type: Literal["poll_opened"] = "poll_opened"
    poll_id: str


class Invited(_Message):
    type: Literal["invited"] = "invited"


class Stage(_Message):
    type: Literal["stage"] = "stage"
    participant_id: str | None
    name: str | None
    muted: bool = False


class Removed(_Message):
    type: Literal["removed"] = "removed"
    reason: str


class LessonEnded(_Message):
    type: Literal["lesson_ended"] = "lesson_ended"


class Offer(_Message):
    type: Literal["offer"] = "offer"
    target: Literal["subscribe"] = "subscribe"
    sdp: str
    slots: list[str] = Field(default_factory=lambda: [slot.name for slot in SLOTS])  # what each m-line carries


class PublishAnswer(_Message):
    type: Literal["answer"] = "answer"
    target: Literal["publish"] = "publish"
    sdp: str


class Broadcast(_Message):
    type: Literal["broadcast"] = "broadcast"
    live: bool


class Quality(_Message):
    type: Literal["quality"] = "quality"
    layer: Literal["high", "low", "still"]  # still: audio, and a picture every few seconds
    reason: str


class Presence(_Message):
    type: Literal["presence"] = "presence"
    students: int


class Pong(_Message):
    type: Literal["pong"] = "pong"


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    fatal: bool = False
    retry_after: float | None = None  # seconds to wait before connecting again (server_full, unavailable)


ServerMessage = _Message  # the base of every message the server sends


def encode(message: _Message) -> str:
    return message.model_dump_json()


def as_dict(message: _Message) -> dict[str, Any]:
    return message.model_dump(mode="json")
