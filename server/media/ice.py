"""Which local addresses the SFU offers as ICE host candidates."""

from __future__ import annotations

from aioice import ice as aioice_ice

_default_host_addresses = aioice_ice.get_host_addresses


def use_host_addresses(addresses: list[str]) -> None:
    """Offer exactly ``addresses``; with none given, every interface plus 127.0.0.1.

    aioice leaves loopback out, yet a browser on the same machine (or a machine with only ``lo``)
    needs it; Chromium uses it only with ``--allow-loopback-in-peer-connection``.
    """

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if addresses:
            return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
        found = _default_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return found + ["127.0.0.1"] if use_ipv4 else found

    aioice_ice.get_host_addresses = host_addresses
