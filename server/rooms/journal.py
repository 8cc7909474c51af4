"""A room's lesson as a log pipeline counts it: one JSON object a line on the ``skyclass.events``
logger (lesson started and ended, the teacher dropped and back, the class falling back to its
recording and back to live), and whether the teacher dropped and has not come back (a gauge).

A lesson starts with the room's first broadcast. The server cannot see the pupil's page switch to
the recording; it sees what causes it: the teacher's broadcast stopping during a live slot of the
timetable (``fallback_to_recording``), and starting again (``back_to_live``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable

from ..lessons.timetable import Mode, Timetable

EVENTS = logging.getLogger("skyclass.events")


def write(event: str, room: str, timetable: Timetable, **fields: object) -> None:
    """One event line: ``event``, ``room``, ``school``, ``grade``, ``at`` (ISO 8601, UTC), then ``fields``."""
    school_class = timetable.classes.get(room)
    line = {
        "event": event,
        "room": room,
        "school": school_class.school if school_class is not None else "",
        "grade": school_class.grade if school_class is not None else "",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        **fields,
    }
    EVENTS.info(json.dumps(line, ensure_ascii=False))


class Journal:
    def __init__(self, room: str, timetable: Callable[[], Timetable]) -> None:
        self._room = room
        self._timetable = timetable  # the one in force now (it may be replaced)
        self._started_at: float | None = None  # monotonic; None: no lesson under way
        self._fallback_at: float | None = None  # the class watches its recording since
        self._away: dict[str, float] = {}  # teachers whose connection dropped, since

    @property
    def teacher_away(self) -> bool:
        """A teacher dropped during the lesson and none has come back."""
        return bool(self._away)

    def dropped(self, teacher: str) -> bool:
        return teacher in self._away

    def _write(self, event: str, **fields: object) -> None:
        write(event, self._room, self._timetable(), **fields)

    def broadcast_started(self, teacher: str) -> None:
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
            slot = self._timetable().now(self._room)
            self._write("lesson_started", teacher=teacher, subject=slot.subject if slot else None)
        elif self._fallback_at is not None:
            self._write("back_to_live", teacher=teacher, fallback_s=round(now - self._fallback_at, 1))
        self._fallback_at = None

    def broadcast_stopped(self, cause: str) -> None:
        """``cause``: stopped (by the teacher), connection_failed, teacher_left, teacher_not_back
        (dropped and not back within ``RESUME_S``)."""
        if self._started_at is None or self._fallback_at is not None:
            return
        slot = self._timetable().now(self._room)
        if slot is None or slot.mode is not Mode.LIVE:
            return  # outside a live slot the class has no recording to fall back to
        self._fallback_at = time.monotonic()
        self._write("fallback_to_recording", cause=cause, recording=slot.recording)

    def teacher_dropped(self, teacher: str) -> None:
        if self._started_at is None or teacher in self._away:
            return
        self._away[teacher] = time.monotonic()
        self._write("teacher_dropped", teacher=teacher)

    def teacher_joined(self, teacher: str) -> None:
        """A teacher (re)joined: the one who dropped, or another taking the class over."""
        if self._away:
            since = min(self._away.values())
            self._away.clear()
            self._write("teacher_returned", teacher=teacher, away_s=round(time.monotonic() - since, 1))

    def ended(self, reason: str) -> None:
        """``reason``: ended (by the teacher), everyone_left."""
        if self._started_at is None:
            return
        duration = time.monotonic() - self._started_at
        self._started_at, self._fallback_at = None, None
        self._away.clear()
        self._write("lesson_ended", reason=reason, duration_s=round(duration, 1))
