"""The class talking back: chat, raised hands and polls."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..state import Store
from ..tokens import SEES_PRESENCE
from . import events as ev
from .members import ClassroomError, Member, Members, tell

POLL_OPTIONS = 6


@dataclass
class Poll:
    poll_id: str
    question: str
    options: tuple[str, ...]
    open: bool = True
    shown: bool = False  # its results were shown to the class when it closed


class Interaction:
    def __init__(self, room: str, store: Store, members: Members, changed: Callable[[], None]) -> None:
        self._room = room
        self._store = store
        self._members = members
        self._changed = changed  # what teachers see changed: refresh their view (coalesced)
        self.poll: Poll | None = None
        # answers counted elsewhere (a broadcast's parts), by poll id and number of options
        self.counted_elsewhere: Callable[[str, int], list[int]] = lambda poll_id, options: [0] * options

    async def greet(self, member: Member) -> list[ev.Event]:
        """What a joiner is told now: a teacher the hands and the poll's results; a student the
        open poll, with their answer if they gave one (they may be back after a drop)."""
        poll = self.poll
        if member.role in SEES_PRESENCE:
            return [await self.hands(), *([await self.results()] if poll is not None else [])]
        if poll is None or not poll.open:
            return []
        answers = await self._store.poll_answers(self._room, poll.poll_id)
        return [ev.PollOpened(poll.poll_id, poll.question, poll.options, answers.get(member.participant_id))]

    # Chat and hands ------------------------------------------------------------------------------

    def chat(self, member: Member, text: str) -> None:
        message = ev.ChatMessage(member.participant_id, member.name, member.role.value, text, time.time())
        tell(self._members.connected(), message)

    async def set_hand(self, member: Member, raised: bool) -> None:
        await self._store.set_hand(self._room, member.participant_id, time.time() if raised else None)
        self._changed()

    async def lower_hand(self, participant_id: str) -> None:
        await self._store.set_hand(self._room, participant_id, None)

    async def hand_raised(self, participant_id: str) -> bool:
        return await self._store.hand(self._room, participant_id) is not None

    async def hands(self) -> ev.HandsChanged:
        hands = []
        for participant_id, raised_at in await self._store.hands(self._room):
            member = self._members.get(participant_id)
            hands.append(ev.Hand(participant_id, member.name if member else participant_id, raised_at))
        return ev.HandsChanged(tuple(hands))

    # Polls ---------------------------------------------------------------------------------------

    def open_poll(self, question: str, options: list[str]) -> str:
        if not 2 <= len(options) <= POLL_OPTIONS:
            raise ClassroomError("bad_message", f"A poll needs 2 to {POLL_OPTIONS} options, not {len(options)}")
        poll = self.poll = Poll(secrets.token_hex(4), question, tuple(options))
        tell(self._members.students(), ev.PollOpened(poll.poll_id, poll.question, poll.options))
        self._changed()
        return poll.poll_id

    def mirror_poll(self, poll_id: str, question: str, options: list[str]) -> None:
        """The broadcast's host opened a poll: this part's pupils answer it here."""
        self.poll = Poll(poll_id, question, tuple(options))
        tell(self._members.students(), ev.PollOpened(poll_id, question, tuple(options)))
        self._changed()

    async def end_mirror(self, overall: ev.PollResults, shown: bool) -> None:
        """The host closed it: the class teacher sees the class's counts, the pupils the overall ones
        (when the host shows them)."""
        poll = self._open(overall.poll_id)
        poll.open, poll.shown = False, shown
        tell(self._members.watchers(), await self.results())
        tell(self._members.students(), overall if shown else ev.PollClosed(poll.poll_id))

    def _open(self, poll_id: str) -> Poll:
        poll = self.poll
        if poll is None or poll.poll_id != poll_id or not poll.open:
            raise ClassroomError("bad_state", f"Poll {poll_id!r} is not open")
        return poll

    async def answer_poll(self, member: Member, poll_id: str, choice: int) -> None:
        poll = self._open(poll_id)
        if not 0 <= choice < len(poll.options):
            raise ClassroomError("bad_message", f"Expected a choice from 0 to {len(poll.options) - 1}, got {choice}")
        if not await self._store.answer_poll(self._room, poll_id, member.participant_id, choice):
            raise ClassroomError("already_answered", "You answered this poll already; the first answer counts")
        self._changed()

    async def close_poll(self, poll_id: str, show: bool) -> None:
        poll = self._open(poll_id)
        poll.open, poll.shown = False, show
        results = await self.results()
        tell(self._members.watchers(), results)
        tell(self._members.students(), results if show else ev.PollClosed(poll_id))

    async def results(self) -> ev.PollResults:
        """The current poll's counts (final once it is closed)."""
        assert self.poll is not None
        poll = self.poll
        counts = self.counted_elsewhere(poll.poll_id, len(poll.options))
        answers = await self._store.poll_answers(self._room, poll.poll_id)
        for choice in answers.values():
            counts[choice] += 1
        return ev.PollResults(poll.poll_id, poll.question, poll.options, tuple(counts), sum(counts), not poll.open)
