"""The HLS tier: a teacher's broadcast as a live playlist of short MPEG-TS segments (H.264 + AAC),
written once per lesson however many watch it, and served as static files any HTTP cache can fan out.

It taps the publication like the recorder does (``Recorder`` runs this writer on its own thread).
H.264 from the teacher is remuxed as it is; VP8 (what browsers send by default) is transcoded
once, here, and the audio goes from Opus to AAC (what HLS players take). A keyframe starts a
segment about every ``SEGMENT_S``. When the teacher publishes again, the new writer appends to the
same playlist after a discontinuity, so players carry on.

Beside it, the sound alone (``AUDIO_PLAYLIST``: the voice in mono AAC at 24 kbit/s, ~12 MB for a
45-minute lesson with the segments' overhead): the rendition a pupil saving data on HLS listens to.
"""

from __future__ import annotations

import fractions
import logging
import queue
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import av

from .interfaces import AUDIO_PLAYLIST
from .recorder import (
    MS,
    FrameAssembler,
    QueuedPacket,
    RecordingInfo,
    TrackClock,
    Writer,
    h264_payload,
    play,
    vp8_payload,
)

log = logging.getLogger(__name__)

SEGMENT_S = 1.0  # segment length: HLS latency is a few of these
PLAYLIST_SEGMENTS = 6  # segments the live playlist lists; older ones are deleted

MAX_INTERLEAVE_US = 500_000
AAC_FRAME = 1024
AUDIO_RATE = 48000
AUDIO_BASE = fractions.Fraction(1, AUDIO_RATE)
SOUND_ONLY_BITRATE = 24_000  # a teacher's voice, mono
SOUND_ONLY_PES_US = 700_000


def hls_writer(video_mime: str, audio: bool) -> Callable[[RecordingInfo], Writer]:
    """The writer for a broadcast whose video is ``video_mime``, with or without audio."""
    return partial(HlsWriter, transcode=video_mime.lower() != "video/h264", with_audio=audio)


class HlsWriter:
    def __init__(self, info: RecordingInfo, transcode: bool, with_audio: bool) -> None:
        self.info = info
        self.transcode = transcode
        self.with_audio = with_audio
        self.assembler = FrameAssembler(depacketize=vp8_payload if transcode else h264_payload)
        self.clocks = {"video": TrackClock(90000), "audio": TrackClock(AUDIO_RATE)}
        self.container: av.container.OutputContainer | None = None
        self.video: av.VideoStream | None = None
        self.audio: av.AudioStream | None = None
        self.sound_only: av.container.OutputContainer | None = None  # AUDIO_PLAYLIST's
        self.sound_only_audio: av.AudioStream | None = None
        self.mono = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
        self.start = 0.0
        self.size = (0, 0)
        self.last_key_ms = -10_000
        self.last_video_ms = -1
        self.decoder = av.CodecContext.create("vp8", "r") if transcode else None
        self.opus = av.CodecContext.create("opus", "r")
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self.fifo = av.AudioFifo()
        self.audio_next: int | None = None  # the pts (in samples) the next AAC frame gets

    def run(self, packets: queue.SimpleQueue[QueuedPacket | None]) -> None:
        play(packets, self.assembler, self._video, self._audio)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for stream in (self.video, self.audio):
                if stream is not None and stream.codec_context.is_encoder:
                    for packet in stream.encode(None):
                        self.container.mux(packet)
            self.container.close()
        finally:
            if self.sound_only is not None and self.sound_only_audio is not None:
                try:
                    for packet in self.sound_only_audio.encode(None):
                        self.sound_only.mux(packet)
                finally:
                    self.sound_only.close()

    def _open(self, arrival: float, size: tuple[int, int]) -> None:
        directory = self.info.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.info.path), "w", format="hls", options=hls_options(directory / "seg-%06d.ts"))
        if self.transcode:
            video = container.add_stream("libx264", rate=30)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = MS
            video.options = {"preset": "veryfast", "tune": "zerolatency", "bf": "0"}
        else:
            video = cast(av.VideoStream, container.add_mux_stream("h264"))
            video.time_base = MS
        audio = None
        if self.with_audio:  # a stream that never gets a packet would hold every picture back
            audio = add_aac(container)
            self.sound_only = av.open(
                str(directory / AUDIO_PLAYLIST),
                "w",
                format="hls",
                # ~0.7 s of sound per PES packet: one 21 ms AAC frame per 188-byte TS packet would
                # more than double the bytes of a low-rate voice
                options={**hls_options(directory / "aud-%06d.ts"), "max_delay": str(SOUND_ONLY_PES_US)},
            )
            self.sound_only_audio = add_aac(self.sound_only, "mono", SOUND_ONLY_BITRATE)
        self.container, self.video, self.audio = container, video, audio
        self.start, self.size = arrival, size

    def _video(self, data: bytes, keyframe: bool, ts: int, arrival: float) -> None:
        if self.decoder is None:
            self._remux(data, keyframe, ts, arrival)
            return
        for frame in self.decoder.decode(av.Packet(data)):
            if self.container is None:
                self._open(arrival, (frame.width, frame.height))
            self._encode(frame, ts, arrival)

    def _remux(self, data: bytes, keyframe: bool, ts: int, arrival: float) -> None:
        if self.container is None:
            if not keyframe:
                return
            self._open(arrival, (0, 0))
        ms = self._video_ms(ts, arrival)
        if ms is None:
            return
        packet = av.Packet(data)
        packet.time_base = MS
        packet.pts = packet.dts = ms
        packet.is_keyframe = keyframe
        self._mux(packet, self.video)

    def _encode(self, frame: av.VideoFrame, ts: int, arrival: float) -> None:
        assert self.video is not None
        ms = self._video_ms(ts, arrival)
        if ms is None:
            return
        if (frame.width, frame.height) != self.size:  # the browser changed resolution: keep ours
            frame = frame.reformat(width=self.size[0], height=self.size[1])
        frame.pts, frame.time_base = ms, MS
        if ms - self.last_key_ms >= SEGMENT_S * 1000:  # a keyframe starts each segment
            frame.pict_type = av.video.frame.PictureType.I
            self.last_key_ms = ms
        else:
            frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.video.encode(frame):
            self._mux(packet, self.video)

    def _video_ms(self, ts: int, arrival: float) -> int | None:
        ms = round(self.clocks["video"].seconds(ts, arrival, self.start) * 1000)
        if ms <= self.last_video_ms:
            return None  # a duplicate or a step back
        self.last_video_ms = ms
        self.info.video_frames += 1
        self.info.duration_s = ms / 1000
        return ms

    def _audio(self, payload: bytes, ts: int, arrival: float) -> None:
        if self.audio is None:
            return  # no picture yet, or a broadcast without sound
        at = round(self.clocks["audio"].seconds(ts, arrival, self.start) * AUDIO_RATE)
        if at < 0:
            return  # before the first picture
        if self.audio_next is None or abs(at - (self.audio_next + self.fifo.samples)) > AUDIO_RATE // 25:
            self.fifo = av.AudioFifo()  # the first packet, or a gap (packets lost): start again from here
            self.audio_next = at
        for decoded in self.opus.decode(av.Packet(payload)):
            decoded.pts = None
            for resampled in self.resampler.resample(decoded):
                resampled.pts = None
                self.fifo.write(resampled)
        while self.fifo.samples >= AAC_FRAME and (frame := self.fifo.read(AAC_FRAME)) is not None:
            frame.pts, frame.time_base = self.audio_next, AUDIO_BASE
            self.audio_next += AAC_FRAME
            for packet in self.audio.encode(frame):
                self._mux(packet, self.audio)
            self._sound_only(frame)
            self.info.audio_frames += 1

    def _sound_only(self, frame: av.AudioFrame) -> None:
        """The sound alone, encoded again (an AAC encoder costs little beside the video's)."""
        if self.sound_only is None or self.sound_only_audio is None:
            return
        for mono in self.mono.resample(frame):
            for packet in self.sound_only_audio.encode(mono):
                packet.stream = self.sound_only_audio
                self.sound_only.mux(packet)

    def _mux(self, packet: Any, stream: av.VideoStream | av.AudioStream | None) -> None:
        assert self.container is not None and stream is not None
        packet.stream = stream
        self.container.mux(packet)


def hls_options(segments: Path) -> dict[str, str]:
    return {
        "hls_time": str(SEGMENT_S),
        "hls_list_size": str(PLAYLIST_SEGMENTS),
        # a teacher who publishes again continues the playlist; the lesson's end is told over
        # signaling, so the list never ends; old segments go
        "hls_flags": "append_list+delete_segments+omit_endlist+independent_segments+temp_file",
        "hls_segment_filename": str(segments),
        # audio that stalls (a muted microphone sending nothing) holds pictures back this long at most
        "max_interleave_delta": str(MAX_INTERLEAVE_US),
    }


def add_aac(container: av.container.OutputContainer, layout: str = "stereo", bit_rate: int = 64_000) -> av.AudioStream:
    audio = container.add_stream("aac", rate=AUDIO_RATE, layout=layout)
    audio.codec_context.time_base = AUDIO_BASE
    audio.bit_rate = bit_rate
    return audio
