"""Run a named load scenario end to end: a server (or yours), Locust, media probes, a report.

    python -m loadtest.run flag-raising --learners 2000
    python -m loadtest.run school-day --learners 5000 --server-workers 2 --locust-processes 2
    python -m loadtest.run chat-burst --server http://127.0.0.1:8080 --secret "$SKYCLASS_SECRET"

Without ``--server`` it starts ``skyclass serve`` on loopback (with ``--server-workers N`` > 1, also
a private ``redis-server``) and stops everything it started when it ends, however it ends. It only
targets loopback unless ``--allow-remote`` is given (ops running across machines: see the README).
Results go to ``--out``: Locust's CSVs and HTML, ``server.csv`` (CPU, memory each second),
``probes.csv``, ``summary.json`` and ``report.html``. Exits 1 when a join failed, an error came
back, or a probe got no video.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from .report import summarize, write_html

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["flag-raising", "school-day", "teacher-reconnect", "chat-burst", "replay"]


@contextlib.contextmanager
def start_group(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, killed with all its children on the way out."""
    process = subprocess.Popen(
        command,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited at start")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def private_redis(out: Path) -> Iterator[str]:
    """A ``redis-server`` of the run's own on loopback, without persistence; yields its URL."""
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with start_group(command, out / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def local_server(args: argparse.Namespace, out: Path, secret: str) -> Iterator[tuple[str, int, str]]:
    """``skyclass serve`` on loopback (and Redis when several processes share it); yields its URL, pid
    and the websocket URL of its signaling listener."""
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skyload-")))
        extra: list[str] = []
        if args.server_workers > 1 or getattr(args, "redis", False):
            redis_url = stack.enter_context(private_redis(out))
            extra = ["--redis", redis_url, "--workers", str(args.server_workers)]
        port, signaling_port = free_port(), free_port()
        env = {"SKYCLASS_SECRET": secret, "SKYCLASS_DATA_DIR": str(data), "SKYCLASS_RECORD": "false"}
        env["SKYCLASS_SIGNALING_PORT"] = str(signaling_port)  # as behind nginx: /ws on the listener
        if args.max_sessions:
            env["SKYCLASS_MAX_SESSIONS"] = str(args.max_sessions)
        if args.scenario == "flag-raising":  # one room for a city: its pupils join their own process's part
            env["SKYCLASS_BROADCAST_ROOMS"] = '["flag-raising"]'
        hls_above = getattr(args, "hls_above", None)
        if hls_above is not None:  # "none": HLS only for those who ask (the probes stay on WebRTC)
            env["SKYCLASS_HLS_ABOVE"] = "" if hls_above == "none" else str(int(hls_above))
        command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--ice-address", "127.0.0.1"]
        server = stack.enter_context(start_group([*command, *extra, "--log-level", "warning"], out / "server.log", env))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", server)
        time.sleep(1.0 if args.server_workers > 1 else 0)  # the other worker processes
        yield url, server.pid, f"ws://127.0.0.1:{signaling_port}/ws"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from ``/proc/PID/stat`` (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_usage(pid: int) -> tuple[float, float, int]:
    """CPU seconds so far (utime + stime from ``/proc``), RSS in MB and the number of processes of a
    process and its children."""
    processes = _tree(pid)
    cpu = rss = 0.0
    for process in processes:
        with contextlib.suppress(OSError, psutil.Error):
            cpu += proc_cpu_seconds(process.pid)
            rss += process.memory_info().rss
    return cpu, rss / 2**20, len(processes)


class Sampler:
    """CPU (cores) and memory each second of the server's process tree (when it runs here) and of
    the load generator's (Locust), so a report tells which side was the bottleneck. Each row also
    has the wall clock and the server's CPU-seconds so far (utime + stime from ``/proc``, its
    processes summed), from which the report reads the CPU of a join storm."""

    def __init__(self, pids: dict[str, int | None], path: Path) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["t", "cpu", "rss_mb", "processes", "locust_cpu", "unix", "cpu_s"])
        self._began = time.monotonic()
        self._last: dict[str, tuple[float, float]] = {}
        self.latest: dict[str, tuple[float, float]] = {}

    def watch(self, name: str, pid: int) -> None:
        self._pids[name] = pid

    def _measure(self, name: str, pid: int, now: float) -> tuple[float, float, int, float] | None:
        cpu, rss_mb, count = tree_usage(pid)
        last, self._last[name] = self._last.get(name), (now, cpu)
        if last is None or now <= last[0]:
            return None
        usage = (cpu - last[1]) / (now - last[0])
        self.latest[name] = (usage, rss_mb)
        return usage, rss_mb, count, cpu

    def sample(self) -> None:
        now, unix = time.monotonic(), time.time()
        server = self._measure("server", self._pids["server"], now) if "server" in self._pids else None
        locust = self._measure("locust", self._pids["locust"], now) if "locust" in self._pids else None
        if server is not None or locust is not None:
            cpu, rss, count, total = server or ("", "", "", "")
            row = [round(now - self._began, 1), cpu and round(cpu, 3), rss and round(rss, 1), count]
            row += [round(locust[0], 3) if locust else "", round(unix, 2), total and round(total, 2)]
            self._writer.writerow(row)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _progress(out: Path, sampler: Sampler, began: float) -> str:
    users = requests = failures = 0
    history = out / "locust_stats_history.csv"
    if history.exists():
        with history.open(newline="") as f:
            last = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"][-1:]
        if last:
            users, requests, failures = (
                int(float(last[0][k] or 0)) for k in ("User Count", "Total Request Count", "Total Failure Count")
            )
    cpu, rss = sampler.latest.get("server", (0.0, 0.0))
    locust_cpu, _ = sampler.latest.get("locust", (0.0, 0.0))
    return (
        f"{time.monotonic() - began:5.0f} s  learners {users:6d}  requests {requests:7d}  failures {failures:4d}"
        f"  server CPU {cpu * 100:4.0f}%  RSS {rss:6.0f} MB  Locust CPU {locust_cpu * 100:4.0f}%"
    )


def plan_probes(args: argparse.Namespace) -> list[str]:
    """Which rooms get a publishing teacher, and where the probes sit."""
    if args.scenario == "replay":
        return []
    if args.scenario == "flag-raising":
        rooms = ["flag-raising"]
    elif args.scenario == "school-day":
        rooms = ["g12-broadcast", "g9-c0", "g12-c0"][: max(1, args.publishers)]
    elif args.scenario == "teacher-reconnect":
        rooms = [f"reconnect-c{i}" for i in range(min(args.publishers, max(1, args.learners // 50)))]
    else:
        rooms = [f"chat-c{i}" for i in range(min(args.publishers, max(1, args.learners // 50)))]
    flags = [f"--publish={room}" for room in rooms]
    per_room, rest = divmod(args.probes, len(rooms))
    flags += [f"--probe={room}:{per_room + (i < rest)}" for i, room in enumerate(rooms) if per_room + (i < rest)]
    return flags


def run(args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out or f"loadtest-results/{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    secret = args.secret or secrets.token_urlsafe(32)
    ramp = args.ramp if args.ramp is not None else min(60.0, args.duration / 2)
    with contextlib.ExitStack() as stack:
        if args.server:
            host = urlsplit(args.server).hostname or ""
            if not args.allow_remote and not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
                raise SystemExit(f"{args.server} is not on loopback; pass --allow-remote to load a server you run")
            url, pid = args.server.rstrip("/"), None
            ws_url = getattr(args, "ws_url", None) or url.replace("http", "ws", 1) + "/ws"
        else:
            url, pid, ws_url = stack.enter_context(local_server(args, out, secret))
        print(
            f"{args.scenario}: {args.learners} learners over {ramp:.0f} s, {args.duration:.0f} s in all, against {url}"
        )
        env = {
            "SKYLOAD_SECRET": secret,
            "SKYLOAD_OUT": str(out),
            "SKYLOAD_LEARNERS": str(args.learners),
            "SKYLOAD_DURATION_S": str(args.duration),
            "SKYLOAD_WS_URL": ws_url,
            "PYTHONPATH": str(ROOT),
        }
        probes_command = [
            sys.executable,
            "-m",
            "loadtest.probes",
            "--url",
            url,
            "--ws-url",
            ws_url,
            f"--secret={secret}",  # one piece: a secret may start with "-"
            "--duration",
            str(args.duration - 2),
            "--ramp",
            str(ramp),
            "--out",
            str(out),
            *plan_probes(args),
        ]
        if args.scenario == "teacher-reconnect":
            probes_command += ["--teacher-drops", "20"]
        sampler = Sampler({"server": pid}, out / "server.csv")  # from before the crowd: the baseline
        sampler.sample()
        probes = stack.enter_context(start_group(probes_command, out / "probes.log", env))
        for _ in range(3):  # the teachers are live before the crowd arrives
            time.sleep(1)
            sampler.sample()
        locust = stack.enter_context(
            start_group(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(ROOT / "loadtest" / "scenarios" / f"{args.scenario.replace('-', '_')}.py"),
                    "--headless",
                    "--only-summary",
                    "--host",
                    url,
                    "-u",
                    str(args.learners),
                    "-r",
                    str(max(1.0, args.learners / ramp)),
                    "-t",
                    f"{int(args.duration)}s",
                    "--stop-timeout",
                    "10",
                    "--csv",
                    str(out / "locust"),
                    "--csv-full-history",
                    "--html",
                    str(out / "locust.html"),
                    *(["--processes", str(args.locust_processes)] if args.locust_processes > 1 else []),
                ],
                out / "locust.log",
                env,
            )
        )
        sampler.watch("locust", locust.pid)
        began = time.monotonic()
        while locust.poll() is None or probes.poll() is None:
            sampler.sample()
            if int(time.monotonic() - began) % 5 == 0:
                print(_progress(out, sampler, began), flush=True)
            time.sleep(1)
            if time.monotonic() - began > args.duration + 120:
                print("the run did not end on time; stopping it")
                break
        sampler.close()
    summary = summarize(out, args.scenario, args.learners)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    write_html(out, summary)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"report: {out / 'report.html'}")
    return summary


def ok(summary: dict[str, object]) -> bool:
    return (
        summary["failed_joins"] == 0
        and summary["errors"] == 0
        and summary["probes_with_video"] == summary["probes"]
        and summary["requests"].get("Aggregated", 0) > 0  # type: ignore[attr-defined]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--duration", type=float, default=120, help="seconds, ramp included")
    parser.add_argument("--ramp", type=float, default=None, help="seconds for every learner to arrive (default 60)")
    parser.add_argument("--probes", type=int, default=4, help="real WebRTC subscribers measuring what arrives")
    parser.add_argument("--publishers", type=int, default=3, help="rooms with a publishing teacher (most)")
    parser.add_argument("--server", help="a running server's URL (default: start one on loopback)")
    parser.add_argument("--ws-url", help="its signaling websocket, when not /ws on --server (its listener)")
    parser.add_argument("--secret", help="its SKYCLASS_SECRET (to sign the learners' tokens)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a --server that is not on loopback")
    parser.add_argument("--server-workers", type=int, default=1, help="server processes (> 1: with Redis)")
    parser.add_argument("--redis", action="store_true", help="the started server on Redis even with one process")
    parser.add_argument("--max-sessions", type=int, default=0, help="SKYCLASS_MAX_SESSIONS for the started server")
    parser.add_argument(
        "--hls-above",
        help="SKYCLASS_HLS_ABOVE for the started server: members beyond which pupils get HLS; 'none': only on request",
    )
    parser.add_argument("--locust-processes", type=int, default=1, help="Locust worker processes on this machine")
    parser.add_argument("--out", help="results directory")
    summary = run(parser.parse_args())
    sys.exit(0 if ok(summary) else 1)


if __name__ == "__main__":
    main()
