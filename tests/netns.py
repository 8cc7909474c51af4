"""A network namespace of a test's own, joined to this host by a veth pair, and a wrapper that runs
Chromium inside it: a pupil on another network than the teacher (UDP blocked, or an address that
changes mid-lesson)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser, async_playwright

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the host's side of the veth: the server, coturn and the teacher's page use it
    ns_ip: str  # the pupil's address inside
    host_if: str
    ns_if: str
    chromium: Path  # a wrapper that runs Chromium inside the namespace

    def run(self, command: str) -> None:
        """A command inside the namespace (``ip ...``, ``nft ...``)."""
        sh(f"ip netns exec {self.name} {command}")


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True, capture_output=True)


@contextmanager
def namespace(tag: str, subnet: int, directory: Path) -> Iterator[Namespace]:
    """``10.{subnet}.n.0/24`` between the host (``.1``) and the namespace (``.2``), n from our pid."""
    n = os.getpid() % 200 + 20
    name, host_if, ns_if = f"sky{tag}{n}", f"sky{tag[0]}h{n}", f"sky{tag[0]}n{n}"
    host_ip, ns_ip = f"10.{subnet}.{n}.1", f"10.{subnet}.{n}.2"
    commands = [
        f"ip netns add {name}",
        f"ip link add {host_if} type veth peer name {ns_if}",
        f"ip link set {ns_if} netns {name}",
        f"ip addr add {host_ip}/24 dev {host_if}",
        f"ip link set {host_if} up",
        f"ip netns exec {name} ip addr add {ns_ip}/24 dev {ns_if}",
        f"ip netns exec {name} ip link set {ns_if} up",
        f"ip netns exec {name} ip link set lo up",
    ]
    try:
        for command in commands:
            sh(command)
        wrapper = directory / f"chromium-{tag}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        yield Namespace(name, host_ip, ns_ip, host_if, ns_if, wrapper)
    finally:
        subprocess.run(f"ip netns del {name}", shell=True, capture_output=True)
        subprocess.run(f"ip link del {host_if}", shell=True, capture_output=True)


@asynccontextmanager
async def chromium_inside(network: Namespace, *args: str) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, on the namespace's network."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(network.chromium), headless=True, args=[*CHROMIUM_ARGS, *args]
        )
        try:
            yield browser
        finally:
            await browser.close()
