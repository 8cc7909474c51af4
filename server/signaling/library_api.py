"""The lesson library over HTTP: resumable uploads (tus 1.0, served by tuspyserver at
``/api/uploads``), the lessons API, and review. Who may do what is decided here, as in ``api.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from tuspyserver import create_tus_router

from ..lessons.catalog import Recording
from ..lessons.ingest_queue import QueueFull
from ..lessons.library import LibraryError, Uploader
from ..settings import Settings
from ..tokens import Grant, Role
from .access import audit, recording_urls
from .api import Caller, Services, Svc, sees_lesson, services, uploaded_by

router = APIRouter()
UPLOADERS = frozenset({Role.TEACHER, Role.ADMIN})


def uploader_of(svc: Services, grant: Grant) -> Uploader:
    return Uploader(grant.name, svc.schedule.school_of(grant.room) or "", grant.room)


def lesson_json(svc: Services, lesson: Recording) -> dict[str, object]:
    urls = recording_urls(svc.signer, lesson) if lesson.library_status != "processing" else {}
    return {
        "id": lesson.id,
        "title": lesson.title,
        "grade": lesson.grade,
        "subject": lesson.subject,
        "unit": lesson.unit,
        "description": lesson.description,
        "teacher": lesson.teacher,
        "school": lesson.school,
        "room": lesson.room,
        "source": lesson.source,
        "status": lesson.library_status,
        "progress": svc.library.progress(lesson),
        "duration_s": lesson.duration_s,
        "kind": lesson.kind,
        "poster_url": urls.get("poster_url"),
        "media_url": urls.get("media_url"),
        "error": lesson.error,
        "review": {"reason": lesson.review_reason, "by": lesson.reviewed_by} if lesson.reviewed_by else None,
        "created_at": lesson.started_at,
    }


async def _all(svc: Services) -> list[Recording]:
    return [Recording.from_json(r) for r in await svc.store.recordings(None, limit=100_000)]


@router.get("/api/lessons")
async def lessons(
    svc: Svc,
    grant: Caller,
    grade: str | None = None,
    subject: str | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    status: str | None = None,
    mine: bool = False,
) -> list[dict[str, object]]:
    """The lessons the caller may see, newest first; narrowed by grade, subject, status, words of
    the title or description (``q``), or to the caller's own (``mine``)."""
    words = (q or "").lower().split()
    found = []
    for lesson in await _all(svc):
        text = f"{lesson.title} {lesson.description} {lesson.unit} {lesson.teacher}".lower()
        if (
            sees_lesson(svc, grant, lesson)
            and (grade is None or lesson.grade == grade)
            and (subject is None or lesson.subject == subject)
            and (status is None or lesson.library_status == status)
            and (not mine or uploaded_by(svc, grant, lesson))
            and all(word in text for word in words)
        ):
            found.append(lesson_json(svc, lesson))
    return found


async def _lesson(svc: Services, grant: Grant, lesson_id: str) -> Recording:
    found = await svc.store.recording(lesson_id)
    lesson = Recording.from_json(found) if found else None
    if lesson is None or not sees_lesson(svc, grant, lesson):
        raise HTTPException(404, f"No lesson {lesson_id!r}")
    return lesson


@router.get("/api/lessons/{lesson_id}")
async def lesson(lesson_id: str, svc: Svc, grant: Caller) -> dict[str, object]:
    return lesson_json(svc, await _lesson(svc, grant, lesson_id))


class ReviewRequest(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=2000)


@router.post("/api/lessons/{lesson_id}/review")
async def review(lesson_id: str, body: ReviewRequest, svc: Svc, grant: Caller) -> dict[str, object]:
    """A reviewer's (or an admin's of the lesson's school) decision; never on one's own lesson."""
    found = await _lesson(svc, grant, lesson_id)
    if not (grant.role is Role.REVIEWER or (grant.role is Role.ADMIN and grant.covers_school(found.school))):
        raise svc.access.refuse(grant, "review lessons")
    if found.teacher == grant.name and found.source == "upload":
        raise svc.access.refuse(grant, "review their own lesson")
    local = svc.catalog.get(lesson_id)
    if local is None:
        raise HTTPException(409, f"Lesson {lesson_id!r} is kept by node {found.node}; review it there")
    try:
        reviewed = svc.library.review(local, body.decision == "approve", body.reason, grant.name)
    except LibraryError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    audit.info("lesson %s %sd by %s (%s): %s", lesson_id, body.decision, grant.name, grant.participant_id, body.reason)
    return lesson_json(svc, reviewed)


# Uploads (tus) ------------------------------------------------------------------------------------


async def upload_auth(request: Request) -> None:
    """Every tus request: a teacher's or an admin's token; a started upload only its uploader's."""
    svc = services(request)
    grant = await svc.access.grant(request)
    if grant.role not in UPLOADERS:
        raise svc.access.refuse(grant, "upload lessons; only teachers and admins")
    upload_id = request.path_params.get("uuid")
    if upload_id is not None:
        lesson = svc.catalog.get(upload_id)
        if lesson is None or not (uploaded_by(svc, grant, lesson) or svc.access.administers(grant, lesson.room)):
            raise HTTPException(404, f"No upload {upload_id!r} of yours")
    request.state.grant = grant


def pre_create(request: Request) -> Callable[[dict[str, str], dict[str, Any]], None]:
    """Refuses, before a byte is sent, what the headers already tell: the size, the metadata."""

    def check(metadata: dict[str, str], upload: dict[str, Any]) -> None:
        svc: Services = services(request)
        size = upload.get("size")
        limit = svc.settings.max_upload_bytes
        if size is None:
            raise HTTPException(400, "Upload-Length is required: the server checks the size before the upload")
        if size == 0:
            raise HTTPException(400, "The file is empty (0 bytes)")
        if size > limit:
            raise HTTPException(413, f"The file is {size / 1024**3:.1f} GB; the limit is {limit / 1024**3:.1f} GB")
        if svc.library.busy():
            raise HTTPException(503, "Too many lessons are waiting to be processed; try again in a few minutes")
        grant: Grant = request.state.grant
        uploader = uploader_of(svc, grant)
        if grant.role is Role.ADMIN and metadata.get("teacher"):  # an admin uploads a teacher's lesson
            uploader = Uploader(metadata["teacher"][:100], uploader.school, uploader.room)
        lesson_id = uuid.uuid4().hex
        try:
            svc.library.begin_upload(lesson_id, uploader, metadata)
        except LibraryError as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        request.state.lesson_id = lesson_id

    return check


def upload_file(request: Request) -> Callable[[dict[str, str]], dict[str, str]]:
    """The lesson's id is the upload's id (the last segment of the Location the server answers)."""
    return lambda metadata: {"uid": request.state.lesson_id} if hasattr(request.state, "lesson_id") else {}


def upload_complete(request: Request) -> Callable[[str, dict[str, str]], None]:
    def complete(file_path: str, metadata: dict[str, str]) -> None:
        try:
            services(request).library.uploaded(Path(file_path).name, Path(file_path))
        except QueueFull as exc:
            raise HTTPException(503, f"The lesson is uploaded but cannot be processed now: {exc}") from exc

    return complete


def upload_router(settings: Settings) -> APIRouter:
    # tuspyserver's hints name plain callables; it takes FastAPI dependencies in each place (its docs).
    router: APIRouter = create_tus_router(
        prefix="api/uploads",
        files_dir=str(settings.data_dir / "uploads"),
        max_size=settings.max_upload_bytes,
        auth=upload_auth,  # type: ignore[arg-type]
        days_to_keep=2,  # an upload left unfinished this long is forgotten
        pre_create_dep=pre_create,
        file_dep=upload_file,  # type: ignore[arg-type]
        upload_complete_dep=upload_complete,
        tags=["uploads"],
    )
    return router
