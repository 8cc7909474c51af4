"""The relay between workers and nodes takes datagrams only from the egress given its key."""

from __future__ import annotations

import asyncio
import json
import socket

from server.media.forwarder import ForwardingStats
from server.media.relay import RelayIngress, new_key, sign
from server.media.rtp import RTP_HEADER

VIDEO = {"name": "video", "kind": "video", "mime": "video/VP8", "clock": 90000, "ssrc": 2}


def rtp(seq: int, ssrc: int = 2) -> bytes:
    return RTP_HEADER.pack(0x80, 96, seq, 1000 * seq, ssrc) + b"\x10\x00payload"


async def settle() -> None:
    await asyncio.sleep(0.2)


async def test_a_spoofed_datagram_changes_nothing_at_the_ingress() -> None:
    stats = ForwardingStats()
    ingress, port = await RelayIngress.open(stats, 0.5)
    ingress.expect([VIDEO])
    video = ingress.tracks["video"]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        hello = b"H" + json.dumps({"epoch": "forged", "tracks": [VIDEO]}).encode()
        for datagram in (rtp(1), sign(bytes.fromhex(new_key()), rtp(2)), hello, sign(b"", hello), b"\x80"):
            stranger.sendto(datagram, ("127.0.0.1", port))
        await settle()
        assert video.last_seq is None  # no packet reached the track
        assert stats.relay_rejected == 5
        await ingress._ask_egress(2)  # a keyframe request has nowhere to go: no sender was believed
        assert ingress._egress is None

        # The egress that was given the key is heard.
        stranger.sendto(sign(bytes.fromhex(ingress.key), rtp(7)), ("127.0.0.1", port))
        await settle()
        assert video.last_seq == 7
        assert stats.relay_rejected == 5
    finally:
        stranger.close()
        await ingress.close()
