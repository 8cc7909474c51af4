"""What pupils see, for Prometheus: read from this node's QoE book at scrape time. Labels are a
room, its school and grade, and the path: never a pupil."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..lessons.timetable import Timetable
from ..rooms.quality import PATHS, VIDEO_PATHS, QualityBook

FPS_BUCKETS = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0)

# A room's school and grade ("" when the timetable does not know it).
Placement = Callable[[str], tuple[str, str]]


def placement(timetable: Callable[[], Timetable]) -> Placement:
    def place(room: str) -> tuple[str, str]:
        school_class = timetable().classes.get(room)
        return (school_class.school, school_class.grade) if school_class else ("", "")

    return place


class QualityCollector(Collector):
    def __init__(self, book: QualityBook, placement: Placement) -> None:
        self._book = book
        self._placement = placement

    def collect(self) -> Iterator[Metric]:
        pupils = GaugeMetricFamily(
            "skyclass_qoe_pupils",
            "Pupils with a session on this node whose page reported in the last minute, by path",
            labels=["room", "school", "grade", "path"],
        )
        freezing = GaugeMetricFamily(
            "skyclass_qoe_freezing_pupils",
            "Of them, on a video path, those with a freeze over 1 s in the last minute",
            labels=["room", "school", "grade"],
        )
        fps: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        for room, quality in sorted(self._book.rooms().items()):
            school, grade = self._placement(room)
            for path in PATHS:
                if quality.paths.get(path):
                    pupils.add_metric([room, school, grade, path], quality.paths[path])
            freezing.add_metric([room, school, grade], quality.freezing)
            fps[(school, grade)] += [r.fps for r in quality.reports if r.path in VIDEO_PATHS]
        histogram = GaugeHistogramMetricFamily(
            "skyclass_qoe_fps",
            "Frames per second shown by pupils on a video path (their latest report in the last minute)",
            labels=["school", "grade"],
        )
        for (school, grade), values in sorted(fps.items()):
            buckets = [(str(le), float(sum(1 for v in values if v <= le))) for le in FPS_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            histogram.add_metric([school, grade], buckets, gsum_value=sum(values))
        yield pupils
        yield freezing
        yield histogram
