"""Quality layers, pure logic: the choice from receiver reports, and the switch in the forwarder
(at the new layer's keyframe, the stream continuous; still pictures with no gap to NACK)."""

from __future__ import annotations

from server.media.forwarder import DownTrack, UpTrack
from server.media.layers import HIGH, LOW, STILL, UPGRADE_AFTER_S, LayerChoice

from .forwarding import Capture, capture_for
from .test_rtp import DELTA, KEY, make_pair

LAYERS = (HIGH, LOW, STILL)


def reports(choice: LayerChoice, loss: float, start: float, seconds: float, estimate: int | None = None) -> list[str]:
    """One receiver report a second; the layers chosen after each."""
    chosen = []
    for second in range(int(seconds)):
        choice.update(loss, estimate, LAYERS, start + second)
        chosen.append(choice.layer)
    return chosen


def test_a_narrow_link_steps_down_a_layer_at_a_time() -> None:
    choice = LayerChoice()
    assert reports(choice, 0.6, 0, 6) == [HIGH, LOW, LOW, LOW, STILL, STILL]
    assert choice.reason == "loss 60%"


def test_random_loss_of_a_few_percent_keeps_the_layer() -> None:
    choice = LayerChoice()
    history = [0.05, 0.12, 0.04, 0.06, 0.11, 0.03, 0.07]  # now and then one report over 10%
    for second, loss in enumerate(history):
        choice.update(loss, None, LAYERS, second)
    assert choice.layer == HIGH


def test_a_clean_link_steps_back_up_and_a_failed_upgrade_waits_longer() -> None:
    choice = LayerChoice()
    reports(choice, 0.5, 0, 3)
    assert choice.layer == LOW
    clean = reports(choice, 0.0, 3, UPGRADE_AFTER_S + 2)
    assert clean[-1] == HIGH and choice.reason == "link recovered"
    upgraded = 3 + clean.index(HIGH)
    reports(choice, 0.5, upgraded + 2, 2)  # the upgrade fails at once
    assert choice.layer == LOW and choice.wait_s == 2 * UPGRADE_AFTER_S


def test_an_estimate_below_the_better_layer_holds_the_upgrade() -> None:
    choice = LayerChoice()
    choice.rates[HIGH] = 1_000_000
    reports(choice, 0.5, 0, 3)
    assert reports(choice, 0.0, 3, 20, estimate=600_000)[-1] == LOW
    assert reports(choice, 0.0, 23, 12, estimate=2_000_000)[-1] == HIGH


def test_without_a_low_layer_a_narrow_link_gets_still_pictures() -> None:
    choice = LayerChoice()
    for second in range(3):
        choice.update(0.7, None, (HIGH, STILL), second)
    assert choice.layer == STILL


def test_loss_is_judged_over_a_second_of_reports() -> None:
    choice = LayerChoice()
    assert not choice.report(0, 1000, None, LAYERS, 0.0)
    # a report with every NACK: each alone says half was lost, the second says 2 of 300
    assert not choice.report(1, 1002, None, LAYERS, 0.1)
    assert not choice.report(2, 1004, None, LAYERS, 0.2)
    assert not choice.report(2, 1100, None, LAYERS, 1.0)
    assert not choice.report(2, 1300, None, LAYERS, 2.1) and choice.lossy == 0
    choice.report(150, 1600, None, LAYERS, 3.2)  # half of the last 300: a narrow link
    choice.report(300, 1900, None, LAYERS, 4.3)
    assert choice.layer == LOW and choice.reason == "loss 50%"


def test_the_rate_of_a_layer_from_its_byte_counter() -> None:
    choice = LayerChoice()
    choice.count(LOW, 0, 10.0)
    choice.count(LOW, 25_000, 11.0)
    assert choice.rates[LOW] == 200_000


def two_layers(forwarding_path: str) -> tuple[Capture, UpTrack, UpTrack, DownTrack]:
    """A subscriber on the high layer, which has sent a keyframe; the low layer beside it."""
    capture = capture_for(forwarding_path)
    high, down = make_pair(capture)
    low, _ = make_pair(capture_for(forwarding_path))
    high.add(down)
    high.on_packet(10, 0, True, KEY, ssrc=1)
    return capture, high, low, down


async def test_a_switch_happens_at_the_new_layers_keyframe_and_the_stream_goes_on(forwarding_path: str) -> None:
    capture, high, low, down = two_layers(forwarding_path)
    high.on_packet(11, 3000, True, DELTA, ssrc=1)
    low.adopt(down)  # asked for: the high layer goes on until the low layer's keyframe
    low.on_packet(500, 77_000, True, DELTA, ssrc=2)
    high.on_packet(12, 6000, True, DELTA, ssrc=1)
    assert [p[5] for p in capture.packets] == [KEY, DELTA, DELTA] and down.source is high
    low.on_packet(501, 80_000, True, KEY, ssrc=2)
    high.on_packet(13, 9000, True, DELTA, ssrc=1)  # no longer forwarded
    low.on_packet(502, 83_000, True, DELTA, ssrc=2)
    assert down.source is low
    assert [p[5] for p in capture.packets] == [KEY, DELTA, DELTA, KEY, DELTA]
    seqs = [p[2] for p in capture.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1, 1, 1]
    stamps = [p[3] for p in capture.packets]
    assert stamps[4] - stamps[3] == 3000  # the low layer's own timing, continued


async def test_still_pictures_forward_keyframes_only_without_a_sequence_gap(forwarding_path: str) -> None:
    capture = capture_for(forwarding_path)
    up, down = make_pair(capture)
    up.add(down)
    down.keyframes_only = True
    up.on_packet(1, 0, False, KEY, ssrc=1)
    up.on_packet(2, 0, True, b"\x00rest of the keyframe", ssrc=1)
    for seq in range(3, 10):
        up.on_packet(seq, 3000 * seq, True, DELTA, ssrc=1)
    up.on_packet(10, 40_000, True, KEY, ssrc=1)
    assert [p[5][:2] for p in capture.packets] == [KEY[:2], b"\x00r", KEY[:2]]
    seqs = [p[2] for p in capture.packets]
    assert [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])] == [1, 1]


async def test_a_switch_taken_back_before_the_keyframe_never_happens(forwarding_path: str) -> None:
    capture, high, low, down = two_layers(forwarding_path)
    low.adopt(down)
    low.unadopt(down)  # the link recovered before the low layer's keyframe came
    low.on_packet(500, 77_000, True, KEY, ssrc=2)
    high.on_packet(11, 3000, True, DELTA, ssrc=1)
    assert down.source is high and [p[5] for p in capture.packets] == [KEY, DELTA]
