"""Test media made with PyAV: what teachers upload from phones and PCs, a few seconds long.

Frames are built from bytes (numpy is not a runtime dependency and the server's code must not need it):
diagonal colour bars that move, so encoders have real work; sound is a 440 Hz tone as s16 samples.
"""

from __future__ import annotations

import fractions
import math
from array import array
from collections.abc import Iterator
from pathlib import Path

import av
import av.filter
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

WIDTH, HEIGHT, FPS = 320, 240, 15
RATE = 48000
BARS = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
QUIET_X265 = {"x265-params": "log-level=error"}
WHITE = b"\xff\xff\xff"
SHIFTED = [bytes((value + shift) % 256 for value in range(256)) for shift in range(256)]  # bytes.translate tables


def pattern(width: int, height: int, index: int) -> bytes:
    """RGB24 rows: diagonal bars moving right 4 pixels a frame over a gradient band, and a white "floor" (the
    bottom eighth) that tells which way up a picture is shown."""
    bar = max(1, 2 * width // len(BARS))
    period = bar * len(BARS)
    wide = b"".join(bytes(colour) * bar for colour in BARS) * (width // period + 2)
    floor, band = height - height // 8, height * 5 // 8
    rows = []
    for y in range(floor):
        start = (period - (index * 4 + y) % period) * 3
        row = wide[start : start + width * 3]
        rows.append(row.translate(SHIFTED[y % 256]) if y >= band else row)  # the band differs row to row
    rows.append(WHITE * (width * (height - floor)))
    return b"".join(rows)


def video_frame(rgb: bytes, width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "rgb24")
    plane, row = frame.planes[0], width * 3
    if plane.line_size == row:
        plane.update(rgb)
    else:  # rows padded for alignment
        padding = bytes(plane.line_size - row)
        plane.update(b"".join(rgb[y * row : (y + 1) * row] + padding for y in range(height)))
    return frame.reformat(format="yuv420p")


def video_frames(width: int, height: int, fps: int, seconds: float) -> Iterator[av.VideoFrame]:
    for index in range(round(fps * seconds)):
        frame = video_frame(pattern(width, height, index), width, height)
        frame.pts, frame.time_base = index, fractions.Fraction(1, fps)
        yield frame


SENSOR_TURNS: dict[int, list[tuple[str, str | None]]] = {
    90: [("transpose", "cclock")],
    180: [("hflip", None), ("vflip", None)],
    270: [("transpose", "clock")],
}


def turned(frames: Iterator[av.VideoFrame], rotation: int) -> Iterator[av.VideoFrame]:
    """The upright scene as a sensor stores it when a player must turn it ``rotation`` degrees clockwise."""
    graph: av.filter.Graph | None = None
    for frame in frames:
        if not rotation:
            yield frame
            continue
        if graph is None:
            graph = av.filter.Graph()
            nodes = [
                graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=frame.time_base)
            ]
            nodes += [graph.add(name, args) for name, args in SENSOR_TURNS[rotation]]
            nodes.append(graph.add("buffersink"))
            graph.link_nodes(*nodes).configure()
        graph.vpush(frame)
        stored = graph.vpull()
        stored.pts, stored.time_base = frame.pts, frame.time_base
        yield stored


def tone_frames(seconds: float, rate: int = RATE, samples: int = 1024) -> Iterator[av.AudioFrame]:
    """s16 mono: a 440 Hz tone."""
    total = round(rate * seconds)
    for start in range(0, total, samples):
        count = min(samples, total - start)
        sound = av.AudioFrame(format="s16", layout="mono", samples=count)
        tone = array("h", (int(math.sin(2 * math.pi * 440 * (start + n) / rate) * 6000) for n in range(count)))
        sound.planes[0].update(tone.tobytes())
        sound.sample_rate, sound.pts, sound.time_base = rate, start, fractions.Fraction(1, rate)
        yield sound


def write_media(
    path: Path,
    *,
    format: str,
    video: str | None,
    audio: str | None,
    seconds: float,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: int = FPS,
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """A file of ``seconds`` with a ``video`` and/or ``audio`` encoder. ``rotation`` is a phone's `rotate`
    tag: degrees clockwise a player turns the stored picture (PyAV's display rotation counts counterclockwise);
    the stored pixels are the upright scene turned the other way, as a phone's sensor sees it."""
    with av.open(str(path), "w", format=format, options=options or {}) as container:
        video_stream = add_video(container, video, width, height, fps, rotation) if video is not None else None
        audio_stream = add_audio(container, audio) if audio is not None else None
        scene = (height, width) if rotation in (90, 270) else (width, height)
        frames = turned(video_frames(*scene, fps, seconds), rotation) if video_stream is not None else iter(())
        sounds = tone_frames(seconds, audio_stream.sample_rate) if audio_stream is not None else iter(())
        sound = next(sounds, None)
        for frame in frames:  # each picture, then the sound up to it: interleaved as real files are
            assert video_stream is not None
            container.mux(video_stream.encode(frame))
            while audio_stream is not None and sound is not None and (sound.time or 0.0) <= (frame.time or 0.0):
                container.mux(audio_stream.encode(sound))
                sound = next(sounds, None)
        while audio_stream is not None and sound is not None:
            container.mux(audio_stream.encode(sound))
            sound = next(sounds, None)
        if video_stream is not None:
            container.mux(video_stream.encode(None))
        if audio_stream is not None:
            container.mux(audio_stream.encode(None))
    return path


def add_video(container: OutputContainer, codec: str, width: int, height: int, fps: int, rotation: int) -> VideoStream:
    stream = container.add_stream(codec, rate=fps)
    assert isinstance(stream, VideoStream), f"Expected a video encoder, but got {codec}"
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx265":
        stream.options = dict(QUIET_X265)
    if codec in ("libvpx", "libvpx-vp9"):
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
    if rotation:
        stream.set_display_rotation(-rotation)
    return stream


def add_audio(container: OutputContainer, codec: str) -> AudioStream:
    stream = container.add_stream(codec, rate=44100 if codec == "libmp3lame" else RATE, layout="mono")
    assert isinstance(stream, AudioStream), f"Expected an audio encoder, but got {codec}"
    return stream


def h264_aac_mp4(path: Path, seconds: float = 4.0, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """What a PC exports: H.264 + AAC, the index at the end (no faststart)."""
    return write_media(path, format="mp4", video="libx264", audio="aac", seconds=seconds, width=width, height=height)


def hevc_mp4(path: Path, seconds: float = 4.0, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """What a phone records: HEVC + AAC (this PyAV has libx265)."""
    return write_media(path, format="mp4", video="libx265", audio="aac", seconds=seconds, width=width, height=height)


def vp9_opus_webm(path: Path, seconds: float = 4.0) -> Path:
    """What a browser's MediaRecorder makes."""
    return write_media(path, format="webm", video="libvpx-vp9", audio="libopus", seconds=seconds)


def vp9_aac_mp4(path: Path, seconds: float = 4.0) -> Path:
    """VP9 that browsers play, with AAC, which WebM does not carry: the sound becomes Opus."""
    return write_media(path, format="mp4", video="libvpx-vp9", audio="aac", seconds=seconds)


def mediarecorder_webm(path: Path, seconds: float = 4.0) -> Path:
    """What a browser's MediaRecorder streams out: VP8 + Opus WebM with no length and no cues in it."""
    return write_media(path, format="webm", video="libvpx", audio="libopus", seconds=seconds, options={"live": "1"})


def silent_track_mkv(path: Path, seconds: float = 4.0) -> Path:
    """A screen recording with an audio track that holds no sound at all (no microphone)."""
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.add_stream("aac", rate=RATE, layout="mono")  # never written to
        for frame in video_frames(WIDTH, HEIGHT, FPS, seconds):
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def mpeg4_mp3_avi(path: Path, seconds: float = 4.0) -> Path:
    """An old PC file: MPEG-4 part 2 + MP3 in AVI; browsers play neither the codec nor the container."""
    return write_media(path, format="avi", video="mpeg4", audio="libmp3lame", seconds=seconds)


def h264_pcm_mov(path: Path, seconds: float = 4.0) -> Path:
    """A camera's file: H.264 that browsers play, with PCM sound that they do not."""
    return write_media(path, format="mov", video="libx264", audio="pcm_s16le", seconds=seconds)


def rotated_mov(path: Path, seconds: float = 4.0, rotation: int = 90, video: str = "libx265") -> Path:
    """A phone held upright: landscape pixels (320x240) in a MOV tagged to turn ``rotation`` degrees clockwise,
    which shows the scene upright (240x320, the white floor at the bottom)."""
    return write_media(path, format="mov", video=video, audio="aac", seconds=seconds, rotation=rotation)


def rotated_h264_mov(path: Path, seconds: float = 4.0, rotation: int = 90) -> Path:
    """A phone held upright that records H.264: browsers play it, and turn it."""
    return rotated_mov(path, seconds, rotation, video="libx264")


def mp3(path: Path, seconds: float = 4.0) -> Path:
    return write_media(path, format="mp3", video=None, audio="libmp3lame", seconds=seconds)


def mp3_with_cover(path: Path, seconds: float = 4.0) -> Path:
    """A music-player MP3: the sound, and a picture that is its cover (an attached picture, not a video)."""
    cover = jpeg(path.with_name(path.name + ".cover.jpg"))
    with av.open(str(path), "w", format="mp3") as container:
        audio = container.add_stream("libmp3lame", rate=44100, layout="mono")
        picture = container.add_stream("mjpeg")
        picture.width, picture.height, picture.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        picture.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(cover.read_bytes())
        packet.stream, packet.pts, packet.dts, packet.time_base = picture, 0, 0, fractions.Fraction(1, 90_000)
        container.mux(packet)
        for sound in tone_frames(seconds, 44100):
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    cover.unlink()
    return path


def m4a(path: Path, seconds: float = 4.0) -> Path:
    """A phone's voice memo: AAC in MP4."""
    return write_media(path, format="ipod", video=None, audio="aac", seconds=seconds)


def opus_ogg(path: Path, seconds: float = 4.0) -> Path:
    return write_media(path, format="ogg", video=None, audio="libopus", seconds=seconds)


def wav(path: Path, seconds: float = 4.0) -> Path:
    return write_media(path, format="wav", video=None, audio="pcm_s16le", seconds=seconds)


def truncated_mp4(path: Path, seconds: float = 4.0, faststart: bool = False) -> Path:
    """An upload cut off at 60%: without faststart the index (moov), written last, is missing."""
    whole = path.with_name(path.name + ".whole")
    write_media(
        whole,
        format="mp4",
        video="libx264",
        audio="aac",
        seconds=seconds,
        options={"movflags": "+faststart"} if faststart else None,
    )
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def text_as_mp4(path: Path) -> Path:
    path.write_text("Lesson plan, week 3: fractions.\n第三周教案：分数。\n" * 200, encoding="utf-8")
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def jpeg(path: Path) -> Path:
    """A photo (of the blackboard, say): a picture, not a lesson."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 1)
    frame = video_frame(pattern(WIDTH, HEIGHT, 0), WIDTH, HEIGHT).reformat(format="yuvj420p")
    path.write_bytes(b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)]))
    return path


def data_only_ts(path: Path) -> Path:
    """A valid MPEG-TS file whose only stream carries data: no sound and no picture."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_data_stream()
        for index in range(10):
            packet = av.Packet(b"telemetry " * 4)
            packet.stream, packet.pts, packet.dts = stream, index * 1000, index * 1000
            packet.time_base = fractions.Fraction(1, 1000)
            container.mux(packet)
    return path
