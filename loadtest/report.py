"""The run's report: a summary from Locust's CSVs, the probes and the server samples, and an HTML
page with plots (inline SVG, no scripts)."""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def _cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """The server's CPU-seconds so far at ``when`` (unix time), interpolated between samples."""
    before = [s for s in samples if s[0] <= when][-1:] or samples[:1]
    after = [s for s in samples if s[0] >= when][:1] or samples[-1:]
    (t0, c0), (t1, c1) = before[0], after[0]
    return c0 if t1 <= t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def _rate(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Cores the server used on average between ``start`` and ``end`` (unix time)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def join_cost(samples: list[dict[str, str]], history: list[dict[str, str]], joins: int) -> dict[str, Any]:
    """The server's CPU per join and memory per idle session, from ``/proc`` (``server.csv``), not
    from wall time (the load generator shares the machine).

    The ramp runs from Locust's first spawned user to its last (plus 2 s for the last joins to be
    answered). ``cpu_ms_per_join`` is all the server's CPU in the ramp over the joins; the
    ``net_`` figure first takes off what the server spends anyway: its rate before the crowd
    (teachers, media) plus, growing with the sessions already joined, the idle cost it has after
    the ramp (keep-alives, class sizes; probes' media). Memory per session: RSS in the steady part
    after the ramp, less RSS before it, over the learners."""
    cpu = [(float(s["unix"]), float(s["cpu_s"])) for s in samples if s.get("unix") and s.get("cpu_s")]
    rss = [(float(s["unix"]), float(s["rss_mb"])) for s in samples if s.get("unix") and s.get("rss_mb")]
    users = [(float(r["Timestamp"]), int(r["User Count"])) for r in history]
    peak = max((u for _, u in users), default=0)
    if len(cpu) < 4 or not peak or not joins:
        return {}
    first = next(t for t, u in users if u > 0) - 1.0
    full = next(t for t, u in users if u == peak)
    last_full = max(t for t, u in users if u == peak)  # then Locust stops its users
    end = full + 2.0
    ramp_s = end - first
    ramp_cpu = _cpu_at(cpu, end) - _cpu_at(cpu, first)
    before = _rate(cpu, first - 2.5, first)  # the last seconds before the crowd: teachers are live
    after = _rate(cpu, end + 3.0, last_full - 2.0)
    result: dict[str, Any] = {
        "ramp_s": round(ramp_s, 1),
        "ramp_cpu_s": round(ramp_cpu, 2),
        "cpu_ms_per_join": round(ramp_cpu / joins * 1000, 3),
        "cores_before": before and round(before, 4),
        "cores_after": after and round(after, 4),
    }
    if before is not None and after is not None:
        # the share of the peak joined, integrated over the ramp (Locust's history, a row a second)
        points = [(first, 0.0), *((t, u / peak) for t, u in users if first < t < end), (end, 1.0)]
        joined_s = sum((t1 - t0) * (a + b) / 2 for (t0, a), (t1, b) in zip(points, points[1:], strict=False))
        background = before * ramp_s + max(0.0, after - before) * joined_s
        result["net_cpu_ms_per_join"] = round((ramp_cpu - background) / joins * 1000, 3)
        result["idle_cores_per_1000_sessions"] = round(max(0.0, after - before) / peak * 1000, 4)
    rss_before = [m for t, m in rss if t <= first][-1:]
    rss_after = sorted(m for t, m in rss if end + 3.0 <= t <= last_full - 2.0)
    if rss_before and rss_after:
        result["rss_mb_before"] = rss_before[0]
        result["rss_mb_after"] = rss_after[len(rss_after) // 2]
        result["kb_per_session"] = round((rss_after[len(rss_after) // 2] - rss_before[0]) * 1024 / peak, 1)
    return result


def summarize(out: Path, scenario: str, learners: int) -> dict[str, Any]:
    stats = {row["Name"]: row for row in _rows(out / "locust_stats.csv")}
    join = stats.get("join", {})
    failures: Counter[str] = Counter()
    for row in _rows(out / "locust_failures.csv"):
        failures[f"{row['Name']}: {row['Error']}"] += int(row["Occurrences"])
    messages: Counter[str] = Counter()
    for path in out.glob("messages-*.json"):
        messages.update(json.loads(path.read_text()))
    probes = _rows(out / "probes.csv")
    good = [p for p in probes if not p["error"]]
    first_frames = sorted(float(p["first_frame_ms"]) for p in good if p["first_frame_ms"])
    samples = _rows(out / "server.csv")
    teachers = json.loads((out / "teachers.json").read_text()) if (out / "teachers.json").exists() else {}
    history = _rows(out / "locust_stats_history.csv")
    aggregated = [r for r in history if r["Name"] == "Aggregated"]
    peak_users = max((int(r["User Count"]) for r in aggregated), default=0)
    joins = int(_number(join.get("Request Count")) or 0)

    def pct(rows: list[float], q: float) -> float | None:
        return rows[min(len(rows) - 1, int(q * len(rows)))] if rows else None

    return {
        "scenario": scenario,
        "learners": learners,
        "peak_users": peak_users,
        "joins": joins,
        "failed_joins": int(_number(join.get("Failure Count")) or 0),
        "join_ms": {q: _number(join.get(q)) for q in ("50%", "95%", "99%", "100%")},
        "failures": dict(failures),
        "errors": sum(failures.values()),
        "requests": {name: int(_number(row.get("Request Count")) or 0) for name, row in stats.items()},
        "messages_delivered": dict(messages),
        "probes": len(probes),
        "probes_with_video": len(good),
        "probe_errors": [p["error"] for p in probes if p["error"]],
        "first_frame_ms": {"50%": pct(first_frames, 0.5), "95%": pct(first_frames, 0.95), "max": pct(first_frames, 1)},
        "probe_fps_min": min((float(p["fps"]) for p in good), default=None),
        "probe_freezes": sum(int(p["freezes"]) for p in good),
        "probe_loss_max": max((float(p["loss"]) for p in good), default=None),
        "teachers": teachers,
        "server_cpu_max": max((float(s["cpu"]) for s in samples if s["cpu"]), default=None),
        "server_cpu_seconds": round(sum(float(s["cpu"]) for s in samples if s["cpu"]), 1),  # a sample a second
        "server_rss_mb_max": max((float(s["rss_mb"]) for s in samples if s["rss_mb"]), default=None),
        "locust_cpu_max": max((float(s["locust_cpu"]) for s in samples if s.get("locust_cpu")), default=None),
        "join_cost": join_cost(samples, aggregated, joins),
    }


def _chart(title: str, series: list[tuple[float, float]], unit: str, width: int = 640, height: int = 180) -> str:
    if not series:
        return f"<h3>{html.escape(title)}</h3><p>no samples</p>"
    xs, ys = [p[0] for p in series], [p[1] for p in series]
    x0, x1, top = min(xs), max(xs) or 1, max(ys) or 1
    span = (x1 - x0) or 1
    points = " ".join(
        f"{40 + (x - x0) / span * (width - 50):.1f},{height - 20 - y / top * (height - 30):.1f}" for x, y in series
    )
    return (
        f"<h3>{html.escape(title)}</h3><svg width='{width}' height='{height}' role='img'>"
        f"<line x1='40' y1='{height - 20}' x2='{width - 10}' y2='{height - 20}' stroke='#999'/>"
        f"<line x1='40' y1='10' x2='40' y2='{height - 20}' stroke='#999'/>"
        f"<text x='0' y='16' font-size='11'>{top:.0f}</text><text x='0' y='{height - 22}' font-size='11'>0</text>"
        f"<text x='{width - 60}' y='{height - 4}' font-size='11'>{span:.0f} s</text>"
        f"<text x='46' y='{height - 4}' font-size='11'>{html.escape(unit)}</text>"
        f"<polyline fill='none' stroke='#c0392b' stroke-width='1.5' points='{points}'/></svg>"
    )


def write_html(out: Path, summary: dict[str, Any]) -> Path:
    samples = _rows(out / "server.csv")
    history = [r for r in _rows(out / "locust_stats_history.csv") if r["Name"] == "Aggregated"]
    t0 = float(history[0]["Timestamp"]) if history else 0.0
    users = [(float(r["Timestamp"]) - t0, float(r["User Count"])) for r in history]
    cpu = [(float(s["t"]), float(s["cpu"]) * 100) for s in samples if s["cpu"]]
    rss = [(float(s["t"]), float(s["rss_mb"])) for s in samples if s["rss_mb"]]
    locust = [(float(s["t"]), float(s["locust_cpu"]) * 100) for s in samples if s.get("locust_cpu")]
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, ensure_ascii=False))}</td></tr>"
        for k, v in summary.items()
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>Sky Classroom load test</title>"
        "<style>body{font:14px sans-serif;margin:2em}td,th{text-align:left;padding:2px 8px;vertical-align:top}</style>"
        f"<h1>{html.escape(summary['scenario'])}: {summary['learners']} learners</h1>"
        f"<table>{rows}</table>"
        + _chart("Learners connected (Locust users)", users, "users")
        + _chart("Server CPU (all its processes)", cpu, "% of one core")
        + _chart("Server memory (RSS, all its processes)", rss, "MB")
        + _chart("Load generator CPU (Locust, all its processes)", locust, "% of one core")
        + "<p>Locust's own report with response-time charts: <a href='locust.html'>locust.html</a>; "
        "raw data: locust_*.csv, server.csv, probes.csv.</p>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
