"""The timetable: parsing, every problem named by its line, the API, and what joiners are told."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from server.lessons.timetable import Mode, TimetableError, demo_timetable_text, parse_timetable

from .conftest import ServerProcess
from .peers import SignalingClient

MONDAY_0830 = dt.datetime(2026, 11, 30, 8, 30)
GOOD = """\
classes:
  - {id: g9-1, grade: 初三, name: 初三(1)班, school: 一中}
  - {id: g7-2, grade: 初一}
slots:
  - {class: g9-1, days: [mon, tue], start: "08:00", end: "08:45", subject: 数学, recording: demo}
  - {class: g9-1, days: [mon], start: "08:45", end: "09:30", subject: 语文, mode: recorded, recording: demo}
  - {class: g7-2, start: "08:00", end: "08:45", subject: 英语, recording: demo}
"""


def exists(recording: str, class_id: str) -> str | None:
    return None if recording == "demo" else f"there is no lesson {recording!r}"


def test_a_good_timetable() -> None:
    timetable = parse_timetable(GOOD, exists)
    slot = timetable.now("g9-1", MONDAY_0830)
    assert slot is not None and slot.subject == "数学"
    assert slot.mode is Mode.LIVE  # graduating grades are live unless told otherwise
    assert timetable.now("g7-2", MONDAY_0830).mode is Mode.RECORDED  # type: ignore[union-attr]
    assert timetable.now("g9-1", MONDAY_0830.replace(hour=9, minute=0)).subject == "语文"  # type: ignore[union-attr]
    assert timetable.now("g9-1", MONDAY_0830 + dt.timedelta(days=2)) is None  # Wednesday
    assert timetable.now("g9-1", MONDAY_0830.replace(hour=10)) is None


@pytest.mark.parametrize(
    ("line", "replacement", "problem"),
    [
        (
            6,
            '  - {class: g9-1, start: "08:30", end: "09:00", subject: x, recording: demo}',
            "line 6: overlaps the slot on line 5",
        ),
        (5, '  - {class: g9-9, start: "10:00", end: "11:00", subject: x, recording: demo}', "line 5: unknown class"),
        (7, '  - {class: g7-2, start: "08:00", end: "08:45", subject: x, recording: gone}', "line 7: there is no"),
        (6, '  - {class: g9-1, start: "9:xx", end: "09:30", subject: x, recording: demo}', "line 6: expected a time"),
        (7, '  - {class: g7-2, start: "09:00", end: "08:00", subject: x, recording: demo}', "line 7: the slot ends"),
        (7, '  - {class: g7-2, start: "08:00", end: "08:45", subject: x, mode: maybe, recording: demo}', "mode must"),
        (2, "  - {id: g9-1, grade: 九年级}", "line 2: grade"),
        (
            7,
            '  - {class: g7-2, start: "08:00", end: "08:45", subject: x, recording: demo, broadcast: g9-1}',
            "line 7: a class's slot cannot be a section of a class",
        ),
    ],
)
def test_problems_are_named_by_line(line: int, replacement: str, problem: str) -> None:
    lines = GOOD.splitlines()
    lines[line - 1] = replacement
    with pytest.raises(TimetableError) as refused:
        parse_timetable("\n".join(lines), exists)
    assert any(p.startswith(problem) or problem in p for p in refused.value.problems), refused.value.problems


def test_a_class_is_a_section_of_a_broadcast_in_its_slot() -> None:
    text = GOOD.replace("subject: 英语, recording: demo}", "subject: 英语, recording: demo, broadcast: g7-big}")
    timetable = parse_timetable(text, exists)
    assert timetable.broadcast_of("g7-2", MONDAY_0830) == "g7-big"
    assert timetable.broadcast_of("g7-2", MONDAY_0830.replace(hour=9)) is None  # after the slot
    assert timetable.broadcast_of("g9-1", MONDAY_0830) is None
    assert timetable.broadcasts(MONDAY_0830) == {"g7-big"}
    assert timetable.to_json()["slots"][2]["broadcast"] == "g7-big"


def test_not_yaml_at_all() -> None:
    with pytest.raises(TimetableError, match="not YAML"):
        parse_timetable("classes: [unclosed", exists)


def test_demo_timetable_is_valid() -> None:
    timetable = parse_timetable(demo_timetable_text(), exists)
    assert {c.grade for c in timetable.classes.values()} == {"初一", "初二", "初三", "高一", "高二", "高三"}
    live = {s.class_id for s in timetable.slots if s.mode is Mode.LIVE}
    assert live == {"g9-1", "g12-1"}


async def test_joined_tells_the_lesson(server: ServerProcess) -> None:
    for room, mode in (("g9-1", "live"), ("g7-1", "recorded")):
        client = await SignalingClient.connect(server.ws_url)
        lesson = (await client.join(room, server.token(room, "student", "s")))["lesson"]
        assert lesson["mode"] == mode
        assert lesson["recording"]["id"] == "demo"
        url = lesson["recording"]["url"]  # signed: the class's members get it, and it plays
        assert url.startswith("/media/") and url.endswith("/recordings/demo.webm")
        assert httpx.get(server.url + url, headers={"Range": "bytes=0-99"}).status_code == 206
        assert httpx.get(server.url + url.replace("/media/", "/media/x")).status_code == 403
        await client.close()
    client = await SignalingClient.connect(server.ws_url)
    assert (await client.join("no-such-class", server.token("no-such-class", "student", "s")))["lesson"] is None
    await client.close()


def test_timetable_api_refuses_bad_and_keeps_the_old(server: ServerProcess) -> None:
    admin = {"Authorization": "Bearer " + server.token("*", "admin", "ops")}
    before = httpx.get(server.url + "/api/timetable", headers=admin).json()
    bad = GOOD.replace("class: g7-2", "class: nowhere")
    refused = httpx.put(server.url + "/api/timetable", content=bad.encode(), headers=admin)
    assert refused.status_code == 400
    assert any("line 7: unknown class 'nowhere'" in p for p in refused.json()["detail"])
    assert httpx.get(server.url + "/api/timetable", headers=admin).json() == before
    student = {"Authorization": "Bearer " + server.token("g9-1", "student", "s")}
    assert httpx.put(server.url + "/api/timetable", content=GOOD.encode(), headers=student).status_code == 403
    assert httpx.put(server.url + "/api/timetable", content=GOOD.encode()).status_code == 401
    assert httpx.get(server.url + "/api/timetable", headers=admin).json() == before
    assert httpx.get(server.url + "/api/timetable").status_code == 401  # class ids are not for strangers
    own = httpx.get(server.url + "/api/timetable", headers=student).json()  # a pupil sees their own class
    assert {c["id"] for c in own["classes"]} == {"g9-1"} and {s["class"] for s in own["slots"]} == {"g9-1"}


def test_timetable_api_replaces_and_keeps_across_restarts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import start_server, stop_server

    server = start_server(tmp_path)
    try:
        admin = {"Authorization": "Bearer " + server.token("*", "admin", "ops")}
        accepted = httpx.put(server.url + "/api/timetable", content=GOOD.encode(), headers=admin)
        assert accepted.status_code == 200, accepted.text
        assert [c["id"] for c in accepted.json()["classes"]] == ["g9-1", "g7-2"]
    finally:
        stop_server(server)
    again = start_server(tmp_path)
    try:
        admin = {"Authorization": "Bearer " + again.token("*", "admin", "ops")}
        table = httpx.get(again.url + "/api/timetable", headers=admin).json()
        assert [c["id"] for c in table["classes"]] == ["g9-1", "g7-2"]
        listing = httpx.get(again.url + "/api/recordings", params={"room": "demo"}, headers=admin).json()
        assert [r["id"] for r in listing] == ["demo"]
    finally:
        stop_server(again)
