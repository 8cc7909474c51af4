"""The timetable in force, where it comes from, and what a class should see now."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from .catalog import Catalog, Recording
from .library import lesson_problem
from .timetable import Timetable, TimetableError, demo_timetable_text, parse_timetable

log = logging.getLogger(__name__)


class Schedule:
    """Holds the timetable; a new one replaces it only once it has passed every check."""

    def __init__(self, catalog: Catalog, path: Path) -> None:
        self._catalog = catalog
        self.path = path  # where an edited timetable is kept
        self.timetable = Timetable()
        self.known: dict[str, Recording] = {}  # every node's lessons, as the store lists them

    def lesson(self, lesson_id: str) -> Recording | None:
        """A lesson of this node's catalog, or of another node's (``known``, from the store)."""
        return self._catalog.get(lesson_id) or self.known.get(lesson_id)

    def _lesson_problem(self, lesson_id: str, class_id: str) -> str | None:
        local = self._catalog.get(lesson_id)
        if local is not None and not self._catalog.media_path(local).exists():
            return f"lesson {lesson_id!r} has no file on this node"
        return lesson_problem(self.lesson(lesson_id), lesson_id, class_id)

    def load(self, configured: Path | None = None) -> None:
        """The configured file, else the last edited one, else the demo timetable."""
        for candidate in (configured, self.path):
            if candidate is not None and candidate.exists():
                self.timetable = parse_timetable(candidate.read_text(encoding="utf-8"), self._lesson_problem)
                log.info("timetable from %s: %d classes, %d slots", candidate, *self._size())
                return
        self.timetable = parse_timetable(demo_timetable_text(), self._lesson_problem)
        log.info("demo timetable: %d classes, %d slots (set SKYCLASS_TIMETABLE for yours)", *self._size())

    def replace(self, text: str) -> Timetable:
        """Check ``text`` and put it in force; on any problem, raise and keep the old one."""
        timetable = parse_timetable(text, self._lesson_problem)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text, encoding="utf-8")
        self.timetable = timetable
        return timetable

    def _size(self) -> tuple[int, int]:
        return len(self.timetable.classes), len(self.timetable.slots)

    def title_now(self, class_id: str) -> str:
        """A recording's title: the class and the subject of its slot now, else the room."""
        slot = self.timetable.now(class_id)
        if slot is None:
            return class_id
        return f"{self.timetable.classes[class_id].name} {slot.subject}"

    def classes_playing(self, recording_id: str) -> set[str]:
        """The classes a slot of which plays ``recording_id`` (they may watch it again)."""
        return {s.class_id for s in self.timetable.slots if s.recording == recording_id}

    def plays(self, class_id: str, recording_id: str) -> bool:
        return class_id in self.classes_playing(recording_id)

    def school_of(self, class_id: str) -> str | None:
        school_class = self.timetable.classes.get(class_id)
        return school_class.school if school_class is not None else None

    def lesson_now(self, class_id: str, when: dt.datetime | None = None) -> dict[str, Any] | None:
        """What a student of ``class_id`` should see now, for the ``joined`` message: the slot, its
        times (a recorded slot plays in step: a pupil who comes 10 minutes late starts 10 minutes
        in) and its lesson (the session hands the file out on a signed URL)."""
        when = when or dt.datetime.now()
        slot = self.timetable.now(class_id, when)
        if slot is None:
            return None
        lesson = self.lesson(slot.recording) if slot.recording else None
        school_class = self.timetable.classes[class_id]
        return {
            "mode": slot.mode.value,
            "subject": slot.subject,
            "class_name": school_class.name,
            "recording": lesson,
            "starts_at": _at(when.date(), slot.start),
            "ends_at": _at(when.date(), slot.end),
        }

    def next_lesson(self, class_id: str, when: dt.datetime | None = None) -> dict[str, Any] | None:
        """The class's next slot today, for a countdown: ``{subject, starts_at}``."""
        when = when or dt.datetime.now()
        later = [
            s for s in self.timetable.slots
            if s.class_id == class_id and when.weekday() in s.days and s.start > when.time()
        ]  # fmt: skip
        if not later:
            return None
        slot = min(later, key=lambda s: s.start)
        return {"subject": slot.subject, "starts_at": _at(when.date(), slot.start)}


def _at(day: dt.date, time_of_day: dt.time) -> float:
    """Epoch seconds of a time of day (local time, as the timetable is written); 24:00 is midnight."""
    if time_of_day == dt.time.max:
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min).timestamp()
    return dt.datetime.combine(day, time_of_day).timestamp()


__all__ = ["Schedule", "TimetableError"]
