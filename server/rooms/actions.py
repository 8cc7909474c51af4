"""Every room action, defined once: the message a member sends, who may send it, and what it does.

The session's dispatch (``server/signaling``), the handles that reach a room here or on another node
(``server/cluster``) and the operations a node accepts from others are all read from ``ACTIONS``.
Adding an action is a message class here and one handler registered with ``@action``.

An action runs where the room is held, except one that concerns the member's own subscription
(``viewer``): that runs where the member's session is, since a viewer's media comes from its own
node (the cascade's edge side).
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..media.interfaces import SLOTS
from ..tokens import MEMBERS, PUBLISHERS, SUBSCRIBERS, UNSEEN, Role
from .members import ClassroomError, Member
from .quality import QualityReport
from .room import Room

MAX_SDP = 60_000
EVERYONE = MEMBERS  # every role that joins a room
STUDENTS = frozenset({Role.STUDENT})


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The actions' messages (client -> server) ---------------------------------------------------------


class Publish(Message):
    type: Literal["publish"]
    sdp: str = Field(min_length=1, max_length=MAX_SDP)
    # what each audio/video m-line carries: "audio", "video", "video_low" (the camera again, smaller:
    # the layer weak links get), "screen"; without it: the audio, the camera, then the screen
    tracks: list[Literal["audio", "video", "video_low", "screen"]] | None = Field(default=None, max_length=4)


class Unpublish(Message):
    type: Literal["unpublish"]


class Subscribe(Message):
    type: Literal["subscribe"]


class Answer(Message):
    type: Literal["answer"]
    target: Literal["subscribe"] = "subscribe"
    sdp: str = Field(min_length=1, max_length=MAX_SDP)


class Ice(Message):
    type: Literal["ice"]
    target: Literal["publish", "subscribe"]
    candidate: str | None = Field(default=None, max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=64)  # noqa: N815 (browser's spelling)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)  # noqa: N815
    usernameFragment: str | None = Field(default=None, max_length=256)  # noqa: N815


class DataSaver(Message):
    type: Literal["data_saver"]
    on: bool  # sound and a still picture every few seconds (省流量), or moving pictures again


class Chat(Message):
    type: Literal["chat"]
    text: str = Field(min_length=1, max_length=500)


class RaiseHand(Message):
    type: Literal["hand"]
    raised: bool


class PollOpen(Message):
    type: Literal["poll_open"]
    question: str = Field(min_length=1, max_length=300)
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=2, max_length=6)


class PollAnswer(Message):
    type: Literal["poll_answer"]
    poll_id: str = Field(min_length=1, max_length=32)
    choice: int = Field(ge=0, le=5)


class PollClose(Message):
    type: Literal["poll_close"]
    poll_id: str = Field(min_length=1, max_length=32)
    show: bool = False  # show the results to the class


class Ask(Message):
    type: Literal["ask"]
    text: str = Field(min_length=1, max_length=300)


class QuestionAction(Message):
    question_id: str = Field(min_length=1, max_length=32)


class PassQuestion(QuestionAction):
    type: Literal["pass_question"]  # a class teacher sends a question on to the broadcast's host


class AnswerQuestion(QuestionAction):
    type: Literal["answer_question"]
    answer: str = Field(default="", max_length=500)  # shown with the question; "" when said aloud


class DismissQuestion(QuestionAction):
    type: Literal["dismiss_question"]


class Remove(Message):
    type: Literal["remove"]
    participant_id: str = Field(min_length=1, max_length=64)


class EndLesson(Message):
    type: Literal["end_lesson"]


class Invite(Message):
    type: Literal["invite"]
    participant_id: str = Field(min_length=1, max_length=64)


class EndTurn(Message):
    type: Literal["end_turn"]


class Mute(Message):
    type: Literal["mute"]
    participant_id: str = Field(min_length=1, max_length=64)
    muted: bool = True


class Qoe(Message):
    """What a pupil's page measured over its last period (every ~15 s); each value bounded, so a
    page that sends nonsense is refused and weighs nothing."""

    type: Literal["qoe"]
    fps: float = Field(ge=0, le=120)  # frames shown per second
    freezes: int = Field(ge=0, le=1000)
    longest_freeze_s: float = Field(ge=0, le=120)
    concealed: float = Field(ge=0, le=1)  # share of the sound made up
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)
    loss: float | None = Field(default=None, ge=0, le=1)
    layer: Literal["high", "low", "still"] | None = None
    path: Literal["direct", "relay", "hls", "recorded", "audio"]
    period_s: float = Field(ge=1, le=120)

    @model_validator(mode="after")
    def _within_period(self) -> Qoe:
        if self.longest_freeze_s > self.period_s + 1:
            raise ValueError("longest_freeze_s cannot be longer than the period")
        return self


# Their replies (server -> the sender) -------------------------------------------------------------


class PublishAnswer(Message):
    type: Literal["answer"] = "answer"
    target: Literal["publish"] = "publish"
    sdp: str


class Offer(Message):
    type: Literal["offer"] = "offer"
    target: Literal["subscribe"] = "subscribe"
    sdp: str
    slots: list[str] = Field(default_factory=lambda: [slot.name for slot in SLOTS])  # what each m-line carries


class PollOpened(Message):
    type: Literal["poll_opened"] = "poll_opened"
    poll_id: str


# The table ------------------------------------------------------------------------------------------

A = TypeVar("A", bound=Message)
A_contra = TypeVar("A_contra", bound=Message, contravariant=True)


class Viewing(Protocol):
    """Where a member's own subscription lives: the room, or this node's edge of a room held elsewhere."""

    async def subscribe(self, member: Member) -> str: ...
    async def accept_answer(self, member: Member, sdp: str) -> None: ...
    async def add_subscriber_candidate(
        self, member: Member, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...
    async def save_data(self, member: Member, on: bool) -> None: ...
    async def report_quality(self, member: Member, report: QualityReport) -> None: ...


class RoomHandler(Protocol[A_contra]):
    def __call__(self, room: Room, member: Member, message: A_contra, /) -> Awaitable[Message | None]: ...


class ViewerHandler(Protocol[A_contra]):
    def __call__(self, viewing: Viewing, member: Member, message: A_contra, /) -> Awaitable[Message | None]: ...


@dataclass(frozen=True, slots=True)
class Rate:
    per_s: float
    burst: int
    what: str  # for the refusal: "At most {what}; this was dropped"


@dataclass(slots=True)
class Operation(Generic[A]):
    name: str  # the message's type, also the operation's name between nodes
    message: type[A]
    roles: frozenset[Role]  # who may send it (the room may refuse more: a student not invited on stage)
    verb: str  # for the refusal: "A student may not {verb}"
    reply: type[Message] | None = None
    rate: Rate | None = None  # per participant, besides the session's own message budget
    run: RoomHandler[A] | None = None  # where the room is held
    view: ViewerHandler[A] | None = None  # where the session is, for the member's own subscription
    viewer: Callable[[A], bool] = field(default=lambda message: True)  # which messages ``view`` takes

    def for_viewer(self, message: A) -> bool:
        return self.view is not None and (self.run is None or self.viewer(message))

    def allows(self, role: Role) -> bool:
        return role in self.roles


ACTIONS: dict[str, Operation[Any]] = {}


def _name(message: type[Message]) -> str:
    (name,) = typing.get_args(message.model_fields["type"].annotation)
    return str(name)


def _entry(
    message: type[A], roles: frozenset[Role], verb: str, reply: type[Message] | None, rate: Rate | None
) -> Operation[A]:
    name = _name(message)
    entry = ACTIONS.get(name)
    if entry is None:
        entry = ACTIONS[name] = Operation(name, message, roles, verb, reply, rate)
    elif (entry.roles, entry.reply) != (roles, reply):
        raise TypeError(f"Action {name!r} is defined twice with different roles or replies")
    return entry


def action(
    message: type[A],
    roles: frozenset[Role],
    verb: str,
    *,
    reply: type[Message] | None = None,
    rate: Rate | None = None,
) -> Callable[[RoomHandler[A]], RoomHandler[A]]:
    """Register the handler that runs ``message`` in the room."""

    def register(run: RoomHandler[A]) -> RoomHandler[A]:
        _entry(message, roles, verb, reply, rate).run = run
        return run

    return register


def viewer_action(
    message: type[A],
    roles: frozenset[Role],
    verb: str,
    *,
    reply: type[Message] | None = None,
    rate: Rate | None = None,
    when: Callable[[A], bool] = lambda message: True,
) -> Callable[[ViewerHandler[A]], ViewerHandler[A]]:
    """Register the handler that runs ``message`` (those ``when`` picks) where the session is."""

    def register(view: ViewerHandler[A]) -> ViewerHandler[A]:
        entry = _entry(message, roles, verb, reply, rate)
        entry.view, entry.viewer = view, when
        return view

    return register


def operation_of(message: Message) -> Operation[Any]:
    return ACTIONS[_name(type(message))]


# The handlers ---------------------------------------------------------------------------------------


@action(Publish, PUBLISHERS | STUDENTS, "publish", reply=PublishAnswer)
async def publish(room: Room, member: Member, message: Publish) -> PublishAnswer:
    tracks: list[str] | None = list(message.tracks) if message.tracks else None
    if member.role in PUBLISHERS:
        return PublishAnswer(sdp=await room.broadcast.publish(member, message.sdp, tracks))
    return PublishAnswer(sdp=await room.stage.publish(member, message.sdp, tracks))  # when invited on stage


@action(Unpublish, EVERYONE, "unpublish")
async def unpublish(room: Room, member: Member, message: Unpublish) -> None:
    if member.role in PUBLISHERS:
        await room.broadcast.unpublish(member)
    elif room.stage.invited == member.participant_id:
        await room.stage.end_turn()
    else:
        raise ClassroomError("forbidden", f"A {member.role.value} may not unpublish; only teacher")


# A subscription is a peer connection on the media worker: a page that keeps asking is refused.
@viewer_action(Subscribe, SUBSCRIBERS, "subscribe", reply=Offer, rate=Rate(0.5, 5, "a subscription every 2 s"))
async def subscribe(viewing: Viewing, member: Member, message: Subscribe) -> Offer:
    return Offer(sdp=await viewing.subscribe(member))


@viewer_action(Answer, SUBSCRIBERS, "answer")
async def accept_answer(viewing: Viewing, member: Member, message: Answer) -> None:
    await viewing.accept_answer(member, message.sdp)


@action(Ice, EVERYONE, "send ICE candidates")
async def publisher_candidate(room: Room, member: Member, message: Ice) -> None:
    await room.add_publisher_candidate(member, message.candidate, message.sdpMid, message.sdpMLineIndex)


@viewer_action(Ice, EVERYONE, "send ICE candidates", when=lambda message: message.target == "subscribe")
async def subscriber_candidate(viewing: Viewing, member: Member, message: Ice) -> None:
    await viewing.add_subscriber_candidate(member, message.candidate, message.sdpMid, message.sdpMLineIndex)


@viewer_action(DataSaver, SUBSCRIBERS, "save data", rate=Rate(1.0, 5, "a data saver switch a second"))
async def data_saver(viewing: Viewing, member: Member, message: DataSaver) -> None:
    await viewing.save_data(member, message.on)


@viewer_action(Qoe, STUDENTS, "report what they see", rate=Rate(0.2, 3, "a quality report every 5 s"))
async def report_quality(viewing: Viewing, member: Member, message: Qoe) -> None:
    # kept where the session is: each node knows its own pupils, the city view adds the nodes up
    report = QualityReport(
        fps=message.fps,
        freezes=message.freezes,
        longest_freeze_s=message.longest_freeze_s,
        concealed=message.concealed,
        path=message.path,
        layer=message.layer,
        rtt_ms=message.rtt_ms,
        loss=message.loss,
        period_s=message.period_s,
    )
    await viewing.report_quality(member, report)


@action(
    Chat,
    EVERYONE - UNSEEN,
    "chat",  # inspectors are unseen: nothing of theirs reaches the class
    rate=Rate(1.0, 5, "a chat message a second"),
)
async def chat(room: Room, member: Member, message: Chat) -> None:
    if room.part is not None and room.part.shard and member.role is Role.STUDENT:
        raise ClassroomError("forbidden", "A broadcast has no class chat; ask the host a question instead")
    room.interaction.chat(member, message.text)


# A question waits in a queue the teacher moderates; a flood of them is one participant's budget.
@action(Ask, STUDENTS, "ask a question", rate=Rate(0.1, 3, "a question every 10 s"))
async def ask(room: Room, member: Member, message: Ask) -> None:
    await room.ask(member, message.text)


@action(PassQuestion, PUBLISHERS, "pass a question on")
async def pass_question(room: Room, member: Member, message: PassQuestion) -> None:
    await room.pass_on(message.question_id)


@action(AnswerQuestion, PUBLISHERS, "answer a question")
async def answer_question(room: Room, member: Member, message: AnswerQuestion) -> None:
    room.answer_question(message.question_id, message.answer)


@action(DismissQuestion, PUBLISHERS, "dismiss a question")
async def dismiss_question(room: Room, member: Member, message: DismissQuestion) -> None:
    room.dismiss_question(message.question_id)


@action(RaiseHand, STUDENTS, "raise a hand")
async def set_hand(room: Room, member: Member, message: RaiseHand) -> None:
    await room.interaction.set_hand(member, message.raised)


@action(PollOpen, PUBLISHERS, "open a poll", reply=PollOpened)
async def open_poll(room: Room, member: Member, message: PollOpen) -> PollOpened:
    opened = PollOpened(poll_id=room.interaction.open_poll(message.question, message.options))
    room.push_state()  # a broadcast's pupils answer it in their parts
    return opened


@action(PollAnswer, STUDENTS, "answer a poll")
async def answer_poll(room: Room, member: Member, message: PollAnswer) -> None:
    await room.interaction.answer_poll(member, message.poll_id, message.choice)


@action(PollClose, PUBLISHERS, "close a poll")
async def close_poll(room: Room, member: Member, message: PollClose) -> None:
    await room.interaction.close_poll(message.poll_id, message.show)
    room.push_state()


@action(Remove, PUBLISHERS, "remove a participant")
async def remove(room: Room, member: Member, message: Remove) -> None:
    await room.remove(message.participant_id)


@action(Invite, PUBLISHERS, "invite a student on stage")
async def invite(room: Room, member: Member, message: Invite) -> None:
    room.stage.invite(message.participant_id)


@action(EndTurn, PUBLISHERS, "end a student's turn")
async def end_turn(room: Room, member: Member, message: EndTurn) -> None:
    await room.stage.end_turn()


@action(Mute, PUBLISHERS, "mute a participant")
async def mute(room: Room, member: Member, message: Mute) -> None:
    await room.stage.mute(message.participant_id, message.muted)


@action(EndLesson, PUBLISHERS, "end the lesson")
async def end_lesson(room: Room, member: Member, message: EndLesson) -> None:
    await room.end_lesson(member)


async def perform(room: Room, viewing: Viewing, member: Member, message: Message) -> Message | None:
    """Run ``message`` for ``member`` in ``room``, held on this node (``viewing``: the room's side of
    the member's own subscription and reports)."""
    operation = operation_of(message)
    if operation.for_viewer(message):
        assert operation.view is not None
        return await operation.view(viewing, member, message)
    assert operation.run is not None
    return await operation.run(room, member, message)
