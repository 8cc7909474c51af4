"""The student page's timetable fallback and the replay page, in Debian's Chromium via Playwright.

The session server runs the default timetable: "g9-1" and "g12-1" are live slots, "g7-1" a
recorded slot, every slot's recording the generated demo lesson ("demo", 20 s, VP8 + Opus WebM).
A live slot without a teacher (or with a frozen stream) plays the recording and switches back to
the teacher's video as soon as it flows; a recorded slot plays the recording.

Needs /usr/bin/chromium (never `playwright install`). Run one browser test at a time.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page, expect  # noqa: E402

from tests.test_browser import (  # noqa: E402
    TIMEOUT_MS,
    PageLog,
    chromium,
    learn_url,
    screenshot_all,
    stats,
    teach_url,
    wait_stats,
)
from tests.test_browser import pytestmark as browser_marks  # noqa: E402

pytestmark = browser_marks

SWITCH_LIMIT_S = 3.0  # live ↔ recorded, as the student sees it


def student_name(tag: str) -> str:
    return f"Student {tag} {uuid.uuid4().hex[:6]}"


async def assert_recording_advances(page: Page) -> dict[str, Any]:
    """The recording plays: its currentTime moves on (it loops every 20 s, hence the wrap)."""
    t0 = (await stats(page))["recordedTime"]
    return await wait_stats(page, f"s.source === 'recorded' && Math.abs(s.recordedTime - {t0}) > 0.5", 10_000)


async def start_teacher(page: Page, server: Any, room: str) -> float:
    """Open the teacher page, press Start once the camera shows; returns time.monotonic() of the click."""
    await page.goto(teach_url(server, room))
    await wait_stats(page, "s.role === 'teacher' && s.videoWidth > 0")
    await expect(page.locator("#start")).to_be_enabled(timeout=TIMEOUT_MS)
    started_at = time.monotonic()
    await page.locator("#start").click()
    return started_at


async def wait_switch(page: Page, source: str, since: float, what: str) -> dict[str, Any]:
    s = await wait_stats(page, f"s.source === '{source}'", TIMEOUT_MS)
    elapsed = time.monotonic() - since
    print(f"\n{what}: student on {source!r} {elapsed:.2f} s after it (page: lastSwitch={s['lastSwitch']})")
    assert elapsed < SWITCH_LIMIT_S, f"{what}: {source} after {elapsed:.2f} s; stats()={s}"
    return s


async def test_live_slot_falls_back_to_the_recording_and_back(server: Any) -> None:
    room = "g9-1"  # a live slot all day in the default timetable
    log = PageLog()
    pages: dict[str, Page] = {}
    async with chromium() as browser:
        try:
            student_ctx = await browser.new_context(viewport={"width": 800, "height": 500})
            teacher_ctx = await browser.new_context(
                viewport={"width": 1100, "height": 650}, permissions=["camera", "microphone"]
            )

            # No teacher yet: the student gets the slot's recording, not a waiting screen.
            student = log.watch(await student_ctx.new_page(), "student")
            pages["student"] = student
            t0 = time.monotonic()
            await student.goto(learn_url(server, room, student_name("fallback")))
            s = await wait_stats(student, "s.state === 'connected' && s.source === 'recorded'")
            print(
                f"\nno teacher: recording plays {time.monotonic() - t0:.2f} s after goto (lastSwitch={s['lastSwitch']})"
            )
            assert s["lesson"] == "live", s
            assert s["live"] is False, s
            assert s["recording"], s
            await expect(student.locator("#recorded-badge")).to_be_visible()
            await expect(student.locator("#recorded-badge")).to_contain_text("录播")
            await expect(student.locator("#waiting")).to_be_hidden()
            s = await assert_recording_advances(student)
            assert s["videoWidth"] > 0 and s["videoHeight"] > 0, s
            await screenshot_all(pages, "fallback-1-recorded")

            # The teacher starts: back to live within 3 s of Start.
            teacher = log.watch(await teacher_ctx.new_page(), "teacher1")
            pages["teacher"] = teacher
            started_at = await start_teacher(teacher, server, room)
            s = await wait_switch(student, "live", started_at, "teacher started")
            assert s["live"] is True and s["lastSwitch"]["to"] == "live", s
            assert s["recordedPaused"] is True, s
            await expect(student.locator("#recorded-badge")).to_be_hidden()
            frames = s["framesDecoded"]
            s = await wait_stats(student, f"s.source === 'live' && s.framesDecoded > {frames}")
            assert s["videoWidth"] > 0, s
            await screenshot_all(pages, "fallback-2-live")

            # The teacher's page goes away: the recording again within 3 s.
            closed_at = time.monotonic()
            await teacher.close()
            del pages["teacher"]
            s = await wait_switch(student, "recorded", closed_at, "teacher page closed")
            assert s["lastSwitch"]["to"] == "recorded", s
            await expect(student.locator("#recorded-badge")).to_be_visible()
            await assert_recording_advances(student)
            await screenshot_all(pages, "fallback-3-recorded-again")

            # A new teacher page: live again.
            teacher2 = log.watch(await teacher_ctx.new_page(), "teacher2")
            pages["teacher2"] = teacher2
            started_at = await start_teacher(teacher2, server, room)
            s = await wait_switch(student, "live", started_at, "second teacher started")
            await expect(student.locator("#recorded-badge")).to_be_hidden()
            frames = s["framesDecoded"]
            await wait_stats(student, f"s.source === 'live' && s.framesDecoded > {frames}")

            stopped_at = time.monotonic()
            await teacher2.locator("#stop").click()
            s = await wait_switch(student, "recorded", stopped_at, "second teacher stopped")
            assert s["lastSwitch"]["reason"] in ("no_teacher", "frozen"), s
            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "fallback-failed")
            print(log.dump())
            raise


async def test_recorded_slot_plays_the_recording(server: Any) -> None:
    room = "g7-1"  # a recorded slot all day in the default timetable
    log = PageLog()
    async with chromium() as browser:
        page = log.watch(await browser.new_page(viewport={"width": 800, "height": 500}), "student")
        try:
            t0 = time.monotonic()
            await page.goto(learn_url(server, room, student_name("recorded")))
            # The slot runs all day and its lesson lasts 20 s: the class's lesson is over, unless the
            # day has just begun. "Watch again" plays it from the start.
            s = await wait_stats(page, "s.source === 'recorded' || s.inStep.over")
            if s["inStep"]["over"]:
                await expect(page.locator("#watch-again")).to_be_visible()
                await page.locator("#watch-again").click()
            s = await wait_stats(page, "s.source === 'recorded'")
            print(
                f"\nrecorded slot: recording plays {time.monotonic() - t0:.2f} s after goto "
                f"(lastSwitch={s['lastSwitch']})"
            )
            assert s["lesson"] == "recorded", s
            s = await assert_recording_advances(page)
            assert s["videoWidth"] > 0 and s["videoHeight"] > 0, s
            assert s["framesDecoded"] > 0, s
            await expect(page.locator("#recorded-badge")).to_be_visible()
            await expect(page.locator("#waiting")).to_be_hidden()
            await expect(page.locator("#lesson")).to_be_visible()
            await screenshot_all({"student": page}, "recorded-slot")
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise


async def test_replay_page_plays_and_seeks_the_demo_lesson(server: Any) -> None:
    log = PageLog()
    async with chromium() as browser:
        page = log.watch(await browser.new_page(viewport={"width": 1000, "height": 700}), "replay")
        try:
            # Recorded lessons are their classes' own: a stranger's page finds nothing.
            await page.goto(f"{server.url}/replay/demo")
            s = await wait_stats(page, "s.loaded")
            await expect(page.locator("#error")).to_be_visible()
            # A pupil of a class whose timetable plays the demo lesson; the token leaves the address bar.
            await page.goto(f"{server.url}/replay/demo?token={server.token('g7-1', 'student', 'Wei')}")
            s = await wait_stats(page, "s.loaded && s.duration !== null && s.readyState >= 1")
            assert "token" not in page.url
            assert s["mode"] == "player" and s["id"] == "demo", s
            assert abs(s["duration"] - 20) <= 1, s
            await expect(page.locator("#title")).not_to_have_text("—")
            await expect(page.locator("#status")).to_contain_text("Complete")
            await expect(page.locator("#duration")).to_contain_text("0:20")

            seeks = s["seeks"]
            await page.evaluate("document.getElementById('video').currentTime = 10")
            s = await wait_stats(page, f"s.seeks > {seeks} && !s.seeking && s.readyState >= 2")
            assert abs(s["currentTime"] - 10) < 0.5, s
            await page.evaluate("document.getElementById('video').play()")
            s = await wait_stats(page, "!s.paused && s.currentTime > 10.3")
            assert s["videoWidth"] > 0, s
            await screenshot_all({"replay": page}, "replay-demo")

            # The class list and an unknown recording.
            await page.goto(f"{server.url}/replay?room=demo")
            s = await wait_stats(page, "s.loaded")
            assert s["mode"] == "list" and s["room"] == "demo" and s["listed"] >= 1, s
            await expect(page.locator("#list li[data-id='demo'] a")).to_have_attribute("href", "/replay/demo")
            await page.goto(f"{server.url}/replay/no-such-recording")
            s = await wait_stats(page, "s.loaded")
            await expect(page.locator("#error")).to_contain_text("not found")
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise


# The teacher page's peer connections, for the freeze test: it stops sending video (as a stalled
# camera or a dead uplink would) while the broadcast stays on.
def recording_instances(constructor: str, into: str) -> str:
    """An init script that keeps every ``window.<constructor>`` the page makes in ``window.<into>``."""
    return f"""(() => {{
  const Original = window.{constructor};
  window.{into} = [];
  window.{constructor} = class extends Original {{
    constructor(...args) {{
      super(...args);
      window.{into}.push(this);
    }}
  }};
}})();"""


RECORD_PEER_CONNECTIONS = recording_instances("RTCPeerConnection", "__pcs")

SET_VIDEO = """async (on) => {
  const pc = window.__pcs.filter((p) => p.signalingState !== 'closed').at(-1);
  const sender = pc.getSenders().find((s) => s.track ? s.track.kind === 'video' : true);
  if (!window.__videoTrack) window.__videoTrack = sender.track;
  await sender.replaceTrack(on ? window.__videoTrack : null);
}"""


async def test_live_slot_frozen_stream_falls_back_and_recovers(server: Any) -> None:
    room = "g12-1"  # the other live slot: test_live_slot_falls_back_to_the_recording_and_back uses g9-1
    log = PageLog()
    pages: dict[str, Page] = {}
    async with chromium() as browser:
        try:
            teacher_ctx = await browser.new_context(
                viewport={"width": 1100, "height": 650}, permissions=["camera", "microphone"]
            )
            await teacher_ctx.add_init_script(RECORD_PEER_CONNECTIONS)
            teacher = log.watch(await teacher_ctx.new_page(), "teacher")
            pages["teacher"] = teacher
            await start_teacher(teacher, server, room)
            await wait_stats(teacher, "s.publishing && s.state === 'connected' && s.framesEncoded > 0")

            # A student who arrives while the teacher is live goes straight to live.
            student_ctx = await browser.new_context(viewport={"width": 800, "height": 500})
            student = log.watch(await student_ctx.new_page(), "student")
            pages["student"] = student
            t0 = time.monotonic()
            await student.goto(learn_url(server, room, student_name("freeze")))
            s = await wait_stats(student, "s.source === 'live'")
            print(
                f"\njoined while live: live {time.monotonic() - t0:.2f} s after goto, "
                f"first frame {s['firstFrameMs']} ms, switches before live: {s['switches']}"
            )
            assert s["lesson"] == "live" and s["live"] is True, s

            # The teacher's video stops while the broadcast stays on: a freeze.
            frozen_at = time.monotonic()
            await teacher.evaluate(SET_VIDEO, False)
            s = await wait_stats(student, "s.source === 'recorded'", 10_000)
            elapsed = time.monotonic() - frozen_at
            print(f"video stopped: student on the recording {elapsed:.2f} s later (lastSwitch={s['lastSwitch']})")
            assert s["live"] is True and s["lastSwitch"]["reason"] == "frozen", s
            assert elapsed < SWITCH_LIMIT_S, s
            await expect(student.locator("#recorded-badge")).to_be_visible()
            await assert_recording_advances(student)

            # The video comes back: live again, without any broadcast message.
            resumed_at = time.monotonic()
            await teacher.evaluate(SET_VIDEO, True)
            s = await wait_switch(student, "live", resumed_at, "video resumed")
            assert s["lastSwitch"]["reason"] == "frames_resumed", s
            assert s["recordedPaused"] is True, s
            await expect(student.locator("#recorded-badge")).to_be_hidden()
            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "freeze-failed")
            print(log.dump())
            raise
