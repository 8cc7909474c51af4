"""A synthetic lesson stream, encoded once and replayed: publishers that cost almost no CPU.

The stream matches the figures the fan-out targets are quoted against: H.264 (or VP8) at about
640x360, 15 fps, ~1.1 Mbit/s, plus Opus in 20 ms packets; about 164 RTP packets a second.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

WIDTH, HEIGHT, FPS = 640, 360, 15
VIDEO_BITRATE = 1_100_000
CLIP_SECONDS = 10
GOP_SECONDS = 3


@dataclass(frozen=True)
class EncodedClip:
    packets: list[tuple[bytes, int]]  # data, pts in time_base units
    time_base: fractions.Fraction
    duration: int  # in time_base units


@dataclass(frozen=True)
class Shape:
    """A clip's picture size, bitrate and keyframe spacing."""

    width: int = WIDTH
    height: int = HEIGHT
    bitrate: int = VIDEO_BITRATE
    gop_s: int = GOP_SECONDS
    noise: int = 48  # grain on the picture: the encoder spends its bitrate on it


# The camera's low layer as the teacher page sends it (half size, ~150 kbit/s), keyframes every second.
LOW_LAYER = Shape(WIDTH // 2, HEIGHT // 2, 150_000, 1, noise=4)


def _frame(index: int, rng: np.random.Generator, width: int, height: int, noise: int) -> np.ndarray:
    """Moving texture with some noise: enough detail that the encoder spends its bitrate."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (x + index * 4) % 256
    image[..., 1] = (y * 2 + index * 3) % 256
    image[..., 2] = ((x // 16 + y // 16 + index) % 2) * 200
    return image + rng.integers(0, noise, (height, width, 3), dtype=np.uint8)  # wraps: fine for texture


def encode_video(codec: str = "h264", shape: Shape = Shape()) -> EncodedClip:
    name = {"h264": "libx264", "vp8": "libvpx"}[codec]
    encoder = av.CodecContext.create(name, "w")
    encoder.width, encoder.height = shape.width, shape.height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.bit_rate = shape.bitrate
    encoder.gop_size = FPS * shape.gop_s
    encoder.max_b_frames = 0
    if codec == "h264":
        encoder.profile = "Baseline"
        encoder.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "level": "31",
            "nal-hrd": "cbr",
            "maxrate": str(shape.bitrate),
            "bufsize": str(shape.bitrate // 2),
        }
    else:
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(7)
    packets: list[tuple[bytes, int]] = []
    frames = [
        av.VideoFrame.from_ndarray(_frame(i, rng, shape.width, shape.height, shape.noise), format="rgb24")
        for i in range(FPS * CLIP_SECONDS)
    ]
    for i, frame in enumerate(frames):
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = i, encoder.time_base
        packets += [(bytes(p), i) for p in encoder.encode(frame)]
    packets += [(bytes(p), int(p.pts or 0)) for p in encoder.encode(None)]
    return EncodedClip(packets, encoder.time_base, FPS * CLIP_SECONDS)


def encode_audio() -> EncodedClip:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 32000
    encoder.time_base = fractions.Fraction(1, 48000)
    samples = 960
    packets: list[tuple[bytes, int]] = []
    total = 48000 * CLIP_SECONDS
    for start in range(0, total, samples):
        t = (np.arange(samples) + start) / 48000
        tone = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, encoder.time_base
        packets += [(bytes(p), int(p.pts if p.pts is not None else start)) for p in encoder.encode(frame)]
    return EncodedClip(packets, encoder.time_base, total)


def cached_clip(kind: str, codec: str = "h264", directory: Path | None = None, shape: Shape = Shape()) -> EncodedClip:
    """Encode once per machine; the clip is the same every run (fixed seed)."""
    import pickle

    directory = directory or Path.home() / ".cache" / "skyclass"
    size = f"{shape.width}x{shape.height}-{FPS}" + (
        "" if shape == Shape() else f"-{shape.bitrate}-{shape.gop_s}-{shape.noise}"
    )
    path = directory / f"clip-{kind}-{codec}-{size}.pickle"
    if path.exists():
        clip: EncodedClip = pickle.loads(path.read_bytes())
        return clip
    clip = encode_audio() if kind == "audio" else encode_video(codec, shape)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(clip))
    return clip


class ClipTrack(MediaStreamTrack):
    """Replays an encoded clip in real time, looping; aiortc's sender only packetizes it."""

    def __init__(self, kind: str, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        self._index = 0
        self._loop = 0
        self._started: float | None = None

    async def recv(self) -> av.Packet:
        data, pts = self._clip.packets[self._index]
        pts += self._loop * self._clip.duration
        self._index += 1
        if self._index == len(self._clip.packets):
            self._index, self._loop = 0, self._loop + 1
        if self._started is None:
            self._started = time.monotonic()
        wait = self._started + float(pts * self._clip.time_base) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, self._clip.time_base
        return packet
