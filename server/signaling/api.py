"""The JSON API: timetable, tokens and revocations, rooms, attendance, recordings, placement.
Every route decides who may use it (``access.py``); the whole matrix is in docs/protocol.md."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator

from ..cluster import Cluster
from ..lessons.attendance import as_csv, attendees, rates
from ..lessons.catalog import Catalog, Recording, Review
from ..lessons.library import Library, known_lessons
from ..lessons.schedule import Schedule
from ..lessons.timetable import TimetableError
from ..settings import Settings
from ..state import Store
from ..tokens import CITY, Grant, Role, issue_token, parse_duration
from .access import Access, MediaSigner, audit, recording_urls

router = APIRouter()


@dataclass
class Services:
    """What the routes use; made once by the app (``server/app.py``)."""

    settings: Settings
    cluster: Cluster
    catalog: Catalog
    schedule: Schedule
    access: Access
    signer: MediaSigner
    library: Library

    @property
    def store(self) -> Store:
        return self.cluster.rooms.store


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Svc = Annotated[Services, Depends(services)]


async def caller(request: Request, svc: Svc) -> Grant:
    return await svc.access.grant(request)


Caller = Annotated[Grant, Depends(caller)]


# Timetable ----------------------------------------------------------------------------------------


@router.get("/api/timetable")
async def timetable(svc: Svc, grant: Caller) -> dict[str, object]:
    """The timetable as the caller may see it: city admins and reviewers all of it, a school's admin
    its school, anyone else their own class."""
    table: dict[str, Any] = svc.schedule.timetable.to_json()
    if grant.role is Role.REVIEWER or svc.access.administers(grant):
        return table
    visible = {c["id"] for c in table["classes"] if svc.access.sees_room(grant, c["id"])}
    return {
        "classes": [c for c in table["classes"] if c["id"] in visible],
        "slots": [s for s in table["slots"] if s["class"] in visible],
    }


@router.put("/api/timetable")
async def replace_timetable(request: Request, svc: Svc, grant: Caller) -> dict[str, object]:
    """Replace the timetable (YAML or JSON body, docs/timetable.md); city admins only (it spans
    schools). A timetable with any problem is refused whole, naming each problem's line."""
    if not svc.access.administers(grant):
        raise svc.access.refuse(grant, "change the timetable; only a city admin")
    text = (await request.body()).decode("utf-8", errors="replace")
    svc.schedule.known = await known_lessons(svc.store)  # lessons of every node, as they are now
    try:
        table = svc.schedule.replace(text).to_json()
    except TimetableError as exc:
        raise HTTPException(status_code=400, detail=exc.problems) from exc
    audit.info("timetable replaced by %s (%s): %d classes", grant.name, grant.participant_id, len(table["classes"]))
    return table


# Tokens -------------------------------------------------------------------------------------------


class TokenRequest(BaseModel):
    room: str = Field(min_length=1, max_length=128)
    role: Role
    name: str = Field(min_length=1, max_length=100)
    ttl: str = "2h"
    scope: str | None = Field(default=None, min_length=1, max_length=128)  # admins: "city" or a school

    @model_validator(mode="after")
    def _admin_scope(self) -> TokenRequest:
        if (self.role is Role.ADMIN) != (self.scope is not None):
            raise ValueError("an admin token needs a scope (the city or a school), and only an admin token has one")
        return self


@router.post("/api/tokens")
async def make_token(body: TokenRequest, svc: Svc, grant: Caller) -> dict[str, str]:
    """Issue a token, as `skyclass token` does: admins, for the rooms of their scope, of a lower rank
    than their own (a city admin may issue school admins' tokens; no one a city admin's)."""
    minted = Grant(body.room, body.role, body.name, "", 0, scope=body.scope)
    allowed = (
        minted.rank() < grant.rank()
        and svc.access.administers(grant, body.room)
        and (body.role is not Role.ADMIN or body.scope != CITY)
    )
    if not allowed:
        raise svc.access.refuse(grant, f"issue a {body.role.value} token for room {body.room!r}")
    try:
        token = issue_token(
            svc.settings.signing_secret,
            room=body.room,
            role=body.role,
            name=body.name,
            ttl_s=parse_duration(body.ttl),
            scope=body.scope,
            lifetimes=svc.settings.lifetimes,
        )
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    audit.info(
        "token issued by %s (%s): %s %r for room %s, %s",
        grant.name,
        grant.participant_id,
        body.role.value,
        body.name,
        body.room,
        body.ttl,
    )
    return {"token": token}


class Revocation(BaseModel):
    room: str = Field(min_length=1, max_length=128)
    participant_id: str | None = Field(default=None, min_length=1, max_length=64)
    token_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> Revocation:
        if (self.participant_id is None) == (self.token_id is None):
            raise ValueError("name either participant_id or token_id")
        return self


@router.post("/api/revocations")
async def revoke(body: Revocation, svc: Svc, grant: Caller) -> dict[str, object]:
    """Revoke a participant (every token they hold) or one token: refused from now on for as long
    as such a token can live, and their live sessions are closed. The room's teacher or its admins."""
    if not (svc.access.teaches(grant, body.room) or svc.access.administers(grant, body.room)):
        raise svc.access.refuse(grant, f"revoke access to room {body.room!r}")
    keys = [f"participant:{body.participant_id}"] if body.participant_id else [f"token:{body.token_id}"]
    longest = max(svc.settings.lifetimes.join_s, svc.settings.lifetimes.admin_s)
    await svc.store.deny(keys, longest)
    closed = await svc.cluster.revoke(keys)
    audit.info(
        "access revoked by %s (%s) in room %s: %s, %d sessions closed",
        grant.name,
        grant.participant_id,
        body.room,
        ", ".join(keys),
        closed,
    )
    return {"revoked": keys, "sessions_closed": closed}


# Rooms and attendance -------------------------------------------------------------------------------


@router.get("/api/rooms")
async def all_rooms(svc: Svc, grant: Caller) -> list[dict[str, object]]:
    """The rooms held on this node in the caller's scope, for admins: live or not, students, teachers."""
    if grant.role is not Role.ADMIN:
        raise svc.access.refuse(grant, "see every room")
    return [
        {
            "room": room.name,
            "live": room.live,
            "students": await svc.store.count(room.name, Role.STUDENT),
            "teachers": await svc.store.count(room.name, Role.TEACHER),
        }
        for room in svc.cluster.rooms
        if svc.access.administers(grant, room.name)
    ]


@router.get("/api/rooms/{room}")
async def room_status(room: str, svc: Svc, grant: Caller) -> dict[str, object]:
    if not svc.access.sees_room(grant, room):
        raise svc.access.refuse(grant, f"see room {room!r}")
    return {
        "room": room,
        "live": await svc.store.broadcaster(room) is not None,
        "students": await svc.store.count(room, Role.STUDENT),
    }


@router.get("/api/rooms/{room}/attendance", response_model=None)
async def room_attendance(room: str, svc: Svc, grant: Caller, format: str = "json") -> Response | dict[str, object]:
    """Who attended, with join and leave times and minutes; JSON or ``?format=csv``.
    The room's teacher or its admins."""
    if not (svc.access.teaches(grant, room) or svc.access.administers(grant, room)):
        raise svc.access.refuse(grant, f"see the attendance of room {room!r}")
    people = attendees(await svc.store.attendance(room))
    if format == "csv":
        return Response(as_csv(people), media_type="text/csv; charset=utf-8")
    now = time.time()
    return {"room": room, "participants": [p.to_json(now) for p in people]}


@router.get("/api/attendance/rates")
async def attendance_rates(svc: Svc, grant: Caller) -> dict[str, object]:
    """Students attending / enrolled, per class, school and grade; admins, for their scope."""
    if grant.role is not Role.ADMIN:
        raise svc.access.refuse(grant, "see attendance rates")
    table = svc.schedule.timetable
    attended = {
        class_id: {a.name for a in attendees(await svc.store.attendance(class_id)) if a.role == Role.STUDENT}
        for class_id in table.classes
        if svc.access.administers(grant, class_id)
    }
    return rates(table, attended)


@router.get("/api/edge")
async def edge(room: str, svc: Svc, grant: Caller) -> JSONResponse:
    """The node a new viewer of ``room`` should connect to: the least loaded with room for one more,
    other than the node holding the room (its origin keeps its cores for the teacher and the feeds).
    Members of the room; node ids only to admins."""
    if not svc.access.sees_room(grant, room):
        raise svc.access.refuse(grant, f"be placed in room {room!r}")
    origin = await svc.store.room_owner(room)
    found = await svc.cluster.node.least_loaded(svc.settings.max_sessions, avoid=origin)
    if found is None:
        raise HTTPException(503, "Every node is full; try again in a few seconds")
    answer: dict[str, object] = {"url": found.url, "participants": found.participants}
    if grant.role is Role.ADMIN:
        answer["node"] = found.node
    return JSONResponse(answer)


# Recordings -------------------------------------------------------------------------------------------


def uploaded_by(svc: Services, grant: Grant, lesson: Recording) -> bool:
    """The teacher whose upload it is (by name, in the same school)."""
    school = svc.schedule.school_of(grant.room) or ""
    return (
        grant.role is Role.TEACHER
        and lesson.source == "upload"
        and (lesson.teacher, lesson.school) == (grant.name, school)
    )


def sees_lesson(svc: Services, grant: Grant, lesson: Recording) -> bool:
    """Who may see a lesson of the library (a live recording, an upload, the demo):
    - approved ones: everyone with a token;
    - reviewers, and the admins of its school (of its class, for a live recording);
    - an upload: its teacher;
    - a live recording: its class's members, and the classes whose timetable plays it (and their admins)."""
    if lesson.review is Review.APPROVED or grant.role is Role.REVIEWER:
        return True
    if grant.role is Role.ADMIN and (
        grant.covers_school(lesson.school) if lesson.school else svc.access.administers(grant, lesson.room)
    ):
        return True
    if lesson.source == "upload":
        return uploaded_by(svc, grant, lesson)
    if svc.access.sees_room(grant, lesson.room):
        return True
    if grant.role is Role.ADMIN:
        return any(svc.access.administers(grant, c) for c in svc.schedule.classes_playing(lesson.id))
    return svc.schedule.plays(grant.room, lesson.id)


@router.get("/api/recordings")
async def recordings(svc: Svc, grant: Caller, room: str | None = None) -> list[dict[str, object]]:
    """The recorded lessons the caller may see, newest first; ``room`` narrows to one class."""
    found = [Recording.from_json(r) for r in await svc.store.recordings(room)]
    return [recording_json(svc.signer, r) for r in found if sees_lesson(svc, grant, r)]


@router.get("/api/recordings/{recording_id}")
async def recording(recording_id: str, svc: Svc, grant: Caller) -> dict[str, object]:
    found = await svc.store.recording(recording_id)
    if found is None or not sees_lesson(svc, grant, Recording.from_json(found)):
        raise HTTPException(status_code=404, detail=f"No recording {recording_id!r}")
    return recording_json(svc.signer, Recording.from_json(found))


def recording_prefix(recording_id: str) -> str:
    return f"/recordings/{recording_id}"


def recording_json(signer: MediaSigner, recording: Recording) -> dict[str, object]:
    urls = recording_urls(signer, recording)
    return {
        "id": recording.id,
        "room": recording.room,
        "title": recording.title,
        "teacher": recording.teacher,
        "start": datetime.fromtimestamp(recording.started_at, UTC).isoformat(),
        "duration": recording.duration_s,
        "status": recording.status.value,
        "url": urls["media_url"],
        "screen_url": urls["screen_url"],
        "replay": f"/replay/{recording.id}",
    }
