"""One publication copied to another media worker or node: plain RTP over UDP.

The egress is a subscriber like any other (one ``DownTrack`` per track) whose "transport" is a
UDP socket; the ingress is a publication whose ``UpTrack``s are fed from that socket. Between
workers of one node the pair lives as long as the publication; between nodes (the cascade) an
ingress stands for a room's broadcast as long as the node has viewers, and the origin points a new
egress at it whenever the teacher publishes again. A few control datagrams ride along, told apart
from RTP by their first byte (RTP's is 0x80-0xBF):
- ``H`` + JSON, egress -> ingress, first and then once a second: the egress's epoch and its
  tracks (kind, codec, clock rate, SSRC); a new epoch means a new publication behind the relay;
- ``S`` + SSRC, NTP, RTP, egress -> ingress: the publisher's clock, for lip sync downstream;
- ``K`` + SSRC, ingress -> egress: a keyframe request, coalesced on both sides.

Every datagram ends with a tag, a truncated HMAC-SHA256 under the ingress's own key, which reaches
the egress only through whoever set the relay up (the pool, or the cascade's call over the bus).
A datagram without the right tag is dropped and counted (``relay_rejected``), so a stranger who
reaches the port can neither inject media nor move the ingress's feedback to another address.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import struct
from typing import Any

from .forwarder import DownTrack, ForwardingStats, SenderReport, UpTrack

log = logging.getLogger(__name__)

RELAY_SSRC = {"audio": 1, "video": 2, "screen": 3, "video_low": 4}  # track name -> SSRC on the relay
_SR = struct.Struct("!cIQI")  # b"S", ssrc, ntp, rtp
_KEYFRAME = struct.Struct("!cI")  # b"K", ssrc
ANNOUNCE_INTERVAL_S = 1.0
TAG_BYTES = 8


def new_key() -> str:
    return secrets.token_hex(16)


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")[:TAG_BYTES]


def sign(key: bytes, data: bytes) -> bytes:
    return data + _tag(key, data)


def verified(key: bytes, datagram: bytes) -> bytes | None:
    """The datagram without its tag, or None when the tag is not ours."""
    if len(datagram) <= TAG_BYTES:
        return None
    data, tag = datagram[:-TAG_BYTES], datagram[-TAG_BYTES:]
    return data if hmac.compare_digest(tag, _tag(key, data)) else None


class RelayEgress(asyncio.DatagramProtocol):
    """Sends a source's tracks to an ingress on ``port``."""

    def __init__(self, source: Any, stats: ForwardingStats, key: str) -> None:
        self._source = source
        self._stats = stats
        self._key = bytes.fromhex(key)
        self._transport: asyncio.DatagramTransport | None = None
        self.downtracks: dict[str, DownTrack] = {}
        self._announcer: asyncio.Task[None] | None = None
        self.epoch = secrets.token_hex(4)

    @classmethod
    async def open(cls, source: Any, host: str, port: int, key: str, stats: ForwardingStats) -> RelayEgress:
        loop = asyncio.get_running_loop()
        _, egress = await loop.create_datagram_endpoint(lambda: cls(source, stats, key), remote_addr=(host, port))
        egress._start()
        return egress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def _send(self, data: bytes) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.sendto(sign(self._key, data))
        return True

    def _start(self) -> None:
        for name, up in self._source.tracks.items():
            down = DownTrack(up.kind, self._stats)
            down.configure(
                ssrc=RELAY_SSRC[name], payload_type=96, rtx_ssrc=None, rtx_payload_type=None, send=self._send
            )
            down.source = up
            self.downtracks[name] = down
        self._send_hello()  # before the first packet: the ingress must know the epoch they belong to
        for down in self.downtracks.values():
            if down.source is not None:
                down.source.add(down)
        self._announcer = asyncio.get_running_loop().create_task(self._announce())

    def _send_hello(self) -> None:
        tracks = [
            {"name": name, "kind": d.kind, "mime": d.source.mime_type, "clock": d.source.clock_rate, "ssrc": d.ssrc}
            for name, d in self.downtracks.items()
            if d.source is not None
        ]
        self._send(b"H" + json.dumps({"epoch": self.epoch, "tracks": tracks}).encode())

    async def _announce(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_INTERVAL_S)
            self._send_hello()
            for down in self.downtracks.values():
                report = down.sender_report()
                if report is not None:
                    self._send(_SR.pack(b"S", down.ssrc, *report))

    def datagram_received(self, datagram: bytes, addr: tuple[str | Any, int]) -> None:
        data = verified(self._key, datagram)
        if data is None:
            self._stats.relay_rejected += 1
            return
        if len(data) == _KEYFRAME.size and data[:1] == b"K":
            _, ssrc = _KEYFRAME.unpack(data)
            for down in self.downtracks.values():
                if down.ssrc == ssrc:
                    down.on_keyframe_request()

    def close(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
        for down in self.downtracks.values():
            if down.source is not None:
                down.source.remove(down)
                down.detach()
        if self._transport is not None:
            self._transport.close()


class RelayIngress(asyncio.DatagramProtocol):
    """A publication whose packets come from a ``RelayEgress`` in another worker or node."""

    def __init__(self, stats: ForwardingStats, keyframe_interval_s: float) -> None:
        self._stats = stats
        self._keyframe_interval_s = keyframe_interval_s
        self.key = new_key()  # given to the one egress meant to feed this ingress
        self._key = bytes.fromhex(self.key)
        self._transport: asyncio.DatagramTransport | None = None
        self._egress: tuple[str, int] | None = None
        self._epoch: str | None = None
        self._by_ssrc: dict[int, UpTrack] = {}
        self.tracks: dict[str, UpTrack] = {}
        self.ready = asyncio.Event()  # set once the tracks are known

    @classmethod
    async def open(
        cls, stats: ForwardingStats, keyframe_interval_s: float, host: str = "127.0.0.1"
    ) -> tuple[RelayIngress, int]:
        loop = asyncio.get_running_loop()
        transport, ingress = await loop.create_datagram_endpoint(
            lambda: cls(stats, keyframe_interval_s), local_addr=(host, 0)
        )
        return ingress, int(transport.get_extra_info("sockname")[1])

    def expect(self, tracks: list[dict[str, Any]]) -> None:
        """Make the tracks before anything arrives (name, kind, mime, clock, ssrc, as announced):
        subscribers attach now and start with the first keyframe of whatever comes."""
        self._announced(tracks)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, datagram: bytes, addr: tuple[str | Any, int]) -> None:
        data = verified(self._key, datagram)
        if not data:
            self._stats.relay_rejected += 1
            return
        if data[0] & 0xC0 == 0x80:
            if len(data) <= 12:
                return
            up = self._by_ssrc.get(int.from_bytes(data[8:12], "big"))
            if up is not None:
                seq = (data[2] << 8) | data[3]
                up.on_packet(seq, int.from_bytes(data[4:8], "big"), bool(data[1] & 0x80), data[12:], up.ssrc or 0)
            return
        self._egress = addr
        if data[:1] == b"H":
            hello = json.loads(data[1:])
            if self._epoch is not None and hello["epoch"] != self._epoch:
                for up in self.tracks.values():
                    up.restart()  # another publication: its numbering starts over
            self._epoch = hello["epoch"]
            self._announced(hello["tracks"])
        elif data[:1] == b"S" and len(data) == _SR.size:
            _, ssrc, ntp, rtp = _SR.unpack(data)
            if (up := self._by_ssrc.get(ssrc)) is not None:
                up.sender_report = SenderReport(ntp, rtp)

    def _announced(self, tracks: list[dict[str, Any]]) -> None:
        for spec in tracks:
            ssrc = int(spec["ssrc"])
            if ssrc in self._by_ssrc:
                continue
            up = UpTrack(
                spec["kind"], spec["mime"], int(spec["clock"]), self._stats, self._ask_egress, self._keyframe_interval_s
            )
            up.ssrc = ssrc
            self._by_ssrc[ssrc] = up
            self.tracks[spec["name"]] = up
        self.ready.set()

    async def _ask_egress(self, ssrc: int) -> None:
        if self._transport is not None and self._egress is not None:
            self._transport.sendto(sign(self._key, _KEYFRAME.pack(b"K", ssrc)), self._egress)

    async def close(self) -> None:
        for up in self.tracks.values():
            up.close()
        if self._transport is not None:
            self._transport.close()
