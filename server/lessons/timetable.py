"""The timetable: classes by grade, and lesson slots that are live or recorded.

File format (YAML; JSON is YAML too), documented in docs/timetable.md:

    classes:
      - {id: g9-1, grade: 初三, name: 初三(1)班, school: 示范中学}
    slots:
      - {class: g9-1, days: [mon, tue, wed, thu, fri], start: "08:00", end: "08:45",
         subject: 数学, mode: live, recording: demo}
      - {class: g9-1, start: "09:00", end: "09:45", subject: 物理, mode: live, recording: demo,
         broadcast: g9-physics}   # 大课堂: the class is a section of this broadcast room

A slot's ``recording`` is what a ``recorded`` slot plays, and the fallback of a ``live`` one.
Every problem is reported with the line it is on; a timetable with problems is refused whole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

PRIMARY = ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级")
SECONDARY = ("初一", "初二", "初三", "高一", "高二", "高三")
GRADES = PRIMARY + SECONDARY  # 小学 to 高三, in order
GRADUATING = frozenset({"初三", "高三"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Mode(StrEnum):
    LIVE = "live"
    RECORDED = "recorded"


class TimetableError(ValueError):
    """The timetable was refused; ``problems`` lists each with its line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SchoolClass:
    id: str
    grade: str
    name: str
    school: str = ""
    enrolled: int | None = None  # students expected: makes attendance rates possible


@dataclass(frozen=True)
class Slot:
    class_id: str
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time  # exclusive; 24:00 is written as "24:00" and stored as time.max
    subject: str
    mode: Mode
    recording: str | None
    line: int
    broadcast: str | None = None  # the class is a section of this broadcast room (大课堂) in this slot

    def covers(self, when: dt.datetime) -> bool:
        return when.weekday() in self.days and self.start <= when.time() < self.end

    def overlaps(self, other: Slot) -> bool:
        return bool(self.days & other.days) and self.start < other.end and other.start < self.end


@dataclass
class Timetable:
    classes: dict[str, SchoolClass] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    source: str = ""

    def now(self, class_id: str, when: dt.datetime | None = None) -> Slot | None:
        when = when or dt.datetime.now()
        return next((s for s in self.slots if s.class_id == class_id and s.covers(when)), None)

    def broadcast_of(self, class_id: str, when: dt.datetime | None = None) -> str | None:
        """The broadcast room whose section ``class_id`` is now, if any."""
        slot = self.now(class_id, when)
        return slot.broadcast if slot is not None else None

    def broadcasts(self, when: dt.datetime | None = None) -> set[str]:
        """The broadcast rooms some class is a section of now."""
        when = when or dt.datetime.now()
        return {s.broadcast for s in self.slots if s.broadcast and s.covers(when)}

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": [vars(c) for c in self.classes.values()],
            "slots": [
                {
                    "class": s.class_id,
                    "days": [DAYS[d] for d in sorted(s.days)],
                    "start": s.start.strftime("%H:%M"),
                    "end": "24:00" if s.end == dt.time.max else s.end.strftime("%H:%M"),
                    "subject": s.subject,
                    "mode": s.mode.value,
                    "recording": s.recording,
                    **({"broadcast": s.broadcast} if s.broadcast else {}),
                }
                for s in self.slots
            ],
        }


# What is wrong with naming lesson ``id`` in a slot of class ``class_id``, in words ("there is no
# lesson 'x'"), or None: it must exist and be approved for pupils (a class's own live recordings
# are, for that class).
LessonCheck = Callable[[str, str], str | None]


def parse_timetable(text: str, lesson_problem: LessonCheck) -> Timetable:
    """Parse and check a timetable; raises ``TimetableError`` naming the line of every problem."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise TimetableError([f"not YAML/JSON: {exc}"]) from exc
    if not isinstance(root, yaml.MappingNode):
        raise TimetableError(["line 1: expected a mapping with 'classes' and 'slots'"])
    problems: list[str] = []
    timetable = Timetable(source=text)
    sections = {key.value: value for key, value in root.value}
    for node in _items(sections.get("classes"), "classes", problems):
        school_class = _school_class(node, problems)
        if school_class is not None:
            if school_class.id in timetable.classes:
                problems.append(f"line {_line(node)}: class {school_class.id!r} is defined twice")
            timetable.classes[school_class.id] = school_class
    for node in _items(sections.get("slots"), "slots", problems):
        slot = _slot(node, timetable.classes, lesson_problem, problems)
        if slot is None:
            continue
        for other in timetable.slots:
            if other.class_id == slot.class_id and other.overlaps(slot):
                problems.append(f"line {slot.line}: overlaps the slot on line {other.line} for class {slot.class_id!r}")
        timetable.slots.append(slot)
    if problems:
        raise TimetableError(problems)
    return timetable


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _items(node: yaml.Node | None, name: str, problems: list[str]) -> list[yaml.MappingNode]:
    if node is None:
        problems.append(f"line 1: '{name}' is missing")
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"line {_line(node)}: '{name}' must be a list")
        return []
    items = []
    for item in node.value:
        if isinstance(item, yaml.MappingNode):
            items.append(item)
        else:
            problems.append(f"line {_line(item)}: each of '{name}' must be a mapping")
    return items


def _fields(node: yaml.MappingNode) -> dict[str, yaml.Node]:
    return {key.value: value for key, value in node.value}


def _scalar(fields: dict[str, yaml.Node], name: str, node: yaml.Node, problems: list[str]) -> str | None:
    value = fields.get(name)
    if value is None:
        problems.append(f"line {_line(node)}: '{name}' is missing")
        return None
    if not isinstance(value, yaml.ScalarNode):
        problems.append(f"line {_line(value)}: '{name}' must be a single value")
        return None
    return str(value.value)


def _school_class(node: yaml.MappingNode, problems: list[str]) -> SchoolClass | None:
    fields = _fields(node)
    class_id, grade = _scalar(fields, "id", node, problems), _scalar(fields, "grade", node, problems)
    if class_id is None or grade is None:
        return None
    if grade not in GRADES:
        problems.append(f"line {_line(node)}: grade {grade!r} is not one of {', '.join(GRADES)}")
        return None
    name = fields.get("name")
    school = fields.get("school")
    enrolled = fields.get("enrolled")
    if enrolled is not None and not (isinstance(enrolled, yaml.ScalarNode) and enrolled.value.isdigit()):
        problems.append(f"line {_line(enrolled)}: 'enrolled' must be a whole number")
        return None
    return SchoolClass(
        class_id,
        grade,
        str(name.value) if isinstance(name, yaml.ScalarNode) else class_id,
        str(school.value) if isinstance(school, yaml.ScalarNode) else "",
        int(enrolled.value) if isinstance(enrolled, yaml.ScalarNode) else None,
    )


def _time(text: str, line: int, problems: list[str]) -> dt.time | None:
    if text == "24:00":
        return dt.time.max
    try:
        return dt.datetime.strptime(text, "%H:%M").time()
    except ValueError:
        problems.append(f"line {line}: expected a time like 08:45, but got {text!r}")
        return None


def _slot(
    node: yaml.MappingNode,
    classes: dict[str, SchoolClass],
    lesson_problem: LessonCheck,
    problems: list[str],
) -> Slot | None:
    fields, line = _fields(node), _line(node)
    before = len(problems)
    class_id = _scalar(fields, "class", node, problems)
    start_text, end_text = _scalar(fields, "start", node, problems), _scalar(fields, "end", node, problems)
    subject = _scalar(fields, "subject", node, problems) or ""
    school_class = classes.get(class_id or "")
    if class_id is not None and school_class is None:
        problems.append(f"line {line}: unknown class {class_id!r}")
    start = _time(start_text, line, problems) if start_text else None
    end = _time(end_text, line, problems) if end_text else None
    if start is not None and end is not None and end <= start:
        problems.append(f"line {line}: the slot ends ({end_text}) before it starts ({start_text})")
    days = _days(fields.get("days"), line, problems)
    mode_text = fields.get("mode")
    default_mode = Mode.LIVE if school_class is not None and school_class.grade in GRADUATING else Mode.RECORDED
    mode = default_mode
    if isinstance(mode_text, yaml.ScalarNode):
        try:
            mode = Mode(mode_text.value)
        except ValueError:
            problems.append(f"line {_line(mode_text)}: mode must be 'live' or 'recorded', not {mode_text.value!r}")
    recording_node = fields.get("recording", fields.get("lesson"))  # `lesson`: the same, by another name
    recording = str(recording_node.value) if isinstance(recording_node, yaml.ScalarNode) else None
    if recording is not None and class_id is not None:
        problem = lesson_problem(recording, class_id)
        if problem is not None:
            problems.append(f"line {line}: {problem}")
    if mode is Mode.RECORDED and recording is None:
        problems.append(f"line {line}: a recorded slot needs a 'recording' (a lesson of the library)")
    broadcast_node = fields.get("broadcast")
    broadcast = str(broadcast_node.value) if isinstance(broadcast_node, yaml.ScalarNode) else None
    if broadcast is not None and (broadcast == class_id or broadcast in classes):
        problems.append(f"line {line}: a class's slot cannot be a section of a class ({broadcast!r})")
    if len(problems) > before or class_id is None or start is None or end is None:
        return None
    return Slot(class_id, days, start, end, subject, mode, recording, line, broadcast)


def _days(node: yaml.Node | None, line: int, problems: list[str]) -> frozenset[int]:
    if node is None:
        return frozenset(range(7))
    names = [n.value for n in node.value] if isinstance(node, yaml.SequenceNode) else [getattr(node, "value", "")]
    unknown = [n for n in names if n not in DAYS]
    if unknown:
        problems.append(f"line {line}: unknown days {unknown}; use {', '.join(DAYS)}")
    return frozenset(DAYS.index(n) for n in names if n in DAYS)


def demo_timetable_text(recording: str = "demo") -> str:
    """One class per grade, all day: live for the graduating grades, recorded for the rest."""
    ids = {"初一": "g7-1", "初二": "g8-1", "初三": "g9-1", "高一": "g10-1", "高二": "g11-1", "高三": "g12-1"}
    lines = ["classes:"]
    lines += [f"  - {{id: {ids[g]}, grade: {g}, name: {g}(1)班, school: 示范学校}}" for g in SECONDARY]
    lines.append("slots:")
    for grade in SECONDARY:
        mode = "live" if grade in GRADUATING else "recorded"
        lines.append(
            f'  - {{class: {ids[grade]}, start: "00:00", end: "24:00", subject: 示范课 Demo lesson, '
            f"mode: {mode}, recording: {recording}}}"
        )
    return "\n".join(lines) + "\n"
