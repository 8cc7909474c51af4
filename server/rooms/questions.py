"""Questions to the teacher: a queue the teacher moderates, instead of a chat to every screen.

In a class, its teacher sees the class's questions and answers them. In a section of a broadcast,
the class teacher sees their class's and may pass one on to the host; the host's queue holds those
passed on and the questions of pupils who watch without a section. An answered question is shown
to everyone the answer reaches (the class, or the whole broadcast)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..tokens import SEES_PRESENCE
from . import events as ev
from .members import ClassroomError, Member, Members

QUEUE_LIMIT = 200  # waiting questions kept; beyond it the oldest waiting one goes
ANSWERED_KEPT = 20  # answered questions a joiner is shown


@dataclass(frozen=True, slots=True)
class Question:
    question_id: str
    participant_id: str
    name: str
    section: str  # the class it came from ("" when the pupil watches without one)
    text: str
    at: float
    answer: str = ""
    answered: bool = False
    passed: bool = False  # sent on to the broadcast's host

    def to_event(self) -> ev.QuestionItem:
        return ev.QuestionItem(
            self.question_id, self.name, self.section, self.text, self.at, self.answer, self.answered, self.passed
        )

    @classmethod
    def new(cls, member: Member, text: str, section: str) -> Question:
        return cls(secrets.token_hex(4), member.participant_id, member.name, section, text, time.time())

    @classmethod
    def of(cls, item: ev.QuestionItem) -> Question:
        return cls(item.question_id, "", item.name, item.section, item.text, item.at, item.answer)


class Questions:
    def __init__(self, members: Members, changed: Callable[[], None]) -> None:
        self._members = members
        self._changed = changed  # the teachers' view is refreshed (coalesced)
        self._waiting: dict[str, Question] = {}
        self.answered: list[Question] = []

    def add(self, question: Question) -> None:
        if len(self._waiting) >= QUEUE_LIMIT:
            del self._waiting[next(iter(self._waiting))]
        self._waiting[question.question_id] = question
        self._changed()

    def _find(self, question_id: str) -> Question:
        question = self._waiting.get(question_id)
        if question is None:
            raise ClassroomError("bad_state", f"No question {question_id!r} is waiting")
        return question

    def take(self, question_id: str) -> Question:
        """A waiting question, out of the queue."""
        question = self._waiting.pop(self._find(question_id).question_id)
        self._changed()
        return question

    def passed_on(self, question_id: str) -> Question:
        """Marked as passed on to the host (it stays in view, greyed, until answered there)."""
        question = self._find(question_id)
        if question.passed:
            raise ClassroomError("bad_state", "This question was passed on already")
        question = self._waiting[question_id] = replace(question, passed=True)
        self._changed()
        return question

    def answer(self, question: Question, answer: str) -> ev.QuestionAnswered:
        """``question`` (taken out of the queue) is answered: kept for joiners, and the event that
        shows it to everyone."""
        done = replace(question, answer=answer, answered=True)
        self.answered = [*self.answered, done][-ANSWERED_KEPT:]
        self._changed()
        return ev.QuestionAnswered(done.to_event())

    def resolve(self, answered: ev.QuestionItem) -> None:
        """The host answered one of ours that was passed on: it leaves this queue."""
        if self._waiting.pop(answered.question_id, None) is not None:
            self._changed()

    @property
    def waiting(self) -> int:
        return sum(1 for q in self._waiting.values() if not q.passed)

    def view(self) -> ev.Questions:
        return ev.Questions(tuple(q.to_event() for q in self._waiting.values()))

    def greet(self, member: Member) -> list[ev.Event]:
        events: list[ev.Event] = [ev.QuestionAnswered(q.to_event()) for q in self.answered]
        return [self.view(), *events] if member.role in SEES_PRESENCE else events
