"""The forwarding path: one publisher's RTP packets to many subscribers, rewritten, never decoded.

An ``UpTrack`` receives one published track's packets; each subscriber has a ``DownTrack`` that
rewrites SSRC, payload type, sequence number and timestamp for its own peer connection and sends.
Everything on the packet path is synchronous and allocation-light: it runs once per packet per
subscriber. Where the native fan-out step is built (server/media/native.py), a started subscriber
that sends straight from a UDP socket moves into its track's native ``Fanout``, which does the same
rewrite, SRTP and send for all of them in one call; the Python path here keeps the rest (starting
at a keyframe, still pictures, a full socket until the next keyframe, TURN, relays to other nodes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import native
from .keyframes import KeyframeRequests
from .rtp import RTP_HEADER, RTP_VERSION_BYTE, RTX_OSN, build_packet, keyframe_detector, seq_newer

log = logging.getLogger(__name__)

# Hands one RTP packet to the subscriber's transport (SRTP, one datagram); False when it could not.
SendRtp = Callable[[bytes], bool]
Packet = tuple[int, int, bool, bytes]  # sequence number, timestamp, marker, payload
Queued = tuple[int, int, bool, bytes, bool]  # the same and whether it starts a keyframe
HISTORY_SIZE = 1024  # packets kept per video track to answer NACKs (~4 s at 1.5 Mbit/s)
_HISTORY_MASK = HISTORY_SIZE - 1
SEQ_WINDOW = 0x4000  # how far behind the newest packet an old (retransmitted) one is still forwarded
GOP_LIMIT = 400  # packets since the last keyframe kept for joiners; a longer picture group is not kept
# A joiner's kept picture group goes out at this multiple of the track's own packet rate (at least
# REPLAY_MIN_RATE a second), PACE_TICK_S at a time: one burst of hundreds of packets is what a
# slow link or a small socket buffer drops, and then the joiner waits for the next keyframe.
REPLAY_SPEED = 3.0
REPLAY_MIN_RATE = 200.0
PACE_TICK_S = 0.02
# Retransmissions to one subscriber: none of packets older than this (their frame is long due), and
# at most this share on top of what it is sent. On a narrow link, answering every NACK in full
# floods it with repairs of the past and starves the present.
RTX_MAX_AGE_S = 3.0
RTX_SHARE = 0.25
RTX_FLOOR = 8  # retransmissions a second allowed whatever the share
# A NACK for more packets than this is a gap (the network changed, a link went away for a moment):
# repaying it at RTX_SHARE takes seconds of stale pictures; one keyframe mends it at once.
RTX_GAP = 32


@dataclass(slots=True)
class ForwardingStats:
    """Integer counters bumped on the hot path; exported by whoever owns the metrics."""

    packets_in: int = 0
    packets_out: int = 0
    native_packets_out: int = 0
    bytes_out: int = 0
    send_errors: int = 0
    congestion_drops: int = 0
    keyframe_requests_in: int = 0
    keyframe_requests_sent: int = 0
    keyframe_replays: int = 0
    nacks_in: int = 0
    retransmits: int = 0
    decoded_frames: int = 0
    recording_failures: int = 0  # recordings ended by an error (a full disk): the lesson went on
    relay_rejected: int = 0  # datagrams to a relay without its key's tag: dropped
    still_skipped: int = 0  # video packets not sent to subscribers on still pictures (weak links, data saver)


@dataclass(slots=True)
class SenderReport:
    """The publisher's latest NTP <-> RTP timestamp pair, kept for the subscribers' reports."""

    ntp_timestamp: int
    rtp_timestamp: int


class UpTrack:
    """One published track (audio or video) and the subscribers it fans out to."""

    def __init__(
        self,
        kind: str,
        mime_type: str,
        clock_rate: int,
        stats: ForwardingStats,
        request_keyframe_upstream: Callable[[int], Coroutine[Any, Any, None]],
        keyframe_interval_s: float,
    ) -> None:
        self.kind = kind
        self.mime_type = mime_type
        self.clock_rate = clock_rate
        self.stats = stats
        self.ssrc: int | None = None
        self.sender_report: SenderReport | None = None
        self.last_seq: int | None = None
        self.last_ts = 0
        self.last_arrival = 0.0
        self._is_keyframe = keyframe_detector(mime_type)
        self._history: list[Packet | None] = [None] * HISTORY_SIZE if kind == "video" else []
        # The latest keyframe and every packet since: a joiner starts from it without asking the
        # publisher. None until a keyframe is seen, and once the picture group outgrows GOP_LIMIT.
        self._gop: list[Packet] | None = None
        self._fanout: tuple[DownTrack, ...] = ()
        self._python: tuple[DownTrack, ...] = ()  # those of _fanout the native step does not feed
        self._native: native.Fanout | None = None
        self._natives: dict[native.Endpoint, DownTrack] = {}
        self._promoted: list[DownTrack] = []  # started since the last packet: native from the next one
        self._adopting: tuple[DownTrack, ...] = ()  # switching here from another layer at our next keyframe
        self.bytes_in = 0
        # Other consumers of every packet (a recorder): each must only queue, never block.
        self.taps: list[Callable[[int, int, bool, bytes, bool], None]] = []
        self._keyframes = KeyframeRequests(keyframe_interval_s)
        self._request_upstream = request_keyframe_upstream
        self._keyframe_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.muted = False  # a teacher silenced this track: nothing is forwarded

    def add(self, down: DownTrack) -> None:
        """Start feeding ``down``: at once from the kept picture group, else after a fresh keyframe."""
        if down not in self._fanout:
            self._fanout = (*self._fanout, down)
            self._python = (*self._python, down)
        down.source = self
        if self._is_keyframe is None:
            return
        if self._gop is None:
            self.request_keyframe()
            return
        self.stats.keyframe_replays += 1
        gop = self._gop
        seconds = ((gop[-1][1] - gop[0][1]) & 0xFFFFFFFF) / self.clock_rate
        rate = max(REPLAY_MIN_RATE, REPLAY_SPEED * len(gop) / seconds) if seconds > 0 else REPLAY_MIN_RATE
        down.replay([(seq, ts, marker, payload, i == 0) for i, (seq, ts, marker, payload) in enumerate(gop)], rate)

    def adopt(self, down: DownTrack) -> None:
        """Take ``down`` over from its current source (another layer of the same camera) at this
        track's next keyframe; the old source feeds it until then, so the picture never stops."""
        if down.source is None:
            self.add(down)
        elif down.source is not self and down not in self._adopting:
            self._adopting = (*self._adopting, down)
            self.request_keyframe()

    def unadopt(self, down: DownTrack) -> None:
        """A switch here that is no longer wanted (the layer changed back before our keyframe)."""
        self._adopting = tuple(d for d in self._adopting if d is not down)

    def remove(self, down: DownTrack) -> None:
        down.leave_native()
        self._fanout = tuple(d for d in self._fanout if d is not down)
        self._python = tuple(d for d in self._python if d is not down)
        self.unadopt(down)

    # The native step ------------------------------------------------------------------------------

    def promote(self, down: DownTrack) -> None:
        """``down`` has started and sends natively: the native step feeds it from the next packet."""
        if not self._promoted or self._promoted[-1] is not down:  # a picture group replayed asks for each packet
            self._promoted.append(down)

    def _take_promoted(self) -> None:
        for down in self._promoted:
            endpoint = down.endpoint
            if down.source is not self or endpoint is None or not down.wants_native():
                continue
            if self._native is None:
                self._native = native.fanout()
                if self._native is None:
                    return
            down.hand_over(endpoint)
            self._native.add(endpoint)
            self._natives[endpoint] = down
        self._promoted.clear()
        self._python = tuple(d for d in self._fanout if not d.is_native)

    def _take_dropped(self, fanout: native.Fanout) -> None:
        """Subscribers whose socket was full: back to the Python path, waiting for a keyframe."""
        for endpoint in fanout.take_dropped():
            down = self._natives.pop(endpoint, None)
            if down is not None:
                down.take_back()
                down._congested()
        self._python = tuple(d for d in self._fanout if not d.is_native)

    def release(self, down: DownTrack, endpoint: native.Endpoint) -> None:
        """``down`` leaves the native step (it stopped, moved, or went to still pictures)."""
        if self._native is not None:
            self._native.remove(endpoint)
        self._natives.pop(endpoint, None)
        if down in self._fanout and down not in self._python:
            self._python = (*self._python, down)

    def _take_over(self) -> None:
        for down in self._adopting:
            old = down.source
            if old is not None and old is not self:
                old.remove(down)
                down.detach()  # the stream goes on where the old layer left it
            if down not in self._fanout:
                self._fanout = (*self._fanout, down)
                self._python = (*self._python, down)
            down.source = self
        self._adopting = ()

    def on_packet(self, seq: int, ts: int, marker: bool, payload: bytes, ssrc: int) -> None:
        """One packet from the publisher: remember it, then hand it to every subscriber."""
        self.stats.packets_in += 1
        self.ssrc = ssrc
        self.bytes_in += len(payload)
        if self.muted:
            return
        keyframe = True
        if self._is_keyframe is not None:
            keyframe = self._is_keyframe(payload)
            packet = (seq, ts, marker, payload)
            self._history[seq & _HISTORY_MASK] = packet
            if keyframe:
                self._keyframes.keyframe_seen()
                self._gop = [packet]
                if self._adopting:
                    self._take_over()
            elif self._gop is not None:
                if len(self._gop) < GOP_LIMIT:
                    self._gop.append(packet)
                else:
                    self._gop = None
        if self.last_seq is None or not seq_newer(self.last_seq, seq):
            self.last_seq = seq
            self.last_ts = ts
            self.last_arrival = time.monotonic()
        fanout = self._native
        if fanout is not None and fanout.size:
            sent = fanout.forward(seq, ts, marker, payload)
            self.stats.packets_out += sent
            self.stats.native_packets_out += sent
            self.stats.bytes_out += sent * (RTP_HEADER.size + len(payload))
            if fanout.has_dropped:
                self._take_dropped(fanout)
        for down in self._python:
            down.forward(seq, ts, marker, payload, keyframe)
        if self._promoted:
            self._take_promoted()
        for tap in self.taps:
            tap(seq, ts, marker, payload, keyframe)

    def lookup(self, seq: int) -> Packet | None:
        if not self._history:
            return None
        entry = self._history[seq & _HISTORY_MASK]
        return entry if entry is not None and entry[0] == seq else None

    def request_keyframe(self) -> None:
        """A subscriber needs a keyframe: ask the publisher, coalescing requests."""
        self.stats.keyframe_requests_in += 1
        if self.closed or self._is_keyframe is None:
            return
        if self._keyframes.request(time.monotonic()):
            self._send_keyframe_request()
        else:
            self._schedule_held_request()

    def _schedule_held_request(self) -> None:
        due = self._keyframes.next_due()
        if due is None or self._keyframe_timer is not None:
            return
        delay = max(0.0, due - time.monotonic())
        self._keyframe_timer = asyncio.get_running_loop().call_later(delay, self._on_keyframe_timer)

    def _on_keyframe_timer(self) -> None:
        self._keyframe_timer = None
        if self.closed:
            return
        if self._keyframes.poll(time.monotonic()):
            self._send_keyframe_request()
        else:  # the loop's timers may fire a little before the clock says due: still held, wait again
            self._schedule_held_request()

    def _send_keyframe_request(self) -> None:
        if self.ssrc is None:
            return  # nothing received yet: the publisher's first frame is a keyframe anyway
        self.stats.keyframe_requests_sent += 1
        asyncio.get_running_loop().create_task(self._request_upstream(self.ssrc))

    def restart(self) -> None:
        """What feeds this track changed (a relay carries a new publication): its sequence numbers
        and timestamps start over, so every subscriber continues from the next keyframe."""
        for down in self._fanout:
            down.detach()
            down.source = self
        self._python = self._fanout
        self.last_seq = None
        self._gop = None
        if self._history:
            self._history = [None] * HISTORY_SIZE

    def close(self) -> None:
        self.closed = True
        if self._keyframe_timer is not None:
            self._keyframe_timer.cancel()
        for down in self._fanout:
            down.detach()
        self._fanout = self._adopting = self._python = ()
        if self._native is not None:
            self._native.clear()
        self._natives.clear()
        self._gop = None


class DownTrack:
    """One subscriber's copy of a track: rewrites headers for its peer connection and sends."""

    __slots__ = (
        "kind",
        "stats",
        "ssrc",
        "payload_type",
        "rtx_ssrc",
        "rtx_payload_type",
        "source",
        "_send",
        "_started",
        "_waiting_keyframe",
        "_start_seq",
        "_seq_offset",
        "_ts_offset",
        "_rtx_seq",
        "_resume",
        "_packets_sent",
        "_octets_sent",
        "endpoint",
        "is_native",
        "fraction_lost",
        "reported",
        "bitrate_estimate",
        "_keyframes_only",
        "_keyframe_ts",
        "_rtx_window",
        "on_report",
        "_backlog",
        "_pacer",
    )

    def __init__(self, kind: str, stats: ForwardingStats) -> None:
        self.kind = kind
        self.stats = stats
        self.ssrc = 0
        self.payload_type = 0
        self.rtx_ssrc: int | None = None
        self.rtx_payload_type: int | None = None
        self.source: UpTrack | None = None
        self._send: SendRtp | None = None
        self._started = False
        self._waiting_keyframe = False  # packets were dropped: skip to the next keyframe
        self._start_seq = 0
        self._seq_offset = random.getrandbits(15)
        self._ts_offset = random.getrandbits(32)
        self._rtx_seq = random.getrandbits(15)
        # (last sequence number, last timestamp, monotonic time) sent before a source change
        self._resume: tuple[int, int, float] | None = None
        self._packets_sent = 0  # by the Python path; the native step counts its own
        self._octets_sent = 0
        self.endpoint: native.Endpoint | None = None  # where the native step can send for us
        self.is_native = False  # in the source's native Fanout: it forwards, and owns _start_seq
        self.fraction_lost = 0  # of 256, from the subscriber's latest receiver report
        self.reported = (0, 0)  # (packets lost in all, highest sequence number) from the same report
        self.bitrate_estimate: int | None = None  # bits/s, from the subscriber's REMB
        # Still pictures: only keyframes go out (a link too weak for the lowest layer keeps its audio)
        self._keyframes_only = False
        self._keyframe_ts: int | None = None
        self._rtx_window = (0.0, 0, 0)  # (start, packets sent before it, retransmissions in it)
        self.on_report: Callable[[], None] | None = None  # a receiver report came
        self._backlog: deque[Queued] | None = None  # a picture group being paced out, and what came since
        self._pacer: asyncio.TimerHandle | None = None

    def configure(
        self,
        *,
        ssrc: int,
        payload_type: int,
        rtx_ssrc: int | None,
        rtx_payload_type: int | None,
        send: SendRtp,
        endpoint: native.Endpoint | None = None,
    ) -> None:
        """Called once the subscriber's connection has negotiated its parameters (``endpoint``:
        the same subscriber's native sender, when it has one)."""
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self._send = send
        self.endpoint = endpoint

    @property
    def packets_sent(self) -> int:
        return self._packets_sent + (self.endpoint.packets if self.endpoint is not None else 0)

    @property
    def octets_sent(self) -> int:
        return self._octets_sent + (self.endpoint.octets if self.endpoint is not None else 0)

    @property
    def keyframes_only(self) -> bool:
        return self._keyframes_only

    @keyframes_only.setter
    def keyframes_only(self, on: bool) -> None:
        if on:
            self.leave_native()
        self._keyframes_only = on

    def wants_native(self) -> bool:
        return self._started and not self._waiting_keyframe and not self._keyframes_only and self._backlog is None

    def replay(self, packets: list[Queued], per_second: float) -> None:
        """Send ``packets`` (a kept picture group) paced at ``per_second``; what arrives meanwhile
        queues behind them."""
        self._stop_replay()
        self._backlog = deque(packets)
        self._pace(max(1, round(per_second * PACE_TICK_S)))

    def _pace(self, burst: int) -> None:
        self._pacer = None
        backlog = self._backlog
        if backlog is None:
            return
        for _ in range(min(burst, len(backlog))):
            self._forward(*backlog.popleft())
        if backlog:
            self._pacer = asyncio.get_running_loop().call_later(PACE_TICK_S, self._pace, burst)
            return
        self._backlog = None
        if self.endpoint is not None and self.source is not None and self.wants_native():
            self.source.promote(self)

    def _stop_replay(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        self._backlog = None

    def hand_over(self, endpoint: native.Endpoint) -> None:
        """The native step forwards for us from now on, with our rewrite."""
        endpoint.seq_offset = self._seq_offset
        endpoint.ts_offset = self._ts_offset
        endpoint.start_seq = self._start_seq
        self.is_native = True

    def take_back(self) -> None:
        """The Python path forwards again, from where the native step left the floor."""
        if self.is_native and self.endpoint is not None:
            self._start_seq = self.endpoint.start_seq
        self.is_native = False

    def leave_native(self) -> None:
        if self.is_native and self.endpoint is not None:
            self.take_back()
            if self.source is not None:
                self.source.release(self, self.endpoint)

    def close(self) -> None:
        """The subscriber's connection is gone: let go of its socket."""
        self.leave_native()
        self._stop_replay()
        if self.endpoint is not None:
            self.endpoint.close()

    @property
    def ready(self) -> bool:
        return self._send is not None

    def forward(self, seq: int, ts: int, marker: bool, payload: bytes, keyframe: bool) -> None:
        if self._backlog is not None:
            self._backlog.append((seq, ts, marker, payload, keyframe))
            return
        self._forward(seq, ts, marker, payload, keyframe)

    def _forward(self, seq: int, ts: int, marker: bool, payload: bytes, keyframe: bool) -> None:
        if not self._started:
            if not keyframe:
                return
            self._start(seq, ts)
        else:
            ahead = (seq - self._start_seq) & 0xFFFF
            if ahead >= 0x8000:
                return  # older than where this subscriber started
            if ahead > SEQ_WINDOW:
                # Move the floor along behind us, or it would end up ahead once numbers wrap around.
                self._start_seq = (seq - SEQ_WINDOW // 2) & 0xFFFF
            if self._waiting_keyframe:
                if not keyframe:
                    return
                self._waiting_keyframe = False
        if self._keyframes_only and not self._in_keyframe(ts, keyframe):
            self._seq_offset = (self._seq_offset - 1) & 0xFFFF  # the subscriber sees no gap to NACK
            self.stats.still_skipped += 1
            return
        data = (  # build_packet inlined: this runs once per subscriber per packet
            RTP_HEADER.pack(
                RTP_VERSION_BYTE,
                (0x80 if marker else 0) | self.payload_type,
                (seq + self._seq_offset) & 0xFFFF,
                (ts + self._ts_offset) & 0xFFFFFFFF,
                self.ssrc,
            )
            + payload
        )
        if not self._send(data):  # type: ignore[misc]
            self._congested()
            return
        self._packets_sent += 1
        self._octets_sent += len(payload)
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)
        if self.endpoint is not None and not self.is_native and self.source is not None and self.wants_native():
            self.source.promote(self)

    def _in_keyframe(self, ts: int, keyframe: bool) -> bool:
        """Whether a packet belongs to a keyframe (only its first packet says so; the rest share its timestamp)."""
        if keyframe:
            self._keyframe_ts = ts
        return ts == self._keyframe_ts

    def _congested(self) -> None:
        """The subscriber's socket is backed up or gone: drop, and go on from the next keyframe.

        Nothing is queued per subscriber, so a stalled one costs the others nothing.
        """
        self.stats.congestion_drops += 1
        if self.kind == "video" and not self._waiting_keyframe:
            self._waiting_keyframe = True
            if self.source is not None:
                self.source.request_keyframe()

    def _start(self, seq: int, ts: int) -> None:
        """Pick offsets so the subscriber sees one continuous stream across source changes."""
        if self._resume is not None:
            last_seq, last_ts, at = self._resume
            clock_rate = self.source.clock_rate if self.source else 90000
            self._seq_offset = (last_seq + 1 - seq) & 0xFFFF
            elapsed = max(1, int((time.monotonic() - at) * clock_rate))
            self._ts_offset = (last_ts + elapsed - ts) & 0xFFFFFFFF
        self._start_seq = seq
        self._started = True
        self._waiting_keyframe = False

    def detach(self) -> None:
        """The source is gone: remember where the stream stood so the next one continues it."""
        self.leave_native()
        self._stop_replay()
        source = self.source
        if source is not None and self._started and source.last_seq is not None:
            self._resume = (
                (source.last_seq + self._seq_offset) & 0xFFFF,
                (source.last_ts + self._ts_offset) & 0xFFFFFFFF,
                source.last_arrival,
            )
        self._started = False
        self.source = None

    def out_timestamp(self, ts: int) -> int:
        return (ts + self._ts_offset) & 0xFFFFFFFF

    # Feedback from the subscriber -------------------------------------------------------------

    def on_keyframe_request(self) -> None:
        # On still pictures the server's own timer brings keyframes; a browser asks for one after
        # 3 s without a picture, which would double them.
        if self.source is not None and not self.keyframes_only:
            self.source.request_keyframe()

    def on_nack(self, lost: list[int]) -> None:
        """Answer a NACK from the track's own history; the publisher never hears of it."""
        self.stats.nacks_in += 1
        source = self.source
        if source is None or self._send is None or not self._started:
            return
        # A loss no retransmission mends: broken until a keyframe (a still is worth resending whole).
        unanswerable = len(lost) > RTX_GAP and not self.keyframes_only
        start_seq = self.endpoint.start_seq if self.is_native and self.endpoint is not None else self._start_seq
        for out_seq in [] if unanswerable else lost:
            seq = (out_seq - self._seq_offset) & 0xFFFF
            if (seq - start_seq) & 0xFFFF >= 0x8000:
                continue
            entry = source.lookup(seq)
            if entry is None or ((source.last_ts - entry[1]) & 0xFFFFFFFF) > RTX_MAX_AGE_S * source.clock_rate:
                unanswerable = True
                continue
            _, ts, marker, payload = entry
            if not self._may_retransmit():
                continue
            if self.rtx_ssrc is not None and self.rtx_payload_type is not None:
                header = RTP_HEADER.pack(
                    RTP_VERSION_BYTE,
                    (0x80 if marker else 0) | self.rtx_payload_type,
                    self._rtx_seq,
                    self.out_timestamp(ts),
                    self.rtx_ssrc,
                )
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                data = header + RTX_OSN.pack(out_seq) + payload
            else:
                data = build_packet(marker, self.payload_type, out_seq, self.out_timestamp(ts), self.ssrc, payload)
            if not self._send(data):
                self.stats.send_errors += 1
                break
            self.stats.retransmits += 1
        if unanswerable and self.kind == "video":
            source.request_keyframe()  # coalesced with every other subscriber's (and the publisher's interval)

    def _may_retransmit(self) -> bool:
        now = time.monotonic()
        start, sent_before, count = self._rtx_window
        if now - start >= 1.0:
            start, sent_before, count = now, self.packets_sent, 0
        allowed = count < RTX_FLOOR + RTX_SHARE * (self.packets_sent - sent_before)
        self._rtx_window = (start, sent_before, count + allowed)
        return allowed

    def sender_report(self) -> tuple[int, int] | None:
        """(NTP, RTP) for this subscriber's sender report, from the publisher's own report."""
        source = self.source
        if source is None or source.sender_report is None or not self._started:
            return None
        report = source.sender_report
        return report.ntp_timestamp, self.out_timestamp(report.rtp_timestamp)
