"""A demo recorded lesson, made once with PyAV: a moving test pattern with a tone, VP8 + Opus WebM.

It lets a new server show recorded lessons and the live fallback before anything was recorded.
"""

from __future__ import annotations

import fractions
import logging
import os
import time
from pathlib import Path

import av
import numpy as np

from .catalog import Catalog, Recording, Status

log = logging.getLogger(__name__)

DEMO_ID = "demo"
WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 15, 20


def _picture(index: int) -> np.ndarray:
    """Colour bars, a sweeping bar and a seconds counter drawn as blocks: plainly a test signal."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    width = WIDTH // len(bars)
    for i, colour in enumerate(bars):
        image[: HEIGHT * 2 // 3, i * width : (i + 1) * width] = colour
    x = (index * 6) % (WIDTH - 40)
    image[HEIGHT * 2 // 3 :, x : x + 40] = (255, 255, 255)
    second = index // FPS
    for bit in range(5):  # the second, in binary, as five squares under the bars
        if second >> bit & 1:
            image[HEIGHT - 40 : HEIGHT - 10, 20 + bit * 40 : 50 + bit * 40] = (255, 200, 0)
    return image


def make_demo_lesson(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # processes sharing the directory
    with av.open(str(partial), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 600_000
        video.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = container.add_stream("libopus", rate=48000, layout="mono")
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(_picture(index), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = 960
        for start in range(0, 48000 * SECONDS, samples):
            t = (np.arange(samples) + start) / 48000
            beep = (t % 1.0) < 0.15  # a beep each second over a quiet tone
            wave = np.sin(2 * np.pi * 440 * t) * np.where(beep, 9000, 1500)
            sound = av.AudioFrame.from_ndarray(wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 48000, start, fractions.Fraction(1, 48000)
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    partial.replace(path)


def ensure_demo_lesson(catalog: Catalog) -> Recording:
    """The demo lesson in the catalog, made on first use."""
    existing = catalog.get(DEMO_ID)
    if existing is not None and catalog.media_path(existing).exists():
        return existing
    started = time.monotonic()
    recording = Recording(
        DEMO_ID,
        "demo",
        "示范录播课 Demo recorded lesson",
        "Sky Classroom",
        time.time(),
        f"{DEMO_ID}.webm",
        Status.COMPLETE,
        float(SECONDS),
        FPS * SECONDS,
        0,
    )
    make_demo_lesson(catalog.media_path(recording))
    catalog.add(recording)
    log.info("made the demo lesson in %.1f s", time.monotonic() - started)
    return recording
