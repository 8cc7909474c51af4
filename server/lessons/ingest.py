"""Ingest an uploaded recorded lesson once, with PyAV, so that every browser plays it.

What browsers play is kept as it is (remuxed, never re-encoded): H.264 + AAC into MP4 with the index in front,
VP8/VP9 + Opus/Vorbis into WebM with the cues in front. Anything else (HEVC from phones, MPEG-2, MPEG-4 part 2,
PCM, MP3 next to a picture, 10-bit or 4:2:2 pictures, ...) is transcoded once to H.264 (at most 1080p) + AAC in
MP4; when only one stream needs it, only that one is (VP8/VP9 with other sound: the sound becomes Opus, in
WebM). Audio-only lessons stay audio: AAC into M4A, MP3 into MP3 (remuxed, so it gains an exact length
header), Opus/Vorbis into WebM, anything else (WAV, FLAC, AMR, ...) becomes AAC in M4A.

A phone held upright stores landscape pixels and a rotation. A remux to MP4 keeps the rotation (the display
matrix travels with the stream's parameters) and players turn the picture; a transcode turns the pixels
themselves (FFmpeg's transpose) and writes no rotation, so the lesson is upright either way, and so is its
poster. Browsers ignore a rotation in WebM, so a turned VP8/VP9 picture is transcoded.

This is CPU-bound and synchronous: the server runs it in a worker process (server/lessons/ingest_queue.py) as
``python -m server.lessons.ingest SOURCE OUT_DIR``, which prints progress and the result as JSON lines.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.filter
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

MAX_DURATION_S = 3 * 3600.0
POSTER_BOX = 640  # a poster fits in 640x640: never wider than 640
CARD_WIDTH, CARD_HEIGHT = 640, 360  # an audio lesson's poster
MAX_LONG_SIDE, MAX_SHORT_SIDE = 1920, 1080  # a transcode is at most 1080p: a 4K phone lesson would be huge
PROGRESS_INTERVAL_S = 0.25
PROGRESS_BEFORE_POSTER = 97.0  # the rest is the poster and the final checks
KEYFRAME_INTERVAL_S = 2.0  # players seek to keyframes
AAC_BIT_RATE = OPUS_BIT_RATE = 128_000
AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
MAX_BAD_PACKETS_IN_A_ROW = 25  # a glitch is skipped (as players do); a file that is all glitches is refused
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}  # the server's disk, not the upload
FIRST_FRAME_PACKETS = 2000  # probe looks this far for the first picture and sound; a track still empty is left out

# Codecs by FFmpeg's canonical names, with the pixel formats that every browser decodes.
MP4_VIDEO, WEBM_VIDEO = {"h264"}, {"vp8", "vp9"}
MP4_AUDIO, WEBM_AUDIO = {"aac"}, {"opus", "vorbis"}
BROWSER_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}
PICTURE_FORMATS = {"image2", "gif_pipe"}  # and every "*_pipe": still pictures
ISO_BMFF_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}  # how MP4 and MOV start
ISO_BMFF_BIG_BOXES = {b"mdat", b"moov", b"moof"}  # one of these running past the end means the file was cut

NOT_MEDIA = "This file is not a video or audio file (此文件不是视频或音频文件)"
PICTURE = "This file is a picture, not a video or audio file (此文件是图片，不是视频或音频)"
EMPTY = "The file is empty (0 bytes): the upload did not arrive (文件为空，上传未成功)"
MISSING = "The uploaded file is missing on the server: upload it again (服务器上找不到上传的文件，请重新上传)"
NO_STREAMS = "The file has no sound and no picture (文件中没有声音也没有画面)"
CUT_BEFORE_INDEX = (
    "The file is damaged or incomplete (it ends before its index): upload the original again "
    "(文件已损坏或不完整：缺少索引，请重新上传原文件)"
)
CUT_OFF = (
    "The file is damaged or incomplete (it was cut off before its end): upload the original again "
    "(文件已损坏或不完整：文件被截断，请重新上传原文件)"
)
DAMAGED = "The file is damaged or incomplete (it could not be read to its end) (文件已损坏或不完整，无法读完)"
NOTHING_DECODES = (
    "The file is damaged or incomplete (no picture or sound in it could be decoded) (文件已损坏：无法解码画面或声音)"
)


class IngestError(Exception):
    """Why an upload cannot become a lesson, in words for the teacher who uploaded it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Ingested:
    """A lesson that browsers play. ``width`` and ``height`` are what a player shows (after rotation)."""

    kind: Literal["video", "audio"]
    media: Path
    poster: Path
    duration_s: float
    container: Literal["mp4", "webm", "mp3"]
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    transcoded: bool

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "media": str(self.media), "poster": str(self.poster)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ingested:
        return cls(**{**data, "media": Path(data["media"]), "poster": Path(data["poster"])})


@dataclass
class Probe:
    """What an upload holds. Codecs are FFmpeg's canonical names ("h264", "hevc", "aac", "mp3", ...)."""

    format_name: str
    duration_s: float
    start_s: float  # when the first stream starts (MPEG-TS files start at 1.4 s, say); ingest moves it to 0
    video_index: int | None
    audio_index: int | None
    video_codec: str | None
    audio_codec: str | None
    pixel_format: str | None
    width: int | None  # stored pixels, before rotation
    height: int | None
    sample_aspect_ratio: Fraction  # 1 for square pixels; a DVD's are not
    rotation: int  # degrees clockwise a player turns the picture: 0, 90, 180 or 270 (a phone's `rotate`)


@dataclass(frozen=True)
class _Plan:
    container: Literal["mp4", "webm", "mp3"]
    format: str  # FFmpeg's muxer
    extension: str
    options: dict[str, str]
    copy_video: bool
    copy_audio: bool
    audio_encoder: str  # when the sound is transcoded


# ---------------------------------------------------------------------------------------------------------
# probe


def probe(source: Path) -> Probe:
    """What ``source`` holds, or IngestError when it is not a lesson: not media, empty, cut off, damaged."""
    try:
        size = source.stat().st_size
    except FileNotFoundError as error:
        raise IngestError(MISSING) from error
    if size == 0:
        raise IngestError(EMPTY)
    boxes = _iso_bmff_boxes(source, size)
    if boxes is not None:
        types, cut = boxes
        if b"moov" not in types:
            raise IngestError(CUT_BEFORE_INDEX)
        if cut:
            raise IngestError(CUT_OFF)
    try:
        with av.open(str(source), metadata_errors="ignore") as container:
            return _probe_container(container)
    except av.FFmpegError as error:
        raise IngestError(NOT_MEDIA if boxes is None else DAMAGED) from error


def _iso_bmff_boxes(source: Path, size: int) -> tuple[list[bytes], bool] | None:
    """The top-level box types of an MP4 or MOV file, and whether one of its big boxes runs past the end of the
    file (it was cut off); None when the file is not MP4 or MOV."""
    types: list[bytes] = []
    with source.open("rb") as file:
        offset = 0
        while offset + 8 <= size:
            file.seek(offset)
            header = file.read(16)
            box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
            if not types and box_type not in ISO_BMFF_FIRST_BOXES:
                return None
            if not (box_type.isascii() and box_type.isalnum() or box_type == b"uuid"):
                break  # trailing bytes that are not a box (some phones append their own data)
            if box_size == 1:  # a 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big") if len(header) == 16 else size + 1
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - offset
            types.append(box_type)
            if box_size < 8:
                break
            if offset + box_size > size:
                return types, box_type in ISO_BMFF_BIG_BOXES
            offset += box_size
    return (types, False) if types else None


def _probe_container(container: InputContainer) -> Probe:
    format_name = container.format.name
    if format_name in PICTURE_FORMATS or format_name.endswith("_pipe"):
        raise IngestError(PICTURE)
    video = next((s for s in container.streams.video if not s.disposition & Disposition.attached_pic), None)
    audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
    if video is None and audio is None:
        raise IngestError(NO_STREAMS if len(container.streams) else NOT_MEDIA)
    for stream in (video, audio):
        if stream is not None and stream.codec_context is None:
            raise IngestError(f"The file's {stream.type} is in a format the server cannot read (服务器无法读取此格式)")
    if video is not None:
        video.codec_context.thread_type = "AUTO"
    selected: list[VideoStream | AudioStream] = [s for s in (video, audio) if s is not None]
    duration_s = container.duration / 1_000_000 if container.duration else None

    rotation, ends = 0, [0.0]
    waiting = {s.index for s in selected}  # streams that have not decoded a frame yet
    holding: set[int] = set()  # streams that have packets: an empty track (a screen recording's silent one) is left out
    bad_in_a_row = read = 0
    try:
        for packet in container.demux(selected):
            read += 1
            if packet.pts is not None and packet.time_base is not None:
                ends.append(float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if packet.stream.index in waiting and read <= FIRST_FRAME_PACKETS:
                if packet.size:
                    holding.add(packet.stream.index)
                try:
                    frames = packet.decode()
                    bad_in_a_row = 0
                except av.InvalidDataError:
                    bad_in_a_row += 1
                    if bad_in_a_row > MAX_BAD_PACKETS_IN_A_ROW:
                        raise
                    continue
                if frames:
                    waiting.discard(packet.stream.index)
                    if isinstance(frames[0], VideoFrame):
                        rotation = _clockwise(frames[0].rotation)
            if (not waiting or read > FIRST_FRAME_PACKETS) and duration_s is not None:
                break  # a file whose length is not in its header (a browser's WebM) is read to its end
    except av.FFmpegError as error:
        raise IngestError(DAMAGED) from error
    if waiting & holding or waiting == {s.index for s in selected}:
        raise IngestError(NOTHING_DECODES)
    video = video if video is not None and video.index not in waiting else None
    audio = audio if audio is not None and audio.index not in waiting else None
    kept = [s for s in (video, audio) if s is not None]
    starts = [float(s.start_time * s.time_base) for s in kept if s.start_time is not None and s.time_base]
    start_s = max(0.0, min(starts, default=0.0))
    video_context = video.codec_context if video is not None else None
    return Probe(
        format_name=format_name,
        duration_s=duration_s if duration_s is not None else max(ends) - start_s,
        start_s=start_s,
        video_index=video.index if video is not None else None,
        audio_index=audio.index if audio is not None else None,
        video_codec=_codec_name(video),
        audio_codec=_codec_name(audio),
        pixel_format=video_context.pix_fmt if video_context is not None else None,
        width=video_context.width if video_context is not None else None,
        height=video_context.height if video_context is not None else None,
        sample_aspect_ratio=(video.sample_aspect_ratio or Fraction(1)) if video is not None else Fraction(1),
        rotation=rotation,
    )


def _codec_name(stream: VideoStream | AudioStream | None) -> str | None:
    return stream.codec_context.codec.canonical_name if stream is not None else None


def _clockwise(counterclockwise: float) -> int:
    """PyAV reads a display matrix as degrees counterclockwise; players and phones speak of clockwise."""
    return round(-counterclockwise / 90) % 4 * 90


# ---------------------------------------------------------------------------------------------------------
# ingest


def ingest(
    source: Path,
    out_dir: Path,
    *,
    max_duration_s: float = MAX_DURATION_S,
    progress: Callable[[float], None] = lambda percent: None,
    name: str | None = None,
) -> Ingested:
    """Make ``source`` a lesson browsers play: ``out_dir/<name>.<mp4|webm|m4a|mp3>`` and ``out_dir/<name>.jpg``
    (``name`` is the source's stem unless given). Raises IngestError, leaving nothing in ``out_dir``."""
    probed = probe(source)
    if probed.duration_s > max_duration_s:
        raise IngestError(_too_long(probed.duration_s, max_duration_s))
    plan = _plan(probed)
    name = name or source.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    media, poster = out_dir / f"{name}{plan.extension}", out_dir / f"{name}.jpg"
    # Fixed names (no pid): a rerun after a crash overwrites them, and ingest_queue removes them.
    partial_media, partial_poster = out_dir / f".{name}.partial{plan.extension}", out_dir / f".{name}.partial.jpg"
    placed: list[Path] = []
    try:
        _convert(source, partial_media, probed, plan, _Progress(progress, probed.duration_s))
        result = _examine(partial_media, partial_poster, probed, plan)
        if result.duration_s > max_duration_s:
            raise IngestError(_too_long(result.duration_s, max_duration_s))
        partial_poster.replace(poster)
        placed.append(poster)
        partial_media.replace(media)  # last: the media file there means the lesson is whole
        placed.append(media)
    except av.FFmpegError as error:  # FFmpeg's word on the source, or on writing the lesson
        raise IngestError(_cannot_store(error) if error.errno in STORAGE_ERRORS else DAMAGED) from error
    except OSError as error:
        raise IngestError(_cannot_store(error)) from error
    finally:
        if len(placed) < 2:
            for path in (partial_media, partial_poster, *placed):
                path.unlink(missing_ok=True)
    progress(100.0)
    result.media, result.poster = media, poster
    return result


def _cannot_store(error: OSError | av.FFmpegError) -> str:
    return (
        f"The server could not store the lesson ({error.strerror or error}): try again later "
        "(服务器无法保存课程，请稍后再试)"
    )


def _plan(probed: Probe) -> _Plan:
    video, audio = probed.video_codec, probed.audio_codec
    if video is None:
        if audio in MP4_AUDIO:
            return _Plan("mp4", "ipod", ".m4a", {"movflags": "+faststart"}, False, True, "aac")
        if audio == "mp3":
            return _Plan("mp3", "mp3", ".mp3", {}, False, True, "libmp3lame")
        if audio in WEBM_AUDIO:
            return _Plan("webm", "webm", ".webm", {"cues_to_front": "1"}, False, True, "libopus")
        return _Plan("mp4", "ipod", ".m4a", {"movflags": "+faststart"}, False, False, "aac")
    playable = probed.pixel_format in BROWSER_PIXEL_FORMATS  # not 10-bit or 4:2:2, which many browsers refuse
    if playable and video in WEBM_VIDEO and probed.rotation == 0:  # browsers ignore a rotation in WebM
        copy_audio = audio is None or audio in WEBM_AUDIO
        return _Plan("webm", "webm", ".webm", {"cues_to_front": "1"}, True, copy_audio, "libopus")
    copy_audio = audio is None or audio in MP4_AUDIO
    return _Plan("mp4", "mp4", ".mp4", {"movflags": "+faststart"}, playable and video in MP4_VIDEO, copy_audio, "aac")


def _too_long(duration_s: float, limit_s: float) -> str:
    return (
        f"The lesson is {_spoken(duration_s)} long; the limit is {_spoken(limit_s)} "
        f"(课程时长 {_spoken(duration_s)}，上限为 {_spoken(limit_s)})"
    )


def _spoken(seconds: float) -> str:
    """3 h 20 min, 45 min, 12 s: what a teacher reads."""
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part)


class _Progress:
    """Hands on the percentage done, at most a few times a second and never going back."""

    def __init__(self, report: Callable[[float], None], duration_s: float) -> None:
        self._report, self._duration_s = report, max(duration_s, 0.001)
        self._last_at, self._percent = -math.inf, -1.0

    def at(self, seconds: float) -> None:
        now = time.monotonic()
        percent = min(PROGRESS_BEFORE_POSTER, max(0.0, seconds / self._duration_s * PROGRESS_BEFORE_POSTER))
        if now - self._last_at >= PROGRESS_INTERVAL_S and percent > self._percent:
            self._last_at, self._percent = now, percent
            self._report(percent)


def _convert(source: Path, target: Path, probed: Probe, plan: _Plan, progress: _Progress) -> None:
    with (
        av.open(str(source), metadata_errors="ignore") as input_,
        av.open(str(target), "w", format=plan.format, options=dict(plan.options)) as output,
    ):
        streams: list[VideoStream | AudioStream] = []
        video: _Stream | None = None
        audio: _Stream | None = None
        if probed.video_index is not None:
            in_video = input_.streams.video[_position(input_, probed.video_index, "video")]
            in_video.codec_context.thread_type = "AUTO"
            streams.append(in_video)
            video = (
                _Remux(output, in_video, probed.start_s)
                if plan.copy_video
                else _VideoTranscode(output, in_video, probed)
            )
        if probed.audio_index is not None:
            in_audio = input_.streams.audio[_position(input_, probed.audio_index, "audio")]
            streams.append(in_audio)
            audio = (
                _Remux(output, in_audio, probed.start_s)
                if plan.copy_audio
                else _AudioTranscode(output, in_audio, probed, plan.audio_encoder)
            )
        bad_in_a_row = 0
        for packet in input_.demux(streams):
            if packet.pts is not None and packet.time_base is not None:
                progress.at(float(packet.pts * packet.time_base) - probed.start_s)
            handler = video if video is not None and packet.stream.index == probed.video_index else audio
            if handler is None:
                continue
            try:
                handler.packet(packet)
                bad_in_a_row = 0
            except av.InvalidDataError:  # a glitch in the source: skip the packet, as players do
                bad_in_a_row += 1
                if bad_in_a_row > MAX_BAD_PACKETS_IN_A_ROW:
                    raise
        for handler in (video, audio):
            if handler is not None:
                handler.finish()


def _position(container: InputContainer, index: int, kind: str) -> int:
    """Where stream ``index`` is among the container's streams of its kind."""
    of_kind = container.streams.video if kind == "video" else container.streams.audio
    return next(position for position, stream in enumerate(of_kind) if stream.index == index)


class _Stream:
    def packet(self, packet: Packet[Any]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class _Remux(_Stream):
    """Packets copied as they are. The stream's parameters, display matrix included, come from the template."""

    def __init__(self, output: OutputContainer, template: VideoStream | AudioStream, start_s: float) -> None:
        self._output = output
        self._stream = output.add_stream_from_template(template)
        self._shift = round(start_s / template.time_base) if template.time_base else 0

    def packet(self, packet: Packet[Any]) -> None:
        if packet.size == 0:  # the demuxer's end-of-stream marker, for decoders
            return
        if packet.pts is not None:
            packet.pts -= self._shift
        if packet.dts is not None:
            packet.dts -= self._shift
        packet.stream = self._stream
        self._output.mux(packet)

    def finish(self) -> None:
        pass


class _Upright:
    """Turns pictures the way a player would for a stored rotation, with FFmpeg's transpose and flips."""

    FILTERS: dict[int, list[tuple[str, str | None]]] = {
        90: [("transpose", "clock")],
        180: [("hflip", None), ("vflip", None)],
        270: [("transpose", "cclock")],
    }

    def __init__(self, clockwise: int) -> None:
        self._filters = self.FILTERS.get(clockwise, [])
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None

    def __call__(self, frame: VideoFrame) -> VideoFrame:
        if not self._filters:
            return frame
        shape = (frame.width, frame.height, frame.format.name)
        if self._graph is None or shape != self._shape:  # built for the frames it gets
            self._graph, self._shape = av.filter.Graph(), shape
            nodes = [
                self._graph.add_buffer(
                    width=frame.width, height=frame.height, format=frame.format, time_base=frame.time_base
                )
            ]
            nodes += [self._graph.add(name, args) for name, args in self._filters]
            nodes.append(self._graph.add("buffersink"))
            self._graph.link_nodes(*nodes).configure()
        self._graph.vpush(frame)
        return self._graph.vpull()


class _VideoTranscode(_Stream):
    """Decoded pictures, turned upright and at most 1080p, encoded once as H.264 for every browser."""

    def __init__(self, output: OutputContainer, template: VideoStream, probed: Probe) -> None:
        self._output, self._template = output, template
        self._upright = _Upright(probed.rotation)
        if probed.width is None or probed.height is None:
            raise ValueError(f"Expected a probed picture size, but got {probed.width}x{probed.height}")
        self._width, self._height = _fit(
            *_displayed(probed.width, probed.height, probed.sample_aspect_ratio, probed.rotation),
            MAX_LONG_SIDE,
            MAX_SHORT_SIDE,
        )
        rate = template.average_rate or template.guessed_rate or Fraction(25)
        rate = min(max(rate, Fraction(1)), Fraction(120))
        self._time_base = template.time_base or Fraction(1, 90_000)  # the source's: phones record at a varying rate
        self._stream = output.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = self._width, self._height, "yuv420p"
        self._stream.codec_context.time_base = self._time_base
        self._stream.codec_context.gop_size = max(1, round(rate * KEYFRAME_INTERVAL_S))
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self._shift = round(probed.start_s / self._time_base)
        self._frame_ticks = max(1, round(1 / (rate * self._time_base)))
        self._last_pts: int | None = None

    def packet(self, packet: Packet[Any]) -> None:
        for frame in self._template.decode(packet):
            self._encode(frame)

    def _encode(self, decoded: VideoFrame) -> None:
        if decoded.pts is not None:
            pts = decoded.pts - self._shift
        else:
            pts = (self._last_pts + self._frame_ticks) if self._last_pts is not None else 0
        if self._last_pts is not None and pts <= self._last_pts:
            return  # a repeated timestamp: the encoder needs them to grow
        self._last_pts = pts
        frame = self._upright(decoded).reformat(width=self._width, height=self._height, format="yuv420p")
        frame.pts, frame.time_base = pts, self._time_base
        self._output.mux(self._stream.encode(frame))

    def finish(self) -> None:
        self._output.mux(self._stream.encode(None))


class _AudioTranscode(_Stream):
    """Decoded sound, encoded once as AAC (in MP4) or Opus (in WebM)."""

    def __init__(self, output: OutputContainer, template: AudioStream, probed: Probe, encoder: str) -> None:
        self._output, self._template = output, template
        source_rate = template.codec_context.sample_rate
        rate = 48_000 if encoder == "libopus" or source_rate not in AAC_RATES else source_rate
        layout = "mono" if template.codec_context.channels == 1 else "stereo"
        stream = output.add_stream(encoder, rate=rate, layout=layout)
        if not isinstance(stream, AudioStream):
            raise TypeError(f"Expected an audio encoder, but got {encoder!r}")
        self._stream = stream
        self._stream.bit_rate = OPUS_BIT_RATE if encoder == "libopus" else AAC_BIT_RATE
        self._resampler = AudioResampler(
            format="flt" if encoder == "libopus" else "fltp",
            layout=layout,
            rate=rate,
            frame_size=960 if encoder == "libopus" else 1024,
        )
        self._rate, self._start_s = rate, probed.start_s
        self._next_pts: int | None = None

    def packet(self, packet: Packet[Any]) -> None:
        for frame in self._template.decode(packet):
            if self._next_pts is None:
                started = (frame.time or 0.0) - self._start_s
                self._next_pts = max(0, round(started * self._rate))  # sound that starts late stays late
            self._encode(self._resampler.resample(frame))

    def _encode(self, frames: list[AudioFrame]) -> None:
        for frame in frames:
            frame.pts, frame.time_base = self._next_pts, Fraction(1, self._rate)
            self._next_pts = (self._next_pts or 0) + frame.samples
            self._output.mux(self._stream.encode(frame))

    def finish(self) -> None:
        if self._next_pts is not None:
            self._encode(self._resampler.resample(None))
        self._output.mux(self._stream.encode(None))


def _displayed(width: int, height: int, sample_aspect_ratio: Fraction, clockwise: int) -> tuple[int, int]:
    """The picture's size as a player shows it: square pixels, turned."""
    if sample_aspect_ratio > 0 and sample_aspect_ratio != 1:
        width = round(width * sample_aspect_ratio)
    return (height, width) if clockwise in (90, 270) else (width, height)


def _fit(width: int, height: int, max_long: int, max_short: int) -> tuple[int, int]:
    """Scaled down (never up) to fit, in even numbers of pixels (4:2:0 needs them)."""
    long_side, short_side = max(width, height), min(width, height)
    scale = min(1.0, max_long / long_side, max_short / short_side)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


# ---------------------------------------------------------------------------------------------------------
# the result: its length, its streams and its poster


def _examine(media: Path, poster: Path, probed: Probe, plan: _Plan) -> Ingested:
    """Reads the made file back (the length is the output's, not the upload's claim) and makes its poster."""
    with av.open(str(media)) as container:
        duration_s = container.duration / 1_000_000 if container.duration else 0.0
        videos, audios = container.streams.video, container.streams.audio
        video_codec = videos[0].codec_context.codec.canonical_name if videos else None
        audio_codec = audios[0].codec_context.codec.canonical_name if audios else None
        picture = _poster_frame(container, videos[0], duration_s * 0.1) if videos else None
    if duration_s <= 0:
        raise IngestError(NOTHING_DECODES)
    poster.write_bytes(_jpeg(picture if picture is not None else _audio_card()))
    return Ingested(
        kind="video" if picture is not None else "audio",
        media=media,
        poster=poster,
        duration_s=duration_s,
        container=plan.container,
        video_codec=video_codec,
        audio_codec=audio_codec,
        width=picture.width if picture is not None else None,
        height=picture.height if picture is not None else None,
        transcoded=not (
            (plan.copy_video or probed.video_codec is None) and (plan.copy_audio or probed.audio_codec is None)
        ),
    )


def _poster_frame(container: InputContainer, stream: VideoStream, at_s: float) -> VideoFrame:
    """The first picture from ``at_s`` on (or the first there is), upright and at the size a player shows."""
    stream.codec_context.thread_type = "AUTO"
    picture: VideoFrame | None = None
    if at_s > 0 and stream.time_base:
        container.seek(round(at_s / stream.time_base), stream=stream)  # the keyframe before at_s
        picture = next((f for f in _pictures(container, stream) if f.time is None or f.time >= at_s), None)
    if picture is None:
        container.seek(0)
        picture = next(_pictures(container, stream), None)
    if picture is None:
        raise IngestError(NOTHING_DECODES)
    clockwise = _clockwise(picture.rotation)
    width, height = _displayed(picture.width, picture.height, stream.sample_aspect_ratio or Fraction(1), clockwise)
    return _Upright(clockwise)(picture).reformat(width=width, height=height)


def _pictures(container: InputContainer, stream: VideoStream) -> Iterator[VideoFrame]:
    for packet in container.demux(stream):
        yield from stream.decode(packet)


def _jpeg(picture: VideoFrame) -> bytes:
    width, height = _fit(picture.width, picture.height, POSTER_BOX, POSTER_BOX)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qscale, encoder.global_quality = True, 3 * 118  # JPEG quality 3 on FFmpeg's 2-31 scale (118 = one step)
    frame = picture.reformat(width=width, height=height, format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)])


def _audio_card() -> VideoFrame:
    """An audio lesson's poster: a sound wave on teal, drawn from bytes (numpy is not a runtime dependency)."""
    background, wave = bytes((18, 94, 110)), bytes((250, 244, 230))
    bar, gap, bars = 10, 8, 25
    left = (CARD_WIDTH - bars * (bar + gap) + gap) // 2
    heights = [round(150 * (0.25 + 0.75 * abs(math.sin(index * 0.55)) * math.sin(math.pi * (index + 0.5) / bars)))
               for index in range(bars)]  # fmt: skip
    middle, rows = CARD_HEIGHT // 2, []
    for y in range(CARD_HEIGHT):
        row = bytearray(background * CARD_WIDTH)
        for index, tall in enumerate(heights):
            if abs(y - middle) * 2 < tall:
                x = left + index * (bar + gap)
                row[x * 3 : (x + bar) * 3] = wave * bar
        rows.append(bytes(row))
    frame = VideoFrame(CARD_WIDTH, CARD_HEIGHT, "rgb24")
    plane = frame.planes[0]
    padding = bytes(plane.line_size - CARD_WIDTH * 3)  # rows may be padded for alignment
    plane.update(b"".join(row + padding for row in rows))
    return frame


# ---------------------------------------------------------------------------------------------------------
# the worker process


def main(argv: list[str] | None = None) -> int:
    """Ingest one file; print ``{"progress": p}`` lines, then ``{"ingested": {...}}`` or ``{"refused": reason}``."""
    parser = argparse.ArgumentParser(prog="python -m server.lessons.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", help="the outputs' file name, without extension (the source's stem by default)")
    parser.add_argument("--max-duration-s", type=float, default=MAX_DURATION_S)
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority (live lessons first)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    try:
        result = ingest(
            args.source,
            args.out_dir,
            max_duration_s=args.max_duration_s,
            progress=lambda percent: say({"progress": round(percent, 1)}),
            name=args.name,
        )
    except IngestError as error:
        say({"refused": error.reason, "detail": repr(error.__cause__) if error.__cause__ else None})
        return 1
    say({"ingested": result.to_json()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
