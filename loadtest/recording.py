"""What recording costs: CPU-seconds per lesson-minute of our recorder against transcoding.

    python -m loadtest.recording --minutes 2

Feeds the recorder the RTP packets of a 640x360 15 fps ~1.1 Mbit/s VP8 + Opus lesson as fast as
it takes them (the same path the SFU's packets take), then does what a transcoding recorder would
(aiortc's MediaRecorder decodes and re-encodes) with the same lesson, and prints both and the ratio.
"""

from __future__ import annotations

import argparse
import fractions
import tempfile
import time
from pathlib import Path

import av

from server.media.recorder import Recorder
from server.media.rtp import vp8_keyframe_start

from .media import CLIP_SECONDS, FPS, cached_clip

MTU_PAYLOAD = 1100


def vp8_packets(frame: bytes) -> list[bytes]:
    """RTP payloads for one VP8 frame: a one-byte descriptor (S on the first), then the data."""
    chunks = [frame[i : i + MTU_PAYLOAD] for i in range(0, len(frame), MTU_PAYLOAD)]
    return [bytes([0x10 if i == 0 else 0x00]) + chunk for i, chunk in enumerate(chunks)]


def record(minutes: float, directory: Path) -> tuple[float, float]:
    """CPU seconds and lesson seconds for recording ``minutes`` of the clip."""
    video, audio = cached_clip("video", "vp8"), cached_clip("audio")
    loops = max(1, round(minutes * 60 / CLIP_SECONDS))
    recorder = Recorder(directory / "lesson.webm")
    tap_video, tap_audio = recorder.tap("video"), recorder.tap("audio")
    started = time.process_time()
    seq_v = seq_a = 0
    for loop in range(loops):
        events: list[tuple[float, str, bytes]] = [
            (float((pts + loop * video.duration) * video.time_base), "video", data) for data, pts in video.packets
        ]
        events += [
            (float((pts + loop * audio.duration) * audio.time_base), "audio", data) for data, pts in audio.packets
        ]
        for at, kind, data in sorted(events, key=lambda e: e[0]):
            if kind == "video":
                payloads = vp8_packets(data)
                for i, payload in enumerate(payloads):
                    tap_video(
                        seq_v & 0xFFFF, int(at * 90000), i == len(payloads) - 1, payload, vp8_keyframe_start(payload)
                    )
                    seq_v += 1
            else:
                tap_audio(seq_a & 0xFFFF, int(at * 48000), True, data, True)
                seq_a += 1
        while recorder._queue.qsize() > 1000:  # stay under the queue limit, as real time would
            time.sleep(0.001)
    info = recorder.stop()
    assert info.error is None and info.dropped_packets == 0, info
    return time.process_time() - started, loops * CLIP_SECONDS


def transcode(minutes: float, directory: Path) -> tuple[float, float]:
    """The same lesson decoded and encoded again, as a transcoding recorder does."""
    video = cached_clip("video", "vp8")
    loops = max(1, round(minutes * 60 / CLIP_SECONDS))
    decoder = av.CodecContext.create("libvpx", "r")
    started = time.process_time()
    with av.open(str(directory / "transcoded.webm"), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        index = 0
        for _ in range(loops):
            for data, _pts in video.packets:
                for frame in decoder.decode(av.Packet(data)):
                    frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
                    index += 1
                    container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return time.process_time() - started, loops * CLIP_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="lesson minutes to record")
    args = parser.parse_args()
    cached_clip("video", "vp8"), cached_clip("audio")
    with tempfile.TemporaryDirectory() as tmp:
        ours_cpu, seconds = record(args.minutes, Path(tmp))
        base_cpu, _ = transcode(args.minutes, Path(tmp))
    per_minute = ours_cpu / (seconds / 60)
    base_per_minute = base_cpu / (seconds / 60)
    print(f"lesson recorded: {seconds:.0f} s of 640x360 15 fps VP8 ~1.1 Mbit/s + Opus")
    print(f"ours (remux, no decoding):      {per_minute:7.3f} CPU-s per lesson-minute")
    print(f"transcoding (decode + encode):  {base_per_minute:7.3f} CPU-s per lesson-minute (video only)")
    print(f"ratio transcoding / ours:       {base_per_minute / per_minute:7.1f}x")


if __name__ == "__main__":
    main()
