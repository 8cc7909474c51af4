"""The control room's API: the city view, inspectors' tokens, and the daily attendance report.
Admins see their scope (a school's admin their school, the city's every room); see docs/protocol.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..lessons import reports
from ..lessons.timetable import SchoolClass
from ..tokens import Role, issue_token
from . import city
from .access import audit
from .api import Caller, Svc

router = APIRouter()

INSPECT_TTL_S = 15 * 60  # an inspector's look into a lesson: minted when asked, short-lived
READ_AT_ONCE = 32  # attendance reads in flight for a report (the store's pool holds as many)


@router.get("/api/city")
async def city_view(
    svc: Svc,
    grant: Caller,
    school: Annotated[str | None, Query(max_length=128)] = None,
    grade: Annotated[str | None, Query(max_length=16)] = None,
    health: Literal["bad", "poor", "good", "none"] | None = None,
    mode: Literal["live", "recorded", "fallback", "idle"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, object]:
    """Every room on every node in the caller's scope, merged from each node's summary, worst
    first: class, school, grade, mode, teacher live, pupils now / enrolled, QoE and its health,
    the node. ``total``, ``now`` and ``tiles`` (per school and grade) cover every room that passes
    the filters; ``rooms`` is the page ``offset``..``offset + limit``."""
    if grant.role is not Role.ADMIN:
        raise svc.access.refuse(grant, "see the city's rooms")
    merged = city.merge(await svc.store.room_summaries(), svc.schedule.timetable)
    mine = city.for_rooms(merged, visible=lambda room: svc.access.administers(grant, room))
    shown = city.for_rooms(mine, visible=lambda room: True, school=school, grade=grade, health=health, mode=mode)
    return {
        "total": len(shown),
        "offset": offset,
        "limit": limit,
        "rooms": [r.to_json() for r in shown[offset : offset + limit]],
        "now": city.now_json(shown),
        "tiles": city.tiles(shown),
        "schools": sorted({r.school for r in mine}),
        "grades": sorted({r.grade for r in mine}, key=reports.grade_order),
        "thresholds": city.THRESHOLDS,
        "at": time.time(),
    }


class InspectRequest(BaseModel):
    room: str = Field(min_length=1, max_length=128)


@router.post("/api/city/inspect")
async def inspect(body: InspectRequest, svc: Svc, grant: Caller) -> dict[str, object]:
    """A short-lived inspector's token for ``room`` (巡课: in the class, unseen by it), for an admin
    whose scope holds the room. Only an admin: an inspector minting its own next token would outlive
    its token and any revocation of it."""
    if not svc.access.administers(grant, body.room):
        raise svc.access.refuse(grant, f"inspect room {body.room!r}")
    token = issue_token(
        svc.settings.signing_secret,
        room=body.room,
        role=Role.INSPECTOR,
        name=grant.name,
        ttl_s=INSPECT_TTL_S,
        lifetimes=svc.settings.lifetimes,
    )
    audit.info("inspector token for room %s minted for %s (%s)", body.room, grant.name, grant.participant_id)
    return {
        "room": body.room,
        "token": token,
        "expires_in": INSPECT_TTL_S,
        "url": "/learn?" + urlencode({"room": body.room, "token": token}),
    }


@router.get("/api/reports/attendance", response_model=None)
async def attendance_report(
    svc: Svc,
    grant: Caller,
    date: dt.date | None = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response | dict[str, Any]:
    """The day's attendance and participation per class (pupils enrolled and attended, teachers
    expected and attended), summed per school and grade; admins, for their scope. ``date``: a day
    (YYYY-MM-DD), today by default."""
    if grant.role is not Role.ADMIN:
        raise svc.access.refuse(grant, "see attendance reports")
    day = date or dt.date.today()
    timetable = svc.schedule.timetable
    classes = [c for c in timetable.classes.values() if svc.access.administers(grant, c.id)]
    gate = asyncio.Semaphore(READ_AT_ONCE)
    live = reports.live_classes(timetable, day)

    async def row(school_class: SchoolClass) -> reports.Row:
        async with gate:
            stays = await svc.store.attendance(school_class.id)
        return reports.class_row(school_class, live, stays, day)

    rows = await asyncio.gather(*map(row, classes))
    rows.sort(key=lambda r: (r.school, reports.grade_order(r.grade), r.class_id))
    name = f"attendance-{day.isoformat()}"
    if format == "csv":
        disposition = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
        return Response("\ufeff" + reports.as_csv(rows), media_type="text/csv; charset=utf-8", headers=disposition)
    if format == "xlsx":
        body = await asyncio.get_running_loop().run_in_executor(None, reports.as_xlsx, day, rows)
        disposition = {"Content-Disposition": f'attachment; filename="{name}.xlsx"'}
        media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(body, media_type=media_type, headers=disposition)
    return reports.report(day, rows)
