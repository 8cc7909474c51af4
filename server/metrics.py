"""Prometheus metrics: read from the hot path's integer counters at scrape time, never pushed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_COUNTERS = {
    "packets_in": "RTP packets received from publishers",
    "packets_out": "RTP packets forwarded to subscribers",
    "native_packets_out": "Of those, packets the native fan-out step sent",
    "bytes_out": "RTP bytes forwarded to subscribers",
    "send_errors": "Retransmissions not sent because the subscriber's transport was not ready",
    "congestion_drops": "Packets dropped because a subscriber's socket was backed up or not connected",
    "keyframe_replays": "Joiners started from the kept keyframe without asking the publisher",
    "keyframe_requests_in": "Keyframe requests from subscribers and joins",
    "keyframe_requests_sent": "Keyframe requests sent to publishers after coalescing",
    "nacks_in": "NACKs received from subscribers",
    "retransmits": "Packets retransmitted from the forwarder's history",
    "decoded_frames": "Video and audio frames decoded by this server (the SFU should decode none)",
    "recording_failures": "Recordings ended by an error such as a full disk (the lesson went on)",
    "still_skipped": "Video packets not sent to subscribers on still pictures (a weak link, or the data saver)",
    "relay_rejected": "Datagrams to a relay port without the feed's key: dropped (a spoofed or stray sender)",
}


Gauges = dict[str, tuple[str, Callable[[], float]]]


@dataclass(frozen=True)
class SignalingMetrics:
    """Counted by sessions as things happen."""

    joins: Counter  # by role
    join_seconds: Histogram  # from the join message to `joined` going out
    errors: Counter  # errors sent to clients, by code


class ServerCollector(Collector):
    def __init__(
        self,
        forwarding: Callable[[], dict[str, int]],
        gauges: Gauges,
        backend_load: Callable[[], list[int]],
        participants: Callable[[], dict[str, int]],
    ) -> None:
        self._forwarding = forwarding
        self._gauges = gauges
        self._backend_load = backend_load
        self._participants = participants

    def collect(self) -> Iterator[Metric]:
        counters = self._forwarding()
        for name, doc in _COUNTERS.items():
            prefix = "skyclass_server" if name in ("decoded_frames", "recording_failures") else "skyclass_sfu"
            yield CounterMetricFamily(f"{prefix}_{name}", doc, value=counters.get(name, 0))
        for name, (doc, read) in self._gauges.items():
            yield GaugeMetricFamily(f"skyclass_{name}", doc, value=read())
        load = GaugeMetricFamily(
            "skyclass_media_backend_subscriptions", "Subscriptions per media backend", labels=["backend"]
        )
        for index, value in enumerate(self._backend_load()):
            load.add_metric([str(index)], value)
        yield load
        participants = GaugeMetricFamily(
            "skyclass_participants", "Participants with a session on this node, by role", labels=["role"]
        )
        for role, count in sorted(self._participants().items()):
            participants.add_metric([role], count)
        yield participants


def make_registry(
    forwarding: Callable[[], dict[str, int]],
    gauges: Gauges,
    backend_load: Callable[[], list[int]],
    participants: Callable[[], dict[str, int]],
) -> tuple[CollectorRegistry, SignalingMetrics]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(ServerCollector(forwarding, gauges, backend_load, participants))
    signaling = SignalingMetrics(
        Counter("skyclass_joins", "Joins, by role", ["role"], registry=registry),
        Histogram(
            "skyclass_join_seconds",
            "Time from a join message to `joined`",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
        Counter("skyclass_errors", "Errors sent to clients, by code", ["code"], registry=registry),
    )
    return registry, signaling
