"""The data saver (省流量): a subscriber who asks for it gets the teacher's sound and a still picture
every few seconds, and no other video packet; asked off, moving pictures again. Real aiortc peers
through `skyclass serve`; the bytes are counted at the subscriber and extrapolated to 45 minutes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.media.ice import use_host_addresses
from server.media.rtp import vp8_keyframe_start

from .conftest import ServerProcess
from .peers import PatternTrack, SignalingClient, ToneTrack, publish, subscribe, video_payload_type

BROWSER_WINDOW_S = 15.0  # seconds of each mode measured in Chromium
WINDOW_S = 60.0
OVERHEAD = 12 + 10 + 28  # RTP header, SRTP tag, UDP and IP: what a data plan counts per packet


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


Packet = tuple[int, int, int, bytes, int]  # payload type, sequence number, timestamp, payload head, size


class Received:
    """The RTP one receiver gets (before aiortc's own handling, which still runs), with sizes."""

    def __init__(self, receiver: Any) -> None:
        self.packets: list[Packet] = []
        handle = receiver._handle_rtp_packet

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            size = len(packet.payload) + OVERHEAD
            self.packets.append(
                (packet.payload_type, packet.sequence_number, packet.timestamp, packet.payload[:16], size)
            )
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counting


def pictures(packets: list[Packet]) -> dict[int, bool]:
    """Each picture (RTP timestamp) seen, and whether its first packet starts a keyframe."""
    first: dict[int, tuple[int, bytes]] = {}
    for _, seq, ts, head, _ in packets:
        if ts not in first or ((seq - first[ts][0]) & 0xFFFF) > 0x8000:
            first[ts] = (seq, head)
    return {ts: vp8_keyframe_start(head) for ts, (_, head) in first.items()}


async def window(video: Received, audio: Received, seconds: float) -> tuple[list[Packet], list[Packet]]:
    video_start, audio_start = len(video.packets), len(audio.packets)
    await asyncio.sleep(seconds)
    return video.packets[video_start:], audio.packets[audio_start:]


async def test_sound_and_stills_only(server: ServerProcess) -> None:
    room = "data-saver"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "Wei"))
    pc, tracks = await subscribe(student)
    broadcast = await publish(teacher, ToneTrack(), PatternTrack())
    receivers = {t.receiver.track: t.receiver for t in pc.getTransceivers()}
    log, audio = Received(receivers[tracks["video"]]), Received(receivers[tracks["audio"]])
    await asyncio.sleep(3)  # moving pictures first
    moving, sound_before = await window(log, audio, 3)
    assert len(pictures(moving)) > 20, "no moving pictures before the data saver"

    skipped = server.metric("skyclass_sfu_still_skipped_total")
    await student.send({"type": "data_saver", "on": True})
    await asyncio.sleep(2)  # the picture in flight ends
    video, sound = await window(log, audio, WINDOW_S)
    video_pt = video_payload_type(pc)
    shown = pictures([p for p in video if p[0] == video_pt])
    assert shown and all(shown.values()), f"only keyframes on the data saver, got {shown}"
    assert 2 <= len(shown) <= WINDOW_S / 3 + 2, f"a still picture every few seconds, got {len(shown)}"
    # the sound goes on as before (at the rate this machine's aiortc teacher manages)
    assert len(sound) / WINDOW_S >= 0.9 * len(sound_before) / 3, (len(sound), len(sound_before))
    assert server.metric("skyclass_sfu_still_skipped_total") > skipped
    per_45_min = 45 * 60 / WINDOW_S
    stills, speech = sum(p[4] for p in video), sum(p[4] for p in sound)
    print(
        f"\ndata saver: stills {stills * per_45_min / 1e6:.1f} MB + sound {speech * per_45_min / 1e6:.1f} MB "
        f"per 45 minutes (this test's aiortc teacher sends Opus at 96 kbit/s; a browser's is ~32)"
    )

    await student.send({"type": "data_saver", "on": False})
    await asyncio.sleep(3)
    again, _ = await window(log, audio, 3)
    assert len(pictures(again)) > 20, "moving pictures came back"
    await broadcast.close()
    await pc.close()
    for client in (teacher, student):
        await client.close()


@pytest.mark.browser
async def test_the_pupil_page_saves_data_and_counts_it(server: ServerProcess) -> None:
    pytest.importorskip("playwright.async_api")
    from playwright.async_api import expect

    from tests.test_browser import PageLog, chromium, learn_url, stats, teach_url, wait_stats

    room, log = "data-saver-page", PageLog()
    async with chromium() as browser:
        teacher = log.watch(await browser.new_page(), "teacher")
        pupil = log.watch(await browser.new_page(), "pupil")
        try:
            await teacher.goto(teach_url(server, room))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await teacher.locator("#start").click()
            await pupil.goto(learn_url(server, room, "Wei"))
            await wait_stats(pupil, "s.source === 'live' && s.framesDecoded > 30")
            full = await stats(pupil)
            await asyncio.sleep(BROWSER_WINDOW_S)
            full_rate = ((await stats(pupil))["bytesUsed"] - full["bytesUsed"]) / BROWSER_WINDOW_S
            await expect(pupil.locator("#data-rate")).to_contain_text("MB/分钟")
            await pupil.locator("#data-saver").click()
            await wait_stats(pupil, "s.dataSaver === true")
            await asyncio.sleep(2)  # the picture in flight ends
            before = await stats(pupil)
            await asyncio.sleep(BROWSER_WINDOW_S)
            s = await stats(pupil)
            # still pictures: one every 5 s (and the odd one the browser asks for), not moving video
            assert s["framesDecoded"] - before["framesDecoded"] <= BROWSER_WINDOW_S / 2, s
            assert s["bytesUsed"] > before["bytesUsed"] and s["audioPacketsReceived"] > 0, s
            saver_rate = (s["bytesUsed"] - before["bytesUsed"]) / BROWSER_WINDOW_S
            # Chromium's teacher: its voice at the answer's Opus bitrate, in 40 ms packets
            assert saver_rate * 45 * 60 <= 15e6, f"{saver_rate * 2700 / 1e6:.1f} MB per 45 minutes"
            print(
                f"\nChromium pupil: full video {full_rate * 60 / 1e6:.2f} MB/min, "
                f"data saver {saver_rate * 2700 / 1e6:.1f} MB per 45 minutes"
            )
            await expect(pupil.locator("#data-used")).to_contain_text("MB")
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise


async def test_switching_again_and_again_is_rate_limited(server: ServerProcess) -> None:
    """A page that keeps asking for the data saver, or for fresh subscriptions, is refused like a chat flood."""
    room = "data-saver-flood"
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "Wei"))
    await student.expect("offer")
    for i in range(8):
        await student.send({"type": "data_saver", "on": i % 2 == 0})
    refused = await student.expect("error")
    assert refused["code"] == "rate_limited" and "data saver" in refused["message"], refused
    for _ in range(7):
        await student.send({"type": "subscribe"})
    while "data saver" in (refused := await student.expect("error"))["message"]:
        pass  # the refusals of the data saver's flood come first
    assert refused["code"] == "rate_limited" and "subscription" in refused["message"], refused
    await student.close()
