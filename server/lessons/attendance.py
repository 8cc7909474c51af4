"""Attendance from the stays the rooms record: minutes per participant, rates per class, school, grade."""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..state import Stay
from .timetable import Timetable


@dataclass(frozen=True)
class Attendee:
    participant_id: str
    name: str
    role: str
    stays: tuple[Stay, ...]

    def minutes(self, now: float) -> float:
        return sum(((s.left_at or now) - s.joined_at) for s in self.stays) / 60

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "name": self.name,
            "role": self.role,
            "minutes": round(self.minutes(now), 2),
            "stays": [{"joined_at": s.joined_at, "left_at": s.left_at} for s in self.stays],
        }


def attendees(stays: list[Stay]) -> list[Attendee]:
    """One entry per participant, inspectors left out (they observe unseen)."""
    grouped: dict[str, list[Stay]] = defaultdict(list)
    for stay in stays:
        if stay.role != "inspector":
            grouped[stay.participant_id].append(stay)
    return [Attendee(pid, group[0].name, group[0].role, tuple(group)) for pid, group in grouped.items()]


def as_csv(people: list[Attendee], now: float | None = None) -> str:
    now = now or time.time()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["participant_id", "name", "role", "first_joined", "last_left", "minutes", "stays"])
    for person in people:
        left = [s.left_at for s in person.stays]
        writer.writerow(
            [
                person.participant_id,
                person.name,
                person.role,
                _iso(min(s.joined_at for s in person.stays)),
                "" if None in left else _iso(max(t for t in left if t is not None)),
                f"{person.minutes(now):.1f}",
                len(person.stays),
            ]
        )
    return out.getvalue()


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))


def rates(timetable: Timetable, attended: dict[str, set[str]]) -> dict[str, Any]:
    """Students who attended / students enrolled, per class and summed per school and grade.

    ``attended`` maps a class id to the names of the students seen in its room."""
    by_class = []
    totals: dict[str, dict[str, list[int]]] = {
        "school": defaultdict(lambda: [0, 0]),
        "grade": defaultdict(lambda: [0, 0]),
    }
    for school_class in timetable.classes.values():
        came = len(attended.get(school_class.id, set()))
        enrolled = school_class.enrolled
        by_class.append(
            {
                "class": school_class.id,
                "name": school_class.name,
                "school": school_class.school,
                "grade": school_class.grade,
                "attended": came,
                "enrolled": enrolled,
                "rate": round(came / enrolled, 4) if enrolled else None,
            }
        )
        if enrolled:
            for level, key in (("school", school_class.school), ("grade", school_class.grade)):
                totals[level][key][0] += came
                totals[level][key][1] += enrolled
    summary = {
        level: [
            {level: key, "attended": came, "enrolled": enrolled, "rate": round(came / enrolled, 4)}
            for key, (came, enrolled) in groups.items()
        ]
        for level, groups in totals.items()
    }
    return {"classes": by_class, **summary}
