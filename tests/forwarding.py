"""Both forwarding paths behind one test interface.

``PythonCapture`` is the Python path's send function, recording what it is handed. ``NativeCapture``
gives the subscriber a native endpoint on one end of a datagram socket pair and decrypts what
arrives at the other with the subscriber's keys, so a test reads the same packets either way.
"""

from __future__ import annotations

import socket

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from server.media import native
from server.media.forwarder import DownTrack
from server.media.rtp import RTP_HEADER
from server.media.seam import session_endpoint

KEYING = bytes(range(30))  # SRTP master key and salt (AES_CM_128_HMAC_SHA1_80)
JUNK = b"\xffjunk"  # fills a socket; never RTP
REPLAYED = b"(replayed: the subscriber's SRTP refuses it)"

Packet = tuple[int, int, int, int, int, bytes]  # marker, payload type, seq, timestamp, SSRC, payload


def parse(data: bytes) -> Packet:
    _, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
    return second >> 7, second & 0x7F, seq, ts, ssrc, data[RTP_HEADER.size :]


def sessions() -> tuple[Session, Session]:
    """A subscriber's pair of SRTP sessions, set up as aiortc does: ours to protect with, its
    own to unprotect with."""
    pair = []
    for ssrc_type in (Policy.SSRC_ANY_OUTBOUND, Policy.SSRC_ANY_INBOUND):
        policy = Policy(key=KEYING, ssrc_type=ssrc_type)
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        pair.append(Session(policy))
    return pair[0], pair[1]


class PythonCapture:
    def __init__(self) -> None:
        self._packets: list[Packet] = []
        self._full = False

    def __call__(self, data: bytes) -> bool:
        if self._full:
            return False
        self._packets.append(parse(data))
        return True

    @property
    def packets(self) -> list[Packet]:
        return self._packets

    def full(self, on: bool) -> None:
        self._full = on

    def attach(self, down: DownTrack, ssrc: int, payload_type: int, rtx: tuple[int, int] | None = None) -> None:
        down.configure(
            ssrc=ssrc,
            payload_type=payload_type,
            rtx_ssrc=rtx[0] if rtx else None,
            rtx_payload_type=rtx[1] if rtx else None,
            send=self,
        )


class NativeCapture:
    """A subscriber on the native path. A datagram socket pair holds 10 datagrams
    (net.unix.max_dgram_qlen): read ``packets`` at least that often."""

    def __init__(self) -> None:
        if not native.enabled():
            pytest.fail(native.describe())
        self._tx, self._rx = sessions()
        self.sender, self.receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.receiver.setblocking(False)
        self._packets: list[Packet] = []

    @property
    def packets(self) -> list[Packet]:
        while True:
            try:
                data = self.receiver.recv(2048)
            except BlockingIOError:
                return self._packets
            if data == JUNK:
                continue
            try:
                self._packets.append(parse(self._rx.unprotect(data)))
            except pylibsrtp.Error as error:  # a packet sent twice: the header is in the clear
                if "replay" not in str(error):
                    raise
                self._packets.append(parse(data)[:5] + (REPLAYED,))

    def full(self, on: bool) -> None:
        if on:
            while True:
                try:
                    self.sender.send(JUNK)
                except BlockingIOError:
                    return
        else:
            self.packets  # noqa: B018 - reading empties the socket

    def attach(self, down: DownTrack, ssrc: int, payload_type: int, rtx: tuple[int, int] | None = None) -> None:
        sender = self.sender.fileno()
        endpoint = session_endpoint(self._tx, fd=sender, host="", port=0, ssrc=ssrc, payload_type=payload_type)
        assert endpoint is not None
        down.configure(
            ssrc=ssrc,
            payload_type=payload_type,
            rtx_ssrc=rtx[0] if rtx else None,
            rtx_payload_type=rtx[1] if rtx else None,
            send=endpoint.send,
            endpoint=endpoint,
        )


Capture = PythonCapture | NativeCapture


def capture_for(path: str) -> Capture:
    return NativeCapture() if path == "native" else PythonCapture()
