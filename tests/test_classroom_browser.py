"""The classroom in the web client (client_web/), in Debian's Chromium via Playwright.

A teacher page and two student pages in room "classroom-ui": a raised hand reaches the teacher,
a poll goes out and its answers come back, the results go to the students, the chat reaches
everyone, a removed student stays out, and "End lesson" ends every page. A second test drops a
student's and then the teacher's websocket and checks that both come back by themselves.

Needs /usr/bin/chromium (never `playwright install`). Run one browser test at a time.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import Dialog, Page, WebSocketRoute, expect  # noqa: E402

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
from tests.test_fallback_browser import RECORD_PEER_CONNECTIONS  # noqa: E402

pytestmark = browser_marks

ROOM = "classroom-ui"
MING = "小明 Xiao Ming"
HONG = "小红 Xiao Hong"


def accept_dialogs(page: Page, seen: list[str]) -> None:
    """Say yes to the teacher page's confirm() and remember what it asked."""

    async def accept(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)


def roster_row(teacher: Page, name: str) -> Any:
    return teacher.locator(f"#roster li[data-name='{name}']")


async def test_hands_poll_chat_remove_and_end(server: Any) -> None:
    log = PageLog()
    pages: dict[str, Page] = {}
    dialogs: list[str] = []
    async with chromium() as browser:
        try:
            teacher_ctx = await browser.new_context(
                viewport={"width": 1280, "height": 800}, permissions=["camera", "microphone"]
            )
            students_ctx = await browser.new_context(viewport={"width": 1000, "height": 700})

            teacher = log.watch(await teacher_ctx.new_page(), "teacher")
            pages["teacher"] = teacher
            accept_dialogs(teacher, dialogs)
            await teacher.goto(teach_url(server, ROOM))
            await wait_stats(teacher, "s.role === 'teacher' && s.state === 'joined'")

            students: list[Page] = []
            for label, name in (("ming", MING), ("hong", HONG)):
                page = log.watch(await students_ctx.new_page(), label)
                pages[label] = page
                await page.goto(learn_url(server, ROOM, name))
                students.append(page)
            ming, hong = students
            for page in students:
                s = await wait_stats(page, "s.state === 'connected' && s.role === 'student'")
                assert s["hand"] is False and s["poll"] is None and s["reconnects"] == 0, s
            s = await wait_stats(teacher, "s.roster === 3")  # the teacher and two students
            await expect(teacher.locator("#student-count")).to_have_text("2", timeout=TIMEOUT_MS)
            await expect(roster_row(teacher, HONG)).to_contain_text("学生 Student")
            await expect(roster_row(teacher, HONG).locator(".r-remove")).to_be_enabled()
            await expect(teacher.locator("#roster li[data-role='teacher'] .r-remove")).to_be_hidden()

            # Xiao Ming raises a hand: the teacher sees it, in the hands list and the class list.
            await ming.locator("#hand").click()
            await wait_stats(ming, "s.hand === true")
            await expect(ming.locator("#hand")).to_have_attribute("aria-pressed", "true")
            await expect(ming.locator("#hand")).to_contain_text("放下手")
            await expect(teacher.locator("#hands")).to_contain_text(MING, timeout=TIMEOUT_MS)
            await wait_stats(teacher, "s.hands === 1")
            await expect(teacher.locator("#hands-count")).to_have_text("1")
            await expect(roster_row(teacher, MING).locator(".r-hand")).to_be_visible()
            await expect(roster_row(teacher, HONG).locator(".r-hand")).to_be_hidden()
            await screenshot_all(pages, "classroom-1-hand")

            # A poll with three answers (the fourth box is left empty).
            await teacher.locator("#poll-question").fill("2 + 2 = ?")
            boxes = teacher.locator("#poll-options input")
            for i, option in enumerate(("3", "4", "5")):
                await boxes.nth(i).fill(option)
            await teacher.locator("#poll-ask").click()
            for page in students:
                await wait_stats(page, "s.poll !== null && s.poll.answered === null && !s.poll.closed")
                await expect(page.locator("#poll-card")).to_be_visible()
                await expect(page.locator("#poll-question")).to_have_text("2 + 2 = ?")
                await expect(page.locator(".poll-choice")).to_have_count(3)
            await ming.locator(".poll-choice").nth(1).click()
            await hong.locator(".poll-choice").nth(0).click()
            for page, choice in ((ming, 1), (hong, 0)):
                await wait_stats(page, f"s.poll.answered === {choice}")
                await expect(page.locator("#poll-status")).to_have_text("已提交 Answered")
                for i in range(3):
                    await expect(page.locator(".poll-choice").nth(i)).to_be_disabled()
            s = await wait_stats(teacher, "s.poll !== null && s.poll.answered === 2")
            assert s["poll"]["final"] is False, s
            await expect(teacher.locator("#poll-answered")).to_have_text("2")
            bars = teacher.locator("#poll-bars li")
            await expect(bars).to_have_count(3)
            for i, count in enumerate(("1", "1", "0")):
                await expect(bars.nth(i)).to_have_attribute("data-count", count)
            await screenshot_all(pages, "classroom-2-poll")

            # Closed with the results shown: the students see the final counts.
            await teacher.locator("#poll-close-show").click()
            await wait_stats(teacher, "s.poll.final === true")
            await expect(teacher.locator("#poll-state-label")).to_have_text("已结束 Closed")
            for page in students:
                await wait_stats(page, "s.poll.final === true && s.poll.closed")
                results = page.locator("#poll-results li")
                await expect(results).to_have_count(3)
                for i, count in enumerate(("1", "1", "0")):
                    await expect(results.nth(i)).to_have_attribute("data-count", count)
                await expect(page.locator("#poll-note")).to_contain_text("2 answered")
            await expect(ming.locator("#poll-results li.mine")).to_contain_text("4")

            # Xiao Hong writes in the chat (Enter sends it): the teacher and Xiao Ming see it.
            text = "老师，我有一个问题 I have a question"
            await hong.locator("#chat-input").fill(text)
            await hong.locator("#chat-input").press("Enter")
            for page in (teacher, ming, hong):
                await expect(page.locator("#chat-list")).to_contain_text(text, timeout=TIMEOUT_MS)
                await expect(page.locator("#chat-list")).to_contain_text(HONG)
                await wait_stats(page, "s.chat === 1")
            await expect(hong.locator("#chat-input")).to_have_value("")

            # Too many messages at once: the server drops one, and the teacher is told so plainly.
            for i in range(8):
                await teacher.locator("#chat-input").fill(f"Message {i}")
                await teacher.locator("#chat-input").press("Enter")
            await expect(teacher.locator("#chat-status")).to_contain_text("Too fast", timeout=TIMEOUT_MS)
            await expect(teacher.locator("#chat-status")).to_have_attribute("data-code", "rate_limited")
            await expect(teacher.locator("#error")).to_be_hidden()
            await expect(ming.locator("#chat-list")).to_contain_text("Message 0", timeout=TIMEOUT_MS)
            await screenshot_all(pages, "classroom-3-chat")

            # The teacher removes Xiao Hong (after a confirm): she is told, and does not reconnect.
            await roster_row(teacher, HONG).locator(".r-remove").click()
            await expect(hong.locator("#notice")).to_contain_text("移出", timeout=TIMEOUT_MS)
            s = await wait_stats(hong, "s.state === 'closed' || s.state === 'error'")
            assert s["ended"] == "removed" and s["reconnects"] == 0, s
            assert any(HONG in d for d in dialogs), dialogs
            await wait_stats(teacher, "s.roster === 2")
            await expect(roster_row(teacher, HONG)).to_have_count(0)
            await expect(teacher.locator("#student-count")).to_have_text("1", timeout=TIMEOUT_MS)
            # "closed" is final: a page that meant to come back would say "reconnecting".
            s = await stats(hong)
            assert s["state"] in ("closed", "error") and s["reconnects"] == 0, s
            await expect(hong.locator("#chat-input")).to_be_disabled()
            await expect(hong.locator("#error")).to_be_hidden()

            # The teacher ends the lesson: Xiao Ming is told, and both pages stay closed.
            await teacher.locator("#end-lesson").click()
            await expect(ming.locator("#notice")).to_contain_text("本节课已结束", timeout=TIMEOUT_MS)
            s = await wait_stats(ming, "s.state === 'closed'")
            assert s["ended"] == "lesson_ended" and s["reconnects"] == 0, s
            await expect(ming.locator("#waiting-text")).to_contain_text("本节课已结束")
            await wait_stats(teacher, "s.state === 'closed'")
            await expect(teacher.locator("#notice")).to_contain_text("本节课已结束")
            await expect(teacher.locator("#end-lesson")).to_be_disabled()
            assert any("End the lesson" in d for d in dialogs), dialogs
            await screenshot_all(pages, "classroom-4-ended")
            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "classroom-failed")
            print(log.dump())
            raise


async def test_pages_reconnect_and_resume(server: Any) -> None:
    room = ROOM + "-reconnect"
    log = PageLog()
    pages: dict[str, Page] = {}
    async with chromium() as browser:
        try:
            teacher_ctx = await browser.new_context(
                viewport={"width": 1280, "height": 800}, permissions=["camera", "microphone"]
            )
            student_ctx = await browser.new_context(viewport={"width": 1000, "height": 700})
            await student_ctx.add_init_script(RECORD_PEER_CONNECTIONS)
            teacher = log.watch(await teacher_ctx.new_page(), "teacher")
            pages["teacher"] = teacher
            await teacher.goto(teach_url(server, room))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await expect(teacher.locator("#start")).to_be_enabled(timeout=TIMEOUT_MS)
            await teacher.locator("#start").click()
            await wait_stats(teacher, "s.publishing && s.state === 'connected' && s.framesEncoded > 0")

            student = log.watch(await student_ctx.new_page(), "student")
            pages["student"] = student
            await student.goto(learn_url(server, room, MING))
            s = await wait_stats(student, "s.source === 'live' && s.state === 'connected'")
            assert s["subscriptions"] == 1, s
            await student.locator("#hand").click()
            await wait_stats(teacher, "s.hands === 1")

            await teacher.locator("#poll-question").fill("Ready?")
            boxes = teacher.locator("#poll-options input")
            await boxes.nth(0).fill("Yes")
            await boxes.nth(1).fill("No")
            await teacher.locator("#poll-ask").click()
            await wait_stats(student, "s.poll !== null")
            await student.locator(".poll-choice").nth(0).click()
            await wait_stats(teacher, "s.poll !== null && s.poll.answered === 1")

            # The student's connection drops (no leave): the page says so and comes back by itself.
            await student.evaluate("window.skyclass.dropConnection()")
            await wait_stats(student, "s.state === 'reconnecting'", 5_000)
            # Back in: a new offer follows the re-join and replaces the old peer connection.
            s = await wait_stats(student, "s.reconnects === 1 && s.subscriptions === 2 && s.state === 'connected'")
            print(f"\nstudent back: {s['reconnects']} reconnect, {s['subscriptions']} subscriptions")
            assert s["resumed"] is True, s  # the server kept the seat
            assert s["hand"] is True, s  # joined.hand
            assert s["poll"] == {"poll_id": s["poll"]["poll_id"], "answered": 0, "closed": False, "final": False}, s
            open_pcs = "window.__pcs.filter((p) => p.signalingState !== 'closed').length"
            assert await student.evaluate(f"[window.__pcs.length, {open_pcs}]") == [2, 1]  # the old one closed
            await expect(student.locator("#hand")).to_have_attribute("aria-pressed", "true")
            await expect(student.locator("#poll-status")).to_have_text("已提交 Answered")
            await expect(student.locator(".poll-choice").nth(0)).to_be_disabled()
            frames = s["framesDecoded"]
            await wait_stats(student, f"s.source === 'live' && s.framesDecoded > {frames + 10}")
            await wait_stats(teacher, "s.hands === 1 && s.roster === 2")
            await teacher.wait_for_function(
                f"() => {{ const r = document.querySelector(\"#roster li[data-name='{MING}']\");"
                " return r && !r.classList.contains('away'); }",
                timeout=TIMEOUT_MS,
            )

            # A longer outage: the reconnects fail for a while (the page backs off), and the teacher
            # sees the student greyed out as away; then the network is back and the seat with it.
            blocked = [True]

            async def network(ws: WebSocketRoute) -> None:
                if blocked[0]:
                    await ws.close()
                else:
                    ws.connect_to_server()

            await student.route_web_socket("**/ws", network)
            await student.evaluate("window.skyclass.dropConnection()")
            await wait_stats(student, "s.state === 'reconnecting'", 5_000)
            await expect(student.locator("#state")).to_contain_text("Reconnecting")
            row = roster_row(teacher, MING)
            await expect(row).to_have_class(re.compile(r"\baway\b"), timeout=TIMEOUT_MS)
            await expect(row.locator(".r-away")).to_be_visible()
            await wait_stats(teacher, "s.hands === 1")  # the hand stays raised while away
            await wait_stats(student, "s.reconnectAttempts >= 3 && s.state === 'reconnecting'")  # two refused
            blocked[0] = False
            s = await wait_stats(student, "s.reconnects === 2 && s.subscriptions === 3 && s.state === 'connected'")
            assert s["resumed"] is True and s["hand"] is True, s
            print("\n".join(line for line in log.lines if "reconnecting in" in line))
            await expect(row).not_to_have_class(re.compile(r"\baway\b"), timeout=TIMEOUT_MS)
            frames = s["framesDecoded"]
            await wait_stats(student, f"s.source === 'live' && s.framesDecoded > {frames + 10}")

            # The teacher's connection drops: the broadcast goes on, the page comes back to it.
            await teacher.evaluate("window.skyclass.dropConnection()")
            s = await wait_stats(teacher, "s.reconnects === 1 && s.state === 'connected' && s.publishing")
            assert s["resumed"] is True and s["live"] is True, s
            s = await wait_stats(teacher, "s.poll !== null && s.poll.answered === 1 && s.hands === 1")
            frames = (await stats(student))["framesDecoded"]
            s = await wait_stats(student, f"s.source === 'live' && s.framesDecoded > {frames + 10}")
            assert s["reconnects"] == 2 and s["live"] is True, s
            await teacher.locator("#chat-input").fill("Back again")
            await teacher.locator("#chat-input").press("Enter")
            await expect(student.locator("#chat-list")).to_contain_text("Back again", timeout=TIMEOUT_MS)
            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "reconnect-failed")
            print(log.dump())
            raise
