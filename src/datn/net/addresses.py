"""What a server counts a remote address as, when it bounds the connections
one place on the network may hold (peer links' handshakes, traders' API)."""

from __future__ import annotations

import ipaddress


def address_group(host: str) -> str:
    """What connections from ``host`` are counted by: an IPv4 address
    itself; an IPv6 address's /64 (one host is commonly given a whole /64,
    and could otherwise take every place from addresses of its own); an IPv4
    address mapped into IPv6 as the IPv4 address; anything else (a Unix
    socket's name) as it is."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
