"""Test peers: synthetic tracks, frame comparison, and taps that watch RTP and RTCP."""

from __future__ import annotations

import asyncio
import fractions
import functools
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack

from loadtest.client import SignalingClient, publish, subscribe

WIDTH, HEIGHT = 320, 240


COLOURS = [((200, 40, 40), (40, 40, 200)), ((40, 180, 40), (200, 200, 200))]


PERIOD = (WIDTH - 32) // 8  # the bar returns to the left edge every PERIOD frames


@functools.cache
def pattern(index: int, variant: int = 0) -> np.ndarray:
    """A frame a codec keeps well and that tells frames apart: a bar moving over two colours."""
    left, right = COLOURS[variant]
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:, : WIDTH // 2] = left
    image[:, WIDTH // 2 :] = right
    x = (index % PERIOD) * 8
    image[:, x : x + 32] = (240, 240, 60)
    image.flags.writeable = False
    return image


class PatternTrack(VideoStreamTrack):
    """Sends ``pattern(i)`` for frame i and remembers what it sent."""

    def __init__(self, variant: int = 0) -> None:
        super().__init__()
        self.sent = 0
        self.variant = variant

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(pattern(self.sent, self.variant), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """20 ms of a 440 Hz tone per call, as a microphone would give."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self._samples:
            await asyncio.sleep(0.02)
        t = (np.arange(960) + self._samples) / 48000
        data = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._samples, fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def best_match(received: np.ndarray, track: PatternTrack) -> tuple[int, float]:
    """Which of the frames ``track`` sent ``received`` is, and how closely (PSNR in dB)."""
    recent = range(max(0, track.sent - PERIOD), track.sent)
    sample = received[::4, ::4]  # every 16th pixel tells these frames apart as well
    scores = [(psnr(sample, pattern(i % PERIOD, track.variant)[::4, ::4]), i) for i in recent] or [(0.0, -1)]
    score, index = max(scores)
    return index, score


class RtpLog:
    """Records the RTP a test peer's receiver gets (before aiortc's own handling, which still runs).

    ``drop`` may name sequence numbers to lose once, as a lossy network would.
    """

    def __init__(self, receiver: Any, drop: set[int] | None = None) -> None:
        self.packets: list[tuple[int, int, int, int, bytes]] = []  # ssrc, pt, seq, ts, payload head
        self._drop = set(drop or ())
        self._dropped: set[int] = set()
        handle = receiver._handle_rtp_packet

        async def recording(packet: Any, arrival_time_ms: int) -> None:
            self.packets.append(
                (packet.ssrc, packet.payload_type, packet.sequence_number, packet.timestamp, packet.payload[:16])
            )
            if packet.sequence_number in self._drop and packet.sequence_number not in self._dropped:
                self._dropped.add(packet.sequence_number)
                return
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = recording

    def media(self, payload_type: int) -> list[tuple[int, int, int, int, bytes]]:
        return [p for p in self.packets if p[1] == payload_type]


class RtcpLog:
    """Counts the feedback a test publisher's sender receives."""

    def __init__(self, sender: Any) -> None:
        from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

        self.keyframe_requests = 0
        self.nacks = 0
        handle = sender._handle_rtcp_packet

        async def counting(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframe_requests += 1
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacks += 1
            await handle(packet)

        sender._handle_rtcp_packet = counting


def video_receiver(pc: RTCPeerConnection) -> Any:
    return next(t.receiver for t in pc.getTransceivers() if t.kind == "video")


def video_sender(pc: RTCPeerConnection) -> Any:
    return next(t.sender for t in pc.getTransceivers() if t.kind == "video")


def video_payload_type(pc: RTCPeerConnection) -> int:
    """The media (not RTX) payload type negotiated for video."""
    transceiver = next(t for t in pc.getTransceivers() if t.kind == "video")
    return int(transceiver._codecs[0].payloadType)


__all__ = ["SignalingClient", "publish", "subscribe"]


async def error_after(client: SignalingClient, message: dict[str, Any], field: str = "code") -> str | None:
    """The error's ``field`` (its code, or its message) that ``message`` earned, or None; a ping
    behind it marks where its answer ends."""
    client.inbox.clear()
    await client.send(message)
    await client.send({"type": "ping"})
    await client.expect("pong")
    return next((m[field] for m in client.inbox if m["type"] == "error"), None)
