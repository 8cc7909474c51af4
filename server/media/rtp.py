"""Pure RTP helpers for the forwarding path: header layout, keyframe detection, serial arithmetic."""

from __future__ import annotations

import struct
from typing import Final

RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
REWRITE = struct.Struct("!BHII")  # M/PT, sequence number, timestamp, SSRC (from byte 1)
RTX_OSN = struct.Struct("!H")

RTP_VERSION_BYTE: Final = 0x80  # version 2, no padding, no extension, no CSRC


def build_packet(marker: bool, payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """A minimal RTP packet: fixed header and payload, no extensions."""
    return RTP_HEADER.pack(RTP_VERSION_BYTE, (0x80 if marker else 0) | payload_type, seq, timestamp, ssrc) + payload


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741 payload descriptor, then P bit 0)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S bit unset, or not partition 0
        return False
    offset = 1
    if first & 0x80:  # X: extension byte follows
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            offset += 1
    return len(payload) > offset and not payload[offset] & 0x01


_H264_KEY_NALS: Final = frozenset((5, 7))  # IDR slice, SPS


def h264_keyframe_start(payload: bytes) -> bool:
    """True for a packet that starts an H.264 keyframe: an SPS or the start of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == 24:  # STAP-A: 16-bit size before each NAL
        offset = 1
        while offset + 2 < len(payload):
            size = (payload[offset] << 8) | payload[offset + 1]
            if payload[offset + 2] & 0x1F in _H264_KEY_NALS:
                return True
            offset += 2 + size
        return False
    if nal_type == 28:  # FU-A: start bit and the fragmented NAL's type
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NALS
    return nal_type in _H264_KEY_NALS


def keyframe_detector(mime_type: str):  # type: ignore[no-untyped-def]
    """The keyframe test for a codec; audio packets all count as starting points."""
    name = mime_type.lower()
    if name == "video/vp8":
        return vp8_keyframe_start
    if name == "video/h264":
        return h264_keyframe_start
    return None
