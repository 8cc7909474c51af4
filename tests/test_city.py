"""The control room's server side on real servers: QoE reports refused when they are nonsense or too
many, the city view of two nodes on Redis (pupils from both, a freezing class worst), who may see
it, inspectors' tokens, and the attendance export (CSV, and an Excel workbook openpyxl opens)."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openpyxl
import pytest
from redis import Redis

from .conftest import TEST_SECRET, ServerProcess, start_server, stop_server
from .peers import SignalingClient, error_after

TIMETABLE = """\
classes:
  - {id: a1, grade: 初三, name: 初三(1)班, school: School A, enrolled: 40}
  - {id: a2, grade: 初二, name: 初二(2)班, school: School A, enrolled: 30}
  - {id: b1, grade: 初三, name: 初三(1)班, school: School B}
slots:
  - {class: a1, start: "00:00", end: "24:00", subject: 数学, mode: live}
  - {class: a2, start: "00:00", end: "24:00", subject: 语文, mode: recorded, recording: demo}
  - {class: b1, start: "00:00", end: "24:00", subject: 数学, mode: live}
"""
SMOOTH = {"type": "qoe", "fps": 29.0, "freezes": 0, "longest_freeze_s": 0.2, "concealed": 0.0, "path": "direct",
          "layer": "high", "rtt_ms": 40, "loss": 0.0, "period_s": 15}  # fmt: skip
FROZEN = SMOOTH | {"fps": 6.0, "freezes": 3, "longest_freeze_s": 4.5}


def admin(server: ServerProcess, scope: str = "city") -> dict[str, str]:
    return {"Authorization": "Bearer " + server.token("a1", "admin", f"ops of {scope}", scope=scope)}


async def member(server: ServerProcess, room: str, role: str, name: str) -> SignalingClient:
    client = await SignalingClient.connect(server.ws_url)
    await client.send({"type": "join", "room": room, "token": server.token(room, role, name), "subscribe": False})
    await client.expect("joined")
    return client


async def leave(client: SignalingClient) -> None:
    await client.send({"type": "leave"})
    await client.wait_closed()


def city(server: ServerProcess, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    answer = httpx.get(server.url + "/api/city", headers=headers, params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def until_city(server: ServerProcess, check: Any, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
    """The city view once ``check`` holds (nodes save their summaries every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        view = city(server, admin(server), **params)
        if check({r["room"]: r for r in view["rooms"]}):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.5)


@pytest.fixture(scope="module")
def timetable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("city") / "timetable.yaml"
    path.write_text(TIMETABLE, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def nodes(timetable: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two nodes on one Redis (a database of their own), the same timetable."""
    url = redis_url.rsplit("/", 1)[0] + "/8"
    Redis.from_url(url).flushdb()
    tmp = tmp_path_factory.mktemp("city-nodes")
    started = []
    for name in "ab":
        (tmp / name).mkdir()
        started.append(start_server(tmp / name, "--redis", url, env={"SKYCLASS_TIMETABLE": str(timetable)}))
    yield started
    for node in started:
        stop_server(node)
        assert "Traceback" not in node.log(), node.log()[-3000:]


async def test_qoe_reports_are_bounded_and_limited(nodes: list[ServerProcess]) -> None:
    a = nodes[0]
    room = f"q-{uuid.uuid4().hex[:6]}"
    teacher = await member(a, room, "teacher", "Ms Li")
    wei = await member(a, room, "student", "Wei")
    for nonsense in (
        SMOOTH | {"fps": 900},
        SMOOTH | {"path": "carrier pigeon"},
        SMOOTH | {"concealed": -0.5},
        SMOOTH | {"longest_freeze_s": 90, "period_s": 15},
        {"type": "qoe", "fps": 30},
    ):
        assert "qoe" in (await error_after(wei, nonsense, "message") or ""), nonsense  # bad_message, naming the field
    assert "only student" in (await error_after(teacher, SMOOTH, "message") or "")  # pupils only
    answers = [await error_after(wei, FROZEN, "message") for _ in range(4)]  # a burst of 3, then one each 5 s
    assert answers[:3] == [None] * 3 and "a quality report every 5 s" in (answers[3] or "")
    metrics = httpx.get(a.url + "/metrics", timeout=5).text
    assert f'skyclass_qoe_pupils{{grade="",path="direct",room="{room}",school=""}} 1.0' in metrics  # once
    assert f'skyclass_qoe_freezing_pupils{{grade="",room="{room}",school=""}} 1.0' in metrics
    for client in (teacher, wei):
        await leave(client)


async def test_the_city_view_spans_nodes_and_puts_freezing_classes_first(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    teacher = await member(a, "a1", "teacher", "Ms Li")  # a1 is held on A
    pupils_a1 = [await member(a, "a1", "student", f"a1 pupil {i}") for i in range(2)]
    pupils_a1.append(await member(b, "a1", "student", "a1 pupil on B"))  # its session on B
    b_teacher = await member(b, "b1", "teacher", "Mr Wang")  # b1 held on B
    pupil_b1 = await member(b, "b1", "student", "b1 pupil")
    pupil_a2 = await member(a, "a2", "student", "a2 pupil")
    for pupil in pupils_a1:
        await pupil.send(FROZEN)  # two nodes' parts of one class
    await pupil_b1.send(SMOOTH)
    await pupil_a2.send(SMOOTH | {"path": "recorded", "fps": 25})

    def ready(rooms: dict[str, Any]) -> bool:
        return all(rooms.get(r, {}).get("reporting") == n for r, n in (("a1", 3), ("b1", 1), ("a2", 1)))

    view = until_city(a, ready)
    rooms = {r["room"]: r for r in view["rooms"]}
    a1, b1, a2 = rooms["a1"], rooms["b1"], rooms["a2"]
    assert (a1["pupils"], a1["freezing"], a1["health"], a1["enrolled"]) == (3, 3, "bad", 40)
    assert (a1["school"], a1["grade"], a1["mode"], a1["teachers"]) == ("School A", "初三", "fallback", 1)
    assert (b1["pupils"], b1["health"], b1["median_fps"]) == (1, "good", 29.0)
    assert a2["mode"] == "recorded" and a2["paths"] == {"recorded": 1}
    assert a1["node"] and b1["node"]  # the node holding each (placement picks it; a1's parts come from both)
    assert view["rooms"][0]["room"] == "a1"  # worst first
    assert view["now"]["freezing"] == 3 and view["now"]["health"]["bad"] == 1
    assert {(t["school"], t["grade"]): t["rooms"] for t in view["tiles"]} == {
        ("School A", "初三"): 1, ("School A", "初二"): 1, ("School B", "初三"): 1,
    }  # fmt: skip
    # Either node answers the same; filters and paging.
    assert {r["room"] for r in city(b, admin(b))["rooms"]} == {"a1", "a2", "b1"}
    assert [r["room"] for r in city(a, admin(a), grade="初三")["rooms"]] == ["a1", "b1"]
    assert [r["room"] for r in city(a, admin(a), health="good")["rooms"]] == ["a2", "b1"]
    page = city(a, admin(a), limit=1, offset=1)
    assert page["total"] == 3 and [r["room"] for r in page["rooms"]] == ["a2"]  # a1, a2, b1: then by name
    assert httpx.get(a.url + "/api/city", params={"limit": 0}, headers=admin(a)).status_code == 422

    # Who may see it: a school's admin their school only; members of a class and strangers not.
    school_a = city(a, admin(a, "School A"))
    assert {r["room"] for r in school_a["rooms"]} == {"a1", "a2"} and school_a["schools"] == ["School A"]
    assert {r["room"] for r in city(a, admin(a, "School B"))["rooms"]} == {"b1"}
    for role in ("student", "teacher", "inspector", "reviewer"):
        headers = {"Authorization": "Bearer " + a.token("a1", role, role)}
        assert httpx.get(a.url + "/api/city", headers=headers).status_code == 403, role
    assert httpx.get(a.url + "/api/city").status_code == 401

    # A pupil who leaves is no longer counted (one who drops, for the minute its report stands).
    for pupil in pupils_a1:
        await leave(pupil)
    until_city(a, lambda rooms: rooms.get("a1", {}).get("reporting") == 0 and rooms["a1"]["pupils"] == 0)
    for client in (teacher, b_teacher, pupil_b1, pupil_a2):
        await leave(client)


async def test_an_inspector_token_is_minted_for_one_room_unseen(nodes: list[ServerProcess]) -> None:
    a = nodes[0]

    def ask(headers: dict[str, str], room: str = "a1") -> httpx.Response:
        return httpx.post(a.url + "/api/city/inspect", json={"room": room}, headers=headers, timeout=10)

    minted = ask(admin(a, "School A"))
    assert minted.status_code == 200, minted.text
    claims = jwt.decode(minted.json()["token"], TEST_SECRET, algorithms=["HS256"])
    assert (claims["role"], claims["room"], claims["exp"] - claims["iat"]) == ("inspector", "a1", 15 * 60)
    assert minted.json()["url"].startswith("/learn?room=a1&token=")
    assert ask(admin(a, "School B")).status_code == 403  # not their school
    assert ask(admin(a)).status_code == 200  # the city's
    own = {"Authorization": "Bearer " + a.token("a1", "inspector", "巡课 Zhang")}
    assert ask(own).status_code == 403 and ask(own, "b1").status_code == 403  # an inspector mints nothing
    for role in ("student", "teacher", "reviewer"):
        assert ask({"Authorization": "Bearer " + a.token("a1", role, role)}).status_code == 403, role
    assert ask({}).status_code == 401
    assert httpx.post(a.url + "/api/city/inspect", json={"room": ""}, headers=admin(a)).status_code == 422

    # In the class with it, unseen: the teacher's roster and count do not have them.
    room = f"insp-{uuid.uuid4().hex[:6]}"
    teacher = await member(a, room, "teacher", "Ms Li")
    pupil = await member(a, room, "student", "Wei")
    token = ask(admin(a), room).json()["token"]
    inspector = await SignalingClient.connect(a.ws_url)
    await inspector.send({"type": "join", "room": room, "token": token, "subscribe": False})
    assert (await inspector.expect("joined"))["role"] == "inspector"
    await asyncio.sleep(0.6)  # the teacher's view is refreshed at most 4 times a second
    rosters = [m for m in teacher.inbox if m["type"] == "roster"]
    assert rosters and all("inspector" not in {p["role"] for p in r["participants"]} for r in rosters)
    assert rosters[-1]["total"] == 2
    for client in (teacher, pupil, inspector):
        await leave(client)


async def test_the_attendance_export_matches_the_attendance_api(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    came = [await member(a, "a1", "student", f"export pupil {i}") for i in range(3)]
    came.append(await member(b, "a2", "student", "export pupil a2"))
    came.append(await member(b, "b1", "teacher", "Mr Wang"))
    headers = admin(a)
    rates = httpx.get(a.url + "/api/attendance/rates", headers=headers, timeout=10).json()
    today = time.strftime("%Y-%m-%d")
    report = httpx.get(a.url + "/api/reports/attendance", params={"date": today}, headers=headers).json()
    by_class = {c["class"]: c for c in rates["classes"]}
    for row in report["classes"]:
        assert row["pupils_attended"] == by_class[row["class_id"]]["attended"], row
        assert row["pupils_enrolled"] == by_class[row["class_id"]]["enrolled"], row
    assert report["total"]["pupils_attended"] == sum(c["attended"] for c in rates["classes"])
    school_a = next(s for s in report["schools"] if s["school"] == "School A")
    rates_a = next(s for s in rates["school"] if s["school"] == "School A")
    assert (school_a["pupils_attended"], school_a["pupils_enrolled"]) == (rates_a["attended"], rates_a["enrolled"])
    b1 = next(r for r in report["classes"] if r["class_id"] == "b1")
    assert (b1["teachers_expected"], b1["teachers_attended"], b1["teacher_rate"]) == (1, 1, 1.0)

    answer = httpx.get(a.url + "/api/reports/attendance", params={"date": today, "format": "xlsx"}, headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/vnd.openxml")
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    classes = list(book.worksheets[0].iter_rows(min_row=3, values_only=True))
    assert [r[2] for r in classes[:-1]] == [r["class_id"] for r in report["classes"]]
    total = classes[-1]
    assert total[0] == "合计 Total" and total[5] == report["total"]["pupils_attended"]
    assert total[4] == report["total"]["pupils_enrolled"]
    assert [s.title for s in book.worksheets] == ["班级 Classes", "学校 Schools", "年级 Grades"]

    csv_text = httpx.get(a.url + "/api/reports/attendance", params={"format": "csv"}, headers=headers).text
    lines = csv_text.lstrip("\ufeff").splitlines()
    assert len(lines) == 1 + len(report["classes"]) + 1 and lines[-1].startswith("合计 Total,")

    # Scoped like the rest: a school's admin gets their school's classes; members of a class none.
    school_b = httpx.get(a.url + "/api/reports/attendance", headers=admin(a, "School B")).json()
    assert [r["class_id"] for r in school_b["classes"]] == ["b1"]
    teacher = {"Authorization": "Bearer " + a.token("a1", "teacher", "Ms Li")}
    assert httpx.get(a.url + "/api/reports/attendance", headers=teacher).status_code == 403
    assert httpx.get(a.url + "/api/reports/attendance").status_code == 401
    bad_date = httpx.get(a.url + "/api/reports/attendance", params={"date": "yesterday"}, headers=headers)
    assert bad_date.status_code == 422
    for client in came:
        await leave(client)
