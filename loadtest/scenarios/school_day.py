"""school-day: class rooms of ~50, live lessons for the graduating grades (初三, 高三), recorded lessons
for the others, and a grade-wide broadcast.

Rooms are named ``g{grade}-c{n}``; the runner has teachers publish in graduating-grade rooms (as many
as ``SKYLOAD_PUBLISHERS``) and puts probes there.
"""

from __future__ import annotations

import itertools
import os

from locust import between

from loadtest.learners import Learner, RecordedViewer

LEARNERS = int(os.environ.get("SKYLOAD_LEARNERS", "100"))
CLASS_SIZE = 50
CLASSES = max(1, LEARNERS // CLASS_SIZE)
GRADES = (7, 8, 9, 10, 11, 12)
_seats = itertools.count()


def class_room(seat: int) -> str:
    index = seat // CLASS_SIZE % CLASSES
    return f"g{GRADES[index % len(GRADES)]}-c{index // len(GRADES)}"


class ClassLearner(Learner):
    """In class: live for grades 9 and 12, a recorded lesson played in the page for the others
    (their signaling session is the same: roster, chat, hands)."""

    weight = 16

    def room(self) -> str:
        return class_room(next(_seats))


class GradeBroadcastLearner(Learner):
    """Watching a grade-wide lesson by a famous teacher."""

    weight = 2
    chat_probability = 0.0

    def room(self) -> str:
        return "g12-broadcast"


class ReplayViewer(RecordedViewer):
    """Catching up on a recorded lesson (点播回看)."""

    weight = 2
    wait_time = between(1, 3)
