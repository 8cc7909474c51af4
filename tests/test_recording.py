"""Every broadcast is recorded with PyAV from the forwarded packets (VP8 rooms to WebM, H.264 rooms to
MP4); the file plays, and survives a kill."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import av
import httpx
import pytest

from server.media.ice import use_host_addresses

from .conftest import ServerProcess, start_server
from .peers import PatternTrack, SignalingClient, ToneTrack, publish, subscribe


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


H264_ROOM = {"SKYCLASS_VIDEO_CODEC": "H264"}  # the server's setting for a room whose teacher publishes H.264


async def broadcast(
    server: ServerProcess, room: str, seconds: float, video_codec: str | None = None
) -> tuple[SignalingClient, object, PatternTrack]:
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    video = PatternTrack()
    pc = await publish(teacher, ToneTrack(), video, video_codec=video_codec)
    await asyncio.sleep(seconds)
    return teacher, pc, video


def first_times(path: Path) -> tuple[float, float, int, float]:
    """First video and audio presentation times, video frames decoded, last time decoded."""
    firsts: dict[str, float] = {}
    frames, last = 0, 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0, audio=0):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            seconds = float(frame.pts * frame.time_base)
            firsts.setdefault(kind, seconds)
            last = max(last, seconds)
            frames += kind == "video"
    return firsts["video"], firsts["audio"], frames, last


async def test_a_ten_second_lesson_is_recorded_and_plays(server: ServerProcess) -> None:
    room = "rec-ten"
    teacher, pc, video = await broadcast(server, room, 0.0)
    started = time.monotonic()
    await asyncio.sleep(10)
    sent = video.sent
    await teacher.send({"type": "unpublish"})
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(50):
            listing = (await http.get("/api/recordings", params={"room": room}, headers=server.member(room))).json()
            if listing and listing[0]["status"] == "complete":
                break
            await asyncio.sleep(0.1)
        assert len(listing) == 1, listing
        recording = listing[0]
        assert recording["teacher"] == "Ms Li"
        assert abs(recording["duration"] - (time.monotonic() - started)) < 1.0
        media = await http.get(recording["url"])
        assert media.status_code == 200 and media.headers["content-type"] == "video/webm"
        partial = await http.get(recording["url"], headers={"Range": "bytes=100-199"})
        assert partial.status_code == 206 and len(partial.content) == 100
    await pc.close()
    await teacher.close()

    path = server.log_path.parent / f"{recording['id']}.webm"
    path.write_bytes(media.content)
    first_video, first_audio, frames, last = first_times(path)
    assert abs(first_video - first_audio) < 0.1, f"video starts at {first_video:.3f} s, audio at {first_audio:.3f} s"
    assert abs(last - 10) < 0.5, f"the file lasts {last:.2f} s for a 10 s lesson"
    assert abs(frames - sent) <= sent * 0.05, f"{frames} frames recorded of {sent} sent"


@pytest.mark.parametrize(("codec", "suffix"), [(None, ".webm"), ("H264", ".mp4")])
async def test_a_recording_survives_the_server_being_killed(tmp_path: Path, codec: str | None, suffix: str) -> None:
    server = start_server(tmp_path, env=H264_ROOM if codec else None)
    try:
        teacher, pc, video = await broadcast(server, "rec-kill", 0, video_codec=codec)
        async with asyncio.timeout(20):  # the lesson's time runs from its first frame, not from the offer
            while not video.sent:
                await asyncio.sleep(0.05)
        killed_at_s = 6.0
        await asyncio.sleep(killed_at_s)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(5)
        await pc.close()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    recordings = tmp_path / "data" / "recordings"
    files = [f for f in recordings.glob(f"*{suffix}") if f.stem != "demo"]
    assert len(files) == 1
    _, _, frames, last = first_times(files[0])
    assert frames > 0
    assert last >= killed_at_s - 2, f"only {last:.2f} s of a {killed_at_s:.0f} s lesson survived the kill"
    from server.lessons.catalog import Catalog, Status

    (found,) = [r for r in Catalog(recordings).list() if r.id != "demo"]  # what a restarted server lists
    assert found.status is Status.INTERRUPTED and found.file == files[0].name
    assert found.duration_s is not None and found.duration_s >= killed_at_s - 2


@pytest.mark.parametrize("codec", [None, "H264"])
async def test_a_full_disk_ends_the_recording_not_the_lesson(tmp_path: Path, codec: str | None) -> None:
    """The server may write files of at most 120 KB (RLIMIT_FSIZE: writes beyond fail as on a full
    disk): the recording stops with an error in the log and the metrics, the students keep watching."""
    from server.lessons.catalog import Catalog
    from server.lessons.demo import ensure_demo_lesson

    from .conftest import stop_server

    ensure_demo_lesson(Catalog(tmp_path / "data" / "recordings"))  # larger than the limit: made beforehand
    server = start_server(tmp_path, env=H264_ROOM if codec else None, wrapper=("prlimit", f"--fsize={120 * 1024}"))
    try:
        room = "full-disk"
        teacher = await SignalingClient.connect(server.ws_url)
        await teacher.join(room, server.token(room, "teacher", "Ms Li"))
        student = await SignalingClient.connect(server.ws_url)
        await student.join(room, server.token(room, "student", "Wei"))
        pc, tracks = await subscribe(student)
        publisher = await publish(teacher, ToneTrack(), PatternTrack(), video_codec=codec)
        deadline = time.monotonic() + 30
        while server.metric("skyclass_server_recording_failures_total") < 1:
            assert time.monotonic() < deadline, "the recording never hit the limit"
            for _ in range(10):  # the lesson plays on meanwhile
                await asyncio.wait_for(tracks["video"].recv(), 5)
        failed_at = time.monotonic()
        while time.monotonic() - failed_at < 2:  # the lesson goes on
            await asyncio.wait_for(tracks["video"].recv(), 2)
        assert "the lesson goes on unrecorded" in server.log()
        await teacher.send({"type": "unpublish"})
        await student.expect("broadcast")
        async with httpx.AsyncClient() as http:
            listed = (
                await http.get(f"{server.url}/api/recordings", params={"room": room}, headers=server.member(room))
            ).json()
        assert [r["status"] for r in listed] == ["failed"], listed
        await publisher.close()
        await pc.close()
        for client in (teacher, student):
            await client.close()
    finally:
        stop_server(server)


async def test_an_h264_lesson_is_recorded_to_mp4_and_plays(tmp_path: Path) -> None:
    """A room whose teacher publishes H.264 is remuxed, as it is, into MP4 with its Opus."""
    from .conftest import stop_server

    server = start_server(tmp_path, env=H264_ROOM)
    try:
        room = "rec-h264"
        teacher, pc, video = await broadcast(server, room, 0.0, video_codec="H264")
        started = time.monotonic()
        await asyncio.sleep(10)
        sent = video.sent
        await teacher.send({"type": "unpublish"})
        async with httpx.AsyncClient(base_url=server.url) as http:
            for _ in range(50):
                listing = (await http.get("/api/recordings", params={"room": room}, headers=server.member(room))).json()
                if listing and listing[0]["status"] != "recording":
                    break
                await asyncio.sleep(0.1)
            assert len(listing) == 1 and listing[0]["status"] == "complete", listing
            recording = listing[0]
            assert abs(recording["duration"] - (time.monotonic() - started)) < 1.0
        await pc.close()
        await teacher.close()
    finally:
        stop_server(server)

    from server.lessons.catalog import Catalog

    recordings = tmp_path / "data" / "recordings"
    found = Catalog(recordings).get(recording["id"])
    assert found is not None and found.file == f"{recording['id']}.mp4"  # the catalog names the file written
    path = recordings / found.file
    with av.open(str(path)) as container:
        assert "mp4" in container.format.name
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.streams.video[0].codec_context.extradata  # the SPS/PPS, as avcC
    first_video, first_audio, frames, last = first_times(path)
    assert abs(first_video - first_audio) < 0.2, f"video starts at {first_video:.3f} s, audio at {first_audio:.3f} s"
    assert abs(last - 10) < 0.5, f"the file lasts {last:.2f} s for a 10 s lesson"
    assert abs(frames - sent) <= sent * 0.05, f"{frames} frames recorded of {sent} sent"
