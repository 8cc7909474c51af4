"""A 20-second smoke of every load scenario at tiny scale: no failed join, no error, every probe
receives video, and nothing is left running afterwards."""

from __future__ import annotations

import argparse
from pathlib import Path

import psutil
import pytest

from loadtest.run import ok, run


@pytest.mark.parametrize("scenario", ["flag-raising", "school-day", "teacher-reconnect", "chat-burst"])
def test_scenario_smoke(scenario: str, tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    args = argparse.Namespace(
        scenario=scenario,
        learners=60,
        duration=20,  # a 10 s ramp, then 10 s steady: enough for every probe to see video
        ramp=10,
        probes=2,
        publishers=2,
        server=None,
        secret=None,
        allow_remote=False,
        server_workers=1,
        max_sessions=0,
        hls_above=None,
        locust_processes=1,
        out=str(tmp_path),
    )
    summary = run(args)
    assert ok(summary), summary
    assert summary["peak_users"] == 60, summary
    if scenario == "school-day":  # some of the 60 watch recordings instead of joining a class
        assert summary["joins"] >= 40 and summary["requests"]["recording range"] > 0, summary  # type: ignore[index]
    else:
        assert summary["joins"] >= 60, summary
    assert summary["probe_freezes"] == 0 and summary["probe_fps_min"] >= 10, summary
    teachers = summary["teachers"]
    assert teachers["teacher_drops"] == teachers["teacher_resumed"], teachers  # type: ignore[index]
    assert (tmp_path / "report.html").read_text().count("<svg") == 4
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left behind: {left}"


def test_join_benchmark_smoke(tmp_path: Path) -> None:
    """The join benchmark at tiny scale: all three servers answer every join, each cost is read from
    ``/proc``, and nothing is left running."""
    from loadtest.joins import run as joins

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    summary = joins(60, 60.0, tmp_path)
    rows = summary["rows"]
    assert set(rows) == {"floor", "ours on /ws", "ours on the listener"}, rows
    for result in rows.values():
        assert result["joined"] == 60 and result["failed"] == 0, result
        assert result["cpu_ms_per_join"] > 0 and result["server_cores"] > 0, result
    for name in ("ours on /ws", "ours on the listener"):
        assert rows["floor"]["refused"] or rows[name]["refused"] or rows[name]["cpu_ratio"] > 0, rows
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left behind: {left}"
