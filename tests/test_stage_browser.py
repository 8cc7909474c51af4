"""A student on stage and the teacher's shared screen in the web client, in Debian's Chromium.

One teacher page and two student pages in room "stage-ui", every page with Chromium's fake
camera and microphone. A student raises a hand, the teacher invites them on stage, they go on
stage: the other student and the teacher see and hear them through the server; the teacher
mutes, unmutes and ends the turn. A second invitation is declined and withdrawn, a third ends
with the student leaving the stage. Then the teacher shares the screen: the students get it as
the offer's `screen` slot, and it goes away when the teacher stops sharing.

getDisplayMedia needs no test hook: with `--use-fake-device-for-media-stream` and
`--use-fake-ui-for-media-stream` (tests/test_browser.py's launch arguments), headless Chromium
picks its fake screen ("screen:-3:0", 1280x720, moving) without asking.

Needs /usr/bin/chromium (never `playwright install`). Run one browser test at a time.
"""

from __future__ import annotations

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

ROOM = "stage-ui"
MING = "小明 Xiao Ming"
HONG = "小红 Xiao Hong"


async def frames_rise(page: Page, path: str, more: int = 10) -> dict[str, Any]:
    """`s.<path>.framesDecoded` goes up by more than `more` from now (the video keeps coming)."""
    first = (await stats(page))[path]["framesDecoded"]
    return await wait_stats(page, f"s.{path} !== null && s.{path}.framesDecoded > {first + more}")


async def test_student_on_stage_and_shared_screen(server: Any) -> None:
    log = PageLog()
    pages: dict[str, Page] = {}
    async with chromium() as browser:
        try:
            media = ["camera", "microphone"]
            teacher_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, permissions=media)
            students_ctx = await browser.new_context(viewport={"width": 1100, "height": 750}, permissions=media)

            teacher = log.watch(await teacher_ctx.new_page(), "teacher")
            pages["teacher"] = teacher
            await teacher.goto(teach_url(server, ROOM))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await expect(teacher.locator("#share")).to_be_disabled()  # only while broadcasting
            await expect(teacher.locator("#start")).to_be_enabled(timeout=TIMEOUT_MS)
            await teacher.locator("#start").click()
            await wait_stats(teacher, "s.publishing && s.state === 'connected' && s.framesEncoded > 0")
            # Teachers answer a subscription offer too: it brings the student on stage.
            s = await wait_stats(teacher, "s.subscription === 'connected'")
            assert s["subscriptions"] == 1 and s["stage"] is None and s["sharing"] is False, s

            students: list[Page] = []
            for label, name in (("ming", MING), ("hong", HONG)):
                page = log.watch(await students_ctx.new_page(), label)
                pages[label] = page
                await page.goto(learn_url(server, ROOM, name))
                students.append(page)
            ming, hong = students
            for page in students:
                s = await wait_stats(page, "s.source === 'live' && s.state === 'connected'")
                assert s["stage"] is None and s["screen"] is None and s["onStage"] is False, s
                assert s["publishing"] is False and s["invited"] is False, s
            await screenshot_all(pages, "stage-1-live")

            # Xiao Ming raises a hand; the teacher invites him from the hands list.
            await ming.locator("#hand").click()
            await wait_stats(teacher, "s.hands === 1")
            invite = teacher.locator("#hands li", has_text=MING).locator(".s-invite")
            await expect(invite).to_have_text("邀请上台 Invite on stage")
            await invite.click()
            await wait_stats(teacher, "s.invited !== null")
            await expect(teacher.locator("#stage-tile")).to_be_visible()
            await expect(teacher.locator("#stage-tile")).to_have_attribute("data-state", "invited")
            await wait_stats(ming, "s.invited === true")
            prompt = ming.locator("#invite-card")
            await expect(prompt).to_be_visible()
            await expect(prompt).to_contain_text("老师邀请你上台 The teacher invites you on stage")
            await expect(hong.locator("#invite-card")).to_be_hidden()

            # He goes on stage: his camera and microphone reach Xiao Hong and the teacher.
            await ming.locator("#go-on-stage").click()
            s = await wait_stats(
                ming, "s.onStage && s.publishing && s.publish.media === 'connected' && s.publish.framesEncoded > 0"
            )
            assert s["stage"]["name"] == MING and s["stage"]["muted"] is False, s
            await expect(prompt).to_be_hidden()
            await expect(ming.locator("#me-card")).to_be_visible()
            await expect(ming.locator("#leave-stage")).to_have_text("下台 Leave stage")
            await expect(ming.locator("#stage-tile")).to_be_hidden()  # not a tile of himself
            for label, page in (("hong", hong), ("teacher", teacher)):
                s = await wait_stats(
                    page,
                    f"s.stage !== null && s.stage.name === {MING!r} && s.stage.videoWidth > 0"
                    " && s.stage.framesDecoded > 0 && s.stage.audioPacketsReceived > 0",
                )
                print(f"\n{label} sees the stage: {s['stage']}")
                await frames_rise(page, "stage")
                await expect(page.locator("#stage-tile")).to_be_visible()
                await expect(page.locator("#stage-name")).to_have_text(MING)
                await expect(page.locator("#stage-waiting")).to_be_hidden()
            s = await stats(hong)
            assert s["source"] == "live", s  # the teacher's camera goes on meanwhile
            await expect(teacher.locator("#hands li", has_text=MING).locator(".s-end")).to_be_visible()
            await expect(teacher.locator("#roster li[data-name='小红 Xiao Hong'] .s-invite")).to_be_disabled()
            await screenshot_all(pages, "stage-2-on-stage")

            # Muted, then unmuted: everyone is told.
            await teacher.locator("#stage-mute").click()
            for page in (teacher, ming, hong):
                await wait_stats(page, "s.stage !== null && s.stage.muted === true")
            await expect(hong.locator("#stage-muted")).to_be_visible()
            await expect(ming.locator("#me-muted")).to_be_visible()
            await expect(teacher.locator("#stage-mute")).to_have_text("取消静音 Unmute")
            await teacher.locator("#stage-mute").click()
            for page in (teacher, ming, hong):
                await wait_stats(page, "s.stage !== null && s.stage.muted === false")
            await expect(hong.locator("#stage-muted")).to_be_hidden()

            # The teacher ends the turn: nobody on stage, and Xiao Ming's camera is released.
            await teacher.locator("#stage-end").click()
            for page in (ming, hong, teacher):
                await wait_stats(page, "s.stage === null")
            s = await wait_stats(ming, "!s.onStage && !s.publishing")
            await expect(ming.locator("#me-card")).to_be_hidden()
            await expect(hong.locator("#stage-tile")).to_be_hidden()
            await expect(teacher.locator("#stage-tile")).to_be_hidden()

            # From the class list this time: Xiao Hong says no thanks; the teacher withdraws it.
            await teacher.locator("#roster li[data-name='小红 Xiao Hong'] .s-invite").click()
            await wait_stats(hong, "s.invited === true")
            await hong.locator("#decline-stage").click()
            await wait_stats(hong, "s.invited === false && !s.publishing")
            await expect(hong.locator("#invite-card")).to_be_hidden()
            await teacher.locator("#stage-cancel").click()
            await wait_stats(teacher, "s.invited === null && s.stage === null")
            await expect(teacher.locator("#stage-tile")).to_be_hidden()

            # Xiao Ming again, and this time he leaves the stage himself.
            await teacher.locator("#roster li[data-name='小明 Xiao Ming'] .s-invite").click()
            await ming.locator("#go-on-stage").click()
            await wait_stats(hong, f"s.stage !== null && s.stage.name === {MING!r}")
            await frames_rise(hong, "stage")
            await wait_stats(ming, "s.onStage && s.publish.media === 'connected'")
            await ming.locator("#leave-stage").click()
            for page in (ming, hong, teacher):
                await wait_stats(page, "s.stage === null")
            await wait_stats(ming, "!s.onStage && !s.publishing")

            # The teacher shares the screen (Chromium's fake screen): the students get it large,
            # the camera small, both moving.
            await expect(teacher.locator("#share")).to_be_enabled()
            await teacher.locator("#share").click()
            s = await wait_stats(teacher, "s.sharing && s.screenFramesEncoded > 0 && s.state === 'connected'")
            await expect(teacher.locator("#unshare")).to_be_visible()
            await expect(teacher.locator("#screen-preview")).to_be_visible()
            for page in students:
                s = await wait_stats(page, "s.screen !== null && s.screen.videoWidth > 0 && s.screen.framesDecoded > 0")
                print(f"screen: {s['screen']}")
                await frames_rise(page, "screen")
                await expect(page.locator("#screen")).to_be_visible()
                await expect(page.locator("#main-stage")).to_have_class("stage sharing")
                frames = (await stats(page))["framesDecoded"]
                await wait_stats(page, f"s.source === 'live' && s.framesDecoded > {frames + 10}")
            await screenshot_all(pages, "stage-3-screen")

            # Stop sharing: the broadcast goes on with the camera alone; the screen goes away.
            await teacher.locator("#unshare").click()
            s = await wait_stats(teacher, "!s.sharing && s.publishing && s.live")
            await expect(teacher.locator("#share")).to_be_visible()
            for page in students:
                await wait_stats(page, "s.screen === null")
                await expect(page.locator("#screen")).to_be_hidden()
                frames = (await stats(page))["framesDecoded"]
                await wait_stats(page, f"s.source === 'live' && s.framesDecoded > {frames + 10}")
            await screenshot_all(pages, "stage-4-unshared")

            # Shared again, then stopped from the browser's own control (the screen track ends):
            # the page publishes the camera alone, as with "Stop sharing".
            await teacher.locator("#share").click()
            await wait_stats(teacher, "s.sharing && s.screenFramesEncoded > 0")
            await wait_stats(hong, "s.screen !== null && s.screen.framesDecoded > 0")
            await teacher.evaluate(
                "document.getElementById('screen-preview').srcObject.getVideoTracks()[0]"
                ".dispatchEvent(new Event('ended'))"
            )
            await wait_stats(teacher, "!s.sharing && s.publishing")
            await expect(teacher.locator("#unshare")).to_be_hidden()
            await wait_stats(hong, "s.screen === null")
            frames = (await stats(hong))["framesDecoded"]
            await wait_stats(hong, f"s.source === 'live' && s.framesDecoded > {frames + 10}")

            for page in students:
                await expect(page.locator("#error")).to_be_hidden()
            await expect(teacher.locator("#error")).to_be_hidden()
            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "stage-failed")
            print(log.dump())
            raise
