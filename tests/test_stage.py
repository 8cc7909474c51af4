"""A student on stage and the teacher's shared screen, through the same forwarding path (aiortc peers)."""

from __future__ import annotations

import asyncio

import av
import httpx
import pytest

from server.media.ice import use_host_addresses

from .conftest import ServerProcess
from .peers import PatternTrack, RtpLog, SignalingClient, ToneTrack, best_match, publish, subscribe


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


async def shows(track, pattern_track: PatternTrack, frames: int = 60) -> bool:  # type: ignore[no-untyped-def]
    """True when one of the next ``frames`` frames of ``track`` is one ``pattern_track`` sent."""
    for _ in range(frames):
        frame = await asyncio.wait_for(track.recv(), 10)
        if best_match(frame.to_ndarray(format="rgb24"), pattern_track)[1] > 30:
            return True
    return False


async def test_a_student_on_stage_reaches_everyone(server: ServerProcess) -> None:
    room = "stage-flow"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    teacher_pc, teacher_tracks = await subscribe(teacher)
    camera = PatternTrack()
    broadcast = await publish(teacher, ToneTrack(), camera)

    wei = await SignalingClient.connect(server.ws_url)
    await wei.join(room, server.token(room, "student", "Wei"))
    wei_pc, _ = await subscribe(wei)
    fang = await SignalingClient.connect(server.ws_url)
    await fang.join(room, server.token(room, "student", "Fang"))
    fang_pc, fang_tracks = await subscribe(fang)
    assert await shows(fang_tracks["video"], camera)

    await wei.send({"type": "publish", "sdp": "v=0"})
    assert (await wei.expect("error"))["code"] == "forbidden"  # not invited yet
    await wei.send({"type": "hand", "raised": True})
    hands = await teacher.expect("hands")
    while not hands["raised"]:
        hands = await teacher.expect("hands")
    await teacher.send({"type": "invite", "participant_id": hands["raised"][0]["participant_id"]})
    await wei.expect("invited")
    face = PatternTrack(variant=1)
    on_stage = await publish(wei, ToneTrack(), face)
    roster = await teacher.expect("roster")
    while len(roster["participants"]) < 3:
        roster = await teacher.expect("roster")
    fang_pid = next(p["participant_id"] for p in roster["participants"] if p["name"] == "Fang")
    await teacher.send({"type": "invite", "participant_id": fang_pid})
    assert (await teacher.expect("error"))["code"] == "bad_state"  # one student on stage at a time
    stage = await fang.expect("stage")
    assert (stage["name"], stage["muted"]) == ("Wei", False)
    assert await shows(fang_tracks["stage_video"], face), "a classmate does not see the student on stage"
    assert await shows(teacher_tracks["stage_video"], face), "the teacher does not see the student on stage"
    assert await shows(fang_tracks["video"], camera), "the teacher's camera stopped for the class"

    # Muted: the student's sound stops reaching the class.
    stage_audio = next(t.receiver for t in fang_pc.getTransceivers()[3:4])
    log = RtpLog(stage_audio)
    await asyncio.sleep(0.5)
    assert log.packets, "the student on stage was not heard"
    await teacher.send({"type": "mute", "participant_id": stage["participant_id"], "muted": True})
    assert (await fang.expect("stage"))["muted"] is True
    await asyncio.sleep(0.3)
    heard = len(log.packets)
    await asyncio.sleep(1.0)
    assert len(log.packets) == heard, "a muted student was still heard"

    await teacher.send({"type": "end_turn"})
    assert (await fang.expect("stage"))["participant_id"] is None
    for peer in (broadcast, on_stage, teacher_pc, wei_pc, fang_pc):
        await peer.close()
    for client in (teacher, wei, fang):
        await client.close()


async def test_the_shared_screen_is_a_second_video(server: ServerProcess) -> None:
    room = "stage-screen"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "Wei"))
    pc, tracks = await subscribe(student)
    camera, screen = PatternTrack(), PatternTrack(variant=1)
    broadcast = await publish(teacher, ToneTrack(), camera, screen)
    started = asyncio.get_running_loop().time()
    assert await shows(tracks["screen"], screen), "the shared screen did not arrive as the screen"
    assert await shows(tracks["video"], camera), "the camera did not arrive as the camera"
    await teacher.send({"type": "unpublish"})
    lasted = asyncio.get_running_loop().time() - started
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(50):
            listing = (await http.get("/api/recordings", params={"room": room}, headers=server.member(room))).json()
            if listing and listing[0]["status"] == "complete":
                break
            await asyncio.sleep(0.1)
    assert 0 < listing[0]["duration"] < lasted + 2, "the camera's recording got the screen's timestamps"
    assert listing[0]["screen_url"], "the shared screen was not recorded"
    async with httpx.AsyncClient(base_url=server.url) as http:
        media = await http.get(listing[0]["screen_url"])
    assert media.status_code == 200
    path = server.log_path.parent / "screen.webm"
    path.write_bytes(media.content)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert frames and best_match(frames[-1], screen)[1] > 25, "the recorded screen is not the shared screen"
    for peer in (broadcast, pc):
        await peer.close()
    for client in (teacher, student):
        await client.close()
