"""Which layer of the teacher's camera one student gets, from what that student's browser reports.

The teacher sends the camera twice (``video`` and a smaller, cheaper ``video_low``); below the low
layer a student gets ``still`` pictures: only the low layer's keyframes, a few seconds apart, with
the audio intact. Receiver reports say how much of what we sent was lost (judged over half a second
or more of them, from their running totals: Chromium sends one with every NACK, each alone a few
packets); a REMB, when the browser sends one, says what it thinks the link carries.

- ``LOSSY_REPORTS`` reports in a row losing more than ``LOSS_DOWN`` (``LOSS_STILL`` to go from a
  moving picture to still ones) step down one layer, once the previous change has settled (reports
  just after it still describe the old layer). One lossy report alone is what a random-loss link
  shows now and then; a link too narrow for the layer loses far more, report after report. A step
  up still on trial goes back at its first lossy report.
- A link clean (loss under ``LOSS_CLEAR``) for ``UPGRADE_AFTER_S`` steps up one layer, if the
  estimate (when there is one) leaves headroom for it; an upgrade that fails soon doubles the wait.
The estimate only holds an upgrade back; loss, which is what a too-narrow link produces, steps down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HIGH, LOW, STILL = "high", "low", "still"
LOSS_DOWN = 0.15
LOSS_STILL = 0.30  # still pictures are drastic: only for a link that loses this much of the lowest layer
LOSSY_REPORTS = 2
LOSS_CLEAR = 0.02
SETTLE_S = 1.5
UPGRADE_AFTER_S = 10.0
UPGRADE_TRIAL_S = 10.0  # stepping down this soon after stepping up: the upgrade failed
UPGRADE_WAIT_MAX_S = 120.0
HEADROOM = 1.3  # an upgrade needs an estimate this much above the layer's bitrate
REPORT_WINDOW_S = 0.5  # loss is judged over at least this long (Chromium sends a report with each NACK)
START_QUIET_S = 3.0  # the camera starting (a join, a teacher back) sends the kept picture group at once


@dataclass
class LayerChoice:
    layer: str = HIGH
    reason: str = "start"
    changed_at: float = -math.inf
    clean_since: float | None = None
    wait_s: float = UPGRADE_AFTER_S
    upgraded_at: float | None = None
    quiet_until: float = -math.inf  # reports before this describe a start, not the link
    lossy: int = 0  # reports in a row losing more than LOSS_DOWN
    rates: dict[str, float] = field(default_factory=dict)  # bits/s each layer brought in lately
    _counted: dict[str, tuple[int, float]] = field(default_factory=dict)
    _window: tuple[int, int, float] | None = None  # (lost in all, highest sequence, when) at its start

    def report(
        self, lost_in_all: int, highest_seq: int, estimate: int | None, layers: tuple[str, ...], now: float
    ) -> bool:
        """A receiver report's cumulative counters; the loss over the last ``REPORT_WINDOW_S`` or
        more goes to ``update`` (reports come far more often from some browsers, each alone a few
        packets). True when the layer changed."""
        if self._window is None:
            self._window = (lost_in_all, highest_seq, now)
            return False
        lost_before, highest_before, since = self._window
        expected = highest_seq - highest_before
        if now - since < REPORT_WINDOW_S or expected <= 0:
            return False
        self._window = (lost_in_all, highest_seq, now)
        loss = min(1.0, max(0, lost_in_all - lost_before) / expected)
        return self.update(loss, estimate, layers, now)

    def count(self, layer: str, bytes_in: int, now: float) -> None:
        """A layer's byte counter now, for its bitrate."""
        previous = self._counted.get(layer)
        self._counted[layer] = (bytes_in, now)
        if previous is not None and now - previous[1] >= 0.5:
            self.rates[layer] = (bytes_in - previous[0]) * 8 / (now - previous[1])

    def update(self, loss: float, estimate: int | None, layers: tuple[str, ...], now: float) -> bool:
        """A receiver report came (``loss`` 0..1; ``estimate``: the latest REMB, bits/s); True
        when the layer changed. ``layers``: what the source offers now, best first."""
        if self.layer not in layers:
            return self._change(layers[0], "layers changed", now)
        if now < self.quiet_until:
            return False
        index = layers.index(self.layer)
        settled = now - self.changed_at >= SETTLE_S
        if self.upgraded_at is not None and now - self.upgraded_at > UPGRADE_TRIAL_S:
            self.upgraded_at, self.wait_s = None, UPGRADE_AFTER_S  # the last upgrade held
        worse = layers[index + 1] if index + 1 < len(layers) else None
        threshold = LOSS_STILL if worse == STILL else LOSS_DOWN
        self.lossy = self.lossy + 1 if loss > threshold and settled else 0
        trial = self.upgraded_at is not None  # a step up on trial goes back at its first lossy report
        if worse is not None and self.lossy >= (1 if trial else LOSSY_REPORTS):
            if self.upgraded_at is not None:  # the upgrade failed: wait longer before the next
                self.wait_s, self.upgraded_at = min(self.wait_s * 2, UPGRADE_WAIT_MAX_S), None
            return self._change(worse, f"loss {loss:.0%}", now)
        self.clean_since = (self.clean_since or now) if loss < LOSS_CLEAR else None
        if index == 0 or not settled or self.clean_since is None or now - self.clean_since < self.wait_s:
            return False
        better = layers[index - 1]
        need = self.rates.get(better)
        if estimate is not None and need is not None and estimate < need * HEADROOM:
            return False
        changed = self._change(better, "link recovered", now)
        self.upgraded_at = now
        return changed

    def _change(self, layer: str, reason: str, now: float) -> bool:
        self.layer, self.reason, self.changed_at, self.clean_since, self.lossy = layer, reason, now, None, 0
        return True
