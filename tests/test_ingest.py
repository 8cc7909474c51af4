"""Uploaded lessons are ingested once into what browsers play: kept where browsers play them (remuxed, index in
front), transcoded once where they do not, turned upright, with a poster; what is not a lesson is refused with
a reason and leaves nothing behind. The queue runs one job at a time in a worker process that may crash."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import psutil
import pytest

from server.lessons import ingest as ingest_module
from server.lessons.ingest import Ingested, IngestError, ingest, probe
from server.lessons.ingest_queue import IngestQueue, QueueFull

from . import media_files

SECONDS = 4.0
BROWSER_VIDEO = {"h264", "vp8", "vp9"}
BROWSER_AUDIO = {"aac", "opus", "vorbis", "mp3"}
FORMAT_NAMES = {"mp4": "mov,mp4,m4a,3gp,3g2,mj2", "webm": "matroska,webm", "mp3": "mp3"}


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    file: str
    container: str
    codecs: tuple[str | None, str]  # video (None: an audio lesson), audio
    transcoded: bool
    remuxed: tuple[str, ...]  # the streams whose packets must be the source's, byte for byte
    size: tuple[int, int] | None = None  # as a player shows it

    @property
    def kind(self) -> str:
        return "audio" if self.codecs[0] is None else "video"

    @property
    def extension(self) -> str:
        return ".m4a" if (self.kind, self.container) == ("audio", "mp4") else f".{self.container}"


BOTH, LANDSCAPE, PORTRAIT = ("video", "audio"), (320, 240), (240, 320)
CASES = [
    Case(media_files.h264_aac_mp4, "pc.mp4", "mp4", ("h264", "aac"), False, BOTH, LANDSCAPE),
    Case(media_files.hevc_mp4, "phone.mp4", "mp4", ("h264", "aac"), True, ("audio",), LANDSCAPE),
    Case(media_files.vp9_opus_webm, "browser.webm", "webm", ("vp9", "opus"), False, BOTH, LANDSCAPE),
    Case(media_files.vp9_aac_mp4, "vp9-aac.mp4", "webm", ("vp9", "opus"), True, ("video",), LANDSCAPE),
    Case(media_files.mediarecorder_webm, "recorder.webm", "webm", ("vp8", "opus"), False, BOTH, LANDSCAPE),
    Case(media_files.mpeg4_mp3_avi, "old.avi", "mp4", ("h264", "aac"), True, (), LANDSCAPE),
    Case(media_files.h264_pcm_mov, "camera.mov", "mp4", ("h264", "aac"), True, ("video",), LANDSCAPE),
    Case(media_files.rotated_mov, "upright.mov", "mp4", ("h264", "aac"), True, ("audio",), PORTRAIT),
    Case(media_files.rotated_h264_mov, "upright-h264.mov", "mp4", ("h264", "aac"), False, BOTH, PORTRAIT),
    Case(media_files.mp3, "talk.mp3", "mp3", (None, "mp3"), False, ("audio",)),
    Case(media_files.mp3_with_cover, "song.mp3", "mp3", (None, "mp3"), False, ("audio",)),
    Case(media_files.m4a, "memo.m4a", "mp4", (None, "aac"), False, ("audio",)),
    Case(media_files.opus_ogg, "talk.ogg", "webm", (None, "opus"), False, ("audio",)),
    Case(media_files.wav, "talk.wav", "mp4", (None, "aac"), True, ()),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("uploads")
    for case in CASES:
        case.make(directory / case.file)
    return directory


# ---------------------------------------------------------------------------------------------------------
# reading results back


def top_level_boxes(path: Path) -> list[bytes]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        boxes.append(data[offset + 4 : offset + 8])
        offset += size if size else len(data)
    return boxes


def segment_children(path: Path) -> list[int]:
    """The IDs of a WebM file's top-level elements inside its Segment, in order."""
    data = path.read_bytes()

    def number(at: int, keep_marker: bool) -> tuple[int, int]:
        length = 1
        while not data[at] & (0x80 >> (length - 1)):
            length += 1
        value = data[at] if keep_marker else data[at] & ((0x80 >> (length - 1)) - 1)
        for index in range(1, length):
            value = value << 8 | data[at + index]
        return value, at + length

    offset, children, inside = 0, [], False
    while offset < len(data):
        element, offset = number(offset, keep_marker=True)
        size, offset = number(offset, keep_marker=False)
        if element == 0x18538067:  # the Segment: read into it
            inside = True
            continue
        if inside:
            children.append(element)
        offset += size
    return children


CUES, CLUSTER = 0x1C53BB6B, 0x1F43B675


def packets(path: Path, kind: str, count: int = 20) -> list[bytes]:
    with av.open(str(path)) as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        found = [bytes(p) for p in container.demux(streams[0]) if p.size]
    return found[:count]


def floor_side(frame: av.VideoFrame) -> str:
    """Which edge of the picture the test pattern's white floor is on."""
    gray = frame.reformat(format="gray")
    plane, width, height = gray.planes[0], gray.width, gray.height
    data = bytes(plane)
    rows = [data[y * plane.line_size : y * plane.line_size + width] for y in range(height)]
    strip_x, strip_y = max(1, width // 16), max(1, height // 16)
    edges = {
        "bottom": sum(sum(row) for row in rows[-strip_y:]) / (strip_y * width),
        "top": sum(sum(row) for row in rows[:strip_y]) / (strip_y * width),
        "left": sum(sum(row[:strip_x]) for row in rows) / (strip_x * height),
        "right": sum(sum(row[-strip_x:]) for row in rows) / (strip_x * height),
    }
    return max(edges, key=lambda edge: edges[edge])


def first_picture(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


# ---------------------------------------------------------------------------------------------------------
# lessons that browsers play


@pytest.mark.parametrize("case", CASES, ids=[case.file for case in CASES])
def test_an_upload_becomes_a_lesson_that_browsers_play(case: Case, media: Path, tmp_path: Path) -> None:
    source, out_dir, progress = media / case.file, tmp_path / "lessons", list[float]()
    result = ingest(source, out_dir, progress=progress.append)

    assert isinstance(result, Ingested)
    assert (result.kind, result.container, result.transcoded) == (case.kind, case.container, case.transcoded)
    assert (result.video_codec, result.audio_codec) == case.codecs
    assert result.media == out_dir / f"{source.stem}{case.extension}"
    assert result.poster == out_dir / f"{source.stem}.jpg"
    assert sorted(out_dir.iterdir()) == sorted([result.media, result.poster]), "nothing else, nothing half-made"
    assert (result.width, result.height) == (case.size or (None, None))
    assert abs(result.duration_s - SECONDS) <= 0.5

    with av.open(str(result.media)) as container:
        assert container.format.name == FORMAT_NAMES[case.container]
        assert container.duration is not None and abs(container.duration / 1_000_000 - SECONDS) <= 0.5
        videos, audios = container.streams.video, container.streams.audio
        assert len(videos) == (1 if case.kind == "video" else 0) and len(audios) == 1
        assert {s.codec_context.codec.canonical_name for s in videos} <= BROWSER_VIDEO
        assert {s.codec_context.codec.canonical_name for s in audios} <= BROWSER_AUDIO
        decoded = {"video": 0, "audio": 0}
        last = 0.0
        for frame in container.decode(*videos, *audios):
            assert isinstance(frame, av.VideoFrame | av.AudioFrame)
            decoded["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
            last = max(last, frame.time or 0.0)
        assert abs(last - SECONDS) <= 0.5, "it plays to its end"
        assert decoded["video"] == (round(SECONDS * media_files.FPS) if case.kind == "video" else 0)

    if case.container == "mp4":
        boxes = top_level_boxes(result.media)
        assert boxes.index(b"moov") < boxes.index(b"mdat"), f"Expected the index first (faststart), but got {boxes}"
    if case.container == "webm":
        children = segment_children(result.media)
        assert children.index(CUES) < children.index(CLUSTER), "the cues (the index) come first"
    for kind in case.remuxed:
        assert packets(result.media, kind) == packets(source, kind), f"the {kind} is kept as it was"

    poster = result.poster.read_bytes()
    assert poster[:3] == b"\xff\xd8\xff", "a JPEG"
    with av.open(str(result.poster)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == "mjpeg"
        picture = next(container.decode(video=0))
    if case.size is None:
        assert (picture.width, picture.height) == (640, 360), "an audio lesson's card"
    else:
        assert picture.width <= 640
        assert Fraction(picture.width, picture.height) == Fraction(*case.size)
        assert floor_side(picture) == "bottom", "the poster is upright"

    assert progress and progress[-1] == 100.0
    assert progress == sorted(progress) and all(0 <= percent <= 100 for percent in progress)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_transcoded_phone_video_is_turned_upright_in_its_pixels(rotation: int, tmp_path: Path) -> None:
    source = media_files.rotated_mov(tmp_path / "phone.mov", rotation=rotation)
    assert probe(source).rotation == rotation
    assert first_picture(source).rotation % 360 == -rotation % 360  # PyAV counts counterclockwise
    result = ingest(source, tmp_path / "lessons")
    picture = first_picture(result.media)
    assert picture.rotation == 0, "no rotation left for players"
    assert (picture.width, picture.height) == ((320, 240) if rotation == 180 else (240, 320))
    assert floor_side(picture) == "bottom"
    with av.open(str(result.poster)) as poster:
        assert floor_side(next(poster.decode(video=0))) == "bottom"


def test_a_remuxed_phone_video_keeps_its_rotation_for_players(media: Path, tmp_path: Path) -> None:
    result = ingest(media / "upright-h264.mov", tmp_path)
    picture = first_picture(result.media)
    assert (picture.width, picture.height, picture.rotation) == (320, 240, -90), "stored pixels, display matrix kept"
    assert floor_side(picture) == "right", "a player turns it a quarter clockwise: the floor goes to the bottom"
    assert (result.width, result.height) == (240, 320)


def test_an_empty_sound_track_is_left_out(tmp_path: Path) -> None:
    result = ingest(media_files.silent_track_mkv(tmp_path / "screen.mkv"), tmp_path / "lessons")
    assert (result.kind, result.video_codec, result.audio_codec, result.transcoded) == ("video", "h264", None, False)
    with av.open(str(result.media)) as container:
        assert [stream.type for stream in container.streams] == ["video"]
        assert container.duration is not None and abs(container.duration / 1_000_000 - SECONDS) <= 0.5


# ---------------------------------------------------------------------------------------------------------
# what is not a lesson


REFUSED = [
    (media_files.text_as_mp4, "notes.mp4", "This file is not a video or audio file"),
    (media_files.empty, "nothing.mp4", "The file is empty (0 bytes)"),
    (media_files.truncated_mp4, "cut.mp4", "The file is damaged or incomplete (it ends before its index)"),
    (
        lambda path: media_files.truncated_mp4(path, faststart=True),
        "cut-faststart.mp4",
        "The file is damaged or incomplete (it was cut off before its end)",
    ),
    (media_files.jpeg, "blackboard.mp4", "This file is a picture, not a video or audio file"),
    (media_files.data_only_ts, "telemetry.ts", "The file has no sound and no picture"),
]


@pytest.mark.parametrize(("make", "file", "reason"), REFUSED, ids=[file for _, file, _ in REFUSED])
def test_what_is_not_a_lesson_is_refused_with_a_reason(
    make: Callable[[Path], Path], file: str, reason: str, tmp_path: Path
) -> None:
    source, out_dir = make(tmp_path / file), tmp_path / "lessons"
    out_dir.mkdir()
    with pytest.raises(IngestError) as refused:
        ingest(source, out_dir)
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert list(out_dir.iterdir()) == []


def test_a_lesson_longer_than_the_limit_is_refused(media: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError) as refused:
        ingest(media / "pc.mp4", tmp_path, max_duration_s=2)
    assert refused.value.reason.startswith("The lesson is 4 s long; the limit is 2 s")
    assert list(tmp_path.iterdir()) == []
    assert ingest_module._too_long(3 * 3600 + 20 * 60, 3 * 3600).startswith(
        "The lesson is 3 h 20 min long; the limit is 3 h"
    )


def test_a_failure_at_the_end_leaves_nothing_half_made(
    media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(picture: av.VideoFrame) -> bytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ingest_module, "_jpeg", disk_full)
    with pytest.raises(IngestError) as refused:
        ingest(media / "phone.mp4", tmp_path)
    assert refused.value.reason.startswith("The server could not store the lesson (No space left on device)")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# the queue


@pytest.fixture(scope="module")
def long_upload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of an old PC file at 640x360: transcoded, so its worker runs long enough to be killed mid-way."""
    path = tmp_path_factory.mktemp("long") / "long.avi"
    return media_files.write_media(
        path, format="avi", video="mpeg4", audio="libmp3lame", seconds=60, width=640, height=360
    )


class Results:
    def __init__(self) -> None:
        self.done: list[tuple[str, Ingested | IngestError]] = []

    def __call__(self, lesson_id: str, result: Ingested | IngestError) -> None:
        self.done.append((lesson_id, result))

    def of(self, lesson_id: str) -> Ingested | IngestError:
        return next(result for done_id, result in self.done if done_id == lesson_id)


async def until(condition: Callable[[], bool], guard_s: float = 120.0) -> None:
    """Waits for ``condition``; the guard only stops a hung test."""
    deadline = time.monotonic() + guard_s
    while not condition():
        assert time.monotonic() < deadline, "the queue never got there"
        await asyncio.sleep(0.01)


def ingest_workers(lesson_id: str | None = None) -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "server.lessons.ingest" in command and (lesson_id is None or lesson_id in command):
            found.append(child)
    return found


async def test_jobs_run_one_after_another(media: Path, tmp_path: Path) -> None:
    results = Results()
    queue = IngestQueue(tmp_path / "jobs", on_done=results, max_duration_s=3600)
    await queue.start()
    try:
        queue.submit("first", media / "phone.mp4", tmp_path / "lessons")
        queue.submit("second", media / "old.avi", tmp_path / "lessons")
        assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["first.json", "second.json"]
        most_at_once = 0

        def both_done() -> bool:
            nonlocal most_at_once
            most_at_once = max(most_at_once, len(ingest_workers()))
            if queue.progress("first") is not None:
                assert queue.progress("second") == 0.0, "the second waits while the first runs"
            return len(results.done) == 2

        await until(both_done)
    finally:
        await queue.close()
    assert [lesson_id for lesson_id, _ in results.done] == ["first", "second"]
    assert most_at_once == 1
    first, second = results.of("first"), results.of("second")
    assert isinstance(first, Ingested) and first.media == tmp_path / "lessons" / "first.mp4" and first.transcoded
    assert isinstance(second, Ingested) and second.media.exists() and second.poster.exists()
    assert list((tmp_path / "jobs").iterdir()) == [], "a job is gone once its result is handed on"
    assert queue.progress("first") is None


async def test_a_killed_worker_fails_its_job_and_the_next_one_runs(
    long_upload: Path, media: Path, tmp_path: Path
) -> None:
    results, lessons = Results(), tmp_path / "lessons"
    queue = IngestQueue(tmp_path / "jobs", on_done=results, max_duration_s=3600)
    await queue.start()
    try:
        queue.submit("killed", long_upload, lessons)
        queue.submit("next", media / "phone.mp4", lessons)
        await until(lambda: (queue.progress("killed") or 0.0) > 0)  # mid-way: it has reported progress
        [worker] = ingest_workers("killed")
        os.kill(worker.pid, signal.SIGKILL)
        await until(lambda: len(results.done) == 2)
    finally:
        await queue.close()
    killed, following = results.of("killed"), results.of("next")
    assert isinstance(killed, IngestError)
    assert killed.reason.startswith("Processing stopped unexpectedly (the worker was killed by SIGKILL)")
    assert isinstance(following, Ingested)
    assert sorted(p.name for p in lessons.iterdir()) == ["next.jpg", "next.mp4"], "no half-made lesson"
    assert list((tmp_path / "jobs").iterdir()) == []


async def test_a_restarted_queue_redoes_an_interrupted_job(long_upload: Path, tmp_path: Path) -> None:
    results, jobs, lessons = Results(), tmp_path / "jobs", tmp_path / "lessons"
    stopped = IngestQueue(jobs, on_done=results, max_duration_s=3600)
    await stopped.start()
    stopped.submit("lesson-1", long_upload, lessons)
    await until(lambda: (stopped.progress("lesson-1") or 0.0) > 0)
    await stopped.close()  # the server stops mid-job
    assert results.done == [] and ingest_workers() == []
    assert [p.name for p in jobs.iterdir()] == ["lesson-1.json"]
    assert list(lessons.iterdir()) == [], "the interrupted job's partial files are removed"

    restarted = IngestQueue(jobs, on_done=results, max_duration_s=3600)
    await restarted.start()
    try:
        assert restarted.progress("lesson-1") is not None
        await until(lambda: len(results.done) == 1)
    finally:
        await restarted.close()
    [(lesson_id, result)] = results.done
    assert lesson_id == "lesson-1" and isinstance(result, Ingested)
    assert abs(result.duration_s - 60) <= 0.5 and result.media == lessons / "lesson-1.mp4"
    assert list(jobs.iterdir()) == []


async def test_a_full_queue_refuses_more_uploads(media: Path, tmp_path: Path) -> None:
    queue = IngestQueue(tmp_path / "jobs", max_waiting=1, on_done=Results(), max_duration_s=3600)
    (tmp_path / "jobs").mkdir()
    queue.submit("a", media / "pc.mp4", tmp_path)
    assert queue.waiting == queue.max_waiting == 1
    with pytest.raises(QueueFull):
        queue.submit("b", media / "pc.mp4", tmp_path)
    with pytest.raises(ValueError, match="Expected a lesson that is not being ingested"):
        queue.submit("a", media / "pc.mp4", tmp_path)
    with pytest.raises(ValueError, match="Expected a lesson id"):
        queue.submit("../a", media / "pc.mp4", tmp_path)
    assert queue.progress("a") == 0.0 and queue.progress("b") is None
    await queue.close()
