"""Pure forwarding logic: keyframe detection, header rewriting, coalescing, with time passed in."""

from __future__ import annotations

import asyncio
import struct

import pytest

from server.media.forwarder import DownTrack, ForwardingStats, UpTrack
from server.media.keyframes import KeyframeRequests
from server.media.rtp import h264_keyframe_start, seq_newer, vp8_keyframe_start

from .forwarding import Capture, PythonCapture, capture_for


def vp8(descriptor: bytes, first_payload_byte: int) -> bytes:
    return descriptor + bytes([first_payload_byte]) + b"\x00" * 10


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (vp8(b"\x10", 0x00), True),  # S=1, PID=0, P=0: keyframe start
        (vp8(b"\x10", 0x01), False),  # P=1: interframe
        (vp8(b"\x00", 0x00), False),  # S=0: continuation
        (vp8(b"\x11", 0x00), False),  # partition 1
        (vp8(b"\x90\x80\x05", 0x00), True),  # X, I with 7-bit picture id
        (vp8(b"\x90\x80\x85\x01", 0x00), True),  # 15-bit picture id
        (vp8(b"\x90\x80\x85\x01", 0x01), False),
        (vp8(b"\x90\xe0\x85\x01\x07\x20", 0x00), True),  # I, L, T: id, TL0PICIDX, TID
        (b"\x10", False),
    ],
)
def test_vp8_keyframe_start(payload: bytes, expected: bool) -> None:
    assert vp8_keyframe_start(payload) is expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x67\x42\x00", True),  # SPS
        (b"\x65\x88", True),  # IDR slice
        (b"\x41\x9a", False),  # non-IDR slice
        (b"\x7c\x85\x00", True),  # FU-A, start, IDR
        (b"\x7c\x05\x00", False),  # FU-A, not the start
        (b"\x7c\x81\x00", False),  # FU-A start of a non-IDR slice
        (b"\x78\x00\x02\x67\x42\x00\x02\x68\xce", True),  # STAP-A with SPS and PPS
        (b"\x78\x00\x02\x41\x9a", False),
        (b"", False),
    ],
)
def test_h264_keyframe_start(payload: bytes, expected: bool) -> None:
    assert h264_keyframe_start(payload) is expected


def test_seq_newer_wraps() -> None:
    assert seq_newer(1, 0)
    assert seq_newer(0, 0xFFFF)
    assert not seq_newer(0xFFFF, 0)
    assert not seq_newer(5, 5)


def test_keyframe_requests_coalesce() -> None:
    requests = KeyframeRequests(min_interval_s=0.5)
    assert requests.request(10.0)  # first goes out at once
    assert not any(requests.request(10.0 + i * 0.001) for i in range(100))  # a hundred joins
    assert requests.next_due() == pytest.approx(10.5)
    assert not requests.poll(10.4)
    assert requests.poll(10.5)  # the held one goes out once
    assert not requests.poll(10.6)
    assert (requests.requested, requests.sent) == (101, 2)


def test_keyframe_seen_cancels_a_held_request() -> None:
    requests = KeyframeRequests(min_interval_s=0.5)
    requests.request(0.0)
    requests.request(0.1)
    requests.keyframe_seen()
    assert requests.next_due() is None
    assert not requests.poll(1.0)


def make_pair(capture: Capture) -> tuple[UpTrack, DownTrack]:
    async def no_upstream(ssrc: int) -> None:
        return None

    stats = ForwardingStats()
    up = UpTrack("video", "video/VP8", 90000, stats, no_upstream, 0.5)
    down = DownTrack("video", stats)
    capture.attach(down, ssrc=0xABCDEF01, payload_type=96, rtx=(0x1234, 97))
    return up, down


KEY = b"\x10\x00" + b"k" * 20
DELTA = b"\x10\x01" + b"d" * 20


async def test_downtrack_starts_at_a_keyframe_and_rewrites_headers(forwarding_path: str) -> None:
    capture = capture_for(forwarding_path)
    up, down = make_pair(capture)
    up.add(down)
    up.on_packet(0xFFFE, 1000, True, DELTA, ssrc=42)  # before any keyframe: held back
    assert capture.packets == []
    up.on_packet(0xFFFF, 4000, False, KEY, ssrc=42)
    up.on_packet(0x0000, 4000, True, b"\x00rest", ssrc=42)  # sequence number wraps
    up.on_packet(0x0001, 7000, True, DELTA, ssrc=42)
    seqs = [p[2] for p in capture.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1]
    assert [p[3] - capture.packets[0][3] for p in capture.packets] == [0, 0, 3000]
    assert {p[4] for p in capture.packets} == {0xABCDEF01}
    assert {p[1] for p in capture.packets} == {96}
    assert [p[0] for p in capture.packets] == [0, 1, 1]
    assert capture.packets[0][5] == KEY
    assert down.is_native is (forwarding_path == "native")  # the native step forwards from the second packet on


async def test_nack_is_answered_from_history_as_rtx(forwarding_path: str) -> None:
    capture = capture_for(forwarding_path)
    up, down = make_pair(capture)
    up.add(down)
    for i in range(5):
        up.on_packet(100 + i, 3000 * i, True, KEY if i == 0 else DELTA, ssrc=42)
    lost_out_seq = capture.packets[2][2]
    down.on_nack([lost_out_seq])
    marker, pt, _, ts, ssrc, payload = capture.packets[-1]
    assert (pt, ssrc) == (97, 0x1234)
    assert struct.unpack("!H", payload[:2])[0] == lost_out_seq
    assert payload[2:] == DELTA
    assert ts == capture.packets[2][3]
    assert down.stats.retransmits == 1


async def test_a_new_source_continues_the_sequence(forwarding_path: str) -> None:
    capture = capture_for(forwarding_path)
    up, down = make_pair(capture)
    up.add(down)
    up.on_packet(500, 90000, True, KEY, ssrc=1)
    up.on_packet(501, 93000, True, DELTA, ssrc=1)
    up.close()
    second, _ = make_pair(capture_for(forwarding_path))
    second.add(down)
    await asyncio.sleep(0.01)
    second.on_packet(7, 5, True, KEY, ssrc=2)
    first_seq, last_seq = capture.packets[1][2], capture.packets[2][2]
    assert (last_seq - first_seq) & 0xFFFF == 1
    assert 0 < (capture.packets[2][3] - capture.packets[1][3]) & 0xFFFFFFFF < 90000


async def test_a_joiner_starts_from_the_kept_picture_group_without_asking_upstream(forwarding_path: str) -> None:
    capture = capture_for(forwarding_path)
    up, first = make_pair(capture_for(forwarding_path))
    up.add(first)  # nothing kept yet: asks upstream
    up.on_packet(10, 0, False, KEY, ssrc=42)
    up.on_packet(11, 0, True, b"\x00tail", ssrc=42)
    up.on_packet(12, 3000, True, DELTA, ssrc=42)
    requests = up.stats.keyframe_requests_in
    joiner = DownTrack("video", up.stats)
    capture.attach(joiner, ssrc=7, payload_type=96)
    up.add(joiner)
    assert [p[5] for p in capture.packets] == [KEY, b"\x00tail", DELTA]  # at once, from the keyframe
    assert up.stats.keyframe_requests_in == requests
    assert up.stats.keyframe_replays == 1
    up.on_packet(13, 6000, True, DELTA, ssrc=42)
    seqs = [p[2] for p in capture.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1, 1]


async def test_a_long_picture_group_is_paced_out_and_live_packets_queue_behind_it(forwarding_path: str) -> None:
    from server.media.forwarder import PACE_TICK_S, REPLAY_SPEED

    up, _ = make_pair(capture_for(forwarding_path))
    up.on_packet(0, 0, False, KEY, ssrc=42)
    for i in range(1, 300):  # two seconds of a 150-packets-a-second stream
        up.on_packet(i, i * 600, i % 5 == 0, DELTA, ssrc=42)
    capture = capture_for(forwarding_path)
    joiner = DownTrack("video", up.stats)
    capture.attach(joiner, ssrc=7, payload_type=96)
    up.add(joiner)
    burst = round(REPLAY_SPEED * 300 / (299 * 600 / 90000) * PACE_TICK_S)
    assert len(capture.packets) == burst < 10  # not the whole picture group at once
    received = 0
    for i in range(300, 320):  # live packets meanwhile
        up.on_packet(i, i * 600, True, DELTA, ssrc=42)
        await asyncio.sleep(PACE_TICK_S)
        assert len(capture.packets) > received  # reading keeps a socket pair from filling
        received = len(capture.packets)
    while len(capture.packets) < 320:
        await asyncio.sleep(PACE_TICK_S)
    seqs = [p[2] for p in capture.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1] * 319  # in order, the live ones behind
    assert capture.packets[0][5] == KEY
    up.on_packet(320, 320 * 600, True, DELTA, ssrc=42)
    assert joiner.is_native is (forwarding_path == "native") and len(capture.packets) == 321
    await asyncio.sleep(PACE_TICK_S)  # nothing left in flight


async def test_a_picture_group_too_long_is_not_kept(forwarding_path: str) -> None:
    from server.media.forwarder import GOP_LIMIT

    up, _ = make_pair(capture_for(forwarding_path))
    up.on_packet(0, 0, True, KEY, ssrc=42)
    for i in range(1, GOP_LIMIT + 1):
        up.on_packet(i, i * 3000, True, DELTA, ssrc=42)
    capture = capture_for(forwarding_path)
    joiner = DownTrack("video", up.stats)
    capture.attach(joiner, ssrc=7, payload_type=96)
    up.add(joiner)
    assert capture.packets == []
    assert up.stats.keyframe_requests_in == 1


async def test_a_congested_subscriber_drops_until_the_next_keyframe(forwarding_path: str) -> None:
    accepted = capture_for(forwarding_path)
    up, down = make_pair(accepted)
    up.add(down)
    up.on_packet(0, 0, True, KEY, ssrc=42)
    up.on_packet(1, 3000, True, DELTA, ssrc=42)  # on the native path from here on
    accepted.full(True)
    up.on_packet(2, 6000, True, DELTA, ssrc=42)
    accepted.full(False)
    up.on_packet(3, 9000, True, DELTA, ssrc=42)  # decodable only with packet 2: skipped
    up.on_packet(4, 12000, True, KEY, ssrc=42)
    up.on_packet(5, 15000, True, DELTA, ssrc=42)
    assert [p[5] for p in accepted.packets] == [KEY, DELTA, KEY, DELTA]
    seqs = [p[2] for p in accepted.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 3, 1]  # the subscriber sees the gap
    assert up.stats.congestion_drops == 1
    assert up.stats.keyframe_requests_in == 2  # the join and the congestion


async def test_a_long_lesson_keeps_flowing_past_the_sequence_number_space(forwarding_path: str) -> None:
    """More than 65,536 packets: the subscriber's floor moves along with the stream."""
    capture = capture_for(forwarding_path)
    up, down = make_pair(capture)
    up.add(down)
    up.on_packet(1000, 0, True, KEY, ssrc=42)
    for i in range(1, 70_000):
        up.on_packet((1000 + i) & 0xFFFF, i * 3000, True, DELTA, ssrc=42)
        if i % 8 == 0:
            capture.packets  # noqa: B018 - read before a socket pair's queue fills
    assert len(capture.packets) == 70_000
    assert up.stats.congestion_drops == 0 and down.is_native is (forwarding_path == "native")
    up.on_packet((1000 + 69_000) & 0xFFFF, 0, True, DELTA, ssrc=42)  # a late retransmission: still in the window
    up.on_packet((1000 + 30_000) & 0xFFFF, 0, True, DELTA, ssrc=42)  # far older: dropped
    assert len(capture.packets) == 70_001


async def test_a_sender_report_carries_the_publishers_clock_in_the_subscribers_terms() -> None:
    from types import SimpleNamespace

    from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket

    from server.media.forwarder import SenderReport
    from server.media.seam import _send_reports

    capture = PythonCapture()
    up, down = make_pair(capture)
    up.add(down)
    for i in range(3):
        up.on_packet(100 + i, 9000 * i, True, KEY if i == 0 else DELTA, ssrc=42)
    up.sender_report = SenderReport(ntp_timestamp=0x0123456789ABCDEF, rtp_timestamp=9000)
    sent: list[bytes] = []

    async def send_rtp(data: bytes) -> None:
        sent.append(data)

    sender = SimpleNamespace(transport=SimpleNamespace(state="connected", _send_rtp=send_rtp))
    sdes = bytes(RtcpSdesPacket())
    await _send_reports(sender, down, sdes)  # type: ignore[arg-type]
    report, cname = RtcpPacket.parse(sent[0])
    assert isinstance(report, RtcpSrPacket) and isinstance(cname, RtcpSdesPacket)
    assert report.ssrc == 0xABCDEF01 and report.reports == []
    info = report.sender_info
    assert info.ntp_timestamp == 0x0123456789ABCDEF
    assert info.rtp_timestamp == capture.packets[1][3]  # the publisher's 9000, as this subscriber counts
    assert (info.packet_count, info.octet_count) == (3, len(KEY) + 2 * len(DELTA))
    await _send_reports(sender, DownTrack("video", up.stats), sdes)  # type: ignore[arg-type]
    assert len(sent) == 1  # an idle slot says nothing


async def test_a_held_keyframe_request_survives_a_timer_that_fires_early() -> None:
    asked: list[int] = []

    async def upstream(ssrc: int) -> None:
        asked.append(ssrc)

    up = UpTrack("video", "video/VP8", 90000, ForwardingStats(), upstream, 0.2)
    up.on_packet(0, 0, True, KEY, ssrc=42)
    up.request_keyframe()  # goes out
    up.request_keyframe()  # held for 0.2 s
    timer = up._keyframe_timer
    assert timer is not None
    timer.cancel()
    up._on_keyframe_timer()  # as the loop does when it wakes that timer a little before it is due
    await asyncio.sleep(0.3)
    assert asked == [42, 42]
