"""What a join costs the server, against what the websocket alone costs on the same stack.

Three servers on loopback, one after the other, each met by the same crowd from a process of its own:
``--joins`` pupils at ``--rate`` a second, each from its own source address, each keeping its socket
open after its reply.

- ``skyclass serve``: the pupils join one broadcast (``flag-raising``, its part on this node), so
  this is a whole join: upgrade, token, limits, the room, the ``joined`` reply;
- the same on its signaling listener (``SKYCLASS_SIGNALING_PORT``: picows, not uvicorn);
- the floor: uvicorn with the options ``skyclass serve`` gives it, serving an app that accepts, reads
  one message and answers one. Nothing of ours: what any join on uvicorn costs at least.

For each: the server's CPU (user + system, from ``/proc``, less its idle rate) per join, and its RSS
per idle session; then the ratios of ours to the floor (machines differ; the ratio travels). A run
whose crowd could not keep its schedule, or that left no core free, measured the load generator, not
the server: it is refused.

    python -m loadtest.joins [--joins 3000] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from server.tokens import Role, issue_token

from .run import free_port, start_group, tree_usage, wait_http

SECRET = "joins-benchmark-" + "j" * 32
ROOM = "flag-raising"
SETTLE_S = 3.0  # after the last reply: what the sessions hold once idle
BUSY = 0.85  # of a core: a crowd this busy may be what set the pace


# The floor -----------------------------------------------------------------------------------------


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, read one message, answer one, then hold the socket until the client goes."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await receive()  # the join
        await send({"type": "websocket.send", "text": '{"type": "joined"}'})
        while (await receive())["type"] != "websocket.disconnect":
            pass


def serve_floor(port: int) -> None:
    import uvicorn

    from server.cli import UVICORN_OPTIONS

    uvicorn.run(floor_app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)


# The crowd -----------------------------------------------------------------------------------------


async def crowd(url: str, joins: int, rate: float) -> None:
    """Joins on schedule, each from its own source address; prints one JSON line when all are
    answered, then holds the sockets until stdin closes."""
    from websockets.asyncio.client import connect

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tokens = [issue_token(SECRET, room=ROOM, role=Role.STUDENT, name=f"pupil {i}", ttl_s=3600) for i in range(joins)]
    sockets: list[Any] = []
    failed: list[str] = []
    latest = 0.0  # how far behind its schedule the crowd started a join, at worst

    async def join(i: int) -> None:
        try:
            source = (f"127.0.{i % 200 + 1}.{i // 200 % 250 + 2}", 0)  # per-address join limits
            ws = await connect(url, compression=None, ping_interval=None, local_addr=source)
            await ws.send(json.dumps({"type": "join", "room": ROOM, "token": tokens[i], "subscribe": False}))
            while (reply := json.loads(await ws.recv()))["type"] != "joined":
                if reply["type"] == "error":
                    raise RuntimeError(reply["code"])
            sockets.append(ws)
        except Exception as exc:  # counted and named: a refused join is a result
            failed.append(f"{type(exc).__name__}: {exc}")

    cpu_before = time.process_time()
    began = time.perf_counter()
    tasks = []
    for i in range(joins):
        due = began + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        latest = max(latest, time.perf_counter() - due)
        tasks.append(asyncio.create_task(join(i)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    report = {
        "joined": len(sockets),
        "failed": len(failed),
        "failures": sorted(set(failed))[:5],
        "behind_s": round(latest, 3),
        "crowd_cores": round((time.process_time() - cpu_before) / wall, 3),
        "wall_s": round(wall, 2),
    }
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# The measurement -----------------------------------------------------------------------------------


def _usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS in MB of a process and its children."""
    cpu, rss_mb, _ = tree_usage(pid)
    return cpu, rss_mb


def measure(name: str, ws_url: str, pid: int, joins: int, rate: float, out: Path) -> dict[str, Any]:
    """One crowd against one running server: its cost per join and per idle session."""
    cpu0, _ = _usage(pid)
    time.sleep(2.0)
    cpu1, rss1 = _usage(pid)
    idle = (cpu1 - cpu0) / 2.0
    command = [sys.executable, "-m", "loadtest.joins", "crowd", ws_url]
    command += ["--joins", str(joins), "--rate", str(rate)]
    log = out / f"crowd-{name.replace(' ', '-').replace('/', '')}.log"
    began = time.perf_counter()
    crowd_process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("wb"))
    try:
        line = crowd_process.stdout.readline() if crowd_process.stdout else b""  # once every join is answered
        if not line:
            raise RuntimeError(f"the crowd ended without a report: {log.read_text()[-2000:]}")
        report: dict[str, Any] = json.loads(line)
        ramp_s = time.perf_counter() - began
        cpu2, _ = _usage(pid)
        time.sleep(SETTLE_S)
        _, rss3 = _usage(pid)
    finally:
        crowd_process.kill()
        crowd_process.wait()
    server_cores = (cpu2 - cpu1) / ramp_s
    result = {
        "server": name,
        **report,
        "cpu_ms_per_join": round((cpu2 - cpu1 - idle * ramp_s) / max(1, report["joined"]) * 1000, 3),
        "kb_per_session": round((rss3 - rss1) * 1024 / max(1, report["joined"]), 1),
        "server_cores": round(server_cores, 3),
    }
    result["refused"] = _refusal(result, rate)
    return result


def _refusal(result: dict[str, Any], rate: float) -> str | None:
    """Why this run measured the load generator rather than the server, if it did."""
    if result["failed"]:
        return f"{result['failed']} joins failed ({'; '.join(result['failures'])})"
    if result["behind_s"] > max(1.0, 50 / rate):
        return f"the crowd fell {result['behind_s']} s behind its schedule"
    if result["crowd_cores"] > BUSY:
        return f"the crowd used {result['crowd_cores']} of a core"
    if result["crowd_cores"] + result["server_cores"] > 0.9 * (os.cpu_count() or 1):
        return "the crowd and the server left no core free"
    return None


@contextlib.contextmanager
def ours(out: Path, listener: bool) -> Iterator[tuple[str, int]]:
    """``skyclass serve``; yields the websocket URL (its signaling listener's, or /ws on the app's
    port) and its pid."""
    port, signaling_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="skyjoins-") as data:
        env = {"SKYCLASS_SECRET": SECRET, "SKYCLASS_DATA_DIR": data, "SKYCLASS_RECORD": "false"}
        env["SKYCLASS_BROADCAST_ROOMS"] = json.dumps([ROOM])
        env["SKYCLASS_SIGNALING_PORT"] = str(signaling_port if listener else 0)
        command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--ice-address", "127.0.0.1"]
        with start_group(command, out / f"server-ours-{signaling_port}.log", env) as server:
            wait_http(f"http://127.0.0.1:{port}/healthz", server)
            yield f"ws://127.0.0.1:{signaling_port if listener else port}/ws", server.pid


@contextlib.contextmanager
def floor(out: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "loadtest.joins", "floor", "--port", str(port)]
    with start_group(command, out / "server-floor.log") as server:
        wait_http(f"http://127.0.0.1:{port}/", server)
        yield f"ws://127.0.0.1:{port}/ws", server.pid


ROWS = {  # name: the server it starts
    "floor": floor,
    "ours on /ws": lambda out: ours(out, listener=False),
    "ours on the listener": lambda out: ours(out, listener=True),
}


def run(joins: int, rate: float, out: Path) -> dict[str, Any]:
    results = {}
    for name, server in ROWS.items():
        with server(out) as (ws_url, pid):
            results[name] = measure(name, ws_url, pid, joins, rate, out)
    summary: dict[str, Any] = {"joins": joins, "rate": rate, "rows": results}
    base = results["floor"]
    if not base["refused"]:
        for name, result in results.items():
            if name != "floor" and not result["refused"]:
                result["cpu_ratio"] = round(result["cpu_ms_per_join"] / base["cpu_ms_per_join"], 2)
                result["memory_ratio"] = round(result["kb_per_session"] / base["kb_per_session"], 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "crowd", "floor"])
    parser.add_argument("url", nargs="?", help="crowd: the websocket URL")
    parser.add_argument("--joins", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0, help="joins a second")
    parser.add_argument("--port", type=int, default=0, help="floor: the port")
    parser.add_argument("--out", type=Path, help="where the logs go (default: a temporary folder)")
    args = parser.parse_args()
    if args.role == "crowd":
        asyncio.run(crowd(args.url, args.joins, args.rate))
        return
    if args.role == "floor":
        serve_floor(args.port)
        return
    with tempfile.TemporaryDirectory(prefix="skyjoins-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        summary = run(args.joins, args.rate, out)
    refused = False
    for name, r in summary["rows"].items():
        refused |= bool(r["refused"])
        ratios = f" = {r['cpu_ratio']}x / {r['memory_ratio']}x the floor" if "cpu_ratio" in r else ""
        print(
            f"{name:>20}: {r['joined']} joined, {r['cpu_ms_per_join']:.3f} ms CPU a join, "
            f"{r['kb_per_session']:.1f} KB an idle session{ratios} (server {r['server_cores']:.2f} cores, "
            f"crowd {r['crowd_cores']:.2f}, {r['behind_s']} s behind)"
            + (f" REFUSED: {r['refused']}" if r["refused"] else "")
        )
    print(json.dumps(summary))
    if refused:
        sys.exit(1)


if __name__ == "__main__":
    main()
