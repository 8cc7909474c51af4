"""Prometheus metrics: read from the hot path's integer counters at scrape time, never pushed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_COUNTERS = {
    "packets_in": "RTP packets received from publishers",
    "packets_out": "RTP packets forwarded to subscribers",
    "bytes_out": "RTP bytes forwarded to subscribers",
    "send_errors": "Retransmissions not sent because the subscriber's transport was not ready",
    "congestion_drops": "Packets dropped because a subscriber's socket was backed up or not connected",
    "keyframe_replays": "Joiners started from the kept keyframe without asking the publisher",
    "keyframe_requests_in": "Keyframe requests from subscribers and joins",
    "keyframe_requests_sent": "Keyframe requests sent to publishers after coalescing",
    "nacks_in": "NACKs received from subscribers",
    "retransmits": "Packets retransmitted from the forwarder's history",
    "decoded_frames": "Video and audio frames decoded by this server (the SFU should decode none)",
}


Gauges = dict[str, tuple[str, Callable[[], int]]]


class ServerCollector(Collector):
    def __init__(
        self, forwarding: Callable[[], dict[str, int]], gauges: Gauges, backend_load: Callable[[], list[int]]
    ) -> None:
        self._forwarding = forwarding
        self._gauges = gauges
        self._backend_load = backend_load

    def collect(self) -> Iterator[Metric]:
        counters = self._forwarding()
        for name, doc in _COUNTERS.items():
            prefix = "skyclass_server" if name == "decoded_frames" else "skyclass_sfu"
            yield CounterMetricFamily(f"{prefix}_{name}", doc, value=counters.get(name, 0))
        for name, (doc, read) in self._gauges.items():
            yield GaugeMetricFamily(f"skyclass_{name}", doc, value=read())
        load = GaugeMetricFamily(
            "skyclass_media_backend_subscriptions", "Subscriptions per media backend", labels=["backend"]
        )
        for index, value in enumerate(self._backend_load()):
            load.add_metric([str(index)], value)
        yield load


def make_registry(
    forwarding: Callable[[], dict[str, int]], gauges: Gauges, backend_load: Callable[[], list[int]]
) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(ServerCollector(forwarding, gauges, backend_load))
    return registry
