"""Recording a publication with PyAV, from the packets the SFU already forwards: no decoding.

The forwarding path only appends each packet to a queue (``Recorder.tap``); a thread of its own
reassembles frames, stamps them and muxes them into WebM (VP8 + Opus). Clusters are closed every
second, so a file whose writer was killed still plays up to its last second.

Timing: each track's presentation times come from its RTP timestamps (smooth), placed on a common
clock by the arrival time of the track's first frame, so audio and video start together. The file
starts at the first video keyframe (a WebM must); audio before it is left out.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import av

from .rtp import vp8_keyframe_start

log = logging.getLogger(__name__)

QUEUE_LIMIT = 4096  # packets waiting for the writer (~15 s of a lesson); past it, packets are dropped
MS = fractions.Fraction(1, 1000)
AVFMT_FLAG_FLUSH_PACKETS = 0x0200  # libavformat: write each packet out as it is muxed

# (kind, sequence number, RTP timestamp, marker, payload, keyframe, arrival monotonic time)
QueuedPacket = tuple[str, int, int, bool, bytes, bool, float]
Tap = Callable[[int, int, bool, bytes, bool], None]


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 section 9.1)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


def vp8_payload(payload: bytes) -> bytes:
    """The VP8 data after the RTP payload descriptor (RFC 7741 section 4.2)."""
    offset = 1
    if payload[0] & 0x80:
        ext = payload[1]
        offset = 2
        if ext & 0x80:
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:
            offset += 1
        if ext & 0x30:
            offset += 1
    return payload[offset:]


@dataclass
class TrackClock:
    """RTP timestamps of one track -> seconds on the recording's clock."""

    clock_rate: int
    first_rtp: int | None = None
    offset_s: float = 0.0
    _last: int = 0
    _cycles: int = 0

    def seconds(self, rtp: int, arrival: float, start: float) -> float:
        if self.first_rtp is None:
            self.first_rtp, self._last = rtp, rtp
            self.offset_s = arrival - start
        if rtp < self._last and self._last - rtp > 0x80000000:
            self._cycles += 1 << 32  # wrapped
        self._last = rtp
        return self.offset_s + (rtp + self._cycles - self.first_rtp) / self.clock_rate


@dataclass
class FrameAssembler:
    """RTP packets -> whole frames (VP8 unless told how to unwrap payloads). A frame missing a
    packet is dropped, and so is every frame after it up to the next keyframe: none of them could
    be decoded."""

    depacketize: Callable[[bytes], bytes] = vp8_payload
    parts: list[bytes] = field(default_factory=list)
    timestamp: int | None = None
    keyframe: bool = False
    broken: bool = False
    next_seq: int | None = None
    need_keyframe: bool = True

    def push(self, seq: int, ts: int, marker: bool, payload: bytes, keyframe: bool) -> tuple[bytes, bool, int] | None:
        gap = self.next_seq is not None and seq != self.next_seq
        self.next_seq = (seq + 1) & 0xFFFF
        if ts != self.timestamp:
            if self.parts:  # the previous frame never saw its last packet
                self.need_keyframe = True
            self.parts, self.timestamp, self.keyframe = [], ts, keyframe
            self.broken = gap and not keyframe
        elif gap:
            self.broken = True
        self.parts.append(self.depacketize(payload))
        if not marker:
            return None
        frame, self.parts, self.timestamp = b"".join(self.parts), [], None
        if self.broken or (self.need_keyframe and not self.keyframe):
            self.need_keyframe = True
            return None
        self.need_keyframe = False
        return frame, self.keyframe, ts


@dataclass
class RecordingInfo:
    path: Path
    duration_s: float = 0.0
    video_frames: int = 0
    audio_frames: int = 0
    dropped_packets: int = 0
    error: str | None = None


class Writer(Protocol):
    """Turns the queued packets into a file; runs on the recorder's thread."""

    def run(self, packets: queue.SimpleQueue[QueuedPacket | None]) -> None: ...
    def close(self) -> None: ...


def play(
    packets: queue.SimpleQueue[QueuedPacket | None],
    assembler: FrameAssembler,
    video: Callable[[bytes, bool, int, float], None],
    audio: Callable[[bytes, int, float], None],
) -> None:
    """Hand a writer the queued packets until the recorder stops: whole video frames (data,
    keyframe, RTP timestamp, arrival) and each audio packet (payload, RTP timestamp, arrival)."""
    while (item := packets.get()) is not None:
        kind, seq, ts, marker, payload, keyframe, arrival = item
        if kind == "video":
            frame = assembler.push(seq, ts, marker, payload, keyframe)
            if frame is not None:
                video(*frame, arrival)
        else:
            audio(payload, ts, arrival)


class Recorder:
    """One publication to one file (WebM unless another writer is given), written by its own thread."""

    def __init__(
        self,
        path: Path,
        on_failed: Callable[[], object] = lambda: None,
        writer: Callable[[RecordingInfo], Writer] | None = None,
    ) -> None:
        self.info = RecordingInfo(path)
        self._on_failed = on_failed
        self._writer = writer or WebmWriter
        self.taps: list[Tap] = []
        self._queue: queue.SimpleQueue[QueuedPacket | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recorder {path.name}", daemon=True)
        self._thread.start()

    def tap(self, kind: str) -> Tap:
        """The function the forwarding path calls for each packet of a ``kind`` track."""
        put, size, info = self._queue.put, self._queue.qsize, self.info

        def enqueue(seq: int, ts: int, marker: bool, payload: bytes, keyframe: bool) -> None:
            if info.error is not None:  # the recording has failed; the lesson goes on without it
                return
            if size() > QUEUE_LIMIT:
                info.dropped_packets += 1
                return
            put((kind, seq, ts, marker, payload, keyframe, time.monotonic()))

        self.taps.append(enqueue)
        return enqueue

    def stop(self) -> RecordingInfo:
        """Finish the file (blocks until the writer is done: call it from an executor)."""
        self._queue.put(None)
        self._thread.join()
        return self.info

    def _run(self) -> None:
        writer = self._writer(self.info)
        try:
            writer.run(self._queue)
            writer.close()
        except Exception as exc:  # a full disk or a bad packet ends the recording, never the lesson
            log.exception("recording %s failed; the lesson goes on unrecorded", self.info.path)
            self.info.error = str(exc)
            self._on_failed()
            with contextlib.suppress(Exception):
                writer.close()  # what was written before still plays
            while self._queue.get() is not None:
                pass  # keep draining so the forwarding path never blocks


class WebmWriter:
    def __init__(self, info: RecordingInfo) -> None:
        self.info = info
        self.container: av.container.OutputContainer | None = None
        self.video: av.VideoStream | None = None
        self.audio: av.AudioStream | None = None
        self.file: BinaryIO | None = None
        self.assembler = FrameAssembler()
        self.clocks = {"video": TrackClock(90000), "audio": TrackClock(48000)}
        self.start = 0.0
        self.last_pts = {"video": -1, "audio": -1}

    def run(self, packets: queue.SimpleQueue[QueuedPacket | None]) -> None:
        play(packets, self.assembler, self._video, self._audio)

    def _audio(self, payload: bytes, ts: int, arrival: float) -> None:
        if self.container is not None:  # the file starts at the first keyframe
            self._mux("audio", payload, ts, arrival, keyframe=True)

    def close(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        finally:
            if self.file is not None:
                self.file.close()

    def _open(self, width: int, height: int, arrival: float) -> None:
        self.info.path.parent.mkdir(parents=True, exist_ok=True)
        # Our own unbuffered file: a failed write (a full disk) raises at the packet that failed,
        # where libavformat's own I/O would report it only when the file is closed.
        self.file = open(self.info.path, "wb", buffering=0)  # noqa: SIM115 (closed in run)
        # Clusters of at most a second: what a killed writer leaves behind still plays.
        container = av.open(self.file, "w", format="webm", options={"cluster_time_limit": "1000"})
        video = container.add_stream("libvpx", rate=30)  # the encoder is never fed: it only describes the track
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("libopus", rate=48000, layout="stereo")
        container.flags |= AVFMT_FLAG_FLUSH_PACKETS  # each packet reaches the disk at once
        self.container, self.video, self.audio = container, video, audio
        self.start = arrival

    def _video(self, frame: bytes, keyframe: bool, ts: int, arrival: float) -> None:
        if self.container is None:
            size = vp8_frame_size(frame) if keyframe else None
            if size is None:
                return
            self._open(*size, arrival)
        self._mux("video", frame, ts, arrival, keyframe)
        self.info.video_frames += 1

    def _mux(self, kind: str, data: bytes, ts: int, arrival: float, keyframe: bool) -> None:
        assert self.container is not None
        pts = round(self.clocks[kind].seconds(ts, arrival, self.start) * 1000)
        if pts <= self.last_pts[kind]:
            return  # a duplicate or a step back (a retransmission after the fact): the file must not go back
        self.last_pts[kind] = pts
        packet = av.Packet(data)
        packet.time_base = MS
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        stream = self.video if kind == "video" else self.audio
        assert stream is not None
        packet.stream = stream
        self.container.mux(packet)
        if kind == "audio":
            self.info.audio_frames += 1
        self.info.duration_s = max(self.info.duration_s, pts / 1000)


def record_track(recorder: Recorder, kind: str, mime_type: str) -> Tap | None:
    """The tap for a track this recorder can take, or None (only VP8 video and Opus audio for now)."""
    if (kind, mime_type.lower()) in (("video", "video/vp8"), ("audio", "audio/opus")):
        return recorder.tap(kind)
    return None


__all__ = ["Recorder", "RecordingInfo", "record_track", "vp8_keyframe_start"]
