"""chat-burst: every class chats at once (the first minute after "any questions?").

Each learner sends a message every 1-3 s (under the 1/s per-person limit, so nothing is refused);
every message reaches the whole class: the report's "messages delivered" shows the fan-out.
"""

from __future__ import annotations

import itertools
import os

from locust import between

from loadtest.learners import Learner

LEARNERS = int(os.environ.get("SKYLOAD_LEARNERS", "100"))
CLASS_SIZE = 50
CLASSES = max(1, LEARNERS // CLASS_SIZE)
_seats = itertools.count()


class ChattyLearner(Learner):
    wait_time = between(1, 3)
    chat_probability = 1.0
    hand_probability = 0.1

    def room(self) -> str:
        return f"chat-c{next(_seats) // CLASS_SIZE % CLASSES}"
