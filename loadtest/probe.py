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


class RtpProbe:
    """Counts a peer connection's incoming media instead of decoding it.

    Replaces each receiver's RTP handler (aiortc private seam, as in server/media/seam.py); RTX
    packets (retransmissions) are counted separately and not as media. ``decrypt=False`` (the
    fan-out benchmark, whose subscribers must cost much less than the server they measure) counts
    RTP as it comes off the ICE socket, from the header SRTP leaves in the clear, and hands aiortc
    only the rest (STUN, DTLS, RTCP): no decryption, parsing or queueing per packet.
    """

    def __init__(self, pc: Any, decode: bool = False, decrypt: bool = True) -> None:
        self.streams: dict[str, StreamCounts] = {}
        self.retransmissions = 0
        self.decode = decode  # also hand packets to aiortc (to decode the first frame), until set False
        for transceiver in pc.getTransceivers():
            self._tap(transceiver)
        if not decrypt:
            self._count_off_the_socket(pc)

    def _count_off_the_socket(self, pc: Any) -> None:
        kinds: dict[int, tuple[str, StreamCounts]] = {}  # media payload type -> its kind's counts
        for transceiver in pc.getTransceivers():
            for codec in transceiver._codecs:
                if not codec.mimeType.lower().endswith("/rtx"):
                    kinds[codec.payloadType] = (transceiver.kind, self.streams[transceiver.kind])
        connection = pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in connection._protocols:  # aioice's, one per local candidate (private seam)
            received = protocol.datagram_received

            def count(data: bytes, addr: Any, received: Any = received, protocol: Any = protocol) -> None:
                if len(data) < 12 or not 128 <= data[0] < 192:
                    received(data, addr)  # STUN or DTLS
                elif 192 <= data[1] <= 223:  # RTCP (payload types 64-95 with the marker bit)
                    protocol.receiver.data_received(data, protocol.local_candidate.component)
                elif (found := kinds.get(data[1] & 0x7F)) is None:
                    self.retransmissions += 1
                else:
                    kind, counts = found
                    marker = bool(data[1] & 0x80) if kind == "video" else True
                    counts.add(int.from_bytes(data[2:4], "big"), len(data) - 12, marker, time.monotonic())

            protocol.datagram_received = count

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
