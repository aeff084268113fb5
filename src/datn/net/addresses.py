"""What a node's servers (peer links, traders' and operator's APIs) count a
remote address as, when they bound the connections one place on the
network may hold, and how many connections their sockets queue."""

from __future__ import annotations

import ipaddress
from typing import Final

ACCEPT_BACKLOG: Final = 64
"""Connections each listening socket queues, and so at most accepts in one
turn of the loop: each is an open file until its place is checked and, if
there is none, it is closed, a turn or two later, while the next are
accepted; so a burst of twice as many is counted among the files a node
keeps."""


def address_group(host: str) -> str:
    """What connections from ``host`` are counted by: an IPv4 address
    itself; an IPv6 address's /64 (one host is commonly given a whole /64,
    and could otherwise take every place from addresses of its own), with
    its scope if it has one (``fe80::1%eth0``); an IPv4 address mapped into
    IPv6 as the IPv4 address; anything else (a Unix socket's name) as it is."""
    bare, _, scope = host.partition("%")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = str(ipaddress.IPv6Network((address, 64), strict=False))
        # A link-local address is one on its own link only: hosts on two
        # interfaces are two places.
        return f"{network}%{scope}" if scope else network
    return str(address)
