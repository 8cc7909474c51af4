"""TURN for pupils behind firewalls: `joined` hands each participant short-lived credentials in the
TURN REST API form, and a Chromium pupil whose media may only go through TURN (Debian's coturn on
loopback) watches the teacher through it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.signaling.turn import turn_credentials

from .conftest import ServerProcess, free_port, start_server, stop_server
from .peers import SignalingClient

TURN_SECRET = "turn-" + "t" * 32
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"  # Debian's coturn (.ci/run installs it)


def test_credentials_are_what_coturn_checks() -> None:
    username, password = turn_credentials(TURN_SECRET, "p1", ttl_s=3600, now=1_000_000)
    assert username == "1003600:p1"
    assert (
        password == base64.b64encode(hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    )


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("coturn") / "turn.log"
    process = subprocess.Popen(
        [
            TURNSERVER, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
            "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=skyclass", "--no-cli",
            "--no-tls", "--no-dtls", "--allow-loopback-peers", "--log-file=stdout", "--simple-log",
            "--min-port=49200", "--max-port=49400",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while "listener opened" not in log.read_text(
        errors="replace"
    ).lower() and "Total General servers" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(5)


@pytest.fixture(scope="module")
def turn_server(coturn: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    urls = f'["turn:127.0.0.1:{coturn}?transport=udp", "turn:127.0.0.1:{coturn}?transport=tcp"]'
    env = {"SKYCLASS_TURN_URLS": urls, "SKYCLASS_TURN_SECRET": TURN_SECRET}
    server = start_server(tmp_path_factory.mktemp("turn"), env=env)
    yield server
    stop_server(server)


async def test_joined_carries_the_turn_servers(turn_server: ServerProcess, coturn: int) -> None:
    client = await SignalingClient.connect(turn_server.ws_url)
    joined = await client.join("turn-room", turn_server.token("turn-room", "student", "Wei"))
    (server,) = joined["ice_servers"]
    assert server["urls"] == [f"turn:127.0.0.1:{coturn}?transport=udp", f"turn:127.0.0.1:{coturn}?transport=tcp"]
    expiry, participant = server["username"].split(":")
    assert participant == joined["participant_id"]
    assert time.time() + 3000 < int(expiry) <= time.time() + 3600  # no longer than the join token (1 h here)
    expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), server["username"].encode(), hashlib.sha1).digest())
    assert server["credential"] == expected.decode()
    await client.close()


@pytest.mark.browser
async def test_a_pupil_watches_through_turn(turn_server: ServerProcess, coturn: int, tmp_path: Path) -> None:
    pytest.importorskip("playwright.async_api")
    from tests.test_browser import PageLog, chromium, learn_url, teach_url, wait_stats

    log = PageLog()
    room = "turn-lesson"
    async with chromium() as browser:
        teacher = log.watch(await browser.new_page(), "teacher")
        pupil = log.watch(await browser.new_page(), "pupil")
        try:
            await teacher.goto(teach_url(turn_server, room))
            await wait_stats(teacher, "s.role === 'teacher' && s.videoWidth > 0")
            await teacher.locator("#start").click()
            await pupil.goto(learn_url(turn_server, room, "Wei") + "&relay=1")  # TURN only, as behind a firewall
            s = await wait_stats(pupil, "s.source === 'live' && s.framesDecoded > 10 && s.path === 'relay'", 30_000)
            assert s["videoWidth"] > 0, s
            assert not log.page_errors, log.dump()
        except BaseException:
            print(log.dump())
            raise


async def allocate(port: int, username: str, password: str) -> None:
    """A TURN allocation with these credentials (aioice's client); raises when coturn refuses."""
    import asyncio

    from aioice.turn import create_turn_endpoint

    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), username, password), 10
    )
    transport.close()


async def test_coturn_takes_ours_and_refuses_forged_or_expired(coturn: int) -> None:
    from aioice.stun import TransactionFailed

    await allocate(coturn, *turn_credentials(TURN_SECRET, "p1", ttl_s=600))
    forged = turn_credentials("another-" + "x" * 32, "p1", ttl_s=600)
    expired = turn_credentials(TURN_SECRET, "p1", ttl_s=-60)
    for username, password in (forged, expired):
        with pytest.raises(TransactionFailed):
            await allocate(coturn, username, password)
