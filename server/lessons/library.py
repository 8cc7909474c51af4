"""The lesson library (录播): the lessons teachers upload, ingested once, reviewed by a teaching
researcher (教研员) before pupils see them; live recordings and the demo lesson are lessons too.

A lesson is a ``Recording`` of the catalog (its file, poster and sidecar on this node's disk; its
entry in the store, where every node lists it). An upload is made under the lesson's id, the tus
upload's own; when it completes, the ingest queue (another process) makes what browsers play, and
the lesson waits for review.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..state import Store
from .catalog import Catalog, Recording, Review, Status
from .ingest import Ingested, IngestError
from .ingest_queue import IngestQueue
from .timetable import GRADES

log = logging.getLogger(__name__)

LIMITS = {"filename": 255, "filetype": 100, "title": 200, "subject": 50, "unit": 100, "description": 2000}


class LibraryError(ValueError):
    """Refused, with a reason the teacher or reviewer reads; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Uploader:
    name: str
    school: str
    room: str  # the class of the teacher's token


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The upload's metadata, each field checked; raises ``LibraryError`` naming the first problem."""
    for field in ("filename", "filetype", "title", "grade", "subject"):  # filetype: a resume (HEAD) needs it
        if not metadata.get(field, "").strip():
            raise LibraryError(f"Upload-Metadata needs '{field}'")
    for field, limit in LIMITS.items():
        if len(metadata.get(field, "")) > limit:
            raise LibraryError(f"'{field}' has {len(metadata[field])} characters; at most {limit}")
    if metadata["grade"] not in GRADES:
        raise LibraryError(f"grade {metadata['grade']!r} is not one of {', '.join(GRADES)}")
    return {field: metadata.get(field, "").strip() for field in LIMITS | {"grade": 0}}


class Library:
    def __init__(self, catalog: Catalog, uploads: Path, queue: IngestQueue) -> None:
        self.catalog = catalog
        self.uploads = uploads  # where tus keeps the bytes while they arrive
        self.queue = queue

    def begin_upload(self, lesson_id: str, uploader: Uploader, metadata: dict[str, str]) -> Recording:
        fields = check_metadata(metadata)
        lesson = Recording(
            lesson_id,
            uploader.room,
            fields["title"],
            uploader.name,
            time.time(),
            "",
            Status.UPLOADING,
            source="upload",
            grade=fields["grade"],
            subject=fields["subject"],
            unit=fields["unit"],
            description=fields["description"],
            school=uploader.school,
            node=self.catalog.node,
        )
        self.catalog.add(lesson)
        return lesson

    def uploaded(self, lesson_id: str, path: Path) -> None:
        """The last byte arrived: ingest it (in the queue's worker process)."""
        lesson = self.catalog.get(lesson_id)
        if lesson is None:
            log.warning("upload %s completed, but no lesson was begun for it", lesson_id)
            return
        lesson.status, lesson.progress = Status.PROCESSING, 0.0
        self.catalog.update(lesson)
        self.queue.submit(lesson_id, path, self.catalog.directory)

    def ingested(self, lesson_id: str, result: Ingested | IngestError) -> None:
        """The ingest queue's word on a lesson: playable and waiting for review, or failed, why."""
        lesson = self.catalog.get(lesson_id)
        if lesson is None:
            return
        lesson.progress = None
        if isinstance(result, IngestError):
            lesson.status, lesson.error = Status.FAILED, result.reason
            log.info("lesson %s: ingest failed: %s", lesson_id, result.reason)
        else:
            final = self.catalog.directory / f"{lesson_id}{result.media.suffix}"
            result.media.replace(final)
            poster = self.catalog.directory / f"{lesson_id}-poster.jpg"
            result.poster.replace(poster)
            lesson.file, lesson.poster_file = final.name, poster.name
            lesson.status, lesson.kind, lesson.duration_s = Status.COMPLETE, result.kind, result.duration_s
            log.info(
                "lesson %s: %s, %.0f s, %s",
                lesson_id,
                result.kind,
                result.duration_s,
                "transcoded" if result.transcoded else "remuxed",
            )
        self.catalog.update(lesson)
        for leftover in self.uploads.glob(f"{lesson_id}*"):  # the upload's bytes and its info
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    def busy(self) -> bool:
        """So many lessons wait for their ingest that a new upload is refused (it would wait too long)."""
        return self.queue.waiting >= self.queue.max_waiting

    def progress(self, lesson: Recording) -> float | None:
        return self.queue.progress(lesson.id) if lesson.status is Status.PROCESSING else None

    def review(self, lesson: Recording, approve: bool, reason: str, by: str) -> Recording:
        if lesson.library_status in ("processing", "failed"):  # a decision may change; a lesson must be ready
            raise LibraryError(f"Lesson {lesson.id!r} is {lesson.library_status}; only a ready lesson is reviewed", 409)
        if not approve and not reason.strip():
            raise LibraryError("A rejection needs a reason the teacher can act on")
        lesson.review = Review.APPROVED if approve else Review.REJECTED
        lesson.review_reason, lesson.reviewed_by = reason.strip(), by
        self.catalog.update(lesson)
        return lesson


async def known_lessons(store: Store) -> dict[str, Recording]:
    """Every node's lessons, as the store lists them."""
    return {entry["id"]: Recording.from_json(entry) for entry in await store.recordings(None, limit=100_000)}


def lesson_problem(lesson: Recording | None, lesson_id: str, class_id: str) -> str | None:
    """Why a slot of ``class_id`` may not play ``lesson`` (None: it may): the timetable's check."""
    if lesson is None:
        return f"there is no lesson {lesson_id!r}"
    if lesson.status is not Status.COMPLETE and lesson.status is not Status.INTERRUPTED:
        return f"lesson {lesson_id!r} is {lesson.library_status}, not ready to play"
    if lesson.review is Review.APPROVED or (lesson.source == "live" and lesson.room == class_id):
        return None  # approved, or the class's own recording
    return f"lesson {lesson_id!r} is {lesson.review.value}: only approved lessons go in the timetable"
