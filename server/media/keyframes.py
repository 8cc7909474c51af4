"""Keyframe-request coalescing: many subscribers asking at once become one request upstream."""

from __future__ import annotations


class KeyframeRequests:
    """Decides when a keyframe request may go to the publisher. Sans-IO: time is passed in.

    A request is sent at once unless one went out less than ``min_interval_s`` ago; then it is
    held, and ``due()`` says when to send it, unless a keyframe arrives in between.
    """

    __slots__ = ("min_interval_s", "_last_sent", "_pending", "requested", "sent")

    def __init__(self, min_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self._last_sent: float | None = None
        self._pending = False
        self.requested = 0
        self.sent = 0

    def request(self, now: float) -> bool:
        """Somebody needs a keyframe. True when a request should go upstream now."""
        self.requested += 1
        if self._last_sent is None or now - self._last_sent >= self.min_interval_s:
            return self._send(now)
        self._pending = True
        return False

    def keyframe_seen(self) -> None:
        self._pending = False

    def next_due(self) -> float | None:
        """When a held request becomes due, or None when nothing is held."""
        if not self._pending or self._last_sent is None:
            return None
        return self._last_sent + self.min_interval_s

    def poll(self, now: float) -> bool:
        """True when a held request is due now (and counts it as sent)."""
        due = self.next_due()
        if due is None or now < due:
            return False
        return self._send(now)

    def _send(self, now: float) -> bool:
        self._last_sent = now
        self._pending = False
        self.sent += 1
        return True
