"""Does one UDP socket for all subscribers pay? The native fan-out step, timed both ways.

    python -m loadtest.sendpath --subscribers 200 --seconds 5

Each subscriber of a media worker has today a socket of its own (aioice gathers one per peer
connection), so the native step makes one ``sendmmsg`` per subscriber per packet. With a single
port per worker (ICE muxed by username fragment) every packet of a fan-out would go to the kernel
in batches of 64. This drives the real ``Fanout`` with real SRTP, once with a socket per
subscriber and once with one shared socket, to the same receiving sockets on loopback, and prints
CPU (user and kernel, from ``getrusage``) per packet sent. The other side only has to exist: the
receivers' queues overflow and the kernel drops, the same for both ways.
"""

from __future__ import annotations

import argparse
import resource
import socket
import time

from pylibsrtp import Policy, Session

from server.media import native
from server.media.seam import session_endpoint

PAYLOAD = bytes(1100)  # a video packet of the benchmark's 1.1 Mbit/s stream


def fanout_of(subscribers: int, shared: bool, receivers: list[socket.socket]) -> tuple[native.Fanout, list[object]]:
    fanout = native.fanout()
    if fanout is None:
        raise SystemExit(native.describe())
    keep: list[object] = []
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    one.bind(("127.0.0.1", 0))
    for i, receiver in enumerate(receivers[:subscribers]):
        sock = one if shared else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if not shared:
            sock.bind(("127.0.0.1", 0))
        policy = Policy(key=bytes([i % 256]) * 30, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True
        session = Session(policy)
        endpoint = session_endpoint(
            session, fd=sock.fileno(), host="127.0.0.1", port=receiver.getsockname()[1], ssrc=0x1000 + i,
            payload_type=96,
        )
        assert endpoint is not None
        fanout.add(endpoint)
        keep += [sock, session, endpoint]
    return fanout, keep


def measure(fanout: native.Fanout, seconds: float) -> tuple[float, float, int]:
    """(user µs, kernel µs) per packet sent, and packets sent."""
    before, started, seq, sent = resource.getrusage(resource.RUSAGE_SELF), time.monotonic(), 0, 0
    while time.monotonic() - started < seconds:
        sent += fanout.forward(seq & 0xFFFF, seq * 6000, True, PAYLOAD)
        seq += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return user / sent * 1e6, system / sent * 1e6, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    receivers = []
    for _ in range(args.subscribers):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receivers.append(receiver)
    rows = []
    for shared in (False, True, False, True):  # twice each, interleaved: the machine is noisy
        fanout, keep = fanout_of(args.subscribers, shared, receivers)
        user, kernel, sent = measure(fanout, args.seconds)
        rows.append((shared, user, kernel))
        way = "one shared socket" if shared else "a socket each"
        print(f"{way:<20} {user:6.2f} µs user + {kernel:6.2f} µs kernel per packet ({sent} sent)", flush=True)
        fanout.clear()
        del keep
    each = [u + k for s, u, k in rows if not s]
    one = [u + k for s, u, k in rows if s]
    print(f"one shared socket / a socket each = {min(one) / min(each):.2f} (best of two each)")


if __name__ == "__main__":
    main()
