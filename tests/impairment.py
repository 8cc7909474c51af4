"""A userspace UDP impairment relay for tests (this kernel has no netem): it stands between a
client and one server address, delaying every datagram and losing some, in both directions."""

from __future__ import annotations

import asyncio
import random
import re


class ImpairedPath(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], loss: float, one_way_delay_s: float, seed: int = 7) -> None:
        self.target = target
        self.loss = loss
        self.delay_s = one_way_delay_s
        self._random = random.Random(seed)
        self._client: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.passed = self.lost = 0

    @classmethod
    async def open(cls, target: tuple[str, int], loss: float, one_way_delay_s: float) -> tuple[ImpairedPath, int]:
        loop = asyncio.get_running_loop()
        transport, path = await loop.create_datagram_endpoint(
            lambda: cls(target, loss, one_way_delay_s), local_addr=("127.0.0.1", 0)
        )
        return path, transport.get_extra_info("sockname")[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self.target:
            destination = self._client
        else:
            self._client, destination = addr, self.target
        if destination is None or self._transport is None:
            return
        if self._random.random() < self.loss:
            self.lost += 1
            return
        self.passed += 1
        asyncio.get_running_loop().call_later(self.delay_s, self._transport.sendto, data, destination)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host.*)$", re.MULTILINE | re.IGNORECASE)


async def impair_offer(sdp: str, loss: float, one_way_delay_s: float) -> tuple[str, ImpairedPath, int]:
    """The server's offer with its host candidate (one: the server offers 127.0.0.1 only, bundled)
    replaced by a relay in front of it; returns the offer, the relay and the relay's port."""
    targets = {(m.group(2), int(m.group(3))) for m in CANDIDATE.finditer(sdp)}
    if len(targets) != 1:
        raise ValueError(f"Expected one host candidate in the offer, found {sorted(targets)}")
    path, port = await ImpairedPath.open(targets.pop(), loss, one_way_delay_s)
    return CANDIDATE.sub(lambda m: f"{m.group(1)}127.0.0.1 {port}{m.group(4)}", sdp), path, port


def through(sdp: str, port: int) -> str:
    """An answer whose candidates all point at the relay: the server reaches the client only there."""
    return CANDIDATE.sub(lambda m: f"{m.group(1)}127.0.0.1 {port}{m.group(4)}", sdp)
