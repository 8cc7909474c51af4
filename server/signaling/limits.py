"""What one client may take: message budgets that belong to the participant (not the socket, so
reconnecting does not refill them), and the budget of sockets that have not joined yet, in all and
per client address, so that strangers cannot take the seats of a class. Time is passed in."""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Mapping


class TokenBucket:
    """Allows ``rate`` a second on average and ``burst`` at once."""

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Buckets:
    """Token buckets by key (a participant and what they send, a client address), the least
    recently used forgotten beyond ``limit`` (a forgotten one starts full: no worse than a stranger)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._buckets: OrderedDict[tuple[str, ...], TokenBucket] = OrderedDict()

    def take(self, key: tuple[str, ...], rate: float, burst: int, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, now)
            if len(self._buckets) > self._limit:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)


class Unjoined:
    """Sockets that have not joined yet: at most ``total``, and ``per_address`` from one address."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._by_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return self._by_address.total()

    def enter(self, address: str) -> str | None:
        """Count a new socket from ``address``; the reason it is refused, if it is."""
        if len(self) >= self.total:
            return f"{len(self)} connections are waiting to join; retry shortly"
        if self._by_address[address] >= self.per_address:
            return f"Too many connections from {address} waiting to join; join or close the others"
        self._by_address[address] += 1
        return None

    def leave(self, address: str) -> None:
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]


def client_address(peer: str, headers: Mapping[str, str], trusted: frozenset[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address
    in ``X-Forwarded-For`` that is not one (the client's own claims further left are not believed)."""
    if peer not in trusted:
        return peer
    forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return peer  # garbage from the proxy: keep what we know
        if address not in trusted:
            return address
    return peer
