"""The HLS tier: a viewer sent to HLS gets a playlist instead of an offer; the playlist is written
once from the teacher's broadcast (VP8 transcoded once, H.264 remuxed) and read back with PyAV
while the lesson runs."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import av
import httpx
import pytest

from .conftest import ServerProcess, running_server
from .peers import PatternTrack, ToneTrack, publish
from .test_classroom import joined


async def wait_for_playlist(url: str, timeout_s: float = 15.0) -> httpx.Response:
    async with httpx.AsyncClient(follow_redirects=True) as http, asyncio.timeout(timeout_s):
        while True:
            response = await http.get(url)
            if response.status_code == 200 and b"#EXTINF" in response.content:
                return response
            await asyncio.sleep(0.2)


def decode_live(url: str, video_frames: int) -> tuple[int, int, tuple[int, int], str]:
    """Read the live playlist as a player would, until ``video_frames`` pictures have decoded;
    (pictures, audio frames, picture size, video codec)."""
    pictures = audio = 0
    size = (0, 0)
    with av.open(url, options={"live_start_index": "-2"}, timeout=10) as container:
        video_stream = container.streams.video[0]
        codec = video_stream.codec_context.name
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                pictures += 1
                size = (frame.width, frame.height)
            else:
                audio += 1
            if pictures >= video_frames:
                break
    return pictures, audio, size, codec


def decode_sound_only(url: str) -> int:
    """Audio frames decoded from the sound-only playlist, which has no video stream."""
    with av.open(url, options={"live_start_index": "-2"}, timeout=10) as container:
        sound = container.streams.audio[0].codec_context
        assert not container.streams.video and (sound.name, sound.layout.name) == ("aac", "mono")
        return sum(1 for _, frame in zip(range(50), container.decode(audio=0), strict=False))


async def watch_over_hls(server: ServerProcess, room: str, codec: str | None) -> tuple[int, int, tuple[int, int], str]:
    viewer = await joined_over_hls(server, room, "Wei")
    teacher = await joined(server, room, "teacher", "Ms Li")
    publisher = await publish(teacher, ToneTrack(), PatternTrack(), video_codec=codec)
    try:
        if codec is None:  # the teacher publishes again: the playlist goes on, after a discontinuity
            first = await wait_for_playlist(server.url + viewer["hls"])
            await teacher.send({"type": "unpublish"})
            await publisher.close()
            publisher = await publish(teacher, ToneTrack(), PatternTrack(), video_codec=codec)
            await asyncio.sleep(3)
            again = await wait_for_playlist(server.url + viewer["hls"])
            assert "#EXT-X-DISCONTINUITY" in again.text
            assert segment_numbers(again.text)[-1] > segment_numbers(first.text)[-1]
        playlist = await wait_for_playlist(server.url + viewer["hls"])
        assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert playlist.headers["cache-control"] == "public, max-age=1"
        segment = playlist.text.split("\n")[-2]  # the newest segment: immutable, cached long
        async with httpx.AsyncClient() as http:
            response = await http.get(server.url + viewer["hls"].rsplit("/", 1)[0] + "/" + segment)
        assert response.headers["cache-control"] == "public, max-age=86400, immutable"
        # the sound alone beside it, for pupils saving data: AAC segments, no picture
        sound_only = await wait_for_playlist(server.url + viewer["hls"].replace("index.m3u8", "audio.m3u8"))
        assert "aud-" in sound_only.text
        sounds = await asyncio.to_thread(decode_sound_only, str(sound_only.url))
        assert sounds > 20, sounds
        return await asyncio.to_thread(decode_live, server.url + viewer["hls"], 60)
    finally:
        await publisher.close()
        await teacher.close()


def segment_numbers(playlist: str) -> list[int]:
    return [int(line[4:-3]) for line in playlist.splitlines() if line.startswith("seg-")]


async def joined_over_hls(server: ServerProcess, room: str, name: str) -> dict:  # type: ignore[type-arg]
    client = await joined_raw(server, room, name)
    joined_message = await client.expect("joined")
    assert re.fullmatch(rf"/media/[\w-]{{22}}/\d+/hls/{room}/index\.m3u8", joined_message["hls"])  # signed
    with pytest.raises(TimeoutError):
        await client.expect("offer", timeout=0.5)  # HLS viewers get no WebRTC offer
    return joined_message


async def joined_raw(server: ServerProcess, room: str, name: str):  # type: ignore[no-untyped-def]
    from .peers import SignalingClient

    client = await SignalingClient.connect(server.ws_url)
    await client.send({"type": "join", "room": room, "token": server.token(room, "student", name), "delivery": "hls"})
    return client


async def test_vp8_broadcast_transcoded_once_into_hls() -> None:
    with running_server() as server:
        pictures, audio, size, codec = await watch_over_hls(server, f"hls-{uuid.uuid4().hex[:6]}", None)
    assert codec == "h264" and size in {(320, 240), (640, 480)}  # aiortc starts small, then grows
    assert pictures >= 60 and audio > 0


async def test_h264_broadcast_remuxed_into_hls(tmp_path: Path) -> None:
    from .conftest import start_server, stop_server

    server = start_server(tmp_path, env={"SKYCLASS_VIDEO_CODEC": "H264"})
    try:
        pictures, audio, size, codec = await watch_over_hls(server, f"hls-{uuid.uuid4().hex[:6]}", "H264")
    finally:
        stop_server(server)
    assert codec == "h264" and size in {(320, 240), (640, 480)}  # aiortc starts small, then grows
    assert pictures >= 60 and audio > 0
