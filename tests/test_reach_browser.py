"""Every pupil reached: a Chromium pupil in a network namespace of the test's own, where every UDP
send is dropped (nftables), as on school and government networks. With TURN it watches through
coturn over TCP or TLS (``path == "relay"``); without TURN it finds the HLS tier by itself, and
climbs back to WebRTC once UDP gets through; with HLS off too, the lesson's recording. The
teacher's Chromium is outside, on a network that lets UDP through. Times from page open to first
picture are printed for the closing note."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.async_api")
from playwright.async_api import Page  # noqa: E402

from tests.conftest import ServerProcess, free_port, start_server, stop_server  # noqa: E402
from tests.netns import Namespace, chromium_inside, namespace  # noqa: E402
from tests.test_browser import PageLog, chromium, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402

pytestmark = browser_marks
Then = Callable[[Page], Awaitable[dict[str, Any]]]
TURN_SECRET = "turn-" + "r" * 32
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"


BLOCK_UDP = [
    "nft add table inet block",
    "nft add chain inet block out { type filter hook output priority 0 \\; }",
    "nft add rule inet block out meta l4proto udp drop",
]


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    with namespace("reach", 77, tmp_path_factory.mktemp("netns")) as network:
        for command in BLOCK_UDP:
            network.run(command)
        yield network


@pytest.fixture(scope="module")
def coturn(blocked: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with turnserver(blocked, tmp_path_factory.mktemp("coturn"), tls=False) as port:
        yield port


@pytest.fixture(scope="module")
def coturn_tls(blocked: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with turnserver(blocked, tmp_path_factory.mktemp("coturn-tls"), tls=True) as port:
        yield port


@contextmanager
def turnserver(blocked: Namespace, directory: Path, tls: bool) -> Iterator[int]:
    """Debian's coturn on the host's side of the veth: plain TCP/UDP, or TLS only (a self-signed
    certificate, as ``turns:`` on 443 would use a real one)."""
    port = free_port()
    log = directory / "turn.log"
    if tls:
        key, cert = directory / "key.pem", directory / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=turn.test",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        listening = [f"--tls-listening-port={port}", f"--listening-port={free_port()}", f"--cert={cert}",
                     f"--pkey={key}", "--no-udp", "--no-tcp", "--no-dtls"]  # fmt: skip
    else:
        listening = [f"--listening-port={port}", "--no-tls", "--no-dtls"]
    process = subprocess.Popen(
        [
            TURNSERVER, "-n", f"--listening-ip={blocked.host_ip}", f"--relay-ip={blocked.host_ip}", *listening,
            "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=skyclass", "--no-cli",
            "--log-file=stdout", "--simple-log", "--min-port=49500", "--max-port=49700",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while "Total General servers" not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(5)


def serve(tmp: Path, blocked: Namespace, env: dict[str, str]) -> ServerProcess:
    """The server on every address: the teacher's page on localhost (a camera needs a secure
    origin), the pupil's on the host's side of the veth."""
    return start_server(tmp, "--host", "0.0.0.0", "--ice-address", blocked.host_ip, env=env)


async def pupil_path(
    server: ServerProcess, blocked: Namespace, room: str, reached: str, then: Then | None = None
) -> dict[str, Any]:
    """A teacher broadcasts (outside); a pupil opens the page inside the blocked network and waits
    for ``reached`` to show moving pictures, then does ``then`` with the pupil's page. Returns the
    pupil's stats (after ``then``) and prints the time."""
    log = PageLog()
    # Chromium checks a turns: server's certificate (production: a real one); the test's is self-signed
    async with chromium() as outside, chromium_inside(blocked, "--ignore-certificate-errors") as inside:
        pupil = log.watch(await inside.new_page(), "pupil")
        try:
            await broadcasting_teacher(await outside.new_context(), log, teach_url(server, room, "Ms Li"))
            opened = time.monotonic()
            where = server.url.replace("127.0.0.1", blocked.host_ip)
            await pupil.goto(f"{where}/learn?room={room}&token={server.token(room, 'student', 'Wei')}")
            s = await wait_stats(pupil, f"s.path === '{reached}' && s.framesDecoded > 10 && s.videoWidth > 0", 60_000)
            seconds = time.monotonic() - opened
            print(f"\nUDP blocked: a pupil on {reached!r} has a picture {seconds:.1f} s after opening the page")
            print(f"  ladder: {s['ladder']}, first frame at {s['firstFrameMs']} ms")
            return s if then is None else await then(pupil)
        except BaseException:
            print(log.dump())
            raise


async def test_through_turn_over_tcp(blocked: Namespace, coturn: int, tmp_path: Path) -> None:
    urls = f'["turn:{blocked.host_ip}:{coturn}?transport=udp", "turn:{blocked.host_ip}:{coturn}?transport=tcp"]'
    server = serve(tmp_path, blocked, {"SKYCLASS_TURN_URLS": urls, "SKYCLASS_TURN_SECRET": TURN_SECRET})
    try:
        s = await pupil_path(server, blocked, "reach-turn", "relay")
        assert s["ladder"]["steps"] == [], s["ladder"]  # WebRTC got through: no step down
    finally:
        stop_server(server)


async def test_through_turn_over_tls(blocked: Namespace, coturn_tls: int, tmp_path: Path) -> None:
    """``turns:``: TURN inside TLS over TCP, what a network that lets only HTTPS out still passes."""
    urls = f'["turns:{blocked.host_ip}:{coturn_tls}?transport=tcp"]'
    server = serve(tmp_path, blocked, {"SKYCLASS_TURN_URLS": urls, "SKYCLASS_TURN_SECRET": TURN_SECRET})
    try:
        s = await pupil_path(server, blocked, "reach-turns", "relay")
        assert s["ladder"]["steps"] == [], s["ladder"]
    finally:
        stop_server(server)


async def test_without_turn_the_page_finds_hls_and_climbs_back(blocked: Namespace, tmp_path: Path) -> None:
    """On HLS, the page tries WebRTC again now and then; once UDP gets through, it is back on it."""

    async def unblock(pupil: Page) -> dict[str, Any]:
        s = await wait_stats(pupil, "true")
        assert [step["path"] for step in s["ladder"]["steps"]] == ["hls"], s["ladder"]
        blocked.run("nft delete table inet block")
        try:
            unblocked = time.monotonic()
            s = await wait_stats(pupil, "s.path === 'direct' && s.videoWidth > 0", 90_000)
            frames = s["framesDecoded"]
            s = await wait_stats(pupil, f"s.framesDecoded > {frames + 30}")  # moving pictures, over WebRTC
            print(f"  back on WebRTC {time.monotonic() - unblocked:.1f} s after UDP got through: {s['ladder']}")
            return s
        finally:
            for command in BLOCK_UDP:
                blocked.run(command)

    server = serve(tmp_path, blocked, {})
    try:
        s = await pupil_path(server, blocked, "reach-hls", "hls", unblock)
        assert [step["path"] for step in s["ladder"]["steps"]] == ["hls", "direct"], s["ladder"]
        assert s["ladder"]["steps"][1]["why"] == "climbed_back" and s["ladder"]["delivery"] == "webrtc"
    finally:
        stop_server(server)


async def test_without_turn_and_hls_the_recording(blocked: Namespace, tmp_path: Path) -> None:
    server = serve(tmp_path, blocked, {"SKYCLASS_HLS": "false"})
    try:
        await pupil_path(server, blocked, "g9-1", "recorded")  # a live slot of the demo timetable, with its recording
    finally:
        stop_server(server)
