"""What the control room costs, measured on real processes:

- ``/api/city`` latency with ``--rooms`` rooms' summaries in Redis (saved as ``--nodes`` nodes would
  save them, with a timetable naming every class), asked of a real node by a city admin;
- server CPU for ``--pupils`` pupils' QoE reports: that many real websocket clients joined as
  pupils (in ``--classes`` classes), each sending one report, the node's CPU time over the burst
  (psutil), and what it comes to at one report per pupil every 15 s.

    python -m loadtest.city --redis redis://127.0.0.1:6379/5 [--rooms 5000] [--pupils 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import redis
from websockets.asyncio.client import connect

from server.tokens import Role, issue_token

SECRET = "loadtest-secret-" + "c" * 32
PERIOD_S = 15.0  # the pupil page reports this often
REPORT = {"type": "qoe", "fps": 28.0, "freezes": 0, "longest_freeze_s": 0.3, "concealed": 0.01,
          "path": "direct", "layer": "high", "rtt_ms": 50, "loss": 0.0, "period_s": 15}  # fmt: skip


def timetable(rooms: int) -> str:
    lines = ["classes:"]
    for i in range(rooms):
        lines.append(f"  - {{id: c{i}, grade: 初三, name: 初三({i})班, school: School {i // 10}, enrolled: 40}}")
    lines.append("slots:")
    lines += [f'  - {{class: c{i}, start: "00:00", end: "24:00", subject: 数学, mode: live}}' for i in range(rooms)]
    return "\n".join(lines) + "\n"


def summaries(rooms: int, nodes: int) -> dict[str, list[dict[str, object]]]:
    """What ``nodes`` nodes holding ``rooms`` rooms (40 pupils each, some freezing) would save."""
    by_node: dict[str, list[dict[str, object]]] = {f"fake-{n}": [] for n in range(nodes)}
    rng = random.Random(7)
    for i in range(rooms):
        freezing = rng.choice([0, 0, 0, 1, 3, 15])
        fps = {str(rng.randint(20, 30)): 40 - freezing, str(rng.randint(3, 12)): freezing}
        by_node[f"fake-{i % nodes}"].append(
            {"room": f"c{i}", "pupils": 40, "held": True, "live": True, "students": 40, "teachers": 1,
             "qoe": {"reporting": 40, "freezing": freezing, "paths": {"direct": 36, "relay": 4}, "fps": fps}}
        )  # fmt: skip
    return by_node


def start(tmp: Path, port: int, redis_url: str, table: str) -> subprocess.Popen[bytes]:
    (tmp / "timetable.yaml").write_text(table, encoding="utf-8")
    env = {
        "SKYCLASS_SECRET": SECRET,
        "SKYCLASS_DATA_DIR": str(tmp / "data"),
        "SKYCLASS_TIMETABLE": str(tmp / "timetable.yaml"),
        "SKYCLASS_JOIN_RATE_PER_ADDRESS": "2000",
        "SKYCLASS_JOIN_BURST_PER_ADDRESS": "5000",
        "SKYCLASS_MAX_UNJOINED_PER_ADDRESS": "5000",
        "PATH": "/usr/bin:/bin",
    }
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--redis", redis_url]
    process = subprocess.Popen(command, env=env, stdout=(tmp / "server.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError((tmp / "server.log").read_text())


def city_latency(url: str, redis_url: str, rooms: int, nodes: int, asks: int) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    for node, entries in summaries(rooms, nodes).items():  # the store's layout (server/state/redis.py)
        client.set(f"sky:city:{node}", json.dumps(entries), px=600_000)
        client.zadd("sky:city", {node: now_ms + 600_000})
    admin = issue_token(SECRET, room="c0", role=Role.ADMIN, name="ops", ttl_s=3600, scope="city")
    headers = {"Authorization": f"Bearer {admin}"}
    times = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        first = http.get("/api/city", params={"limit": 50}).json()
        assert first["total"] >= rooms, first["total"]
        for _ in range(asks):
            started = time.perf_counter()
            answer = http.get("/api/city", params={"limit": 50})
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200
    for node in summaries(0, nodes):
        client.delete(f"sky:city:{node}")
        client.zrem("sky:city", node)
    times.sort()
    return {"median_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))]}


async def qoe_cpu(url: str, ws_url: str, pid: int, pupils: int, classes: int) -> dict[str, float]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per pupil
    sockets = []
    for i in range(pupils):
        room = f"c{i % classes}"
        ws = await connect(ws_url, compression=None, max_size=2**22)
        token = issue_token(SECRET, room=room, role=Role.STUDENT, name=f"pupil {i}", ttl_s=3600)
        await ws.send(json.dumps({"type": "join", "room": room, "token": token, "subscribe": False}))
        sockets.append(ws)
    for ws in sockets:
        while json.loads(await ws.recv())["type"] != "joined":
            pass
    await asyncio.sleep(4)  # joins settled (the presence the rooms send, the summaries saved)
    server = psutil.Process(pid)

    def cpu() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    before = cpu()
    await asyncio.sleep(2)
    idle_per_s = (cpu() - before) / 2

    async def burst(messages: list[str]) -> float:
        """Server CPU (less idle) while every socket sends ``messages`` and gets the pong behind them."""
        started, at = cpu(), time.perf_counter()
        for ws in sockets:
            for message in messages:
                await ws.send(message)
        for ws in sockets:
            while json.loads(await ws.recv())["type"] != "pong":
                pass
        return cpu() - started - idle_per_s * (time.perf_counter() - at)

    ping = '{"type": "ping"}'
    pings = await burst([ping])  # what a message and its pong cost alone
    spent = await burst([json.dumps(REPORT), ping])
    metrics = httpx.get(url + "/metrics", timeout=10).text
    counted = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("skyclass_qoe_pupils{")
    )
    for ws in sockets:
        await ws.close()
    return {
        "pupils": pupils,
        "reported": counted,
        "cpu_ms_per_report": 1000 * (spent - pings) / pupils,
        "core_share_at_one_per_15s": (spent - pings) / PERIOD_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", required=True, help="a Redis database this may fill and empty")
    parser.add_argument("--rooms", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--asks", type=int, default=30)
    parser.add_argument("--pupils", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=25)
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args()
    redis.Redis.from_url(args.redis).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        process = start(Path(tmp), args.port, args.redis, timetable(args.rooms))
        url = f"http://127.0.0.1:{args.port}"
        try:
            latency = city_latency(url, args.redis, args.rooms, args.nodes, args.asks)
            print(f"/api/city with {args.rooms} rooms' summaries from {args.nodes} nodes in Redis: "
                  f"median {latency['median_ms']:.0f} ms, p95 {latency['p95_ms']:.0f} ms")  # fmt: skip
            cost = asyncio.run(qoe_cpu(url, f"ws://127.0.0.1:{args.port}/ws", process.pid, args.pupils, args.classes))
            print(
                f"QoE reports of {cost['pupils']} pupils (real websockets; {cost['reported']:.0f} in /metrics): "
                f"{cost['cpu_ms_per_report']:.3f} ms of server CPU each, "
                f"{100 * cost['core_share_at_one_per_15s']:.2f}% of a core at one report per pupil every 15 s"
            )
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
