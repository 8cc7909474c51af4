"""A broadcast room (大课堂) and its parts: one master teacher's lesson watched by a grade or a city.

A broadcast's pupils are not its members. Each joins a part, a room of its own: their class's
room when the timetable makes that class a section of the broadcast now (its class teacher keeps
its chat, hands, questions and attendance), or else the broadcast's part on the node their session
landed on (``{broadcast}@{node}``), admitted there without a call to any other node. A part's
pupils watch the broadcast itself, from their own node.

Each part sends the broadcast's room (its host) a summary at most once a second when something
changed, and every few seconds anyway, so that a part whose node died ages out. The host answers
with the broadcast's state (live or not, the poll, the answered questions) and pushes that state to
every node holding parts whenever it changes; a part tells its members what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..tokens import Role
from . import events as ev
from .interaction import Interaction
from .members import Members, tell
from .questions import ANSWERED_KEPT, Question, Questions

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 1.0  # a part tells its host at most this often...
KEEPALIVE_S = 5.0  # ...and at least this often
STALE_S = 15.0  # a part not heard of for this long is gone (its node died)

State = dict[str, Any]  # the broadcast's state, as the host sends it to its parts


@dataclass(frozen=True, slots=True)
class Part:
    broadcast: str
    label: str  # the host's row: the class's name, or the node's
    section: str = ""  # the class; "" for the pupils of one node who watch without one

    @property
    def shard(self) -> bool:
        return not self.section


def node_part(broadcast: str, node: str) -> tuple[str, Part]:
    """The room name and the part of ``broadcast``'s pupils without a section on ``node``."""
    return f"{broadcast}@{node}", Part(broadcast, f"node {node}")


class Uplink(Protocol):
    """How parts and their host reach each other, wherever each is held (the cluster's link)."""

    async def to_host(self, broadcast: str, message: dict[str, Any]) -> State: ...
    async def to_parts(self, broadcast: str, nodes: set[str], state: State) -> None: ...


class PartSide:
    """A part's side: its summary up, the broadcast's state down."""

    def __init__(
        self,
        name: str,
        part: Part,
        node: str,
        uplink: Uplink,
        members: Members,
        interaction: Interaction,
        questions: Questions,
        hands: Callable[[], Awaitable[int]],
    ) -> None:
        self.name = name
        self.broadcast, self.label, self.shard = part.broadcast, part.label, part.shard
        self._node = node
        self._uplink = uplink
        self._members = members
        self._interaction = interaction
        self._questions = questions
        self._hands = hands
        self.live = False
        self.audience = 0  # the broadcast's pupils, all parts together (as of the host's last word)
        self.answered: list[ev.QuestionItem] = []  # the host's answers, for joiners
        self._host_polls: set[str] = set()  # the host's polls taken here (a class teacher's own may follow)
        self._changed = asyncio.Event()
        self._changed.set()  # the host hears of a new part at once
        self._task = asyncio.ensure_future(self._report_forever())

    def changed(self) -> None:
        self._changed.set()

    def greet(self) -> list[ev.Event]:
        return [ev.QuestionAnswered(item) for item in self.answered]

    async def ask_host(self, question: Question) -> None:
        """A question for the host's queue (passed on by the class teacher, or a pupil's own)."""
        item = dataclasses.asdict(question.to_event())
        await self.apply(await self._uplink.to_host(self.broadcast, {"kind": "question", "question": item}))

    async def _summary(self, closed: bool = False) -> dict[str, Any]:
        poll = self._interaction.poll
        counts: list[int] = []
        if poll is not None and not closed:
            counts = list((await self._interaction.results()).counts)
        return {
            "kind": "summary",
            "part": self.name,
            "node": self._node,
            "label": self.label,
            "pupils": 0 if closed else sum(1 for m in self._members.connected() if m.role is Role.STUDENT),
            "hands": 0 if closed else await self._hands(),
            "questions": self._questions.waiting,
            "poll_id": poll.poll_id if poll is not None else "",
            "counts": counts,
            "closed": closed,
        }

    async def _report_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KEEPALIVE_S):
                    await self._changed.wait()
            self._changed.clear()
            try:
                await self.apply(await self._uplink.to_host(self.broadcast, await self._summary()))
            except Exception as exc:  # the host's node is busy or moving: the next summary retries
                log.warning("part %s: its host %s did not hear: %s", self.name, self.broadcast, exc)
            await asyncio.sleep(SUMMARY_INTERVAL_S)

    async def apply(self, state: State) -> None:
        """The broadcast's state: tell this part's members what changed."""
        self.audience = int(state.get("pupils", 0))
        live = bool(state.get("live"))
        if live != self.live:
            self.live = live
            tell(self._members.everyone(), ev.BroadcastChanged(live))
        poll, mine = state.get("poll"), self._interaction.poll
        if poll is not None:
            if poll["open"] and poll["poll_id"] not in self._host_polls:
                self._host_polls.add(poll["poll_id"])
                self._interaction.mirror_poll(poll["poll_id"], poll["question"], poll["options"])
            elif not poll["open"] and mine is not None and mine.poll_id == poll["poll_id"] and mine.open:
                overall = ev.PollResults(
                    poll["poll_id"], poll["question"], tuple(poll["options"]), tuple(poll["counts"]),
                    sum(poll["counts"]), True,
                )  # fmt: skip
                await self._interaction.end_mirror(overall, poll["shown"])
        seen = {item.question_id for item in self.answered}
        for data in state.get("answered", []):
            item = ev.QuestionItem(**data)
            if item.question_id not in seen:
                self.answered = [*self.answered, item][-ANSWERED_KEPT:]
                self._questions.resolve(item)
                tell(self._members.everyone(), ev.QuestionAnswered(item))

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._uplink.to_host(self.broadcast, await self._summary(closed=True))
        except Exception as exc:
            log.info("part %s: its host did not hear that it closed (it ages out): %s", self.name, exc)


class HostSide:
    """The broadcast room's side: its parts' summaries, as the rows and totals its hosts see."""

    def __init__(self, broadcast: str, uplink: Uplink, changed: Callable[[], None]) -> None:
        self._broadcast = broadcast
        self._uplink = uplink
        self._changed = changed
        self._parts: dict[str, tuple[float, dict[str, Any]]] = {}  # part -> (when heard, summary)

    def heard(self, summary: dict[str, Any]) -> None:
        if summary.get("closed"):
            self._parts.pop(summary["part"], None)
        else:
            self._parts[summary["part"]] = (time.monotonic(), summary)
        self._changed()

    def _current(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        for part in [p for p, (at, _) in self._parts.items() if now - at > STALE_S]:
            del self._parts[part]
        return [summary for _, summary in self._parts.values()]

    def __bool__(self) -> bool:
        return bool(self._parts)

    @property
    def pupils(self) -> int:
        return sum(s["pupils"] for s in self._current())

    def sections(self, poll_id: str | None) -> ev.Sections:
        rows = tuple(
            ev.SectionRow(
                s["part"],
                s["label"],
                s["pupils"],
                s["hands"],
                s["questions"],
                tuple(s["counts"]) if poll_id and s["poll_id"] == poll_id else (),
            )  # fmt: skip
            for s in sorted(self._current(), key=lambda s: (s["label"], s["part"]))
        )
        return ev.Sections(rows, sum(r.pupils for r in rows), sum(r.hands for r in rows))

    def poll_counts(self, poll_id: str, options: int) -> list[int]:
        """The parts' answers to poll ``poll_id``, added up per option."""
        total = [0] * options
        for summary in self._current():
            if summary["poll_id"] == poll_id:
                for i, count in enumerate(summary["counts"][:options]):
                    total[i] += count
        return total

    async def push(self, state: State) -> None:
        nodes = {summary["node"] for summary in self._current()}
        if nodes:
            await self._uplink.to_parts(self._broadcast, nodes, state)
