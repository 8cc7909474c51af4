"""A userspace UDP impairment relay for tests (this kernel has no netem): it stands between a
client and one server address, delaying every datagram and losing some, in both directions, and
can cap the rate towards the client like a token-bucket filter (``rate_bps``: a queue of at most
``QUEUE_S`` of sending; what does not fit is dropped)."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtest.client import SignalingClient, peer
from server.media.seam import route_rtx

QUEUE_S = 0.4  # the rate cap's queue, in seconds of sending at the cap (as tbf's `latency 400ms`)


class ImpairedPath(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], loss: float, one_way_delay_s: float, seed: int = 7) -> None:
        self.target = target
        self.loss = loss
        self.delay_s = one_way_delay_s
        self._random = random.Random(seed)
        self._client: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.passed = self.lost = 0
        self.rate_bps: float | None = None  # a cap towards the client, changeable at any time
        self.capped = 0  # datagrams the cap dropped
        self._free_at = 0.0  # when the capped link has sent everything queued

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
            # The client's media socket: ICE checks come from every socket the client has, and
            # answering a check's socket with media would lose it; DTLS and RTP (first byte 20 and
            # up; STUN is 0-3) come from the pair ICE chose.
            if self._client is None or data[:1] >= b"\x14":
                self._client = addr
            destination = self.target
        if destination is None or self._transport is None:
            return
        if self._random.random() < self.loss:
            self.lost += 1
            return
        delay = self.delay_s
        if self.rate_bps is not None and destination == self._client:
            now = time.monotonic()
            start = max(now, self._free_at)
            if start - now > QUEUE_S:
                self.capped += 1
                return
            self._free_at = start + len(data) * 8 / self.rate_bps
            delay += self._free_at - now
        self.passed += 1
        asyncio.get_running_loop().call_later(delay, self._deliver, data, destination)

    def _deliver(self, data: bytes, destination: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, destination)

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


async def subscribe_through_relay(
    student: SignalingClient,
    loss: float,
    one_way_delay_s: float,
    before_answer: Callable[[dict[str, Any]], object] = lambda transceivers: None,
) -> tuple[RTCPeerConnection, dict[str, Any], ImpairedPath]:
    """Take the student's subscription offer with its media through a relay; returns the peer
    connection, its transceivers by slot, and the relay. ``before_answer`` sees the transceivers
    before any media can flow (to watch their receivers)."""
    offer = await student.expect("offer")
    sdp, path, port = await impair_offer(offer["sdp"], loss, one_way_delay_s)
    pc = peer()
    await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
    transceivers = dict(zip(offer["slots"], pc.getTransceivers()))
    for transceiver in transceivers.values():
        route_rtx(transceiver.receiver)
    before_answer(transceivers)
    await pc.setLocalDescription(await pc.createAnswer())
    await student.send({"type": "answer", "target": "subscribe", "sdp": through(pc.localDescription.sdp, port)})
    return pc, transceivers, path
