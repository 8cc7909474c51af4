"""Every pupil reached: a Chromium pupil in a network namespace of the test's own, where every UDP
send is dropped (nftables), as on school and government networks. With TURN it watches through
coturn over TCP (``path == "relay"``); without TURN it finds the HLS tier by itself; with HLS off
too, the lesson's recording. The teacher's Chromium is outside, on a network that lets UDP through.
Times from page open to first picture are printed for the closing note."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import Browser, async_playwright  # noqa: E402

from tests.conftest import ServerProcess, free_port, start_server, stop_server  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PageLog, chromium, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402

pytestmark = browser_marks
TURN_SECRET = "turn-" + "r" * 32
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"


@dataclass(frozen=True)
class BlockedNetwork:
    namespace: str
    host_ip: str  # the host's side of the veth: the server, coturn and the teacher's page use it
    chromium: Path  # a wrapper that runs Chromium inside the namespace


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlockedNetwork]:
    n = os.getpid() % 200 + 20
    namespace, host_if, ns_if = f"skyreach{n}", f"skyh{n}", f"skyn{n}"
    host_ip, ns_ip = f"10.77.{n}.1", f"10.77.{n}.2"
    commands = [
        f"ip netns add {namespace}",
        f"ip link add {host_if} type veth peer name {ns_if}",
        f"ip link set {ns_if} netns {namespace}",
        f"ip addr add {host_ip}/24 dev {host_if}",
        f"ip link set {host_if} up",
        f"ip netns exec {namespace} ip addr add {ns_ip}/24 dev {ns_if}",
        f"ip netns exec {namespace} ip link set {ns_if} up",
        f"ip netns exec {namespace} ip link set lo up",
        f"ip netns exec {namespace} nft add table inet block",
        f"ip netns exec {namespace} nft add chain inet block out {{ type filter hook output priority 0 \\; }}",
        f"ip netns exec {namespace} nft add rule inet block out meta l4proto udp drop",
    ]
    try:
        for command in commands:
            subprocess.run(command, shell=True, check=True, capture_output=True)
        wrapper = tmp_path_factory.mktemp("netns") / "chromium-blocked"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        yield BlockedNetwork(namespace, host_ip, wrapper)
    finally:
        subprocess.run(f"ip netns del {namespace}", shell=True, capture_output=True)
        subprocess.run(f"ip link del {host_if}", shell=True, capture_output=True)


@pytest.fixture(scope="module")
def coturn(blocked: BlockedNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("coturn") / "turn.log"
    process = subprocess.Popen(
        [
            TURNSERVER, "-n", f"--listening-ip={blocked.host_ip}", f"--listening-port={port}",
            f"--relay-ip={blocked.host_ip}", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
            "--realm=skyclass", "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--simple-log",
            "--min-port=49500", "--max-port=49700",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while "Total General servers" not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(5)


def serve(tmp: Path, blocked: BlockedNetwork, env: dict[str, str]) -> ServerProcess:
    """The server on every address: the teacher's page on localhost (a camera needs a secure
    origin), the pupil's on the host's side of the veth."""
    return start_server(tmp, "--host", "0.0.0.0", "--ice-address", blocked.host_ip, env=env)


@asynccontextmanager
async def blocked_chromium(blocked: BlockedNetwork) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(blocked.chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def pupil_path(server: ServerProcess, blocked: BlockedNetwork, room: str, reached: str) -> dict[str, Any]:
    """A teacher broadcasts (outside); a pupil opens the page inside the blocked network and waits
    for ``reached`` to show moving pictures. Returns the pupil's stats and prints the time."""
    log = PageLog()
    async with chromium() as outside, blocked_chromium(blocked) as inside:
        teacher = log.watch(await outside.new_page(), "teacher")
        pupil = log.watch(await inside.new_page(), "pupil")
        try:
            await teacher.goto(f"{server.url}/teach?room={room}&token={server.token(room, 'teacher', 'Ms Li')}")
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await teacher.locator("#start").click()
            await wait_stats(teacher, "s.live === true && s.framesEncoded > 0", 20_000)
            opened = time.monotonic()
            where = server.url.replace("127.0.0.1", blocked.host_ip)
            await pupil.goto(f"{where}/learn?room={room}&token={server.token(room, 'student', 'Wei')}")
            s = await wait_stats(pupil, f"s.path === '{reached}' && s.framesDecoded > 10 && s.videoWidth > 0", 60_000)
            seconds = time.monotonic() - opened
            print(f"\nUDP blocked: a pupil on {reached!r} has a picture {seconds:.1f} s after opening the page")
            print(f"  ladder: {s['ladder']}, first frame at {s['firstFrameMs']} ms")
            return s
        except BaseException:
            print(log.dump())
            raise


async def test_through_turn_over_tcp(blocked: BlockedNetwork, coturn: int, tmp_path: Path) -> None:
    urls = f'["turn:{blocked.host_ip}:{coturn}?transport=udp", "turn:{blocked.host_ip}:{coturn}?transport=tcp"]'
    server = serve(tmp_path, blocked, {"SKYCLASS_TURN_URLS": urls, "SKYCLASS_TURN_SECRET": TURN_SECRET})
    try:
        s = await pupil_path(server, blocked, "reach-turn", "relay")
        assert s["ladder"]["steps"] == [], s["ladder"]  # WebRTC got through: no step down
    finally:
        stop_server(server)


async def test_without_turn_the_page_finds_hls(blocked: BlockedNetwork, tmp_path: Path) -> None:
    server = serve(tmp_path, blocked, {})
    try:
        s = await pupil_path(server, blocked, "reach-hls", "hls")
        assert [step["path"] for step in s["ladder"]["steps"]] == ["hls"], s["ladder"]
    finally:
        stop_server(server)


async def test_without_turn_and_hls_the_recording(blocked: BlockedNetwork, tmp_path: Path) -> None:
    server = serve(tmp_path, blocked, {"SKYCLASS_HLS": "false"})
    try:
        await pupil_path(server, blocked, "g9-1", "recorded")  # a live slot of the demo timetable, with its recording
    finally:
        stop_server(server)
