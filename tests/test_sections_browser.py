"""One broadcast, two classes, two nodes, real pages: each class's pupils watch the host's broadcast,
ask their own class teacher, who passes a question on to the host; the host's poll is counted per
class and overall, and the host sees classes, not pupils."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.test_browser import PageLog, chromium, learn_url, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster import cluster_redis, no_tracebacks  # noqa: E402, F401
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402
from tests.test_sections import two_nodes  # noqa: E402, F401

from .conftest import ServerProcess  # noqa: E402

pytestmark = browser_marks

WATCHING = "document.getElementById('broadcast-video').videoWidth > 0"


async def test_two_sections_on_two_nodes(
    two_nodes: tuple[str, ServerProcess, ServerProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    broadcast, a, b = two_nodes
    c1, c2 = f"{broadcast}-c1", f"{broadcast}-c2"
    log = PageLog()
    try:
        async with chromium() as browser:
            context = await browser.new_context(permissions=["camera", "microphone"])
            host = await broadcasting_teacher(context, log, teach_url(a, broadcast, "Master Zhang"))
            teacher1 = log.watch(await context.new_page(), "Ms Li")
            await teacher1.goto(teach_url(a, c1, "Ms Li"))
            teacher2 = log.watch(await context.new_page(), "Mr Wang")
            await teacher2.goto(teach_url(b, c2, "Mr Wang"))
            wei = log.watch(await context.new_page(), "Wei")
            await wei.goto(learn_url(a, c1, "Wei"))
            fang = log.watch(await context.new_page(), "Fang")
            await fang.goto(learn_url(b, c2, "Fang"))

            # every class watches the one broadcast, the class teachers too
            for pupil in (wei, fang):
                await wait_stats(pupil, "s.source === 'live' && s.liveFramesDecoded > 10")
            for teacher in (teacher1, teacher2):
                await teacher.wait_for_function(WATCHING, timeout=20_000)
                await expect(teacher.locator("#start")).to_be_hidden()
                await expect(teacher.locator("#broadcast-name")).to_have_text(broadcast)

            # the host's view lists the classes, not the pupils
            rows = host.locator("#sections tr")
            await expect(rows).to_have_count(2, timeout=10_000)
            await expect(rows.nth(0).locator("th")).to_have_text("初一(1)班")
            await expect(rows.nth(1).locator("td").nth(0)).to_have_text("1")
            await expect(host.locator("#roster")).not_to_contain_text("Wei")
            await expect(host.locator("#roster")).not_to_contain_text("Fang")

            # Fang's question reaches her class teacher, not the other class's
            await fang.locator("#ask-input").fill("国旗为什么是红色的?")
            await fang.locator("#ask-form button").click()
            asked = teacher2.locator("#questions li", has_text="国旗为什么是红色的?")
            await expect(asked).to_have_count(1, timeout=10_000)
            await expect(teacher1.locator("#questions li")).to_have_count(0)
            # passed on, it reaches the host; the host's answer reaches every class
            await asked.locator(".q-pass").click()
            at_host = host.locator("#questions li", has_text="国旗为什么是红色的?")
            await expect(at_host).to_have_count(1, timeout=10_000)
            await expect(at_host.locator(".q-from")).to_contain_text("初一(2)班")
            await at_host.locator(".q-answer-input").fill("象征革命")
            await at_host.locator(".q-answer-btn").click()
            for pupil in (wei, fang):
                answered = pupil.locator("#answered li", has_text="国旗为什么是红色的?")
                await expect(answered).to_contain_text("象征革命", timeout=10_000)
            await expect(teacher2.locator("#questions li")).to_have_count(0, timeout=10_000)

            # the host's poll: answered in both classes, counted per class and overall
            await host.locator("#poll-question").fill("升旗仪式几点开始?")
            boxes = host.locator("#poll-options input")
            await boxes.nth(0).fill("7:30")
            await boxes.nth(1).fill("8:00")
            await host.locator("#poll-ask").click()
            for pupil, choice in ((wei, 0), (fang, 1)):
                await expect(pupil.locator(".poll-choice")).to_have_count(2, timeout=10_000)
                await pupil.locator(".poll-choice").nth(choice).click()
            await expect(rows.nth(0).locator(".poll-counts")).to_have_text("1 / 0", timeout=10_000)
            await expect(rows.nth(1).locator(".poll-counts")).to_have_text("0 / 1")
            await expect(host.locator("#poll-answered")).to_have_text("2", timeout=10_000)
            no_tracebacks(a, b)
            assert not log.page_errors, log.dump()
    except BaseException:
        print(log.dump())
        raise
