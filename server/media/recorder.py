"""Recording a publication with PyAV, from the packets the SFU already forwards: no decoding.

The forwarding path only appends each packet to a queue (``Recorder.tap``); a thread of its own
reassembles frames, stamps them and muxes them: VP8 + Opus into WebM, H.264 + Opus into MP4 (what
browsers play; WebM refuses H.264), fragmented until it is finished. WebM clusters and MP4 fragments
are closed every second, so a file whose writer was killed still plays up to its last second.

Timing: each track's presentation times come from its RTP timestamps (smooth), placed on a common
clock by the arrival time of the track's first frame, so audio and video start together. The file
starts at the first video keyframe (an H.264 one with its SPS and PPS); audio before it is left out.
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
from typing import BinaryIO, ClassVar, Protocol, cast

import av
from aiortc.codecs.h264 import H264PayloadDescriptor

from .rtp import vp8_keyframe_start

log = logging.getLogger(__name__)

QUEUE_LIMIT = 4096  # packets waiting for the writer (~15 s of a lesson); past it, packets are dropped
MS = fractions.Fraction(1, 1000)
AVFMT_FLAG_FLUSH_PACKETS = 0x0200  # libavformat: write each packet out as it is muxed
START_CODE = b"\x00\x00\x00\x01"  # what ``h264_payload`` puts before each NAL unit
NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8

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


def h264_payload(payload: bytes) -> bytes:
    """One RTP payload of H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) as Annex B bytes."""
    return H264PayloadDescriptor.parse(payload)[1]


def h264_nal_units(frame: bytes) -> list[bytes]:
    """The NAL units of a frame made by ``h264_payload`` (emulation prevention keeps start codes out
    of a NAL unit, so splitting at them is exact)."""
    return [nal for nal in frame.split(START_CODE) if nal]


def h264_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of an H.264 keyframe that carries its SPS and PPS, from decoding it once."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.decode(av.Packet(frame))
    return (decoder.width, decoder.height) if decoder.width and decoder.height else None


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


class FileWriter:
    """What the recording formats share: the file opens at the first video frame ``_first`` takes,
    and each track is stamped on the recording's clock. Subclasses name the container and say how
    the video track is described."""

    FORMAT: ClassVar[str]
    OPTIONS: ClassVar[dict[str, str]]

    def __init__(self, info: RecordingInfo, depacketize: Callable[[bytes], bytes]) -> None:
        self.info = info
        self.container: av.container.OutputContainer | None = None
        self.video: av.VideoStream | None = None
        self.audio: av.AudioStream | None = None
        self.file: BinaryIO | None = None
        self.assembler = FrameAssembler(depacketize)
        self.clocks = {"video": TrackClock(90000), "audio": TrackClock(48000)}
        self.start = 0.0
        self.last_pts = {"video": -1, "audio": -1}
        self.size = (0, 0)

    def run(self, packets: queue.SimpleQueue[QueuedPacket | None]) -> None:
        play(packets, self.assembler, self._video, self._audio)

    def close(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        finally:
            if self.file is not None:
                self.file.close()

    def _first(self, frame: bytes, keyframe: bool) -> bytes | None:
        """The frame to start the file with (``self.size`` set), or None to wait for another."""
        raise NotImplementedError

    def _keyframe(self, frame: bytes, keyframe: bool) -> bool:
        return keyframe

    def _video_stream(self, container: av.container.OutputContainer) -> av.VideoStream:
        raise NotImplementedError

    def _audio(self, payload: bytes, ts: int, arrival: float) -> None:
        if self.container is not None:  # the file starts at the first keyframe
            self._mux("audio", payload, ts, arrival, keyframe=True)

    def _open(self, arrival: float) -> None:
        self.info.path.parent.mkdir(parents=True, exist_ok=True)
        # Our own unbuffered file: a failed write (a full disk) raises at the packet that failed,
        # where libavformat's own I/O would report it only when the file is closed.
        self.file = open(self.info.path, "wb", buffering=0)  # noqa: SIM115 (closed in close)
        container = av.open(self.file, "w", format=self.FORMAT, options=self.OPTIONS)
        video = self._video_stream(container)
        # An encoder that is never fed: it describes the track (its OpusHead is the codec's extradata,
        # which a stream from add_mux_stream("opus") lacks and MP4 cannot do without).
        audio = container.add_stream("libopus", rate=48000, layout="stereo")
        container.flags |= AVFMT_FLAG_FLUSH_PACKETS  # each packet reaches the disk at once
        self.container, self.video, self.audio = container, video, audio
        self.start = arrival

    def _video(self, frame: bytes, keyframe: bool, ts: int, arrival: float) -> None:
        if self.container is None:
            first = self._first(frame, keyframe)
            if first is None:
                return
            frame = first
            self._open(arrival)
        else:
            keyframe = self._keyframe(frame, keyframe)
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


class WebmWriter(FileWriter):
    """VP8 + Opus in WebM."""

    FORMAT = "webm"
    OPTIONS = {"cluster_time_limit": "1000"}  # clusters of at most a second: a killed writer's file still plays

    def __init__(self, info: RecordingInfo) -> None:
        super().__init__(info, vp8_payload)

    def _first(self, frame: bytes, keyframe: bool) -> bytes | None:
        size = vp8_frame_size(frame) if keyframe else None
        if size is None:
            return None
        self.size = size
        return frame

    def _video_stream(self, container: av.container.OutputContainer) -> av.VideoStream:
        video = container.add_stream("libvpx", rate=30)  # the encoder is never fed: it only describes the track
        video.width, video.height = self.size
        video.pix_fmt = "yuv420p"
        return video


class Mp4Writer(FileWriter):
    """H.264 + Opus in MP4, remuxed as it came. The file starts at an IDR frame carrying
    the SPS and PPS (the latest seen are put before it when it came without): libavformat takes the
    codec's extradata (the MP4's avcC) from the first packet."""

    FORMAT = "mp4"
    OPTIONS = {
        # Fragmented while written: a header (an empty moov) first, then a fragment at each keyframe
        # and at least every second, so what a killed writer leaves behind still plays, as with
        # WebM's clusters. Closing turns it into a plain MP4 in place (a moov at the end, the
        # fragments wrapped in one mdat), so players know its duration and can seek at once.
        "movflags": "hybrid_fragmented+frag_keyframe",
        "frag_duration": "1000000",
    }

    def __init__(self, info: RecordingInfo) -> None:
        super().__init__(info, h264_payload)
        self.parameter_sets: dict[int, bytes] = {}  # the latest SPS and PPS, by NAL type

    def _keyframe(self, frame: bytes, keyframe: bool) -> bool:
        types = {nal[0] & 0x1F for nal in h264_nal_units(frame)}
        return NAL_IDR in types  # a sync sample: an IDR, not merely a frame led by an SPS

    def _first(self, frame: bytes, keyframe: bool) -> bytes | None:
        nals = h264_nal_units(frame)
        for nal in nals:
            if nal[0] & 0x1F in (NAL_SPS, NAL_PPS):
                self.parameter_sets[nal[0] & 0x1F] = nal
        types = {nal[0] & 0x1F for nal in nals}
        if NAL_IDR not in types or len(self.parameter_sets) < 2:
            return None
        if not {NAL_SPS, NAL_PPS} <= types:
            frame = b"".join(START_CODE + self.parameter_sets[t] for t in (NAL_SPS, NAL_PPS)) + frame
        size = h264_frame_size(frame)
        if size is None:
            return None
        self.size = size
        return frame

    def _video_stream(self, container: av.container.OutputContainer) -> av.VideoStream:
        width, height = self.size
        video = cast(av.VideoStream, container.add_mux_stream("h264", width=width, height=height))
        video.time_base = MS
        return video


# What each video codec is recorded into: the file's extension and its writer.
FORMATS: dict[str, tuple[str, Callable[[RecordingInfo], Writer]]] = {
    "video/vp8": (".webm", WebmWriter),
    "video/h264": (".mp4", Mp4Writer),
}


def recording_format(video_mime: str) -> tuple[str, Callable[[RecordingInfo], Writer]] | None:
    """The file extension and writer for a recording whose video is ``video_mime``; None for a codec
    this recorder cannot take."""
    return FORMATS.get(video_mime.lower())


def record_track(recorder: Recorder, kind: str, mime_type: str) -> Tap | None:
    """The tap for a track this recorder can take, or None (VP8 or H.264 video, Opus audio)."""
    name = mime_type.lower()
    if (kind == "video" and name in FORMATS) or (kind, name) == ("audio", "audio/opus"):
        return recorder.tap(kind)
    return None


__all__ = ["Recorder", "RecordingInfo", "record_track", "recording_format", "vp8_keyframe_start"]
