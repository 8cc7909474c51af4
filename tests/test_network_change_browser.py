"""A phone that moves from Wi-Fi to 4G: the pupil's Chromium runs in a network namespace of the
test's own, and mid-lesson its address changes (the old one goes, a new one on another subnet
comes). Its peer connection and its websocket are left talking to an address that is no longer
there; the page notices the media stop, finds the socket dead, joins again and gets a fresh
subscription, without a reload. The time from the change to the first picture of the new
subscription is printed for the closing note."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.netns import Namespace, chromium_inside, namespace, sh  # noqa: E402
from tests.test_browser import PageLog, chromium, stats, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402

pytestmark = browser_marks
RECOVERY_BOUND_S = 10.0  # the test's patience; the time measured is printed
MOVING = 5  # frames within half a second: the picture moves (the fake camera's 30 fps arrive at 15-30)


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Namespace]:
    with namespace("move", 79, tmp_path) as network:
        yield network


def move_to_4g(phone: Namespace) -> str:
    """The phone's Wi-Fi address goes and a 4G one on another subnet comes (the host routes both)."""
    wifi = phone.ns_ip.rsplit(".", 2)
    net = f"10.80.{wifi[1]}"
    sh(f"ip addr add {net}.1/24 dev {phone.host_if}")
    phone.run(f"ip addr add {net}.2/24 dev {phone.ns_if}")
    phone.run(f"ip route add {phone.host_ip}/32 via {net}.1 dev {phone.ns_if}")
    phone.run(f"ip addr del {phone.ns_ip}/24 dev {phone.ns_if}")
    return f"{net}.2"


async def test_picture_back_after_the_address_changes(phone: Namespace, tmp_path: Path) -> None:
    server = start_server(tmp_path, "--host", "0.0.0.0", "--ice-address", phone.host_ip)
    room, log = "moving-phone", PageLog()
    try:
        async with chromium() as outside, chromium_inside(phone) as inside:
            pupil = log.watch(await inside.new_page(), "pupil")
            try:
                await broadcasting_teacher(await outside.new_context(), log, teach_url(server, room, "Ms Li"))
                where = server.url.replace("127.0.0.1", phone.host_ip)
                await pupil.goto(f"{where}/learn?room={room}&token={server.token(room, 'student', 'Wei')}")
                flowing = "s.path === 'direct' && s.framesDecoded > 30 && s.audioPacketsReceived > 0"
                before = await wait_stats(pupil, flowing)
                address = move_to_4g(phone)
                moved = time.monotonic()
                back = await picture_back(pupil, moved)
                after = await stats(pupil)
                print(
                    f"\naddress change {phone.ns_ip} -> {address}: moving pictures again {back:.2f} s later "
                    f"(subscriptions {before['subscriptions']} -> {after['subscriptions']}, "
                    f"reconnects {after['reconnects']})"
                )
                # the socket of the old address is found dead and replaced, without waiting for a ping
                s = await wait_stats(pupil, "s.reconnects >= 1 && s.state === 'connected'")
                s = await wait_stats(pupil, f"s.framesDecoded > {s['framesDecoded'] + 30}")
                assert s["path"] == "direct" and s["ladder"]["steps"] == [], s  # still WebRTC, no step down
                assert not log.page_errors, log.dump()
            except BaseException:
                print(log.dump())
                raise
    finally:
        stop_server(server)


async def picture_back(pupil: Any, moved: float) -> float:
    """Seconds from the move until pictures move again (MOVING frames within half a second) after
    they had slowed down; 0 when they never did in RECOVERY_BOUND_S."""
    seen: list[tuple[float, int]] = []  # (seconds since the move, frames decoded)
    slowed = False
    while (now := time.monotonic() - moved) < RECOVERY_BOUND_S:
        seen.append((now, (await stats(pupil))["framesDecoded"]))
        recent = [frames for at, frames in seen if at >= now - 0.5]
        if now >= 0.5 and recent[-1] - recent[0] < MOVING:
            slowed = True
        elif slowed and recent[-1] - recent[0] >= MOVING:
            return now
        await asyncio.sleep(0.05)
    assert not slowed, f"no moving picture {RECOVERY_BOUND_S} s after the address changed"
    return 0.0
