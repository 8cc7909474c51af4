"""Bad input gets a precise error, and nobody else notices: against a real `skyclass serve`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from .conftest import ServerProcess, start_server, stop_server
from .peers import SignalingClient


async def error_of(client: SignalingClient) -> dict[str, object]:
    return await client.expect("error")


async def closed_code(client: SignalingClient) -> int:
    return await client.wait_closed()


async def test_join_and_presence(server: ServerProcess) -> None:
    room = "sig-presence"
    teacher = await SignalingClient.connect(server.ws_url)
    joined = await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    assert (joined["role"], joined["name"], joined["live"]) == ("teacher", "Ms Li", False)
    assert (await teacher.expect("presence"))["students"] == 0
    students = [await SignalingClient.connect(server.ws_url) for _ in range(3)]
    for i, student in enumerate(students):
        await student.join(room, server.token(room, "student", f"s{i}"))
        assert (await student.expect("offer"))["target"] == "subscribe"
    inspector = await SignalingClient.connect(server.ws_url)
    await inspector.join(room, server.token(room, "inspector", "observer"))
    counts = []
    while not counts or counts[-1] != 3:
        counts.append((await teacher.expect("presence"))["students"])
    assert len(counts) < 3, f"presence was not coalesced: {counts}"
    assert (await students[2].expect("presence"))["students"] >= 1  # the class hears its size too
    await students[0].send({"type": "leave"})
    assert await closed_code(students[0]) == 1000
    assert (await teacher.expect("presence"))["students"] == 2
    for client in (teacher, *students[1:], inspector):
        await client.close()


@pytest.mark.parametrize(
    ("token_of", "code", "close"),
    [
        (lambda s: "garbage", "invalid_token", 4401),
        (lambda s: s.token("other-room", "student", "x"), "wrong_room", 4403),
        (lambda s: s.token("sig-auth", "student", "x", ttl_s=-10), "token_expired", 4401),
    ],
)
async def test_join_refused(server: ServerProcess, token_of, code: str, close: int) -> None:  # type: ignore[no-untyped-def]
    client = await SignalingClient.connect(server.ws_url)
    await client.send({"type": "join", "room": "sig-auth", "token": token_of(server)})
    error = await error_of(client)
    assert (error["code"], error["fatal"]) == (code, True)
    assert await closed_code(client) == close


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("{not json", "bad_json", "not JSON"),
        ("[1, 2]", "bad_json", "got list"),
        ('{"type": "dance"}', "bad_message", "Unknown message type 'dance'"),
        ('{"room": "x"}', "bad_message", "'type' field"),
        ('{"type": "join", "room": "x"}', "bad_message", "token"),
        ('{"type": "publish", "sdp": "v=0"}', "not_joined", "Expected join first"),
        ("x" * 70_000, "too_large", "at most 65536 bytes"),
    ],
)
async def test_bad_frames_get_precise_errors_and_the_session_goes_on(
    server: ServerProcess, frame: str, code: str, words: str
) -> None:
    client = await SignalingClient.connect(server.ws_url)
    await client.send(frame)
    error = await error_of(client)
    assert error["code"] == code and error["fatal"] is False
    assert words in str(error["message"])
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.close()


async def test_binary_frame_is_refused(server: ServerProcess) -> None:
    client = await SignalingClient.connect(server.ws_url)
    await client.ws.send(b"\x00\x01")
    assert (await error_of(client))["code"] == "binary_frame"
    await client.close()


async def test_roles_are_checked(server: ServerProcess) -> None:
    room = "sig-roles"
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "s"))
    await student.send({"type": "publish", "sdp": "v=0"})
    error = await error_of(student)
    assert error["code"] == "forbidden" and "only when the teacher invites them on stage" in str(error["message"])
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "t"))
    await teacher.send({"type": "invite", "participant_id": "nobody"})
    assert (await error_of(teacher))["code"] == "bad_state"
    await student.send({"type": "invite", "participant_id": "nobody"})
    assert (await error_of(student))["code"] == "forbidden"
    await student.send({"type": "mute", "participant_id": "nobody"})
    assert (await error_of(student))["code"] == "forbidden"
    await teacher.send({"type": "join", "room": room, "token": server.token(room, "teacher", "t")})
    assert (await error_of(teacher))["code"] == "already_joined"
    for client in (student, teacher):
        await client.close()


async def test_bad_sdp_is_refused_and_a_good_one_still_works(server: ServerProcess) -> None:
    from .peers import PatternTrack, publish

    room = "sig-sdp"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "t"))
    await teacher.send({"type": "publish", "sdp": "this is not sdp"})
    assert (await error_of(teacher))["code"] == "bad_sdp"
    await teacher.send({"type": "ice", "target": "publish", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
    assert (await error_of(teacher))["code"] == "bad_state"
    pc = await publish(teacher, PatternTrack())
    await teacher.send({"type": "ice", "target": "publish", "candidate": "candidate:nonsense", "sdpMid": "0"})
    assert (await error_of(teacher))["code"] == "bad_sdp"
    await pc.close()
    await teacher.close()


async def test_track_names_that_do_not_fit_the_offer_are_refused(server: ServerProcess) -> None:
    from loadtest.client import peer

    from .peers import PatternTrack, ToneTrack, publish

    room = "sig-tracks"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "t"))
    offering = peer()
    for track in (ToneTrack(), PatternTrack()):
        offering.addTransceiver(track, direction="sendonly")
    await offering.setLocalDescription(await offering.createOffer())
    sdp = offering.localDescription.sdp
    await teacher.send({"type": "publish", "sdp": sdp, "tracks": ["video", "audio"]})  # swapped
    error = await error_of(teacher)
    assert error["code"] == "bad_sdp" and "does not fit m-line 0 (audio)" in error["message"]
    await teacher.send({"type": "publish", "sdp": sdp, "tracks": ["audio"]})
    assert "Expected 2 track names" in (await error_of(teacher))["message"]
    await offering.close()
    await teacher.send({"type": "publish", "sdp": "v=0", "tracks": ["camera"]})
    assert (await error_of(teacher))["code"] == "bad_message"
    pc = await publish(teacher, ToneTrack(), PatternTrack(), names=["audio", "video"])  # the room goes on
    await pc.close()
    await teacher.close()


async def test_a_flood_is_rate_limited_without_disturbing_another_room(server: ServerProcess) -> None:
    flooder = await SignalingClient.connect(server.ws_url)
    await flooder.join("sig-flood", server.token("sig-flood", "student", "noisy"))
    bystander = await SignalingClient.connect(server.ws_url)
    await bystander.join("sig-calm", server.token("sig-calm", "student", "calm"))
    await asyncio.gather(*(flooder.send({"type": "ping"}) for _ in range(400)))
    error = await error_of(flooder)
    assert error["code"] == "rate_limited"
    await bystander.send({"type": "ping"})
    await bystander.expect("pong", timeout=5)
    for client in (flooder, bystander):
        await client.close()


async def test_silence_after_connecting_is_a_join_timeout(tmp_path: Path) -> None:
    quick = start_server(tmp_path, env={"SKYCLASS_JOIN_TIMEOUT_S": "0.5"})
    try:
        client = await SignalingClient.connect(quick.ws_url)
        error = await error_of(client)
        assert (error["code"], error["fatal"]) == ("join_timeout", True)
        assert await closed_code(client) == 4408
    finally:
        stop_server(quick)


async def test_room_status_api(server: ServerProcess) -> None:
    import httpx

    room = "sig-api"
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "s"))
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/api/rooms/{room}")).status_code == 401  # members only
        member = {"Authorization": "Bearer " + server.token(room, "student", "another")}
        status = (await http.get(f"{server.url}/api/rooms/{room}", headers=member)).json()
    assert status == {"room": room, "live": False, "students": 1}
    await student.close()
    assert json.loads(json.dumps(status))


async def test_a_signaling_only_join_gets_media_when_it_asks(server: ServerProcess) -> None:
    room = "sig-no-media"
    student = await SignalingClient.connect(server.ws_url)
    await student.send({"type": "join", "room": room, "token": server.token(room, "student", "s"), "subscribe": False})
    await student.expect("joined")
    await student.send({"type": "ping"})
    await student.expect("pong")
    assert not [m for m in student.inbox if m["type"] == "offer"], "an offer came without being asked for"
    await student.send({"type": "subscribe"})
    assert (await student.expect("offer"))["target"] == "subscribe"
    await student.close()
