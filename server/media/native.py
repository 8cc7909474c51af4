"""The native fan-out step (server/media/_fanout.c) when it is built, else the Python path.

A subscriber's track gets a native ``Endpoint`` when the extension loaded and its connection sends
straight from a UDP socket (not through TURN, whose sends aioice wraps): the endpoint protects with
aiortc's own SRTP context and sends on a copy of the ICE socket. A published track keeps the
endpoints of its started subscribers in a native ``Fanout``: one call per packet feeds them all.
``SKYCLASS_NATIVE_FANOUT=0`` keeps every subscriber on the Python path (the tests run both).
"""

from __future__ import annotations

import logging
import os
from typing import Protocol, cast

log = logging.getLogger(__name__)


class Endpoint(Protocol):
    """One subscriber's track: where it goes and how it is rewritten (see DownTrack)."""

    ssrc: int
    payload_type: int
    seq_offset: int
    ts_offset: int
    start_seq: int
    congested: int  # a Fanout found its socket full and dropped it
    packets: int  # sent by a Fanout
    octets: int  # payload bytes of those
    errors: int

    def send(self, packet: bytes) -> bool: ...  # one whole RTP packet; False when the socket is full

    def close(self) -> None: ...


class Fanout(Protocol):
    size: int
    has_dropped: bool

    def add(self, endpoint: Endpoint) -> None: ...

    def remove(self, endpoint: Endpoint) -> None: ...

    def clear(self) -> None: ...

    def take_dropped(self) -> list[Endpoint]: ...

    def forward(self, seq: int, ts: int, marker: bool, payload: bytes) -> int: ...


try:
    from . import _fanout  # type: ignore[attr-defined]

    UNAVAILABLE = ""
except ImportError as error:  # built without a C compiler, or the build failed
    _fanout = None
    UNAVAILABLE = str(error)


def enabled() -> bool:
    return _fanout is not None and os.environ.get("SKYCLASS_NATIVE_FANOUT", "1") != "0"


def describe() -> str:
    if enabled():
        return "native fan-out: on"
    if _fanout is None:
        return f"native fan-out unavailable ({UNAVAILABLE}): the Python path forwards"
    return "native fan-out off (SKYCLASS_NATIVE_FANOUT=0): the Python path forwards"


def fanout() -> Fanout | None:
    return cast(Fanout, _fanout.Fanout()) if enabled() else None


def endpoint(
    *, context: int, protect: int, keepalive: object, fd: int, host: str, port: int, ssrc: int, payload_type: int
) -> Endpoint | None:
    """A native sender for one subscriber's track (``context``, ``protect``: the SRTP context and
    srtp_protect, as addresses; ``keepalive``: what owns the context)."""
    if not enabled():
        return None
    try:
        return cast(Endpoint, _fanout.Endpoint(context, protect, keepalive, fd, host, port, ssrc, payload_type))
    except (OSError, ValueError) as error:
        log.warning("subscriber stays on the Python path: %s", error)
        return None
