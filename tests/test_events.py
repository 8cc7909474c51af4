"""Lesson events in the server's log: one JSON object a line on ``skyclass.events``, with room, school
and grade, as a live lesson starts, loses its teacher and gets them back, falls back to the
recording and back, and ends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ServerProcess, start_server, stop_server
from .peers import PatternTrack, SignalingClient, publish

ROOM, OTHER = "ev-1", "ev-2"
TIMETABLE = f"""\
classes:
  - {{id: {ROOM}, grade: 初三, name: 初三(1)班, school: 事件中学}}
  - {{id: {OTHER}, grade: 高三, name: 高三(2)班, school: 事件中学}}
slots:
  - {{class: {ROOM}, start: "00:00", end: "24:00", subject: 数学, mode: live, recording: demo}}
  - {{class: {OTHER}, start: "00:00", end: "24:00", subject: 物理, mode: live, recording: demo}}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("events")
    timetable = tmp_path / "timetable.yaml"
    timetable.write_text(TIMETABLE, encoding="utf-8")
    process = start_server(tmp_path, env={"SKYCLASS_TIMETABLE": str(timetable)})
    try:
        yield process
    finally:
        stop_server(process)


def events(server: ServerProcess, room: str) -> list[dict[str, Any]]:
    found = []
    for line in server.log().splitlines():
        if line.startswith("{"):  # every JSON line is an event: other lines are text
            event = json.loads(line)
            if event["room"] == room:
                found.append(event)
    return found


async def next_event(server: ServerProcess, seen: int, name: str, room: str = ROOM) -> dict[str, Any]:
    """The first ``name`` event of ``room`` after the first ``seen`` ones (written as things happen)."""
    async with asyncio.timeout(10):
        while True:
            later = events(server, room)[seen:]
            if later:
                assert later[0]["event"] == name, later
                return later[0]
            await asyncio.sleep(0.1)


async def test_a_lesson_tells_the_log_what_happens(node: ServerProcess) -> None:
    token = node.token(ROOM, "teacher", "Ms Li")
    teacher = await SignalingClient.connect(node.ws_url)
    await teacher.join(ROOM, token)
    pupil = await SignalingClient.connect(node.ws_url)
    await pupil.join(ROOM, node.token(ROOM, "student", "Wei"))
    first = await publish(teacher, PatternTrack())
    await pupil.expect("broadcast")
    log = [await next_event(node, 0, "lesson_started")]

    await teacher.ws.close()  # the teacher's connection drops: no leave
    log.append(await next_event(node, len(log), "teacher_dropped"))
    assert node.metric("skyclass_live_lessons_teacher_away") == 1
    teacher = await SignalingClient.connect(node.ws_url)
    assert (await teacher.join(ROOM, token))["resumed"]
    log.append(await next_event(node, len(log), "teacher_returned"))
    assert node.metric("skyclass_live_lessons_teacher_away") == 0

    await teacher.send({"type": "unpublish"})
    assert (await pupil.expect("broadcast"))["live"] is False  # the page plays the recording now
    log.append(await next_event(node, len(log), "fallback_to_recording"))
    second = await publish(teacher, PatternTrack())
    assert (await pupil.expect("broadcast"))["live"] is True
    log.append(await next_event(node, len(log), "back_to_live"))
    await teacher.send({"type": "end_lesson"})
    log.append(await next_event(node, len(log), "lesson_ended"))
    assert len(events(node, ROOM)) == len(log), "one event each, nothing more"

    for event in log:
        assert (event["room"], event["school"], event["grade"]) == (ROOM, "事件中学", "初三")
        assert dt.datetime.fromisoformat(event["at"]).tzinfo is not None
    started, dropped, returned, fallback, back, ended = log
    teacher_id = started["teacher"]
    assert started["subject"] == "数学"
    assert dropped["teacher"] == returned["teacher"] == back["teacher"] == teacher_id
    assert returned["away_s"] >= 0
    assert (fallback["cause"], fallback["recording"]) == ("stopped", "demo")
    assert back["fallback_s"] >= 0
    assert ended["reason"] == "ended" and ended["duration_s"] >= 0
    for pc in (first, second):
        await pc.close()
    for client in (teacher, pupil):
        await client.close()


async def test_a_teacher_who_leaves_sends_the_class_to_the_recording(node: ServerProcess) -> None:
    teacher = await SignalingClient.connect(node.ws_url)
    await teacher.join(OTHER, node.token(OTHER, "teacher", "Mr Wang"))
    pupil = await SignalingClient.connect(node.ws_url)
    await pupil.join(OTHER, node.token(OTHER, "student", "Fang"))
    pc = await publish(teacher, PatternTrack())
    started = await next_event(node, 0, "lesson_started", OTHER)
    assert (started["school"], started["grade"], started["subject"]) == ("事件中学", "高三", "物理")
    await teacher.send({"type": "leave"})
    fallback = await next_event(node, 1, "fallback_to_recording", OTHER)
    assert fallback["cause"] == "teacher_left"
    assert node.metric("skyclass_live_lessons_teacher_away") == 0  # left on purpose: not away
    await pupil.send({"type": "leave"})
    ended = await next_event(node, 2, "lesson_ended", OTHER)
    assert ended["reason"] == "everyone_left"
    await pc.close()
    for client in (teacher, pupil):
        await client.close()
