"""The classroom over the websocket: chat, hands, polls, moderation, resuming, attendance."""

from __future__ import annotations

import asyncio
import csv
import io

import httpx

from .conftest import ServerProcess
from .peers import SignalingClient


async def joined(server: ServerProcess, room: str, role: str, name: str, token: str | None = None) -> SignalingClient:
    client = await SignalingClient.connect(server.ws_url)
    await client.join(room, token or server.token(room, role, name))
    return client


async def until(client: SignalingClient, type_: str, check, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    """The first message of ``type_`` that passes ``check``."""
    async with asyncio.timeout(timeout):
        while True:
            message = await client.expect(type_, timeout)
            if check(message):
                return message


async def closed_with(client: SignalingClient) -> int:
    return await client.wait_closed()


async def test_chat_reaches_everyone_and_is_limited(server: ServerProcess) -> None:
    room = "class-chat"
    teacher = await joined(server, room, "teacher", "Ms Li")
    wei = await joined(server, room, "student", "Wei")
    fang = await joined(server, room, "student", "Fang")
    await wei.send({"type": "chat", "text": "老师好"})
    for client in (teacher, wei, fang):
        message = await client.expect("chat")
        assert (message["name"], message["role"], message["text"]) == ("Wei", "student", "老师好")
    await fang.send({"type": "chat", "text": "x" * 501})
    assert (await fang.expect("error"))["code"] == "bad_message"
    for i in range(8):
        await fang.send({"type": "chat", "text": f"spam {i}"})
    assert (await fang.expect("error"))["code"] == "rate_limited"
    for client in (teacher, wei, fang):
        await client.close()


async def test_hands_and_roster_go_to_the_teacher_and_inspectors_stay_unseen(server: ServerProcess) -> None:
    room = "class-hands"
    teacher = await joined(server, room, "teacher", "Ms Li")
    wei = await joined(server, room, "student", "Wei")
    inspector = await joined(server, room, "inspector", "Director Zhao")
    await wei.send({"type": "hand", "raised": True})
    hands = await until(teacher, "hands", lambda m: m["raised"])
    assert [h["name"] for h in hands["raised"]] == ["Wei"]
    roster = await until(teacher, "roster", lambda m: any(p["hand"] for p in m["participants"]))
    assert sorted(p["name"] for p in roster["participants"]) == ["Ms Li", "Wei"]  # no inspector
    await inspector.send({"type": "hand", "raised": True})
    assert (await inspector.expect("error"))["code"] == "forbidden"
    await wei.send({"type": "hand", "raised": False})
    assert (await until(teacher, "hands", lambda m: not m["raised"]))["raised"] == []
    for client in (teacher, wei, inspector):
        await client.close()


async def test_a_poll_counts_one_answer_each(server: ServerProcess) -> None:
    room = "class-poll"
    teacher = await joined(server, room, "teacher", "Ms Li")
    students = [await joined(server, room, "student", f"s{i}") for i in range(3)]
    await students[0].send({"type": "poll_open", "question": "?", "options": ["a", "b"]})
    assert (await students[0].expect("error"))["code"] == "forbidden"
    await teacher.send({"type": "poll_open", "question": "2 + 2 = ?", "options": ["3", "4", "5"]})
    polls = [await s.expect("poll") for s in students]
    poll_id = polls[0]["poll_id"]
    assert polls[0]["options"] == ["3", "4", "5"]
    for student, choice in zip(students, (1, 1, 0)):
        await student.send({"type": "poll_answer", "poll_id": poll_id, "choice": choice})
    await students[0].send({"type": "poll_answer", "poll_id": poll_id, "choice": 2})
    assert (await students[0].expect("error"))["code"] == "already_answered"
    live = await until(teacher, "poll_results", lambda m: m["answered"] == 3)
    assert live["counts"] == [1, 2, 0] and live["final"] is False
    await teacher.send({"type": "poll_close", "poll_id": poll_id, "show": True})
    for student in students:
        final = await until(student, "poll_results", lambda m: m["final"])
        assert final["counts"] == [1, 2, 0]
    for client in (teacher, *students):
        await client.close()


async def test_a_removed_student_cannot_come_back(server: ServerProcess) -> None:
    room = "class-remove"
    teacher = await joined(server, room, "teacher", "Ms Li")
    token = server.token(room, "student", "Noisy")
    noisy = await joined(server, room, "student", "Noisy", token)
    other = await joined(server, room, "student", "Quiet")
    await other.send({"type": "remove", "participant_id": "anyone"})
    assert (await other.expect("error"))["code"] == "forbidden"
    roster = await until(teacher, "roster", lambda m: len(m["participants"]) == 3)
    target = next(p["participant_id"] for p in roster["participants"] if p["name"] == "Noisy")
    await teacher.send({"type": "remove", "participant_id": target})
    assert (await noisy.expect("removed"))["reason"]
    assert await closed_with(noisy) == 4403
    again = await SignalingClient.connect(server.ws_url)
    await again.send({"type": "join", "room": room, "token": token})
    error = await again.expect("error")
    assert (error["code"], error["fatal"]) == ("removed", True)
    await other.send({"type": "ping"})
    await other.expect("pong")
    for client in (teacher, other):
        await client.close()


async def test_ending_the_lesson_closes_everyone(server: ServerProcess) -> None:
    room = "class-end"
    teacher = await joined(server, room, "teacher", "Ms Li")
    student = await joined(server, room, "student", "Wei")
    await student.send({"type": "end_lesson"})
    assert (await student.expect("error"))["code"] == "forbidden"
    await teacher.send({"type": "end_lesson"})
    for client in (teacher, student):
        await client.expect("lesson_ended")
        assert await closed_with(client) == 1000


async def test_a_dropped_student_resumes_with_hand_and_answer(server: ServerProcess) -> None:
    room = "class-resume"
    teacher = await joined(server, room, "teacher", "Ms Li")
    token = server.token(room, "student", "Wei")
    wei = await joined(server, room, "student", "Wei", token)
    await teacher.send({"type": "poll_open", "question": "?", "options": ["yes", "no"]})
    poll = await wei.expect("poll")
    await wei.send({"type": "poll_answer", "poll_id": poll["poll_id"], "choice": 1})
    await wei.send({"type": "hand", "raised": True})
    await until(teacher, "hands", lambda m: m["raised"])
    await wei.ws.close()  # the phone lost its connection: no leave
    roster = await until(teacher, "roster", lambda m: any(p["away"] for p in m["participants"]))
    assert [p["name"] for p in roster["participants"] if p["away"]] == ["Wei"]

    back = await SignalingClient.connect(server.ws_url)
    again = await back.join(room, token)
    assert (again["resumed"], again["hand"]) == (True, True)
    restored = await back.expect("poll")
    assert (restored["poll_id"], restored["answered"]) == (poll["poll_id"], 1)
    await until(teacher, "roster", lambda m: not any(p["away"] for p in m["participants"]))

    admin = {"Authorization": "Bearer " + server.token("*", "admin", "ops")}
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        attendance = (await http.get(f"/api/rooms/{room}/attendance")).json()
        wei_row = next(p for p in attendance["participants"] if p["name"] == "Wei")
        assert len(wei_row["stays"]) == 1, "a resumed session is one continuous stay"
        table = list(csv.DictReader(io.StringIO((await http.get(f"/api/rooms/{room}/attendance?format=csv")).text)))
        assert {row["name"] for row in table} == {"Ms Li", "Wei"}
        assert all(float(row["minutes"]) >= 0 for row in table)
    for client in (teacher, back):
        await client.close()


async def test_attendance_needs_the_rooms_teacher_or_an_admin(server: ServerProcess) -> None:
    room = "class-attendance"
    async with httpx.AsyncClient(base_url=server.url) as http:
        url = f"/api/rooms/{room}/attendance"
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, params={"token": server.token(room, "student", "s")})).status_code == 403
        assert (await http.get(url, params={"token": server.token("other", "teacher", "t")})).status_code == 403
        assert (await http.get(url, params={"token": server.token(room, "teacher", "t")})).status_code == 200


async def test_admins_see_every_room(server: ServerProcess) -> None:
    client = await joined(server, "class-overview", "teacher", "Ms Li")
    async with httpx.AsyncClient(base_url=server.url) as http:
        student = {"Authorization": "Bearer " + server.token("class-overview", "student", "s")}
        assert (await http.get("/api/rooms", headers=student)).status_code == 403
        admin = {"Authorization": "Bearer " + server.token("*", "admin", "ops")}
        listing = (await http.get("/api/rooms", headers=admin)).json()
    assert {"room": "class-overview", "live": False, "students": 0, "teachers": 1} in listing
    await client.close()


async def test_admins_issue_tokens_over_rest(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"room": "class-rest", "role": "student", "name": "Wei", "ttl": "15m"}
        teacher = {"Authorization": "Bearer " + server.token("class-rest", "teacher", "t")}
        assert (await http.post("/api/tokens", json=body, headers=teacher)).status_code == 403
        admin = {"Authorization": "Bearer " + server.token("*", "admin", "ops")}
        issued = await http.post("/api/tokens", json=body, headers=admin)
        assert issued.status_code == 200
        assert (await http.post("/api/tokens", json={**body, "role": "janitor"}, headers=admin)).status_code == 422
    client = await SignalingClient.connect(server.ws_url)
    assert (await client.join("class-rest", issued.json()["token"]))["name"] == "Wei"
    await client.close()


async def test_a_reconnect_before_the_drop_is_noticed_takes_over(server: ServerProcess) -> None:
    room = "class-takeover"
    teacher = await joined(server, room, "teacher", "Ms Li")
    token = server.token(room, "student", "Wei")
    old = await SignalingClient.connect(server.ws_url)
    old_seat = (await old.join(room, token))["resume"]
    await old.send({"type": "hand", "raised": True})
    await until(teacher, "hands", lambda m: m["raised"])
    stranger = await SignalingClient.connect(server.ws_url)  # the same link, without the seat's secret
    await stranger.send({"type": "join", "room": room, "token": token})
    assert (await stranger.expect("error"))["code"] == "seat_taken"
    assert await closed_with(stranger) == 4409
    assert (await until(teacher, "seat_taken", lambda m: True))["name"] == "Wei"  # the teacher sees it
    new = await SignalingClient.connect(server.ws_url)  # the old socket is still open on the server
    again = await new.join(room, token, resume=old_seat)
    assert (again["resumed"], again["hand"]) == (True, True)
    assert await closed_with(old) == 4409
    await teacher.send({"type": "poll_open", "question": "?", "options": ["a", "b"]})
    assert (await teacher.expect("poll_opened"))["poll_id"] == (await new.expect("poll"))["poll_id"]
    for client in (teacher, new):
        await client.close()
