"""What a subscriber receives, counted at the RTP level (no decoding, so hundreds fit in a process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FREEZE_S = 0.5  # a gap between two completed video frames longer than this is a freeze


@dataclass
class StreamCounts:
    packets: int = 0
    bytes: int = 0
    highest_seq: int | None = None
    cycles: int = 0
    first_seq: int | None = None
    frames: int = 0
    freezes: int = 0
    longest_gap_s: float = 0.0
    first_packet_at: float | None = None
    _last_frame_at: float | None = field(default=None, repr=False)

    @property
    def expected(self) -> int:
        if self.first_seq is None or self.highest_seq is None:
            return 0
        return self.cycles + self.highest_seq - self.first_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)

    def add(self, seq: int, size: int, marker: bool, now: float) -> None:
        self.packets += 1
        self.bytes += size
        if self.first_seq is None:
            self.first_seq = self.highest_seq = seq
            self.first_packet_at = now
        elif ((seq - self.highest_seq) & 0xFFFF) < 0x8000:  # type: ignore[operator]
            if seq < self.highest_seq:  # type: ignore[operator]
                self.cycles += 1 << 16
            self.highest_seq = seq
        if marker:
            self.frames += 1
            if self._last_frame_at is not None:
                gap = now - self._last_frame_at
                self.longest_gap_s = max(self.longest_gap_s, gap)
                if gap > FREEZE_S:
                    self.freezes += 1
            self._last_frame_at = now

    def reset_window(self) -> None:
        """Start counting afresh (after warm-up), keeping sequence tracking continuous."""
        self.packets = self.bytes = self.frames = self.freezes = 0
        self.longest_gap_s = 0.0
        self.first_seq = None
        self.cycles = 0


class _HeadersOnly:
    """Stands in for a transport's SRTP session: RTP is not decrypted (SRTP leaves the header,
    which is all the probe reads, in the clear); RTCP still is."""

    def __init__(self, session: Any) -> None:
        self.unprotect_rtcp = session.unprotect_rtcp

    @staticmethod
    def unprotect(data: bytes) -> bytes:
        return data


class RtpProbe:
    """Counts a peer connection's incoming media instead of decoding it.

    Replaces each receiver's RTP handler (aiortc private seam, as in server/media/seam.py); RTX
    packets (retransmissions) are counted separately and not as media. ``decrypt=False`` (the
    fan-out benchmark, whose subscribers must cost less than the server they measure) skips SRTP
    on received RTP as well; the connection must be up.
    """

    def __init__(self, pc: Any, decode: bool = False, decrypt: bool = True) -> None:
        self.streams: dict[str, StreamCounts] = {}
        self.retransmissions = 0
        self.decode = decode  # also hand packets to aiortc (to decode the first frame), until set False
        for transceiver in pc.getTransceivers():
            self._tap(transceiver)
            if not decrypt:
                self._headers_only(transceiver.receiver.transport)

    @staticmethod
    def _headers_only(dtls: Any) -> None:
        def swap() -> None:
            if dtls._rx_srtp is not None and not isinstance(dtls._rx_srtp, _HeadersOnly):
                dtls._rx_srtp = _HeadersOnly(dtls._rx_srtp)

        swap()  # the connection is up already, or at its next state change: SRTP is set up before "connected"
        dtls.on("statechange", swap)

    def _tap(self, transceiver: Any) -> None:
        kind = transceiver.kind
        counts = self.streams.setdefault(kind, StreamCounts())
        receiver = transceiver.receiver
        media_pts: set[int] = set()
        handle = receiver._handle_rtp_packet

        async def count(packet: Any, arrival_time_ms: int) -> None:
            if self.decode:
                await handle(packet, arrival_time_ms)
            if not media_pts:
                media_pts.update(c.payloadType for c in transceiver._codecs if not c.mimeType.endswith("/rtx"))
            if packet.payload_type not in media_pts:
                self.retransmissions += 1
                return
            marker = bool(packet.marker) if kind == "video" else True
            counts.add(packet.sequence_number, len(packet.payload), marker, time.monotonic())

        receiver._handle_rtp_packet = count

    def reset_window(self) -> None:
        for counts in self.streams.values():
            counts.reset_window()
        self.retransmissions = 0
