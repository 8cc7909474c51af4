"""The recorder's pure parts: VP8 frame assembly with loss, and RTP clocks that wrap."""

from __future__ import annotations

from server.media.recorder import FrameAssembler, TrackClock, vp8_frame_size, vp8_payload

KEY_HEADER = bytes([0x10]) + b"\x00\x00\x00\x9d\x01\x2a" + (640).to_bytes(2, "little") + (360).to_bytes(2, "little")
DELTA_HEADER = bytes([0x10]) + b"\x01\x00\x00"


def test_vp8_frame_size_and_payload() -> None:
    assert vp8_frame_size(vp8_payload(KEY_HEADER)) == (640, 360)
    assert vp8_frame_size(vp8_payload(DELTA_HEADER + b"\x00" * 8)) is None
    assert vp8_payload(b"\x90\x80\x85\x01rest") == b"rest"  # extended descriptor, 15-bit picture id


def test_frames_are_joined_and_a_loss_waits_for_the_next_keyframe() -> None:
    assembler = FrameAssembler()
    assert assembler.push(1, 100, False, KEY_HEADER, True) is None
    frame = assembler.push(2, 100, True, b"\x00tail", False)
    assert frame is not None and frame[1] is True and frame[0].endswith(b"tail")
    assert assembler.push(3, 200, True, DELTA_HEADER, False) is not None
    assert assembler.push(4, 300, False, DELTA_HEADER, False) is None
    assert assembler.push(6, 300, True, b"\x00x", False) is None  # packet 5 lost: frame dropped
    assert assembler.push(7, 400, True, DELTA_HEADER, False) is None  # needs what was lost
    again = assembler.push(8, 500, True, KEY_HEADER, True)
    assert again is not None and again[1] is True


def test_a_lost_first_packet_of_a_keyframe_is_not_mistaken_for_a_whole_one() -> None:
    assembler = FrameAssembler()
    assembler.push(1, 100, True, KEY_HEADER, True)
    assert assembler.push(3, 200, True, b"\x00second half", False) is None  # its first packet (2) is lost


def test_track_clock_follows_wraps() -> None:
    clock = TrackClock(90000)
    assert clock.seconds(0xFFFFFF00, arrival=10.5, start=10.0) == 0.5
    assert abs(clock.seconds(0x00000100, arrival=10.6, start=10.0) - (0.5 + 0x200 / 90000)) < 1e-9
