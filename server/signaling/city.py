"""The city view: every room on every node at a glance.

Each node saves, every ``EVERY_S``, a small summary of each room it holds or has sessions of into the
store (lapsing after ``TTL_S``): for a room held here its class size, teachers and whether the teacher
broadcasts; for every room, the pupils whose session is here and their QoE (``rooms/quality.py``).
``merge`` adds a room's parts up and judges its health:

- bad: ``BAD_FREEZING`` or more of the pupils on a video path froze over 1 s in the last minute, or
  their median fps is under ``BAD_FPS``;
- poor: ``POOR_FREEZING`` or more, or a median under ``POOR_FPS``;
- good otherwise; none when no pupil on a video path reported in the last minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..cluster import Cluster
from ..lessons.timetable import Mode, Slot, Timetable
from ..rooms.quality import VIDEO_PATHS, median_of
from ..state import Store, StoreUnavailable
from ..tokens import Role

log = logging.getLogger(__name__)

EVERY_S = 3.0
TTL_S = 10.0  # three summaries missed: the node is gone, and so are its parts
BAD_FREEZING, POOR_FREEZING = 0.30, 0.10
BAD_FPS, POOR_FPS = 10.0, 20.0
THRESHOLDS = {
    "bad": {"freezing_share": BAD_FREEZING, "median_fps_below": BAD_FPS},
    "poor": {"freezing_share": POOR_FREEZING, "median_fps_below": POOR_FPS},
}
HEALTH_ORDER = {"bad": 0, "poor": 1, "good": 2, "none": 3}


def node_summaries(cluster: Cluster, sessions: Iterable[tuple[str, Role]]) -> list[dict[str, Any]]:
    """This node's part of each room it holds or has sessions of (``sessions``: each joined
    session's room and role)."""
    pupils: Counter[str] = Counter(room for room, role in sessions if role is Role.STUDENT)
    quality = cluster.quality.rooms()
    held = {room.name: room for room in cluster.rooms}
    found = []
    for name in sorted(set(held) | set(pupils) | set(quality)):
        entry: dict[str, Any] = {"room": name, "pupils": pupils.get(name, 0)}
        room = held.get(name)
        if room is not None:
            members = room.members.everyone()
            entry |= {
                "held": True,
                "live": room.live,
                "students": sum(1 for m in members if m.role is Role.STUDENT),
                "teachers": sum(1 for m in members if m.role is Role.TEACHER),
            }
        if name in quality:
            entry["qoe"] = quality[name].to_json()
        found.append(entry)
    return found


@dataclass
class CityRoom:
    room: str
    class_name: str
    school: str
    grade: str
    mode: str  # live (the teacher broadcasts), recorded (a recorded slot), fallback (a live slot
    # without the teacher: pupils see the recording), idle (no slot now)
    live: bool
    teachers: int
    pupils: int
    enrolled: int | None
    reporting: int
    freezing: int  # of the pupils on a video path, those with a freeze over 1 s in the last minute
    median_fps: float | None
    paths: dict[str, int]
    health: str
    node: str  # the node holding the room ("" when only its sessions' nodes know of it)
    fps: Counter[int] = field(default_factory=Counter, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["fps"]
        return data

    @property
    def video_reporting(self) -> int:
        return self.reporting - self.paths.get("audio", 0)

    @property
    def freezing_share(self) -> float:
        return self.freezing / self.video_reporting if self.video_reporting else 0.0


def health(video_reporting: int, freezing: int, median_fps: float | None) -> str:
    if video_reporting <= 0:
        return "none"
    share = freezing / video_reporting
    if share >= BAD_FREEZING or (median_fps is not None and median_fps < BAD_FPS):
        return "bad"
    if share >= POOR_FREEZING or (median_fps is not None and median_fps < POOR_FPS):
        return "poor"
    return "good"


def merge(summaries: Iterable[dict[str, Any]], timetable: Timetable, now: dt.datetime | None = None) -> list[CityRoom]:
    """One entry per room from every node's parts, with its class and health; worst first."""
    now = now or dt.datetime.now()
    parts: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        parts.setdefault(str(summary["room"]), []).append(summary)
    slots: defaultdict[str, list[Slot]] = defaultdict(list)  # by class: thousands of classes, each looked up once
    for each in timetable.slots:
        slots[each.class_id].append(each)
    found = []
    for name, entries in parts.items():
        held = next((e for e in entries if e.get("held")), None)
        reporting = freezing = 0
        paths: Counter[str] = Counter()
        fps: Counter[int] = Counter()
        for entry in entries:
            qoe = entry.get("qoe") or {}
            reporting += int(qoe.get("reporting", 0))
            freezing += int(qoe.get("freezing", 0))
            for path, count in (qoe.get("paths") or {}).items():
                paths[str(path)] += int(count)
            for value, count in (qoe.get("fps") or {}).items():
                fps[int(value)] += int(count)
        live = bool(held and held.get("live"))
        school_class = timetable.classes.get(name)
        slot = next((s for s in slots.get(name, ()) if s.covers(now)), None)
        if slot is not None and slot.mode is Mode.RECORDED:
            mode = "recorded"  # the class watches its recording in step, whoever broadcasts
        elif live:
            mode = "live"
        else:
            mode = "idle" if slot is None else "fallback"
        median = median_of(fps)
        video = reporting - paths.get("audio", 0)
        found.append(
            CityRoom(
                room=name,
                class_name=school_class.name if school_class else name,
                school=school_class.school if school_class else "",
                grade=school_class.grade if school_class else "",
                mode=mode,
                live=live,
                teachers=int(held.get("teachers", 0)) if held else 0,
                pupils=int(held["students"]) if held else sum(int(e.get("pupils", 0)) for e in entries),
                enrolled=school_class.enrolled if school_class else None,
                reporting=reporting,
                freezing=freezing,
                median_fps=median,
                paths=dict(paths),
                health=health(video, freezing, median),
                node=str(held["node"]) if held else "",
                fps=fps,
            )
        )
    found.sort(key=worst_first)
    return found


def worst_first(room: CityRoom) -> tuple[int, float, int, str]:
    return (HEALTH_ORDER[room.health], -room.freezing_share, -room.pupils, room.room)


def tiles(rooms: Iterable[CityRoom]) -> list[dict[str, Any]]:
    """Per school and grade: rooms, pupils, reports and health counts, worst tile first."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    fps: dict[tuple[str, str], Counter[int]] = {}
    for room in rooms:
        key = (room.school, room.grade)
        tile = groups.setdefault(
            key,
            {"school": room.school, "grade": room.grade, "rooms": 0, "live": 0, "pupils": 0, "reporting": 0,
             "freezing": 0, "bad": 0, "poor": 0, "good": 0, "none": 0},
        )  # fmt: skip
        tile["rooms"] += 1
        tile["live"] += int(room.live)
        tile["pupils"] += room.pupils
        tile["reporting"] += room.reporting
        tile["freezing"] += room.freezing
        tile[room.health] += 1
        fps.setdefault(key, Counter()).update(room.fps)
    for key, tile in groups.items():
        tile["median_fps"] = median_of(fps[key])
    return sorted(groups.values(), key=lambda t: (-t["bad"], -t["poor"], t["school"], t["grade"]))


class CityReporter:
    """Saves this node's summaries every ``EVERY_S`` while the node runs."""

    def __init__(self, cluster: Cluster, store: Store, sessions: Callable[[], Iterable[tuple[str, Role]]]) -> None:
        self._cluster = cluster
        self._store = store
        self._sessions = sessions
        self._task: asyncio.Task[None] | None = None

    async def save(self) -> None:
        summaries = node_summaries(self._cluster, self._sessions())
        await self._store.save_room_summaries(self._cluster.id, summaries, TTL_S)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _forever(self) -> None:
        while True:
            try:
                await self.save()
            except (StoreUnavailable, ConnectionError, OSError) as exc:
                log.warning("city summary not saved: %s", exc)
            except Exception:
                log.exception("city summary failed")
            await asyncio.sleep(EVERY_S)


def in_view(value: str | None, wanted: str | None) -> bool:
    return not wanted or value == wanted


def for_rooms(rooms: list[CityRoom], *, visible: Callable[[str], bool], **wanted: str | None) -> list[CityRoom]:
    """The rooms the caller may see (``visible``) that match each filter given (school, grade, health, mode)."""
    return [r for r in rooms if visible(r.room) and all(in_view(getattr(r, k), v) for k, v in wanted.items())]


def now_json(rooms: list[CityRoom]) -> dict[str, Any]:
    """The whole of the rooms in view: their count, pupils, reports and health."""
    by_health = Counter(r.health for r in rooms)
    paths: Counter[str] = Counter()
    for room in rooms:
        paths.update(room.paths)
    return {
        "rooms": len(rooms),
        "live": sum(1 for r in rooms if r.live),
        "pupils": sum(r.pupils for r in rooms),
        "reporting": sum(r.reporting for r in rooms),
        "freezing": sum(r.freezing for r in rooms),
        "health": {h: by_health.get(h, 0) for h in HEALTH_ORDER},
        "paths": dict(paths),
    }


__all__ = ["THRESHOLDS", "VIDEO_PATHS", "CityReporter", "CityRoom", "merge", "node_summaries", "tiles"]
