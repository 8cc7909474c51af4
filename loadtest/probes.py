"""Media probes: real WebRTC subscribers that measure what a learner receives, and the teachers
that publish the lessons they watch.

A probe joins like a pupil's page, answers the server's offer, and decodes until the first video
frame (time from join to first decoded frame); after that it counts RTP packets without decoding
(frames by marker bit, freezes, loss), so a few dozen fit in a process. Publishers replay a clip
encoded once (``media.py``); with ``--teacher-drops`` they lose their signaling connection every so
often and come back, as a teacher on a bad link does (the broadcast should go on).

    python -m loadtest.probes --url http://127.0.0.1:8080 --secret S --publish flag-raising \\
        --probe flag-raising:5 --duration 120 --ramp 60 --out results/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from server.tokens import Role, issue_token

from .client import SignalingClient, publish, subscribe
from .media import ClipTrack, cached_clip
from .probe import RtpProbe

FIRST_FRAME_TIMEOUT_S = 30.0


@dataclass
class ProbeResult:
    room: str
    started_s: float  # after the run began
    joined_ms: float | None = None  # connect + join until `joined`
    first_frame_ms: float | None = None  # join sent until the first decoded video frame
    seconds: float = 0.0  # counted from the first frame
    fps: float = 0.0
    freezes: int = 0  # gaps over 0.5 s between frames
    longest_gap_s: float = 0.0
    loss: float = 0.0  # lost / expected RTP packets, audio and video
    audio_packets: int = 0
    error: str = ""


async def run_probe(ws_url: str, secret: str, room: str, started_s: float, until: float) -> ProbeResult:
    result = ProbeResult(room, round(started_s, 2))
    token = issue_token(secret, room=room, role=Role.STUDENT, name=f"probe-{random.getrandbits(24):x}", ttl_s=6 * 3600)
    client: SignalingClient | None = None
    pc: Any = None
    try:
        began = time.monotonic()
        client = await SignalingClient.connect(ws_url)
        await client.join(room, token, delivery="webrtc")
        result.joined_ms = round((time.monotonic() - began) * 1000, 1)
        pc, tracks = await subscribe(client)
        probe = RtpProbe(pc, decode=True)
        await asyncio.wait_for(tracks["video"].recv(), FIRST_FRAME_TIMEOUT_S)
        result.first_frame_ms = round((time.monotonic() - began) * 1000, 1)
        probe.decode = False
        probe.reset_window()
        counted_from = time.monotonic()
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        video, audio = probe.streams["video"], probe.streams.get("audio")
        result.seconds = round(time.monotonic() - counted_from, 1)
        result.fps = round(video.frames / result.seconds, 2) if result.seconds else 0.0
        result.freezes, result.longest_gap_s = video.freezes, round(video.longest_gap_s, 3)
        expected = video.expected + (audio.expected if audio else 0)
        lost = video.lost + (audio.lost if audio else 0)
        result.loss = round(lost / expected, 4) if expected else 0.0
        result.audio_packets = audio.packets if audio else 0
    except Exception as exc:  # a probe's failure is a result, not a crash of the fleet
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if pc is not None:
            await pc.close()
        if client is not None:
            await client.close()
    return result


class Teacher:
    """Publishes the clip in ``room``; optionally drops its signaling connection now and then."""

    def __init__(self, ws_url: str, secret: str, room: str) -> None:
        self.ws_url, self.room = ws_url, room
        self.token = issue_token(secret, room=room, role=Role.TEACHER, name=f"teacher of {room}", ttl_s=6 * 3600)
        self.drops = self.resumed = 0
        self.client: SignalingClient | None = None
        self.pc: Any = None

    async def start(self) -> None:
        self.client = await SignalingClient.connect(self.ws_url)
        await self.client.join(self.room, self.token)
        tracks = ClipTrack("audio", cached_clip("audio")), ClipTrack("video", cached_clip("video", "vp8"))
        self.pc = await publish(self.client, *tracks)

    async def drop_every(self, seconds: float, until: float) -> None:
        while time.monotonic() + seconds < until:
            await asyncio.sleep(seconds * random.uniform(0.7, 1.3))
            assert self.client is not None
            self.client.ws.transport.abort()  # the link drops: no goodbye, the server must notice
            with contextlib.suppress(Exception):
                await self.client.close()
            self.drops += 1
            await asyncio.sleep(1.0)
            self.client = await SignalingClient.connect(self.ws_url)
            joined = await self.client.join(self.room, self.token)
            self.resumed += bool(joined["resumed"] and joined["live"])

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.client is not None:
            await self.client.close()


async def fleet(args: argparse.Namespace) -> list[ProbeResult]:
    from server.media.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    ws_url = args.ws_url or args.url.replace("http", "ws", 1) + "/ws"
    began = time.monotonic()
    until = began + args.duration
    teachers = [Teacher(ws_url, args.secret, room) for room in args.publish]
    for teacher in teachers:
        await teacher.start()
    droppers = [asyncio.create_task(t.drop_every(args.teacher_drops, until)) for t in teachers if args.teacher_drops]
    plan = [room for spec in args.probe for room in [spec.rsplit(":", 1)[0]] * int(spec.rsplit(":", 1)[1])]
    random.shuffle(plan)

    async def later(index: int, room: str) -> ProbeResult:
        start = args.ramp * (index + 0.5) / max(1, len(plan))  # spread over the ramp, when learners arrive
        await asyncio.sleep(start)
        return await run_probe(ws_url, args.secret, room, start, until)

    results = await asyncio.gather(*(later(i, room) for i, room in enumerate(plan)))
    await asyncio.gather(*droppers, return_exceptions=True)
    summary = {"teacher_drops": sum(t.drops for t in teachers), "teacher_resumed": sum(t.resumed for t in teachers)}
    for teacher in teachers:
        await teacher.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "probes.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(ProbeResult("", 0))))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    (out / "teachers.json").write_text(json.dumps(summary))
    return list(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ws-url", help="the signaling websocket (default: /ws on --url)")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--publish", action="append", default=[], help="a room with a teacher publishing")
    parser.add_argument("--probe", action="append", default=[], help="ROOM:COUNT probes in a room")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--ramp", type=float, default=30, help="probes join spread over this many seconds")
    parser.add_argument("--teacher-drops", type=float, default=0, help="teachers drop every ~S seconds")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    results = asyncio.run(fleet(args))
    print(f"probes: {sum(not r.error for r in results)}/{len(results)} received video")


if __name__ == "__main__":
    main()
