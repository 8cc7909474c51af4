"""What pupils see reaches the control room: two Chromium pupils watch the same live class, one on a
clean link, one in a network namespace of the test's own whose incoming UDP loses a third of its
packets (nftables). Their pages report what they measured; the class shows as poor (or bad) in
`/api/city` within 30 s, its freezing pupil counted, and the impaired page's own report says how
much it lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.async_api")
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.netns import Namespace, chromium_inside, namespace  # noqa: E402
from tests.test_browser import PageLog, chromium, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_city import TIMETABLE, admin  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402

pytestmark = browser_marks
LOSS_PERCENT = 35
REPORTED_WITHIN_S = 30.0
NOT_WELL = ("poor", "bad")


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[Namespace]:
    with namespace("lossy", 81, tmp_path) as network:
        network.run("nft add table inet impair")
        network.run("nft add chain inet impair in { type filter hook input priority 0 \\; }")
        network.run(f"nft add rule inet impair in meta l4proto udp numgen random mod 100 lt {LOSS_PERCENT} drop")
        yield network


async def test_an_impaired_pupil_shows_in_the_city_view(lossy: Namespace, tmp_path: Path) -> None:
    (tmp_path / "timetable.yaml").write_text(TIMETABLE, encoding="utf-8")
    server = start_server(
        tmp_path, "--host", "0.0.0.0", "--ice-address", lossy.host_ip,
        env={"SKYCLASS_TIMETABLE": str(tmp_path / "timetable.yaml")},
    )  # fmt: skip
    room, log = "a1", PageLog()  # a live slot all day
    where = server.url.replace("127.0.0.1", lossy.host_ip)
    try:
        async with chromium() as outside, chromium_inside(lossy) as inside:
            try:
                context = await outside.new_context()
                await broadcasting_teacher(context, log, teach_url(server, room, "Ms Li"))
                clean = log.watch(await context.new_page(), "clean")
                await clean.goto(f"{server.url}/learn?room={room}&token={server.token(room, 'student', 'Wei')}")
                impaired = log.watch(await inside.new_page(), "impaired")
                await impaired.goto(f"{where}/learn?room={room}&token={server.token(room, 'student', 'Fang')}")
                for page in (clean, impaired):
                    await wait_stats(page, "s.state === 'connected' && s.live", 30_000)
                watching = time.monotonic()
                found = await city_room_when(server, room, lambda r: r["reporting"] == 2 and r["health"] in NOT_WELL)
                seconds = time.monotonic() - watching
                s = await wait_stats(impaired, "s.loss !== null && s.rttMs !== null")
                print(f"\n{LOSS_PERCENT}% UDP loss: the class is {found['health']} in /api/city {seconds:.0f} s after")
                print(f"  the pupils started watching: {found}; the impaired page: loss {s['loss']}, rtt {s['rttMs']}")
                impaired_seen = found["freezing"] >= 1 or (found["median_fps"] or 0) < 20 or found["paths"].get("audio")
                assert impaired_seen, found
                assert s["loss"] > 0.05, s
                assert seconds <= REPORTED_WITHIN_S + 5, seconds
            except BaseException:
                print(log.dump())
                raise
    finally:
        stop_server(server)


async def city_room_when(server: Any, room: str, condition: Any) -> dict[str, Any]:
    """The city view's row of ``room`` once ``condition`` holds of it."""
    deadline = time.monotonic() + REPORTED_WITHIN_S + 30
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            view = (await http.get(server.url + "/api/city", headers=admin(server))).json()
            found = next((r for r in view["rooms"] if r["room"] == room), None)
            if found is not None and condition(found):
                return found
            assert time.monotonic() < deadline, view
            await asyncio.sleep(1)
