"""The recorder's pure parts: VP8 frame assembly with loss, and RTP clocks that wrap; H.264 recordings
to MP4 from packets made as a publisher would make them."""

from __future__ import annotations

import fractions
from collections.abc import Callable
from pathlib import Path

from server.media.recorder import FrameAssembler, Recorder, RecordingInfo, TrackClock, vp8_frame_size, vp8_payload

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


# H.264 recordings (fragmented MP4), from packets made as a publisher would make them -------------

FPS = 30


def x264_access_units(count: int, keyframes: set[int]) -> list[bytes]:
    """``count`` Annex B frames of a moving bar from libx264 (what aiortc's H.264 encoder uses),
    IDR frames at ``keyframes`` only."""
    import av
    import numpy as np

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.options = {"tune": "zerolatency", "x264-params": "keyint=1000:scenecut=0"}
    encoder.profile = "Baseline"
    frames = []
    for index in range(count):
        image = np.full((240, 320, 3), 60, np.uint8)
        image[:, (index * 4) % 288 : (index * 4) % 288 + 32] = 220
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if index in keyframes else av.video.frame.PictureType.NONE
        (packet,) = encoder.encode(frame)  # zerolatency: one packet out per frame in
        frames.append(bytes(packet))
    return frames


def nal_units(access_unit: bytes) -> list[bytes]:
    """Split at 3- or 4-byte start codes (x264 writes both)."""
    return [nal for nal in (part.rstrip(b"\x00") for part in access_unit.split(b"\x00\x00\x01")) if nal]


def rtp_payloads(nals: list[bytes]) -> list[bytes]:
    """NAL units packetized as aiortc sends them (single NAL unit, STAP-A, FU-A)."""
    import av
    from aiortc.codecs.h264 import H264Encoder

    packet = av.Packet(b"".join(b"\x00\x00\x00\x01" + nal for nal in nals))
    packet.pts, packet.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ = H264Encoder().pack(packet)
    return payloads


def record_h264(
    path: Path, units: list[list[bytes]], *, before_stop: Callable[[Recorder], None] | None = None
) -> RecordingInfo:
    """Send ``units`` (each a frame's NAL units) with 20 ms Opus packets through a recorder writing MP4."""
    import av
    import numpy as np
    from aiortc.codecs.opus import OpusEncoder

    from server.media.recorder import Mp4Writer
    from server.media.rtp import h264_keyframe_start

    recorder = Recorder(path, writer=Mp4Writer)
    video, audio = recorder.tap("video"), recorder.tap("audio")
    opus, sent_audio, seq = OpusEncoder(), 0, 0
    for index, nals in enumerate(units):
        payloads = rtp_payloads(nals)
        for number, payload in enumerate(payloads):
            video(
                seq & 0xFFFF, index * 90000 // FPS, number == len(payloads) - 1, payload, h264_keyframe_start(payload)
            )
            seq += 1
        while sent_audio * 20 <= index * 1000 // FPS:  # the microphone's packets up to this picture
            samples = (np.sin(np.arange(960) / 10) * 8000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, sent_audio * 960, fractions.Fraction(1, 48000)
            (payload,), ts = opus.encode(frame)
            audio(sent_audio, ts, True, payload, True)
            sent_audio += 1
    if before_stop is not None:
        before_stop(recorder)
    return recorder.stop()


def decoded(path: Path) -> tuple[dict[str, float], int, float, dict[str, str]]:
    """First presentation time per kind, pictures decoded, last time, codec per kind."""
    import av

    firsts: dict[str, float] = {}
    pictures, last = 0, 0.0
    with av.open(str(path)) as container:
        codecs = {s.type: s.codec_context.name for s in container.streams}
        assert container.streams.video[0].codec_context.extradata  # the avcC made from the SPS and PPS
        for frame in container.decode(video=0, audio=0):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            seconds = float(frame.pts * frame.time_base)
            firsts.setdefault(kind, seconds)
            last = max(last, seconds)
            pictures += kind == "video"
    return firsts, pictures, last, codecs


def test_an_h264_recording_starts_at_the_first_idr_with_its_parameter_sets(tmp_path: Path) -> None:
    frames = [nal_units(unit) for unit in x264_access_units(60, keyframes={0, 10})]
    assert {nal[0] & 0x1F for nal in frames[10]} >= {5, 7, 8}  # the IDR brings SPS and PPS
    info = record_h264(tmp_path / "lesson.mp4", frames[1:])  # joined after the first keyframe
    assert info.error is None and info.video_frames == 50
    firsts, pictures, last, codecs = decoded(tmp_path / "lesson.mp4")
    assert codecs == {"video": "h264", "audio": "opus"}
    assert pictures == 50
    assert abs(firsts["video"] - firsts["audio"]) < 0.05  # the audio before the keyframe is left out
    assert abs(last - 49 / FPS) < 0.05
    boxes = top_level_boxes(tmp_path / "lesson.mp4")
    assert "moov" in boxes and "moof" not in boxes  # finished: a plain MP4, its duration known to players


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode())
        offset += size if size >= 8 else len(data)
    return boxes


def test_an_idr_without_parameter_sets_gets_the_latest_ones(tmp_path: Path) -> None:
    """A publisher sending SPS and PPS apart from its IDR frames: they are put before the first."""
    frames = [nal_units(unit) for unit in x264_access_units(30, keyframes={0, 15})]
    parameter_sets = [nal for nal in frames[0] if nal[0] & 0x1F in (7, 8)]
    without = [[nal for nal in frame if nal[0] & 0x1F not in (7, 8)] for frame in frames]
    info = record_h264(tmp_path / "lesson.mp4", [parameter_sets, *without[:29]])
    assert info.error is None and info.video_frames == 29
    _, pictures, _, codecs = decoded(tmp_path / "lesson.mp4")
    assert codecs["video"] == "h264" and pictures == 29


def test_an_mp4_whose_writer_was_killed_plays_up_to_its_last_second(tmp_path: Path) -> None:
    """The file as it is on disk mid-lesson (what a killed server leaves): fragments of a second at
    most, even in a picture group far longer than that."""
    import time

    path, copy = tmp_path / "lesson.mp4", tmp_path / "killed.mp4"
    frames = [nal_units(unit) for unit in x264_access_units(5 * FPS, keyframes={0})]

    def snapshot(recorder: Recorder) -> None:
        deadline = time.monotonic() + 10
        while recorder.info.video_frames < len(frames):  # the writer's thread catches up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        copy.write_bytes(path.read_bytes())

    record_h264(path, frames, before_stop=snapshot)
    assert "moof" in top_level_boxes(copy)  # fragments, while it was written
    _, pictures, last, _ = decoded(copy)
    assert pictures > 0
    assert last >= 5 - 2, f"only {last:.2f} s of 5 s were on disk"
