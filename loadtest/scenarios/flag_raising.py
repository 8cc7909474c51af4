"""flag-raising: every learner joins one city-wide broadcast within 60 s and stays.

The runner starts one publishing teacher in the room and the media probes beside it.
"""

from __future__ import annotations

import os

from loadtest.learners import Learner

ROOM = os.environ.get("SKYLOAD_ROOM", "flag-raising")


class FlagRaisingLearner(Learner):
    chat_probability = 0.0  # a ceremony: nobody chats
    hand_probability = 0.0

    def room(self) -> str:
        return ROOM
