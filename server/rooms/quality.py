"""What pupils see (QoE): each pupil page's latest report, kept where its session is.

A node keeps, per room, the latest report of each of its own sessions' pupils (a pupil counts once,
with its latest report); reports older than ``WINDOW_S`` are dropped. A room whose members are on
several nodes has one such part on each; the city view adds them up (``signaling/city.py``).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

PATHS = ("direct", "relay", "hls", "recorded", "audio")  # how the page is reached; "audio": sound and stills
VIDEO_PATHS = frozenset(PATHS) - {"audio"}  # moving pictures are expected: fps and freezes count
WINDOW_S = 60.0  # a report stands this long
FREEZE_S = 1.0  # a pupil whose picture stopped this long within the window is freezing


@dataclass(frozen=True, slots=True)
class QualityReport:
    """One period of a pupil's page, as it measured it."""

    fps: float  # frames shown per second
    freezes: int
    longest_freeze_s: float
    concealed: float  # share of the sound the browser made up
    path: str
    layer: str | None = None
    rtt_ms: float | None = None
    loss: float | None = None
    period_s: float = 15.0

    @property
    def froze(self) -> bool:
        return self.path in VIDEO_PATHS and self.longest_freeze_s > FREEZE_S


@dataclass(slots=True)
class _Latest:
    report: QualityReport
    at: float
    froze_at: float | None  # the last report within the window with a freeze over FREEZE_S


@dataclass(frozen=True, slots=True)
class RoomQuality:
    """A room's part on this node: pupils reporting, of them freezing, per path, and fps by whole
    frames per second (pupils on a video path only: a histogram that adds up across nodes)."""

    reporting: int = 0
    freezing: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    fps: dict[int, int] = field(default_factory=dict)
    reports: tuple[QualityReport, ...] = ()

    @property
    def median_fps(self) -> float | None:
        return median_of(self.fps)

    def to_json(self) -> dict[str, object]:
        return {
            "reporting": self.reporting,
            "freezing": self.freezing,
            "paths": dict(self.paths),
            "fps": {str(k): v for k, v in sorted(self.fps.items())},
        }


def median_of(histogram: dict[int, int]) -> float | None:
    """The median of a histogram of whole values (None when it is empty)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    values = sorted(histogram.items())
    wanted = [(total - 1) // 2, total // 2]  # the middle one, or the two in the middle
    found: list[int] = []
    seen = 0
    for value, count in values:
        while len(found) < 2 and wanted[len(found)] < seen + count:
            found.append(value)
        seen += count
    return float(statistics.fmean(found))


class QualityBook:
    """This node's pupils' latest reports, by room and participant."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._rooms: dict[str, dict[str, _Latest]] = {}

    def report(self, room: str, participant_id: str, report: QualityReport, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        pupils = self._rooms.setdefault(room, {})
        earlier = pupils.get(participant_id)
        froze_at = now if report.froze else (earlier.froze_at if earlier is not None else None)
        pupils[participant_id] = _Latest(report, now, froze_at)

    def forget(self, room: str, participant_id: str) -> None:
        """The pupil left for good: its report no longer stands for the room."""
        pupils = self._rooms.get(room)
        if pupils is not None:
            pupils.pop(participant_id, None)
            if not pupils:
                del self._rooms[room]

    def rooms(self, now: float | None = None) -> dict[str, RoomQuality]:
        """Each room with a report standing, its part here (reports past the window are dropped)."""
        now = time.monotonic() if now is None else now
        since = now - self._window_s
        found: dict[str, RoomQuality] = {}
        for room, pupils in list(self._rooms.items()):
            for participant_id in [pid for pid, latest in pupils.items() if latest.at < since]:
                del pupils[participant_id]
            if not pupils:
                del self._rooms[room]
                continue
            found[room] = _summarise(pupils.values(), since)
        return found


def _summarise(pupils: Iterable[_Latest], since: float) -> RoomQuality:
    latest = list(pupils)
    paths = Counter(entry.report.path for entry in latest)
    video = [entry for entry in latest if entry.report.path in VIDEO_PATHS]
    freezing = sum(1 for entry in video if entry.froze_at is not None and entry.froze_at >= since)
    fps = Counter(int(round(entry.report.fps)) for entry in video)
    return RoomQuality(len(latest), freezing, dict(paths), dict(fps), tuple(entry.report for entry in latest))
