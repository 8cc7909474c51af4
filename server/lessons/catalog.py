"""Recorded lessons, kept as media files with a JSON sidecar each: the catalog survives restarts
and a crash, and is nothing more than the recordings directory."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LIVE_SUFFIXES = (".webm", ".mp4")  # what the recorder writes a live lesson into (VP8, H.264)


class Review(StrEnum):
    """A teaching researcher's (教研员) decision: only approved lessons reach pupils elsewhere than
    in the class that recorded them."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Status(StrEnum):
    """The file's state. A lesson of the library also has a review (``Review``)."""

    UPLOADING = "uploading"  # a teacher's upload, not complete yet
    PROCESSING = "processing"  # uploaded, being ingested (probed, remuxed or transcoded once)
    RECORDING = "recording"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"  # the server stopped mid-lesson; the file plays up to that point
    FAILED = "failed"


@dataclass
class Recording:
    id: str
    room: str
    title: str
    teacher: str
    started_at: float
    file: str
    status: Status = Status.RECORDING
    duration_s: float | None = None
    video_frames: int = 0
    audio_frames: int = 0
    error: str | None = None
    screen_file: str | None = None  # the teacher's shared screen, when there was one
    node: str = ""  # whose disk holds the files
    # The library (录播): what the lesson is, and whether pupils may see it.
    source: str = "live"  # "live" (a broadcast here), "upload" (a teacher's file), "demo"
    grade: str = ""
    subject: str = ""
    unit: str = ""
    description: str = ""
    school: str = ""
    kind: str = "video"  # or "audio"
    poster_file: str | None = None
    review: Review = Review.PENDING
    review_reason: str = ""
    reviewed_by: str = ""
    progress: float | None = None  # percent ingested, while processing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recording:
        recording = cls(**data)
        recording.status = Status(recording.status)
        recording.review = Review(recording.review)
        return recording

    @property
    def library_status(self) -> str:
        """What the library shows: processing, failed, or the review (pending, approved, rejected)."""
        if self.status in (Status.UPLOADING, Status.PROCESSING, Status.RECORDING):
            return "processing"
        if self.status is Status.FAILED:
            return "failed"
        return self.review.value


class Catalog:
    """The recordings on this node's disk. Each change is also handed to ``on_change`` (the app
    writes it to the store, where every node lists it)."""

    def __init__(self, directory: Path, node: str = "") -> None:
        self.directory = directory
        self.node = node
        self.on_change: Callable[[Recording], object] = lambda recording: None
        directory.mkdir(parents=True, exist_ok=True)
        self._recordings: dict[str, Recording] = {}
        for sidecar in sorted(directory.glob("*.json")):
            try:
                recording = Recording.from_json(json.loads(sidecar.read_text()))
            except (ValueError, TypeError) as exc:
                log.warning("skipping %s: %s", sidecar, exc)
                continue
            recording.node = node  # the files are here now
            if recording.status is Status.RECORDING:  # its writer died with the last run
                recording.status = Status.INTERRUPTED
                recording.file = self._written(recording)
                recording.duration_s = probe_duration(self.media_path(recording))
                self._save(recording)
            self._recordings[recording.id] = recording

    def media_path(self, recording: Recording) -> Path:
        return self.directory / recording.file

    def begin(self, room: str, teacher: str, title: str = "") -> Recording:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        recording_id = f"{stamp}-{secrets.token_hex(3)}"
        # The name for VP8. The media backend gives the file the extension its codec needs (H.264:
        # .mp4) and tells it when the recording ends: ``finish`` keeps the file it names.
        recording = Recording(
            recording_id, room, title or room, teacher, time.time(), f"{recording_id}.webm", node=self.node
        )
        self._recordings[recording_id] = recording
        self._save(recording)
        return recording

    def finish(self, recording_id: str, info: dict[str, Any]) -> Recording | None:
        recording = self._recordings.get(recording_id)
        if recording is None:
            return None
        recording.file = Path(str(info["file"])).name if info.get("file") else self._written(recording)
        recording.duration_s = float(info.get("duration_s") or 0.0)
        recording.video_frames = int(info.get("video_frames") or 0)
        recording.audio_frames = int(info.get("audio_frames") or 0)
        recording.error = info.get("error") or None
        recording.screen_file = info.get("screen_file") or None
        recording.status = Status.FAILED if recording.error else Status.COMPLETE
        if not self.media_path(recording).exists():
            recording.status, recording.error = Status.FAILED, recording.error or "nothing was recorded"
        self._save(recording)
        return recording

    def _written(self, recording: Recording) -> str:
        """The file a live recording's writer made: the name it began with, or that name with the
        extension the codec chose (told at the end, so never by a writer that died)."""
        if self.media_path(recording).exists():
            return recording.file
        for suffix in LIVE_SUFFIXES:
            candidate = Path(recording.file).with_suffix(suffix).name
            if (self.directory / candidate).exists():
                return candidate
        return recording.file

    def update(self, recording: Recording) -> None:
        """Keep a changed entry (its sidecar, and the store through ``on_change``)."""
        self._recordings[recording.id] = recording
        self._save(recording)

    def add(self, recording: Recording) -> None:
        """Register a file that is already complete (the demo lesson, an imported one)."""
        self._recordings[recording.id] = recording
        self._save(recording)

    def get(self, recording_id: str) -> Recording | None:
        return self._recordings.get(recording_id)

    def list(self, room: str | None = None) -> list[Recording]:
        found = [r for r in self._recordings.values() if room is None or r.room == room]
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    def _save(self, recording: Recording) -> None:
        path = self.directory / f"{recording.id}.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")  # processes may share the directory
        temporary.write_text(json.dumps(recording.to_json(), ensure_ascii=False))
        temporary.replace(path)  # a crash leaves the old sidecar or the new one, never half of one
        self.on_change(recording)


def probe_duration(path: Path) -> float | None:
    """The time of the last packet in a media file, or None when it cannot be read."""
    import av  # here: the room layer imports the catalog, and the protocol the room layer

    try:
        with av.open(str(path)) as container:
            last = 0.0
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
            return last
    except (av.FFmpegError, OSError):
        return None
