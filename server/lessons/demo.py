"""A demo recorded lesson, made once with PyAV: a moving test pattern with a tone, VP8 + Opus WebM.

It lets a new server show recorded lessons and the live fallback before anything was recorded.
"""

from __future__ import annotations

import fractions
import logging
import math
import os
import time
from array import array
from pathlib import Path

import av

from .catalog import Catalog, Recording, Review, Status

log = logging.getLogger(__name__)

DEMO_ID = "demo"
WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 15, 20
RATE, SAMPLES = 48000, 960  # sound: 48 kHz, 20 ms frames

BLACK, WHITE, ORANGE = b"\0\0\0", b"\xff\xff\xff", bytes((255, 200, 0))
BARS = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
BAR_WIDTH = WIDTH // len(BARS)
TOP = HEIGHT * 2 // 3  # colour bars above, the sweeping bar and the counter below
COUNTER_TOP, COUNTER_BOTTOM = HEIGHT - 40, HEIGHT - 10


def _picture(index: int) -> bytes:
    """Colour bars, a sweeping bar and a seconds counter drawn as blocks: plainly a test signal.
    RGB24, row after row, built from a few distinct rows (no numpy: it is not a runtime dependency)."""
    bars = b"".join(bytes(colour) * BAR_WIDTH for colour in BARS)
    bars += BLACK * (WIDTH - len(BARS) * BAR_WIDTH)
    below = bytearray(BLACK * WIDTH)
    x = (index * 6) % (WIDTH - 40)
    below[x * 3 : (x + 40) * 3] = WHITE * 40
    counter = bytearray(below)
    second = index // FPS
    for bit in range(5):  # the second, in binary, as five squares under the bars
        if second >> bit & 1:
            counter[(20 + bit * 40) * 3 : (50 + bit * 40) * 3] = ORANGE * 30
    rows = (
        bars * TOP
        + below * (COUNTER_TOP - TOP)
        + counter * (COUNTER_BOTTOM - COUNTER_TOP)
        + below * (HEIGHT - COUNTER_BOTTOM)
    )
    return bytes(rows)


def _video_frame(rgb: bytes) -> av.VideoFrame:
    frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
    plane, row = frame.planes[0], WIDTH * 3
    if plane.line_size == row:
        plane.update(rgb)
    else:  # rows padded for alignment
        padding = bytes(plane.line_size - row)
        plane.update(b"".join(rgb[y * row : (y + 1) * row] + padding for y in range(HEIGHT)))
    return frame.reformat(format="yuv420p")


def _second_of_sound() -> bytes:
    """One second of s16 mono: a 440 Hz tone, loud for the first 0.15 s (a beep), quiet after. A
    whole number of cycles a second, so every second is the same and is made once."""
    beep = int(RATE * 0.15)
    return array(
        "h",
        (int(math.sin(2 * math.pi * 440 * n / RATE) * (9000 if n < beep else 1500)) for n in range(RATE)),
    ).tobytes()


def make_demo_lesson(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # processes sharing the directory
    with av.open(str(partial), "w", format="webm") as container:
        video = container.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 600_000
        video.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = container.add_stream("libopus", rate=RATE, layout="mono")
        for index in range(FPS * SECONDS):
            frame = _video_frame(_picture(index))
            frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        second, width = _second_of_sound(), 2  # bytes a sample
        for start in range(0, RATE * SECONDS, SAMPLES):
            sound = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
            offset = start % RATE * width
            sound.planes[0].update(second[offset : offset + SAMPLES * width])
            sound.sample_rate, sound.pts, sound.time_base = RATE, start, fractions.Fraction(1, RATE)
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    partial.replace(path)


def ensure_demo_lesson(catalog: Catalog) -> Recording:
    """The demo lesson in the catalog, made on first use."""
    existing = catalog.get(DEMO_ID)
    if existing is not None and catalog.media_path(existing).exists():
        if existing.review is not Review.APPROVED:  # made before the library reviewed lessons
            existing.source, existing.review, existing.grade, existing.subject = (
                "demo",
                Review.APPROVED,
                "初一",
                "示范课",
            )
            catalog.update(existing)
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
        source="demo",
        grade="初一",
        subject="示范课",
        review=Review.APPROVED,  # ours: every class may play it
    )
    make_demo_lesson(catalog.media_path(recording))
    catalog.add(recording)
    log.info("made the demo lesson in %.1f s", time.monotonic() - started)
    return recording
