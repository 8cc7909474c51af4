"""A node killed mid-lesson, with real pages: the room moves and everyone comes back by themselves.

Every page comes through a load balancer that sends new connections to the first node, in its
order, that accepts them; the node holding the room is killed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import BrowserContext, Page  # noqa: E402

from tests.balancer import Balancer  # noqa: E402
from tests.test_browser import PageLog, chromium, learn_url, stats, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster import cluster_redis, no_tracebacks, start_nodes  # noqa: E402, F401

from .conftest import stop_server  # noqa: E402

pytestmark = browser_marks


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def broadcasting_teacher(context: BrowserContext, log: PageLog, url: str) -> Page:
    """The teacher page at ``url``, once it has started broadcasting."""
    teacher = log.watch(await context.new_page(), "teacher")
    await teacher.goto(url)
    await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
    await teacher.locator("#start").click()
    await wait_stats(teacher, "s.publishing && s.state === 'connected' && s.framesEncoded > 0")
    return teacher


async def test_a_node_killed_mid_lesson(tmp_path: Path, cluster_redis: str) -> None:  # noqa: F811
    """Each page comes through its own load balancer, preferring a different node (the teacher A,
    Wei B, Fang C); the node that holds the room is killed, whichever it is."""
    nodes = start_nodes(tmp_path, cluster_redis, 3)
    ports = [port_of(n.url) for n in nodes]
    balancers = [Balancer(ports[i:] + ports[:i]) for i in range(3)]
    fronts = [await balancer.start() for balancer in balancers]
    room = f"failover-{uuid.uuid4().hex[:6]}"
    log = PageLog()
    try:
        async with chromium() as browser:
            context = await browser.new_context(permissions=["camera", "microphone"])
            teacher = await broadcasting_teacher(
                context, log, teach_url(nodes[0], room).replace(nodes[0].url, fronts[0])
            )
            students = []
            for front, name in zip(fronts[1:], ("Wei", "Fang")):
                page = log.watch(await context.new_page(), name)
                await page.goto(learn_url(nodes[0], room, name).replace(nodes[0].url, front))
                await wait_stats(page, "s.source === 'live' && s.liveFramesDecoded > 10")
                students.append(page)
            holders = [node for node in nodes if node.metric("skyclass_rooms") == 1]
            assert len(holders) == 1, "one node holds the room"
            killed = holders[0]
            survivors = [node for node in nodes if node is not killed]

            killed_at = time.monotonic()
            killed.process.kill()
            killed.process.wait()
            times: dict[str, float] = {}
            for label, page in (("teacher", teacher), ("Wei", students[0]), ("Fang", students[1])):
                await wait_stats(page, "s.reconnects >= 1", timeout=15_000)
                times[f"{label} joined again"] = time.monotonic() - killed_at
            await wait_stats(teacher, "s.publishing && s.state === 'connected'", timeout=15_000)
            for label, page in (("Wei", students[0]), ("Fang", students[1])):
                frames = (await stats(page))["liveFramesDecoded"]
                await wait_stats(page, f"s.source === 'live' && s.liveFramesDecoded > {frames + 10}", timeout=15_000)
                times[f"{label} live video again"] = time.monotonic() - killed_at
            print(
                f"\nafter SIGKILL of the room's node ({'ABC'[nodes.index(killed)]}): "
                + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
            )
            assert max(v for k, v in times.items() if k.endswith("joined again")) < 5 + 1, times

            admin = survivors[0].token(room, "admin", "ops")
            async with httpx.AsyncClient() as http:
                attendance = (await http.get(f"{survivors[1].url}/api/rooms/{room}/attendance?token={admin}")).json()
            people = {p["name"]: p for p in attendance["participants"]}
            assert sorted(people) == ["Fang", "Teacher Li", "Wei"], attendance
            for person in people.values():  # one continuous stay each, still open
                assert [s["left_at"] for s in person["stays"]] == [None], person
            assert log.page_errors == [], log.dump()
        no_tracebacks(*survivors)
    except BaseException:
        print(log.dump())
        raise
    finally:
        for balancer in balancers:
            await balancer.close()
        for node in nodes:
            stop_server(node)
