"""A Chromium student on a bad link: 5% loss each way and 200 ms round trip for 60 s. The test
rewrites the page's signaling (Playwright routes its websocket) so the student's media goes through
the userspace impairment relay; the teacher is an aiortc publisher. Freezes are sampled from the
page's frame count every 100 ms, and Chromium's own freeze count is read from ``stats()``."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")

from playwright.async_api import WebSocketRoute  # noqa: E402

from server.media.ice import use_host_addresses  # noqa: E402
from tests.test_browser import PageLog, chromium, learn_url, stats, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402

from .conftest import ServerProcess  # noqa: E402
from .impairment import ImpairedPath, impair_offer, through  # noqa: E402
from .peers import PatternTrack, SignalingClient, ToneTrack, publish  # noqa: E402

pytestmark = browser_marks
DURATION_S = 60.0
LOSS, ONE_WAY_S = 0.05, 0.1
CANDIDATE_ADDRESS = re.compile(r"^(candidate:\S+ \d+ udp \d+ )\S+ \d+( typ .*)$", re.IGNORECASE)


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


class ImpairedSignaling:
    """Routes a page's websocket: the server's offer points the page at a relay, and the page's
    answer and candidates point the server at it too."""

    def __init__(self) -> None:
        self.path: ImpairedPath | None = None
        self.port: int | None = None

    async def route(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        page_side.on_message(lambda message: server_side.send(self._to_server(message)))
        server_side.on_message(lambda message: asyncio.ensure_future(self._to_page(page_side, message)))

    def _to_server(self, message: str | bytes) -> str:
        data: dict[str, Any] = json.loads(message)
        if data.get("target") == "subscribe" and self.port is not None:
            if data.get("type") == "answer":
                data["sdp"] = through(data["sdp"], self.port)
            elif data.get("type") == "ice" and data.get("candidate"):
                text = str(data["candidate"]).removeprefix("a=")
                data["candidate"] = CANDIDATE_ADDRESS.sub(rf"\g<1>127.0.0.1 {self.port}\g<2>", text)
        return json.dumps(data)

    async def _to_page(self, page_side: WebSocketRoute, message: str | bytes) -> None:
        data: dict[str, Any] = json.loads(message)
        if data.get("type") == "offer":
            data["sdp"], self.path, self.port = await impair_offer(data["sdp"], LOSS, ONE_WAY_S)
        page_side.send(json.dumps(data))


async def test_a_chromium_student_on_a_bad_link_for_a_minute(server: ServerProcess) -> None:
    room = "impaired-browser"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    publisher = await publish(teacher, ToneTrack(), PatternTrack())
    log = PageLog()
    signaling = ImpairedSignaling()
    try:
        async with chromium() as browser:
            context = await browser.new_context()
            await context.route_web_socket(re.compile(r".*/ws$"), signaling.route)
            student = log.watch(await context.new_page(), "student")
            await student.goto(learn_url(server, room, "far away"))
            await wait_stats(student, "s.source === 'live' && s.liveFramesDecoded > 30", timeout=30_000)
            first = await stats(student)
            started = last_change = time.monotonic()
            frames, longest = first["liveFramesDecoded"], 0.0
            while time.monotonic() - started < DURATION_S:
                await asyncio.sleep(0.1)
                now_frames = (await stats(student))["liveFramesDecoded"]
                now = time.monotonic()
                if now_frames > frames:
                    longest = max(longest, now - last_change)
                    frames, last_change = now_frames, now
            longest = max(longest, time.monotonic() - last_change)
            last = await stats(student)
            assert signaling.path is not None
            passed, lost = signaling.path.passed, signaling.path.lost
            fps = (last["liveFramesDecoded"] - first["liveFramesDecoded"]) / DURATION_S
            freezes = last["freezes"]["count"] - first["freezes"]["count"]
            frozen_s = last["freezes"]["seconds"] - first["freezes"]["seconds"]
            print(
                f"\nChromium, {LOSS:.0%} loss, {2 * ONE_WAY_S * 1000:.0f} ms RTT, {DURATION_S:.0f} s: {fps:.1f} fps, "
                f"longest gap between new frames {longest:.2f} s (sampled every 0.1 s, the page counts every 0.25 s); "
                f"Chromium counted {freezes} freezes, {frozen_s:.2f} s in all; sound concealed "
                f"{last['audioConcealed']:.1%}; layer {last['layer']}; relay lost {lost / (passed + lost):.1%}"
            )
            assert lost / (passed + lost) > 0.03  # the link really was that bad
            assert last["source"] == "live" and last["layer"] == "high"
            assert fps > 20
            assert longest < 1.0
            assert log.page_errors == [], log.dump()
    finally:
        if signaling.path is not None:
            signaling.path.close()
        await publisher.close()
        await teacher.close()
