"""End-to-end tests of the web client (client_web/) in Debian's Chromium, driven by Playwright.

One teacher page publishes Chromium's fake camera and microphone; student pages in the same
room must decode the teacher's video through the server, which forwards it without decoding.

Needs /usr/bin/chromium (never `playwright install`). Run one browser test at a time.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

CHROMIUM = os.environ.get("SKYCLASS_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
]

TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.browser,
    # Skipped on a developer machine without Chromium; in CI (.ci/run installs it) a missing browser fails.
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason=f"{CHROMIUM} is not installed"
    ),
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class PageLog:
    """Console messages and uncaught exceptions of the pages, printed when a test fails."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.page_errors: list[str] = []

    def watch(self, page: Page, label: str) -> Page:
        page.on("console", lambda m: self.lines.append(f"[{label}] console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.page_errors.append(f"[{label}] {e}"))
        return page

    def dump(self) -> str:
        return "\n".join(self.lines + ["uncaught:"] + self.page_errors)


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("window.skyclass.stats()")
    return result


async def wait_stats(page: Page, condition: str, timeout: int = TIMEOUT_MS) -> dict[str, Any]:
    """Wait until `condition` (a JS expression over `s`, the page's stats()) holds."""
    js = f"() => {{ if (!window.skyclass) return false; const s = window.skyclass.stats(); return !!({condition}); }}"
    try:
        await page.wait_for_function(js, timeout=timeout, polling=100)
    except Exception as e:
        current: object
        try:
            current = await stats(page)
        except Exception:  # noqa: BLE001
            current = "unavailable"
        raise AssertionError(f"{page.url}: {condition!r} not reached in {timeout} ms; stats()={current}") from e
    return await stats(page)


def learn_url(server: Any, room: str, name: str, role: str = "student") -> str:
    return f"{server.url}/learn?room={room}&token={server.token(room, role, name)}"


def teach_url(server: Any, room: str, name: str = "Teacher Li") -> str:
    return f"{server.url}/teach?room={room}&token={server.token(room, 'teacher', name)}"


async def screenshot_all(pages: dict[str, Page], tag: str, always: bool = False) -> None:
    """Screenshots into $SKYCLASS_SCREENSHOTS when it is set (``always``: else into test-artifacts/)."""
    out = os.environ.get("SKYCLASS_SCREENSHOTS") or ("test-artifacts" if always else None)
    if not out:
        return
    os.makedirs(out, exist_ok=True)
    for label, page in pages.items():
        try:
            await page.screenshot(path=os.path.join(out, f"{tag}-{label}.png"))
        except Exception:  # noqa: BLE001
            pass


async def test_teacher_broadcasts_to_three_students(server: Any) -> None:
    room = f"browser-{uuid.uuid4().hex[:8]}"
    log = PageLog()
    pages: dict[str, Page] = {}
    async with chromium() as browser:
        try:
            students_ctx = await browser.new_context(viewport={"width": 800, "height": 500})
            teacher_ctx = await browser.new_context(
                viewport={"width": 1100, "height": 650}, permissions=["camera", "microphone"]
            )

            # Students arrive first: they must see the waiting overlay.
            loaded_at: dict[str, float] = {}
            students: list[Page] = []
            for i in range(3):
                label = f"student{i + 1}"
                page = log.watch(await students_ctx.new_page(), label)
                pages[label] = page
                loaded_at[label] = time.monotonic()
                await page.goto(learn_url(server, room, f"Student {i + 1}"))
                students.append(page)
            for page in students:
                s = await wait_stats(page, "s.state === 'connected' && s.role === 'student'")
                assert s["source"] == "none", s
                assert s["live"] is False, s
                await expect(page.locator("#waiting")).to_be_visible()
                await expect(page.locator("#waiting-text")).to_contain_text("等待老师")

            teacher = log.watch(await teacher_ctx.new_page(), "teacher")
            pages["teacher"] = teacher
            await teacher.goto(teach_url(server, room))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await expect(teacher.locator("#start")).to_be_enabled(timeout=TIMEOUT_MS)
            await expect(teacher.locator("#student-count")).to_have_text("3", timeout=TIMEOUT_MS)
            await screenshot_all(pages, "1-waiting")

            started_at = time.monotonic()
            await teacher.locator("#start").click()
            await wait_stats(teacher, "s.publishing && s.state === 'connected' && s.framesEncoded > 0")

            for label, page in zip(("student1", "student2", "student3"), students):
                s = await wait_stats(page, "s.source === 'live'")
                seen = time.monotonic()
                print(
                    f"\n{label}: first frame {s['firstFrameMs']} ms after page load "
                    f"(seen by the test {seen - loaded_at[label]:.2f} s after goto, "
                    f"{seen - started_at:.2f} s after Start); {s['videoWidth']}x{s['videoHeight']}"
                )
                assert s["videoWidth"] > 0 and s["videoHeight"] > 0, s
                assert s["layer"] == "high", s  # a clear link: the full picture
                first = s["framesDecoded"]
                s = await wait_stats(page, f"s.framesDecoded > {first}")
                assert s["framesDecoded"] > first, s
                assert s["source"] == "live", s
                await expect(page.locator("#waiting")).to_be_hidden()

            # A student who arrives while the teacher is live: page load to first frame.
            late = log.watch(await students_ctx.new_page(), "late")
            pages["late"] = late
            t0 = time.monotonic()
            await late.goto(learn_url(server, room, "Late Student"))
            s = await wait_stats(late, "s.source === 'live'")
            print(
                f"late student: first frame {s['firstFrameMs']} ms after page load "
                f"(seen by the test {time.monotonic() - t0:.2f} s after goto)"
            )
            await expect(teacher.locator("#student-count")).to_have_text("4", timeout=TIMEOUT_MS)
            await screenshot_all(pages, "2-live")
            await late.close()
            await expect(teacher.locator("#student-count")).to_have_text("3", timeout=TIMEOUT_MS)
            assert (await stats(teacher))["students"] == 3

            # Measured, not asserted: the server's CPU while it forwards to three students.
            cpu0, out0, t0 = (
                server.metric("process_cpu_seconds_total"),
                server.metric("skyclass_sfu_packets_out_total"),
                time.monotonic(),
            )
            await asyncio.sleep(5)
            elapsed = time.monotonic() - t0
            cpu = (server.metric("process_cpu_seconds_total") - cpu0) / elapsed
            rate = (server.metric("skyclass_sfu_packets_out_total") - out0) / elapsed
            print(f"server CPU forwarding to three students: {cpu * 100:.1f}% of a core, {rate:.0f} packets/s out")

            # The server forwards; it never decodes the teacher's video.
            assert server.metric("skyclass_server_decoded_frames_total") == 0

            await teacher.locator("#stop").click()
            await wait_stats(teacher, "!s.publishing")
            # Chromium sent the camera twice: the full picture and the low layer weak links get.
            closed = re.search(r"closed: audio (\d+) B, video (\d+) B, video_low (\d+) B", server.log())
            assert closed is not None and min(int(n) for n in closed.groups()) > 0, server.log()[-2000:]
            for page in students:
                s = await wait_stats(page, "s.source === 'none' && s.live === false")
                await expect(page.locator("#waiting")).to_be_visible()
                await expect(page.locator("#waiting-text")).to_contain_text("等待老师")
            await screenshot_all(pages, "3-stopped")

            assert not log.page_errors, log.dump()
        except BaseException:
            await screenshot_all(pages, "failed")
            print(log.dump())
            raise


async def test_bad_token_shows_error(server: Any) -> None:
    log = PageLog()
    async with chromium() as browser:
        page = log.watch(await browser.new_page(), "bad-token")
        try:
            for path in ("learn", "teach"):
                await page.goto(f"{server.url}/{path}?room=r1&token=not-a-token")
                await wait_stats(page, "s.state === 'error'")
                error = page.locator("#error")
                await expect(error).to_be_visible()
                await expect(error).to_contain_text("invalid_token")
                await expect(error).to_contain_text("链接无效")

            # No token at all: the page says so without asking the server.
            await page.goto(f"{server.url}/learn?room=r1")
            await wait_stats(page, "s.state === 'error'")
            await expect(page.locator("#error")).to_contain_text("token")
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise
