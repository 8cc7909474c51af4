"""A student whose link narrows to 300 kbit/s mid-lesson: the server moves them to the camera's low
layer within 5 s (the teacher sends the camera twice: 640x360 at 1.1 Mbit/s and 320x180 at
~170 kbit/s), the low layer keeps coming, and the sound never stops. The cap is a token-bucket
queue in the userspace relay in front of the student (``tests/impairment.py``).

What reaches the student is read at the RTP level (the picture size from each keyframe's VP8
header): aiortc's own jitter buffer holds an incomplete frame until 128 packets have passed, which
at the low layer's 20 packets a second would measure aiortc, not the server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from loadtest.media import LOW_LAYER, ClipTrack, cached_clip
from server.media.ice import use_host_addresses
from server.media.recorder import vp8_frame_size, vp8_payload
from server.media.rtp import vp8_keyframe_start

from .conftest import ServerProcess
from .impairment import subscribe_through_relay
from .peers import SignalingClient, publish

UNCAPPED_S = 8.0
CAPPED_S = 60.0
CAP_BPS = 300_000


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


class Arrivals:
    """When each RTP packet reached a receiver, and the picture size of each keyframe."""

    def __init__(self, receiver: Any) -> None:
        self.times: list[float] = []
        self.keyframes: list[tuple[float, tuple[int, int] | None]] = []
        handle = receiver._handle_rtp_packet

        async def recording(packet: Any, arrival_time_ms: int) -> None:
            now = time.monotonic()
            self.times.append(now)
            if packet.payload_type != 98 and vp8_keyframe_start(packet.payload):  # not RTX
                self.keyframes.append((now, vp8_frame_size(vp8_payload(packet.payload))))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = recording

    def longest_gap(self, since: float) -> float:
        times = [t for t in self.times if t >= since]
        return max(b - a for a, b in zip(times, times[1:]))


async def test_a_300_kbit_link_gets_the_low_layer_within_5_s(server: ServerProcess) -> None:
    room = "narrow-link"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    layers = [
        ClipTrack("audio", cached_clip("audio")),
        ClipTrack("video", cached_clip("video", "vp8")),
        ClipTrack("video", cached_clip("video", "vp8", shape=LOW_LAYER)),
    ]
    publisher = await publish(teacher, *layers, video_codec="VP8", names=["audio", "video", "video_low"])
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "on a phone"))
    arrivals: dict[str, Arrivals] = {}

    def watch(transceivers: dict[str, Any]) -> None:
        arrivals.update({slot: Arrivals(transceivers[slot].receiver) for slot in ("video", "audio")})

    pc, _, path = await subscribe_through_relay(student, loss=0.0, one_way_delay_s=0.02, before_answer=watch)
    video, audio = arrivals["video"], arrivals["audio"]

    quality: list[tuple[float, dict[str, Any]]] = []

    async def watch_quality() -> None:
        while True:
            message = await student.expect("quality", timeout=CAPPED_S + UNCAPPED_S + 30)
            quality.append((time.monotonic(), message))

    watcher = asyncio.ensure_future(watch_quality())
    try:
        async with asyncio.timeout(20):
            while not video.keyframes:
                await asyncio.sleep(0.1)
        await asyncio.sleep(UNCAPPED_S)
        settled = [q for _, q in quality]
        path.rate_bps = CAP_BPS
        capped_at = time.monotonic()
        await asyncio.sleep(CAPPED_S)
    finally:
        watcher.cancel()

    after = [(t - capped_at, q) for t, q in quality if t >= capped_at]
    switched_s, first = after[0]
    low_from = next(t for t, size in video.keyframes if t >= capped_at and size == (320, 180)) - capped_at
    low_keyframes = sum(1 for t, size in video.keyframes if t >= capped_at and size == (320, 180))
    audio_gap = audio.longest_gap(capped_at)
    changes = ", ".join(f"{t:.1f} s {q['layer']} ({q['reason']})" for t, q in after)
    print(
        f"\n{CAP_BPS // 1000} kbit/s from 0 s: {changes}; the low layer's first keyframe reached the student "
        f"{low_from:.1f} s after the cap, {low_keyframes} of its keyframes in {CAPPED_S:.0f} s; longest gap between "
        f"audio packets {audio_gap:.2f} s; the cap dropped {path.capped} datagrams"
    )
    assert all(q["layer"] == "high" for q in settled), settled  # a clear link keeps (or regains) the full picture
    assert first["layer"] == "low" and first["reason"].startswith("loss")
    assert switched_s < 5.0 and low_from < 5.0
    assert low_keyframes > CAPPED_S / 2  # the low layer keeps coming (a keyframe a second)
    assert audio_gap < 1.0
    for closing in (pc, publisher):
        await closing.close()
    for client in (teacher, student):
        await client.close()
    path.close()
