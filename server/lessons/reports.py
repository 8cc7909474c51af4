"""The daily attendance and participation report the bureau asks for: per class, summed per school
and grade and for the whole, as JSON, CSV and an Excel workbook (openpyxl)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from ..state import Stay
from .timetable import GRADES, Mode, SchoolClass, Timetable


@dataclass
class Row:
    """One class's day, or a sum of classes (``class_id`` empty)."""

    school: str
    grade: str
    class_id: str
    class_name: str
    pupils_enrolled: int | None  # known for classes with ``enrolled`` in the timetable
    pupils_attended: int
    teachers_expected: int  # a class with a live slot that day expects its teacher
    teachers_attended: int
    attended_of_enrolled: int | None = None  # a sum's pupils of the classes that know their enrolment

    @property
    def pupil_rate(self) -> float | None:
        attended = self.pupils_attended if self.attended_of_enrolled is None else self.attended_of_enrolled
        return round(attended / self.pupils_enrolled, 4) if self.pupils_enrolled else None

    @property
    def teacher_rate(self) -> float | None:
        if not self.teachers_expected:
            return None
        return round(min(self.teachers_attended, self.teachers_expected) / self.teachers_expected, 4)

    def to_json(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "attended_of_enrolled"},
            "pupil_rate": self.pupil_rate,
            "teacher_rate": self.teacher_rate,
        }


HEADERS = [
    ("school", "学校 School"),
    ("grade", "年级 Grade"),
    ("class_id", "班级 Class"),
    ("class_name", "班级名 Name"),
    ("pupils_enrolled", "应到学生 Pupils enrolled"),
    ("pupils_attended", "实到学生 Pupils attended"),
    ("pupil_rate", "学生参与率 Pupil participation"),
    ("teachers_expected", "应到教师 Teachers expected"),
    ("teachers_attended", "实到教师 Teachers attended"),
    ("teacher_rate", "教师参与率 Teacher participation"),
]


def _day_bounds(day: dt.date) -> tuple[float, float]:
    start = dt.datetime.combine(day, dt.time.min).timestamp()  # local time, as the timetable is written
    return start, start + 86400


def attended_on(stays: Iterable[Stay], day: dt.date, role: str) -> set[str]:
    """Who of ``role`` (by name, as ``attendance.rates`` counts) was in the room at some time of ``day``."""
    start, end = _day_bounds(day)
    return {s.name for s in stays if s.role == role and s.joined_at < end and (s.left_at or end) >= start}


def live_classes(timetable: Timetable, day: dt.date) -> set[str]:
    """The classes with a live slot on ``day``: their teacher is expected."""
    return {s.class_id for s in timetable.slots if s.mode is Mode.LIVE and day.weekday() in s.days}


def class_row(school_class: SchoolClass, live: set[str], stays: list[Stay], day: dt.date) -> Row:
    """``live``: ``live_classes`` of the day, found once for every class."""
    live_that_day = school_class.id in live
    return Row(
        school_class.school,
        school_class.grade,
        school_class.id,
        school_class.name,
        school_class.enrolled,
        len(attended_on(stays, day, "student")),
        1 if live_that_day else 0,
        len(attended_on(stays, day, "teacher")),
    )


def total(rows: list[Row], school: str = "", grade: str = "") -> Row:
    """The sum of ``rows``; enrolled only over the classes that know it (the rate compares like with like)."""
    known = [r for r in rows if r.pupils_enrolled is not None]
    return Row(
        school,
        grade,
        "",
        "",
        sum(r.pupils_enrolled or 0 for r in known) if known else None,
        sum(r.pupils_attended for r in rows),
        sum(r.teachers_expected for r in rows),
        sum(min(r.teachers_attended, r.teachers_expected) if r.teachers_expected else 0 for r in rows),
        sum(r.pupils_attended for r in known),
    )


def by_school(rows: list[Row]) -> list[Row]:
    return [total([r for r in rows if r.school == s], school=s) for s in sorted({r.school for r in rows})]


def grade_order(grade: str) -> tuple[int, str]:
    """一年级 … 高三 in school order; grades the timetable does not name after them."""
    return (GRADES.index(grade) if grade in GRADES else len(GRADES), grade)


def by_grade(rows: list[Row]) -> list[Row]:
    grades = sorted({r.grade for r in rows}, key=grade_order)
    return [total([r for r in rows if r.grade == g], grade=g) for g in grades]


def report(day: dt.date, rows: list[Row]) -> dict[str, Any]:
    """Classes, schools, grades and the whole, as JSON."""
    return {
        "date": day.isoformat(),
        "classes": [r.to_json() for r in rows],
        "schools": [r.to_json() for r in by_school(rows)],
        "grades": [r.to_json() for r in by_grade(rows)],
        "total": total(rows).to_json(),
    }


def as_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([label for _, label in HEADERS])
    for row in [*rows, total(rows, school="合计 Total")]:
        values = row.to_json()
        writer.writerow(["" if values[key] is None else values[key] for key, _ in HEADERS])
    return out.getvalue()


def as_xlsx(day: dt.date, rows: list[Row]) -> bytes:
    """A workbook: the classes (with a total row), then the sums per school and per grade."""
    book = Workbook()
    sheets = [
        ("班级 Classes", [*rows, total(rows, school="合计 Total")]),
        ("学校 Schools", by_school(rows)),
        ("年级 Grades", by_grade(rows)),
    ]
    for index, (title, sheet_rows) in enumerate(sheets):
        sheet = book.active if index == 0 else book.create_sheet()
        assert sheet is not None
        sheet.title = title
        sheet.append([f"{day.isoformat()} 出勤与参与率 Attendance and participation"])
        sheet.append([label for _, label in HEADERS])
        for cell in sheet[2]:
            cell.font = Font(bold=True)
        for row in sheet_rows:
            values = row.to_json()
            sheet.append([values[key] for key, _ in HEADERS])
        for column, (key, _) in zip(sheet.iter_cols(min_row=3, max_row=sheet.max_row), HEADERS, strict=False):
            if key.endswith("_rate"):
                for cell in column:
                    cell.number_format = "0.0%"
        sheet.freeze_panes = "A3"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
