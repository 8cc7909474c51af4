"""Glass-to-glass latency, and what one more viewer costs, for each way to watch a broadcast:
WebRTC from the origin, WebRTC through an edge (the cascade), and HLS.

    python -m loadtest.latency [--codec H264|VP8] [--duration 20] [--viewers 60] [--out DIR]

Starts Redis and two nodes on loopback (the origin, which holds the room, and an edge). A synthetic
teacher stamps every frame with the wall-clock time it was made, as a 48-bit barcode of big blocks
that survives compression and scaling; each probe decodes what it receives and reads the stamp
back, so latency = decode time - stamp (one machine, one clock). The WebRTC probes are aiortc
subscribers (jitter buffer and decoder included). The HLS probe reads the live playlist with PyAV
as soon as segments exist; a player holds back ``HLS_HOLD_BACK_SEGMENTS`` more (hls.js here), which
is added to give what a pupil sees.

With ``--codec H264`` (the default: what broadcast rooms should use) the HLS tier remuxes the
teacher's stream; with ``VP8`` it transcodes it once.

Then the cost: ``--viewers`` more WebRTC subscribers on the origin, then on the edge (in a process
of their own, counting RTP without decoding), then as many HLS viewers fetching the playlist and
each new segment from the server, then through nginx caching it (when ``nginx`` is installed, as
README shows for production); each step's CPU is compared with a baseline window just before it,
in the same run, and reported per viewer-minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import psutil
from aiortc import VideoStreamTrack

from server.media.hls import SEGMENT_S
from server.media.sfu import REMUX_KEYFRAME_S
from server.tokens import Role, issue_token

from .client import SignalingClient, publish, subscribe
from .fanout import ROOM, subscriber_worker
from .run import free_port, private_redis, start_group, wait_http

BITS = 48
COLUMNS, ROWS = 12, 4  # the barcode's blocks, over the top two thirds of the picture
WIDTH, HEIGHT = 640, 360
HLS_HOLD_BACK_SEGMENTS = 2  # hls.js liveSyncDurationCount in client_web/hlsplayer.js


class StampedTrack(VideoStreamTrack):
    """30 fps of a barcode of the wall-clock milliseconds at which each frame was made."""

    def __init__(self) -> None:
        super().__init__()
        self._ys = np.linspace(0, HEIGHT * 2 // 3, ROWS + 1).astype(int)
        self._xs = np.linspace(0, WIDTH, COLUMNS + 1).astype(int)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        stamp = int(time.time() * 1000)
        picture = np.full((HEIGHT, WIDTH), 128, dtype=np.uint8)
        for bit in range(BITS):
            row, column = divmod(bit, COLUMNS)
            value = 235 if stamp >> bit & 1 else 16
            picture[self._ys[row] : self._ys[row + 1], self._xs[column] : self._xs[column + 1]] = value
        frame = av.VideoFrame.from_ndarray(picture, format="gray")
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_stamp(frame: av.VideoFrame) -> float | None:
    """The wall-clock time (s) stamped in a frame, from the middle of each block; None if unreadable."""
    picture = frame.to_ndarray(format="gray")
    height, width = picture.shape
    ys = np.linspace(0, height * 2 // 3, ROWS + 1)
    xs = np.linspace(0, width, COLUMNS + 1)
    stamp = 0
    for bit in range(BITS):
        row, column = divmod(bit, COLUMNS)
        y0, y1 = int(ys[row] + (ys[row + 1] - ys[row]) / 4), int(ys[row + 1] - (ys[row + 1] - ys[row]) / 4)
        x0, x1 = (
            int(xs[column] + (xs[column + 1] - xs[column]) / 4),
            int(xs[column + 1] - (xs[column + 1] - xs[column]) / 4),
        )
        level = float(picture[y0:y1, x0:x1].mean())
        if 60 < level < 190:
            return None  # not one of our frames (a grey start, a half-decoded picture)
        stamp |= (level >= 128) << bit
    seconds = stamp / 1000
    return seconds if abs(time.time() - seconds) < 60 else None


def _middle(start: float, end: float) -> tuple[int, int]:
    """The middle half of a block's span: away from the edges that compression blurs."""
    quarter = (end - start) / 4
    return int(start + quarter), int(end - quarter)


async def webrtc_probe(ws_url: str, token: str, latencies: list[float], until: float) -> None:
    client = await SignalingClient.connect(ws_url)
    await client.join(ROOM, token)
    pc, tracks = await subscribe(client)
    try:
        while time.monotonic() < until:
            frame = await asyncio.wait_for(tracks["video"].recv(), 5)
            stamp = read_stamp(frame)
            if stamp is not None:
                latencies.append(time.time() - stamp)
    finally:
        await pc.close()
        await client.close()


def hls_probe(playlist_url: str, latencies: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with av.open(playlist_url, options={"live_start_index": "-1"}, timeout=10) as container:
                for frame in container.decode(video=0):
                    stamp = read_stamp(frame)
                    if stamp is not None:
                        latencies.append(time.time() - stamp)
                    if stop.is_set():
                        return
        except (av.error.FFmpegError, OSError):
            time.sleep(0.5)  # no playlist yet


async def hls_viewers(playlist_url: str, count: int, until: float) -> int:
    """``count`` players fetching the playlist each second and every segment new to them; bytes."""
    received = 0

    async def viewer(http: httpx.AsyncClient) -> None:
        nonlocal received
        seen: set[str] = set()
        while time.monotonic() < until:
            response = await http.get(playlist_url)
            if response.status_code == 200:
                for name in [line for line in response.text.splitlines() if line.endswith(".ts")]:
                    if name not in seen:
                        seen.add(name)
                        segment = await http.get(str(response.url).rsplit("/", 1)[0] + "/" + name)
                        received += len(segment.content)
            await asyncio.sleep(SEGMENT_S)

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(follow_redirects=True, limits=limits, timeout=10) as http:
        await asyncio.gather(*(viewer(http) for _ in range(count)))
    return received


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def cpu_over(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


@contextlib.contextmanager
def two_nodes(out: Path, secret: str, codec: str) -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    """Redis and two `skyclass serve` nodes on loopback: ((url, pid), (url, pid))."""
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(private_redis(out))
        nodes = []
        for name in ("first", "second"):
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skylatency-")))
            port = free_port()
            env = {"SKYCLASS_SECRET": secret, "SKYCLASS_DATA_DIR": str(data), "SKYCLASS_RECORD": "false"}
            env["SKYCLASS_VIDEO_CODEC"] = codec
            command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--ice-address", "127.0.0.1"]
            command += ["--redis", redis_url, "--log-level", "warning"]
            server = stack.enter_context(start_group(command, out / f"{name}.log", env))
            wait_http(f"http://127.0.0.1:{port}/healthz", server)
            nodes.append((f"http://127.0.0.1:{port}", server.pid))
        yield nodes[0], nodes[1]


def summarize(latencies: list[float], hold_back_s: float = 0.0) -> dict[str, float]:
    values = sorted(v + hold_back_s for v in latencies)
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(statistics.median(values) * 1000),
        "p95_ms": round(values[int(len(values) * 0.95) - 1] * 1000),
        "max_ms": round(values[-1] * 1000),
    }


async def measure(args: argparse.Namespace, out: Path) -> dict[str, object]:
    from server.media.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    secret = secrets.token_urlsafe(32)

    def token(role: str, name: str) -> str:
        return issue_token(secret, room=ROOM, role=Role(role), name=name, ttl_s=3600)

    with two_nodes(out, secret, args.codec) as ((origin_url, origin_pid), (edge_url, edge_pid)):
        ws = {"origin": origin_url.replace("http", "ws") + "/ws", "edge": edge_url.replace("http", "ws") + "/ws"}
        teacher = await SignalingClient.connect(ws["origin"])
        await teacher.join(ROOM, token("teacher", "Teacher"))  # the room is placed on this node
        rooms_here = httpx.get(origin_url + "/metrics").text.count("skyclass_rooms 1.0")
        if not rooms_here:  # placement chose the other node: call that one the origin
            (origin_url, origin_pid), (edge_url, edge_pid) = (edge_url, edge_pid), (origin_url, origin_pid)
            ws = {"origin": ws["edge"], "edge": ws["origin"]}
        publisher = await publish(teacher, StampedTrack(), video_codec=args.codec)
        pids = {"origin": origin_pid, "edge": edge_pid}

        # Latency ------------------------------------------------------------------------------
        watcher = await SignalingClient.connect(ws["edge"])
        await watcher.send({"type": "join", "room": ROOM, "token": token("student", "HLS probe"), "delivery": "hls"})
        playlist = edge_url + (await watcher.expect("joined"))["hls"]
        latencies: dict[str, list[float]] = {"webrtc-origin": [], "webrtc-edge": [], "hls": []}
        stop = threading.Event()
        hls_thread = threading.Thread(target=hls_probe, args=(playlist, latencies["hls"], stop), daemon=True)
        hls_thread.start()
        until = time.monotonic() + args.duration
        await asyncio.gather(
            webrtc_probe(ws["origin"], token("student", "origin probe"), latencies["webrtc-origin"], until),
            webrtc_probe(ws["edge"], token("student", "edge probe"), latencies["webrtc-edge"], until),
        )
        stop.set()
        hls_thread.join(15)
        segment_s = REMUX_KEYFRAME_S if args.codec == "H264" else SEGMENT_S  # a segment starts at a keyframe
        hold_back = HLS_HOLD_BACK_SEGMENTS * segment_s
        latency = {
            "webrtc-origin": summarize(latencies["webrtc-origin"]),
            "webrtc-edge": summarize(latencies["webrtc-edge"]),
            "hls-segment-ready": summarize(latencies["hls"]),
            "hls-player": summarize(latencies["hls"], hold_back),
        }

        # Cost per viewer ----------------------------------------------------------------------
        cost: dict[str, dict[str, float]] = {}
        for where in ("origin", "edge"):
            baseline = await cpu_over(pids, args.window)
            parent, child = multiprocessing.Pipe()
            tokens = [token("student", f"{where} {i}") for i in range(args.viewers)]
            worker = multiprocessing.Process(target=subscriber_worker, args=("skyclass", ws[where], tokens, child))
            worker.start()
            _, ready = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
            loaded = await cpu_over(pids, args.window)
            parent.send("stop")
            worker.join(30)
            cost[f"webrtc-{where}"] = per_viewer(baseline, loaded, args.viewers) | {"ready": ready}
            await asyncio.sleep(2)
        cost["hls"] = await hls_cost(playlist, pids, args)
        if shutil.which("nginx"):  # the production shape: a cache in front, each segment leaves the origin once
            with nginx_cache(origin_url, out) as (cache_url, nginx_pid):
                through_cache = cache_url + playlist.removeprefix(edge_url)
                cost["hls-via-cache"] = await hls_cost(through_cache, pids | {"cache": nginx_pid}, args)

        await publisher.close()
        await watcher.close()
        await teacher.close()
    return {"codec": args.codec, "latency": latency, "cost_per_viewer": cost, "viewers": args.viewers}


async def hls_cost(playlist: str, pids: dict[str, int], args: argparse.Namespace) -> dict[str, float]:
    baseline = await cpu_over(pids, args.window)
    fetching = asyncio.ensure_future(hls_viewers(playlist, args.viewers, time.monotonic() + args.window + 3))
    await asyncio.sleep(2)
    loaded = await cpu_over(pids, args.window)
    received = await fetching
    return per_viewer(baseline, loaded, args.viewers) | {"mbytes_fetched": round(received / 1e6, 1)}


NGINX_CONF = """
daemon off; master_process on; worker_processes 1; user root;
pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    proxy_cache_path {dir}/cache keys_zone=hls:10m max_size=200m inactive=1m;
    server {{
        listen 127.0.0.1:{port};
        location /hls/ {{
            proxy_pass {origin};
            proxy_cache hls;
            proxy_cache_lock on;
            proxy_cache_use_stale updating;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_cache(origin_url: str, out: Path) -> Iterator[tuple[str, int]]:
    """nginx on loopback caching the origin's /hls/ as README shows; yields its URL and pid."""
    with tempfile.TemporaryDirectory(prefix="skylatency-nginx-") as directory:
        port = free_port()
        conf = Path(directory) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=directory, port=port, origin=origin_url))
        with start_group([shutil.which("nginx") or "nginx", "-c", str(conf)], out / "nginx.log") as nginx:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(f"http://127.0.0.1:{port}/hls/", timeout=1)
                    break
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", nginx.pid


def per_viewer(baseline: dict[str, float], loaded: dict[str, float], viewers: int) -> dict[str, float]:
    """CPU-seconds per viewer-minute on each node (the extra over the baseline, shared out)."""
    return {f"{node}_cpu_s_per_viewer_min": round((loaded[node] - baseline[node]) * 60 / viewers, 4) for node in loaded}


def print_report(result: dict[str, object]) -> None:
    print(f"\nglass-to-glass latency (frame made -> frame decoded), {result['codec']} broadcast")
    print(f"{'path':<20}{'samples':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for path, row in result["latency"].items():  # type: ignore[attr-defined]
        cells = [row.get(k, "-") for k in ("samples", "p50_ms", "p95_ms", "max_ms")]
        print(f"{path:<20}" + "".join(f"{cell:>9}" for cell in cells))
    print(f"\nserver CPU per viewer (CPU-s per viewer-minute, {result['viewers']} viewers each)")
    for path, row in result["cost_per_viewer"].items():  # type: ignore[attr-defined]
        print(f"{path:<20}" + "  ".join(f"{k}={v}" for k, v in row.items()))
    cost = result["cost_per_viewer"]
    webrtc = cost["webrtc-origin"]["origin_cpu_s_per_viewer_min"]  # type: ignore[index]
    for path in ("hls", "hls-via-cache"):
        hls = cost.get(path, {}).get("origin_cpu_s_per_viewer_min")  # type: ignore[attr-defined]
        if hls is None:
            continue
        ratio = f"{webrtc / hls:.1f}" if hls > 0.001 else "HLS is within noise of 0 at the origin"
        print(f"WebRTC / {path} per-viewer CPU at the origin: {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of latency sampling")
    parser.add_argument("--viewers", type=int, default=60, help="viewers added for each cost step")
    parser.add_argument(
        "--codec",
        choices=["H264", "VP8"],
        default="H264",
        help="the broadcast's video: H.264 is remuxed, VP8 transcoded",
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each CPU window")
    parser.add_argument("--out", type=Path, default=Path("loadtest-latency"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(measure(args, args.out))
    (args.out / "latency.json").write_text(json.dumps(result, indent=2))
    print_report(result)


if __name__ == "__main__":
    main()
