"""The control room in Debian's Chromium, over two nodes on Redis: /city lists the classes of both
worst first, charts today's participation, exports the day as a workbook, and opens a class as an
inspector (a new tab on /learn with a minted token) whom the class's teacher does not see. And,
once the pupil page reports what it sees (client_web/qoe.js), a pupil in Chromium counted there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openpyxl
import pytest
from redis import Redis

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.conftest import ServerProcess, start_server, stop_server  # noqa: E402
from tests.test_browser import PageLog, chromium, learn_url, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_city import FROZEN, SMOOTH, TIMETABLE, admin, leave, member  # noqa: E402

pytestmark = browser_marks


@pytest.fixture(scope="module")
def nodes(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    url = redis_url.rsplit("/", 1)[0] + "/7"
    Redis.from_url(url).flushdb()
    tmp = tmp_path_factory.mktemp("city-browser")
    (tmp / "timetable.yaml").write_text(TIMETABLE, encoding="utf-8")
    started = []
    for name in "ab":
        (tmp / name).mkdir()
        env = {"SKYCLASS_TIMETABLE": str(tmp / "timetable.yaml")}
        started.append(start_server(tmp / name, "--redis", url, env=env))
    yield started
    for node in started:
        stop_server(node)


async def test_the_control_room_lists_both_nodes_and_opens_a_class_unseen(
    nodes: list[ServerProcess], tmp_path: Path
) -> None:
    a, b = nodes
    teacher = await member(a, "a1", "teacher", "Ms Li")
    pupils = [await member(a, "a1", "student", "Wei"), await member(b, "a1", "student", "Fang")]
    b_teacher = await member(b, "b1", "teacher", "Mr Wang")
    b_pupil = await member(b, "b1", "student", "Lei")
    for pupil in pupils:
        await pupil.send(FROZEN)
    await b_pupil.send(SMOOTH)
    log = PageLog()
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1300, "height": 900}, accept_downloads=True)
        room = log.watch(await context.new_page(), "city")
        try:
            await room.goto(f"{b.url}/city?token={a.token('a1', 'admin', 'ops', scope='city')}")
            s = await wait_stats(
                room, "s.rooms.length === 2 && s.rooms[0].room === 'a1' && s.rooms[0].reporting === 2", 30_000
            )
            assert s["rooms"][0]["health"] == "bad" and s["rooms"][0]["pupils"] == 2, s
            assert {r["room"] for r in s["rooms"]} == {"a1", "b1"}  # the classes going on, on either node
            await expect(room.locator("tr[data-room='a1'] .badge-bad")).to_be_visible()
            await expect(room.locator("#tiles .tile")).to_have_count(2)
            await expect(room.locator("#chart-school .uplot")).to_be_visible()  # today's participation
            loads = s["loads"]
            await wait_stats(room, f"s.loads > {loads}", 15_000)  # it refreshes by itself

            # The filters narrow the table; a tile is a filter too.
            await room.select_option("#filter-school", "School B")
            await wait_stats(room, "s.rooms.length === 1 && s.rooms[0].room === 'b1'")
            await room.select_option("#filter-school", "")
            await wait_stats(room, "s.rooms.length === 2")

            # Today's attendance as a workbook.
            async with room.expect_download() as download:
                await room.click("#export-xlsx")
            saved = tmp_path / "attendance.xlsx"
            await (await download.value).save_as(saved)
            sheet = openpyxl.load_workbook(saved).worksheets[0]
            assert {row[2] for row in sheet.iter_rows(min_row=3, values_only=True)} >= {"a1", "a2", "b1"}

            # 巡课: the class opens in a new tab as an inspector.
            async with room.expect_popup() as popup:
                await room.click("tr[data-room='a1'] button")
            inspector = log.watch(await popup.value, "inspector")
            await wait_stats(inspector, "s.role === 'inspector' && ['joined', 'connected'].includes(s.state)")
            assert "token=" not in inspector.url  # the page keeps its token out of the address bar
            await asyncio.sleep(1.0)  # the teacher's view is refreshed at most 4 times a second
            rosters = [m for m in teacher.inbox if m["type"] == "roster"]
            assert rosters, teacher.inbox
            assert all("inspector" not in {p["role"] for p in r["participants"]} for r in rosters)
            assert rosters[-1]["total"] == 3  # the teacher and two pupils
            assert log.page_errors == [], log.dump()
        except BaseException:
            print(log.dump())
            raise
    for client in (teacher, *pupils, b_teacher, b_pupil):
        await leave(client)


async def test_the_reporter_measures_the_pupil_page(nodes: list[ServerProcess]) -> None:
    """client_web/qoe.js on a real pupil page watching a live teacher: its first report, as it
    would send it (a stand-in for the socket keeps what it is given)."""
    a = nodes[0]
    log = PageLog()
    async with chromium() as browser:
        teacher = log.watch(await (await browser.new_context(permissions=["camera", "microphone"])).new_page(), "t")
        pupil = log.watch(await (await browser.new_context()).new_page(), "pupil")
        try:
            await teacher.goto(teach_url(a, "b1"))
            await expect(teacher.locator("#start")).to_be_enabled(timeout=20_000)
            await teacher.locator("#start").click()
            await pupil.goto(learn_url(a, "b1", "Wei"))
            await wait_stats(pupil, "s.source === 'live'")
            await pupil.evaluate(
                """async () => {
                    const { QoeReporter } = await import("/static/qoe.js");
                    window.sentQoe = [];
                    const socket = { state: "joined", joined: { role: "student" },
                                     send: (m) => { window.sentQoe.push(m); return true; } };
                    new QoeReporter(socket, () => window.skyclass.stats());
                }"""
            )
            await pupil.wait_for_function("() => window.sentQoe.length >= 1", timeout=25_000)
            report = await pupil.evaluate("window.sentQoe[0]")
            print(f"\nthe pupil page's first report: {report}")
            assert report["type"] == "qoe" and report["path"] in ("direct", "relay"), report
            assert report["fps"] >= 5 and report["longest_freeze_s"] < 3 and 14 <= report["period_s"] <= 16, report
            assert report["layer"] == "high" and 0 <= report["concealed"] <= 1, report
        except BaseException:
            print(log.dump())
            raise


async def test_a_pupil_page_reports_what_it_sees(nodes: list[ServerProcess]) -> None:
    a = nodes[0]
    log = PageLog()
    async with chromium() as browser:
        teacher_ctx = await browser.new_context(permissions=["camera", "microphone"])
        teacher = log.watch(await teacher_ctx.new_page(), "teacher")
        pupil = log.watch(await (await browser.new_context()).new_page(), "pupil")
        try:
            await teacher.goto(teach_url(a, "a2"))
            await expect(teacher.locator("#start")).to_be_enabled(timeout=20_000)
            await teacher.locator("#start").click()
            await pupil.goto(learn_url(a, "a2", "Wei"))
            await wait_stats(pupil, "s.source === 'recorded'")  # a2's slot is a recorded lesson, played in step
            deadline = time.monotonic() + 40  # a report every 15 s, summaries every 3 s
            while True:
                view = httpx.get(a.url + "/api/city", headers=admin(a), timeout=10).json()
                found = next((r for r in view["rooms"] if r["room"] == "a2"), None)
                if found and found["reporting"] == 1:
                    break
                assert time.monotonic() < deadline, view
                await asyncio.sleep(1)
            print(f"\npupil's report in the city view: {found}")
            assert found["paths"] == {"recorded": 1} and found["median_fps"] >= 10, found
            assert found["mode"] == "recorded" and found["health"] in ("good", "poor"), found
        except BaseException:
            print(log.dump())
            raise
