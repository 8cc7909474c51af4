"""Both pages on a phone (Playwright's emulation of a mid-range Android phone, 360x640 class), in
portrait and landscape: nothing wider than the screen, the picture across the width, every control
within reach and big enough for a thumb, the chat above the on-screen keyboard. Screenshots go to
$SKYCLASS_SCREENSHOTS, or test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import async_playwright  # noqa: E402

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, learn_url, screenshot_all, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402

pytestmark = browser_marks
PHONE = "Galaxy S9+"  # 320x658 CSS pixels at 4.5x, touch, mobile Chrome's user agent

LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const visible = (el) => el.offsetParent !== null && getComputedStyle(el).visibility !== "hidden";
  const controls = [...document.querySelectorAll("button, input, select, textarea, a")].filter(visible);
  const picture = document.querySelector("#video:not([hidden]), #recorded:not([hidden]), #preview");
  return {
    width,
    scrollWidth: document.documentElement.scrollWidth,
    pictureWidth: picture ? picture.getBoundingClientRect().width : 0,
    outside: controls
      .filter((el) => { const r = el.getBoundingClientRect(); return r.left < -1 || r.right > width + 1; })
      .map((el) => el.id || el.textContent.trim().slice(0, 20)),
    small: controls.filter((el) => el.tagName === "BUTTON" && el.getBoundingClientRect().height < 32)
      .map((el) => el.id || el.textContent.trim().slice(0, 20)),
  };
}"""


@pytest.mark.parametrize("landscape", [False, True], ids=["portrait", "landscape"])
async def test_pages_fit_a_phone(server: Any, landscape: bool) -> None:
    async with async_playwright() as p:
        device = dict(p.devices[PHONE])
        if landscape:
            size = device["viewport"]
            device["viewport"] = {"width": size["height"], "height": size["width"]}
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**device)
            teacher, pupil = await context.new_page(), await context.new_page()
            room = f"phone-{'landscape' if landscape else 'portrait'}"
            await teacher.goto(teach_url(server, room))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await teacher.locator("#start").click()
            await pupil.goto(learn_url(server, room, "Wei"))
            await wait_stats(pupil, "s.source === 'live' && s.framesDecoded > 10")
            await screenshot_all({"teacher": teacher, "pupil": pupil}, f"phone-{room}", always=True)
            for name, page in (("teacher", teacher), ("pupil", pupil)):
                layout = await page.evaluate(LAYOUT)
                assert layout["scrollWidth"] <= layout["width"], (name, layout)  # no horizontal scrolling
                assert not layout["outside"], (name, layout)
                assert not layout["small"], (name, layout)
                assert layout["pictureWidth"] >= 0.9 * layout["width"] or landscape, (name, layout)
            await chat_over_the_keyboard(pupil, device["viewport"])
        finally:
            await browser.close()


IN_VIEW = """() => ["#chat-input", "#chat-form button"].map((q) => {
  const r = document.querySelector(q).getBoundingClientRect();
  return r.top >= 0 && r.bottom <= window.innerHeight + 1;
})"""


async def chat_over_the_keyboard(pupil: Any, viewport: dict[str, int]) -> None:
    """The on-screen keyboard opens (the page gets 45% of the screen's height less): the chat's
    input and button stay in view, and a message typed there is sent."""
    await pupil.locator("#chat-input").focus()
    await pupil.set_viewport_size({"width": viewport["width"], "height": int(viewport["height"] * 0.55)})
    await pupil.wait_for_function(f"() => ({IN_VIEW})().every(Boolean)", timeout=5000)
    await pupil.keyboard.type("老师，我看得见")
    await pupil.keyboard.press("Enter")
    await wait_stats(pupil, "s.chat >= 1")
    await pupil.set_viewport_size(viewport)
