"""The lesson library in Debian's Chromium: a teacher uploads through the page (tus), a reviewer
approves on the review page, an admin puts the lesson in a 二年级 class's timetable, and two pupils
who join 20 s apart watch it in step (their positions within 2 s of each other)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.conftest import ServerProcess, start_server, stop_server  # noqa: E402
from tests.media_files import h264_aac_mp4  # noqa: E402
from tests.test_browser import PageLog, chromium, learn_url, stats, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402

pytestmark = browser_marks

TIMETABLE = """\
classes:
  - {id: g2-1, grade: 二年级, name: 二年级(1)班, school: School A}
slots: []
"""
LESSON_S = 150


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("library-browser")
    (tmp / "timetable.yaml").write_text(TIMETABLE, encoding="utf-8")
    server = start_server(tmp, env={"SKYCLASS_TIMETABLE": str(tmp / "timetable.yaml")})
    yield server
    stop_server(server)


async def test_upload_review_schedule_and_watch_in_step(school: ServerProcess, tmp_path: Path) -> None:
    video = h264_aac_mp4(tmp_path / "分数.mp4", seconds=LESSON_S)
    log = PageLog()
    async with chromium() as browser:
        teacher = log.watch(await browser.new_page(), "teacher")
        try:
            await teacher.goto(f"{school.url}/library?token={school.token('g2-1', 'teacher', 'Ms Li')}")
            await expect(teacher.locator("#mine")).to_be_visible()
            await teacher.set_input_files("#file", str(video))
            await teacher.fill("#title", "分数的初步认识")
            await teacher.select_option("#grade", "二年级")
            await teacher.fill("#subject", "数学")
            await teacher.click("#upload")
            s = await wait_stats(teacher, "s.uploaded.length === 1", 60_000)
            lesson_id = s["uploaded"][0]
            await expect(teacher.locator(f"#my-lessons li[data-id='{lesson_id}']")).to_have_attribute(
                "data-status", "pending", timeout=60_000
            )  # processed, waiting for review

            reviewer = log.watch(await browser.new_page(), "reviewer")
            await reviewer.goto(f"{school.url}/review?token={school.token('*', 'reviewer', '教研员 Wang')}")
            item = reviewer.locator(f"#pending li[data-id='{lesson_id}']")
            await item.locator("button.link").click()  # the player shows the lesson
            await wait_stats(reviewer, "s.pending >= 1")
            await item.locator("button.approve").click()
            await wait_stats(reviewer, f"s.decided['{lesson_id}'] === 'approve'")
        except BaseException:
            print(log.dump())
            raise

        # An admin puts it in the class's timetable, from the start of this minute on.
        start = dt.datetime.now().replace(second=0, microsecond=0)
        end = min(start + dt.timedelta(hours=1), start.replace(hour=23, minute=59))
        slot = f'  - {{class: g2-1, start: "{start:%H:%M}", end: "{end:%H:%M}", subject: 数学, lesson: {lesson_id}}}\n'
        admin = {"Authorization": "Bearer " + school.token("*", "admin", "ops", scope="city")}
        table = TIMETABLE.replace("slots: []\n", "slots:\n" + slot)
        answer = httpx.put(school.url + "/api/timetable", content=table.encode(), headers=admin, timeout=10)
        assert answer.status_code == 200, answer.text

        first = log.watch(await browser.new_page(), "pupil 1")
        second = log.watch(await browser.new_page(), "pupil 2")
        try:
            await first.goto(learn_url(school, "g2-1", "Wei"))
            await wait_stats(first, "s.source === 'recorded' && s.inStep.position !== null && !s.recordedPaused")
            await asyncio.sleep(20)
            await second.goto(learn_url(school, "g2-1", "Fang"))
            await wait_stats(second, "s.source === 'recorded' && !s.recordedPaused && s.inStep.seeks >= 1")
            await asyncio.sleep(3)  # both settle
            one, two = await asyncio.gather(stats(first), stats(second))
            spread = abs(one["recordedTime"] - two["recordedTime"])
            print(f"\nin step: spread {spread:.2f} s ({one['recordedTime']:.2f} s, {two['recordedTime']:.2f} s)")
            assert one["recordedTime"] > 20, one  # the first pupil watched on
            assert spread < 2, (one["inStep"], two["inStep"])
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise
