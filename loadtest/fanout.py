"""Fan-out benchmark: one publisher, N subscribers, the same scenario against several servers.

    python -m loadtest.fanout --subscribers 200 --duration 30

Targets, measured one after the other in the same run:
- ``ours``: ``skyclass serve``, forwarding RTP without decoding, with the native fan-out step;
- ``ours-python``: the same on its Python path (``SKYCLASS_NATIVE_FANOUT=0``);
- ``relay``: aiortc's MediaRelay, decoding once and encoding per subscriber (the slow path);
- ``janus``: Janus VideoRoom from Debian's ``janus`` package (see loadtest/baselines/janus.py).

The publisher replays a pre-encoded H.264 640x360 15 fps ~1.1 Mbit/s stream plus Opus. Subscribers
are aiortc peers in separate processes that count packets, frames, losses and freezes from the RTP
header without decrypting or decoding. The server's CPU and memory are read from /proc. Ratios, not
absolute times, are the result: the machine is shared and noisy.

A row is a result only when the load generator kept up: every subscriber got video, the subscriber
processes stayed under GENERATOR_LIMIT of a core each, and the subscribers received what the server
says it sent (ours; Janus and MediaRelay have no such counter). Otherwise it says NOT A RESULT and
why. A server that lost packets or frame rate while the generator kept up is OVERLOADED: that is
its limit, not a cost. Ratios are computed only between rows that are neither.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from .media import FPS, ClipTrack, cached_clip

ROOM = "fanout"
READY_TIMEOUT_S = 120
GENERATOR_LIMIT = 0.85  # of a core per subscriber process: beyond it, they measure themselves
MAX_LOSS = 0.005
MIN_FPS = 0.9 * FPS


# Server side ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@dataclass
class Target:
    """A server under test. ``protocol`` says how clients talk to it at ``url``:
    ``skyclass`` (docs/protocol.md over a websocket) or ``janus`` (Janus's HTTP API)."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    secret: str
    protocol: str = "skyclass"

    @property
    def pid(self) -> int:
        return self.process.pid

    def token(self, role: str, name: str) -> str:
        from server.tokens import Role, issue_token

        return issue_token(self.secret, room=ROOM, role=Role(role), name=name, ttl_s=3600)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_ours(workdir: Path, native: bool = True) -> Target:
    port, secret = free_port(), secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "SKYCLASS_SECRET": secret,
        "SKYCLASS_DATA_DIR": str(workdir),
        "SKYCLASS_VIDEO_CODEC": "H264",
        "SKYCLASS_NATIVE_FANOUT": "1" if native else "0",
    }
    command = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--ice-address", "127.0.0.1"]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL)
    wait_for_port(port, process)
    name = "ours (native)" if native else "ours (Python path)"
    return Target(name, process, f"ws://127.0.0.1:{port}/ws", secret)


def start_ours_python(workdir: Path) -> Target:
    return start_ours(workdir, native=False)


def packets_sent(target: Target) -> float | None:
    """What the server says it sent to subscribers (ours only: others have no such counter)."""
    if not target.name.startswith("ours"):
        return None
    url = target.url.replace("ws://", "http://").removesuffix("/ws") + "/metrics"
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("skyclass_sfu_packets_out_total "):
            return float(line.split()[1])
    return None


def start_relay(workdir: Path) -> Target:
    port = free_port()
    command = [sys.executable, "-m", "loadtest.baselines.relay_server", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port, process)
    return Target("relay", process, f"ws://127.0.0.1:{port}", secrets.token_urlsafe(32))


# Client side ---------------------------------------------------------------------------------------


# A subscriber as a client of some server: (url, token) -> (peer connection, something to close)
Subscriber = Callable[[str, str], Awaitable[tuple[Any, Any]]]


async def subscribe_skyclass(url: str, token: str) -> tuple[Any, Any]:
    from .client import SignalingClient, subscribe

    client = await SignalingClient.connect(url)
    await client.join(ROOM, token)
    pc, _ = await subscribe(client)
    return pc, client


def subscriber_worker(protocol: str, url: str, tokens: list[str], conn: Connection) -> None:
    """A process holding some of the subscribers; driven over ``conn`` by the coordinator."""
    if protocol == "janus":
        from .baselines.janus import subscribe_janus as connect
    else:
        connect = subscribe_skyclass
    asyncio.run(_subscribers(connect, url, tokens, conn))


async def _subscribers(connect: Subscriber, url: str, tokens: list[str], conn: Connection) -> None:
    from server.media.ice import use_host_addresses

    from .probe import RtpProbe

    use_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    clients: list[Any] = []
    probes: list[RtpProbe] = []
    limit = asyncio.Semaphore(8)

    async def one(token: str) -> None:
        async with limit:
            pc, client = await connect(url, token)
            clients.append((client, pc))
            probes.append(RtpProbe(pc, decrypt=False))

    await asyncio.gather(*(one(t) for t in tokens))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(p.streams["video"].packets > 0 for p in probes):
            break
        await asyncio.sleep(0.2)
    conn.send(("ready", sum(p.streams["video"].packets > 0 for p in probes)))

    async def command() -> str:
        message: str = await loop.run_in_executor(None, conn.recv)
        return message

    started = (0.0, 0.0)
    while (order := await command()) != "stop":
        if order == "measure":
            for probe in probes:
                probe.reset_window()
            started = (time.process_time(), time.monotonic())
        elif order == "report":
            cpu_share = (time.process_time() - started[0]) / (time.monotonic() - started[1])
            conn.send(("report", [_summary(p) for p in probes], cpu_share))
    for client, pc in clients:
        await pc.close()
        await client.close()


def _summary(probe: Any) -> dict[str, float]:
    video, audio = probe.streams["video"], probe.streams.get("audio")
    return {
        "video_packets": video.packets,
        "audio_packets": audio.packets if audio else 0,
        "bytes": video.bytes + (audio.bytes if audio else 0),
        "lost": video.lost + (audio.lost if audio else 0),
        "expected": video.expected + (audio.expected if audio else 0),
        "frames": video.frames,
        "freezes": video.freezes,
        "longest_gap_s": video.longest_gap_s,
    }


# Coordinator ---------------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    subscribers: int
    ready: int
    duration_s: float
    cpu_s: float
    system_share: float  # of cpu_s, the part spent in the kernel (mostly sending datagrams)
    rss_per_subscriber: float
    reports: list[dict[str, float]] = field(default_factory=list)
    generator_cpu_share: float = 0.0  # the busiest subscriber process, of one core
    server_sent: float | None = None  # packets the server counted out over the window (ours)

    @property
    def verdict(self) -> str:
        """Empty when the row measures the server; else why the load generator cannot vouch for it."""
        if not self.packets:
            return "nothing arrived: the publisher is not flowing"
        if self.ready < self.subscribers:
            return f"only {self.ready} of {self.subscribers} subscribers got video"
        if self.generator_cpu_share > GENERATOR_LIMIT:
            return f"a subscriber process used {self.generator_cpu_share:.0%} of a core: the generator is the limit"
        if self.server_sent is not None and self.packets < (1 - MAX_LOSS) * self.server_sent:
            return f"subscribers received {self.packets:.0f} of the {self.server_sent:.0f} packets the server sent"
        return ""

    @property
    def overload(self) -> str:
        """With the generator keeping up: how the server itself fell short (loss, frame rate), if it did."""
        if self.loss > MAX_LOSS:
            return f"{self.loss:.1%} of packets lost"
        if min(self.fps, default=0.0) < MIN_FPS:
            return f"a subscriber saw {min(self.fps):.1f} fps of the publisher's {FPS}"
        return ""

    @property
    def packets(self) -> float:
        return sum(r["video_packets"] + r["audio_packets"] for r in self.reports)

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.duration_s

    @property
    def cpu_per_subscriber_minute(self) -> float:
        return self.cpu_s / (self.subscribers * self.duration_s / 60)

    @property
    def us_per_packet(self) -> float:
        return self.cpu_s / self.packets * 1e6 if self.packets else float("inf")

    @property
    def fps(self) -> list[float]:
        return [r["frames"] / self.duration_s for r in self.reports]

    @property
    def loss(self) -> float:
        expected = sum(r["expected"] for r in self.reports)
        return sum(r["lost"] for r in self.reports) / expected if expected else 1.0

    @property
    def freezes(self) -> int:
        return int(sum(r["freezes"] for r in self.reports))

    @property
    def longest_gap_s(self) -> float:
        return max((r["longest_gap_s"] for r in self.reports), default=0.0)


async def run_target(
    start: Callable[[Path], Target],
    publish: Callable[[Target], Awaitable[Any]],
    subscribers: int,
    duration: float,
    workers: int,
    rss_every: float = 60.0,
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        target = start(Path(tmp))
        context = multiprocessing.get_context("spawn")
        processes: list[Any] = []
        pipes: list[Connection] = []
        publisher = None
        try:
            publisher = await publish(target)
            await asyncio.sleep(1.0)
            rss_before = rss_bytes(target.pid)
            shares = [list(range(subscribers))[i::workers] for i in range(workers)]
            for i, share in enumerate(s for s in shares if s):
                parent, child = context.Pipe()
                tokens = [target.token("student", f"s{i}-{j}") for j in share]
                process = context.Process(
                    target=subscriber_worker, args=(target.protocol, target.url, tokens, child), daemon=True
                )
                process.start()
                processes.append(process)
                pipes.append(parent)
            loop = asyncio.get_running_loop()
            ready = sum([(await loop.run_in_executor(None, p.recv))[1] for p in pipes])
            await asyncio.sleep(2.0)  # settle: keyframes delivered, bandwidth estimates done
            rss_after = rss_bytes(target.pid)
            for pipe in pipes:
                pipe.send("measure")
            cpu0, t0, sent0 = cpu_seconds(target.pid), time.monotonic(), packets_sent(target)
            while (left := t0 + duration - time.monotonic()) > 0:  # memory over the lesson, for leaks
                await asyncio.sleep(min(left, rss_every))
                elapsed = time.monotonic() - t0
                print(
                    f"    {target.name}: {elapsed:6.0f} s, server RSS {rss_bytes(target.pid) / 2**20:7.1f} MB",
                    flush=True,
                )
            cpu1, t1, sent1 = cpu_seconds(target.pid), time.monotonic(), packets_sent(target)
            for pipe in pipes:
                pipe.send("report")
            reports: list[dict[str, float]] = []
            generator = 0.0
            for pipe in pipes:
                _, summaries, cpu_share = await loop.run_in_executor(None, pipe.recv)
                reports += summaries
                generator = max(generator, cpu_share)
            for pipe in pipes:
                pipe.send("stop")
            for process in processes:
                await loop.run_in_executor(None, process.join, 20)
            user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            return Result(
                target.name,
                subscribers,
                ready,
                t1 - t0,
                user + system,
                system / (user + system) if user + system else 0.0,
                (rss_after - rss_before) / subscribers,
                reports,
                generator,
                sent1 - sent0 if sent0 is not None and sent1 is not None else None,
            )
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
            if publisher is not None:
                await publisher.close()
            target.stop()


async def publish_ours(target: Target) -> Any:
    from .client import SignalingClient, publish

    client = await SignalingClient.connect(target.url)
    await client.join(ROOM, target.token("teacher", "teacher"))
    tracks = ClipTrack("audio", cached_clip("audio")), ClipTrack("video", cached_clip("video"))
    pc = await publish(client, *tracks, video_codec="H264")
    return _Closing(pc, client)


@dataclass
class _Closing:
    pc: Any
    client: Any

    async def close(self) -> None:
        await self.pc.close()
        await self.client.close()


def print_table(results: list[Result]) -> None:
    header = (
        f"{'target':<22}{'subs':>5}{'ready':>6}{'CPU-s/sub-min':>15}{'us/packet':>11}{'packets/s':>11}"
        f"{'kernel':>8}{'fps min/mean':>14}{'loss':>8}{'freezes':>9}{'gap max':>9}{'MB/sub':>8}{'gen':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        fps = r.fps or [0.0]
        print(
            f"{r.target:<22}{r.subscribers:>5}{r.ready:>6}{r.cpu_per_subscriber_minute:>15.4f}"
            f"{r.us_per_packet:>11.1f}{r.packets_per_s:>11.0f}{r.system_share:>8.0%}"
            f"{min(fps):>7.1f}/{sum(fps) / len(fps):<6.1f}"
            f"{r.loss:>8.2%}{r.freezes:>9}{r.longest_gap_s:>8.2f}s{r.rss_per_subscriber / 2**20:>8.2f}"
            f"{r.generator_cpu_share:>6.0%}"
        )
    print()
    for r in results:
        if r.verdict:
            print(f"NOT A RESULT: {r.target}: {r.verdict}")
        elif r.overload:
            print(f"OVERLOADED: {r.target}: {r.overload} (the generator kept up: the server could not)")
    valid = [r for r in results if not r.verdict and not r.overload]  # ratios only between clean rows
    ours = [r for r in valid if r.target.startswith("ours")]
    for mine in ours:
        for other in (r for r in valid if not r.target.startswith("ours")):  # both Janus configurations
            ratio = mine.cpu_per_subscriber_minute / other.cpu_per_subscriber_minute
            print(f"CPU per subscriber-minute: {mine.target} / {other.target} = {ratio:.3f}")
    if len(ours) == 2:
        ratio = ours[0].cpu_per_subscriber_minute / ours[1].cpu_per_subscriber_minute
        print(f"CPU per subscriber-minute: {ours[0].target} / {ours[1].target} = {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100, help="subscribers for ours and Janus")
    parser.add_argument("--relay-subscribers", type=int, default=4, help="subscribers for the MediaRelay path")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per target")
    parser.add_argument("--workers", type=int, default=2, help="subscriber processes")
    parser.add_argument(
        "--targets", default="ours,ours-python,relay,janus", help="comma-separated: ours, ours-python, relay, janus"
    )
    parser.add_argument("--rss-every", type=float, default=60.0, help="print the server's memory this often (s)")
    args = parser.parse_args()

    cached_clip("video"), cached_clip("audio")  # encode before anything is measured
    plans: dict[str, tuple[Callable[[Path], Target], Callable[[Target], Awaitable[Any]], int]] = {
        "ours": (start_ours, publish_ours, args.subscribers),
        "ours-python": (start_ours_python, publish_ours, args.subscribers),
        "relay": (start_relay, publish_ours, args.relay_subscribers),
    }
    results: list[Result] = []
    for name in args.targets.split(","):
        if name == "janus":
            from .baselines import janus

            results += janus.run(args.subscribers, args.duration, args.workers)
            continue
        start, publish, count = plans[name]
        print(f"... {name}: {count} subscribers, {args.duration:.0f} s", flush=True)
        results.append(asyncio.run(run_target(start, publish, count, args.duration, args.workers, args.rss_every)))
    print()
    print_table(results)


if __name__ == "__main__":
    main()
