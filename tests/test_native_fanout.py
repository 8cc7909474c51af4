"""The native fan-out step sends exactly what the Python path sends: the same RTP, protected with
the same keys, byte for byte, over a real UDP socket to the subscriber's address."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from fractions import Fraction

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder

from server.media import native
from server.media.forwarder import DownTrack, ForwardingStats, UpTrack
from server.media.seam import session_endpoint

from .conftest import ServerProcess
from .forwarding import parse, sessions
from .peers import pattern

SSRC, RTX_SSRC = 0x5EED1234, 0x5EED5678


def recorded_vp8(frames: int) -> list[tuple[int, int, bool, bytes]]:
    """A publisher's packets: our test pattern through aiortc's VP8 encoder and packetizer, the
    sequence numbers about to wrap."""
    encoder = Vp8Encoder()
    packets = []
    seq = 0xFFFF - 40
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern(i, 0), format="rgb24")
        frame.pts, frame.time_base = i * 3000, Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=i in (0, 90))
        for n, payload in enumerate(payloads):
            packets.append((seq, timestamp, n == len(payloads) - 1, payload))
            seq = (seq + 1) & 0xFFFF
    return packets


class ProtectingSend:
    """The Python path's send, protecting as aiortc's transport does."""

    def __init__(self) -> None:
        self.session, _ = sessions()
        self.datagrams: list[bytes] = []

    def __call__(self, data: bytes) -> bool:
        self.datagrams.append(self.session.protect(data))
        return True


def same_rewrite(*downs: DownTrack) -> None:
    """The random starting points, made equal so both paths' output can be compared."""
    for down in downs:
        down._seq_offset, down._ts_offset, down._rtx_seq = 1234, 0xDEADBEEF, 777


async def test_the_native_step_sends_what_the_python_path_sends() -> None:
    if not native.enabled():
        pytest.fail(native.describe())
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))

    async def no_upstream(ssrc: int) -> None:
        return None

    stats = ForwardingStats()
    up = UpTrack("video", "video/VP8", 90000, stats, no_upstream, 0.5)
    python_send = ProtectingSend()
    python_down = DownTrack("video", stats)
    python_down.configure(ssrc=SSRC, payload_type=96, rtx_ssrc=RTX_SSRC, rtx_payload_type=97, send=python_send)
    tx, rx = sessions()
    endpoint = session_endpoint(
        tx, fd=sender.fileno(), host="127.0.0.1", port=receiver.getsockname()[1], ssrc=SSRC, payload_type=96
    )
    assert endpoint is not None
    native_down = DownTrack("video", stats)
    native_down.configure(
        ssrc=SSRC, payload_type=96, rtx_ssrc=RTX_SSRC, rtx_payload_type=97, send=endpoint.send, endpoint=endpoint
    )
    same_rewrite(python_down, native_down)
    up.add(python_down)
    up.add(native_down)

    packets = recorded_vp8(150)
    for seq, ts, marker, payload in packets:
        up.on_packet(seq, ts, marker, payload, ssrc=42)
    assert native_down.is_native and not python_down.is_native
    lost = [(packets[k][0] + 1234) & 0xFFFF for k in (130, 140)]
    python_down.on_nack(lost)
    native_down.on_nack(lost)

    received = []
    while len(received) < len(python_send.datagrams):
        received.append(receiver.recv(2048))
    assert len(received) == len(packets) + 2 > 100
    assert received == python_send.datagrams  # byte for byte, sequence-number wrap and retransmissions included
    assert stats.native_packets_out == len(packets) - 1  # all but the first, which started the subscriber
    plain = [parse(rx.unprotect(datagram)) for datagram in received]
    assert [p[2] for p in plain[: len(packets)]] == [(seq + 1234) & 0xFFFF for seq, _, _, _ in packets]
    assert [p[5] for p in plain[: len(packets)]] == [payload for _, _, _, payload in packets]
    assert {p[4] for p in plain[len(packets) :]} == {RTX_SSRC}
    assert [struct.unpack("!H", p[5][:2])[0] for p in plain[len(packets) :]] == lost
    assert native_down.packets_sent == python_down.packets_sent == len(packets)
    assert native_down.octets_sent == python_down.octets_sent
    for sock in (receiver, sender):
        sock.close()


def test_without_the_extension_the_python_path_forwards_and_says_so() -> None:
    code = (
        "import sys; sys.modules['server.media._fanout'] = None\n"  # as when it could not be built
        "from server.media import native\n"
        "from server.media.forwarder import DownTrack, ForwardingStats\n"
        "print(native.enabled(), native.fanout(), native.describe())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False None native fan-out unavailable (import of server.media._fanout halted"), out


def test_the_server_says_which_path_forwards(server: ServerProcess) -> None:
    assert "native fan-out: on" in server.log()
