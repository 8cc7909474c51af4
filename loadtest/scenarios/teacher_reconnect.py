"""teacher-reconnect: teachers drop off and come back mid-lesson; their classes must not notice.

Learners sit in class rooms; a signaling teacher in each room loses its connection every 20-40 s and
returns, and must find the lesson as it was (``joined.resumed``). The runner also has the publishing
teachers (with media) drop their signaling connection; the probes show whether video went on.
"""

from __future__ import annotations

import itertools
import os

from locust import between, task

from loadtest.learners import Learner, Participant, SignalingError
from server.tokens import Role

LEARNERS = int(os.environ.get("SKYLOAD_LEARNERS", "100"))
CLASS_SIZE = 50
CLASSES = max(1, LEARNERS // CLASS_SIZE)
_seats = itertools.count()
_desks = itertools.count()


class ClassLearner(Learner):
    weight = CLASS_SIZE

    def room(self) -> str:
        return f"reconnect-c{next(_seats) // CLASS_SIZE % CLASSES}"


class DroppingTeacher(Participant):
    role = Role.TEACHER
    weight = 1
    wait_time = between(20, 40)

    def room(self) -> str:
        return f"reconnect-c{next(_desks) % CLASSES}"

    @task
    def drop_and_return(self) -> None:
        self.session.drop()
        joined = self.session.join()  # same token: the server should resume the session
        if not joined.get("resumed"):
            self.environment.events.request.fire(
                request_type="WS",
                name="teacher resumed",
                response_time=0,
                response_length=0,
                exception=SignalingError("not_resumed"),
                context={},
            )
