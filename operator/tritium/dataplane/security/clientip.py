"""The client's address, and the allowlist it is checked against.

The address is the connection's peer. X-Forwarded-For is believed only when that peer is a
configured trusted proxy, and then only as far as the chain stays trusted: walking the list from
the right, the first hop that is not a trusted proxy is the client. Every hop to its left was
written by that client and may be anything, so it is never read (taking the left-most entry would
let any client choose its own address).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str], field: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a bad entry raises ValueError naming the field."""
    networks: list[Network] = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{field}: {text!r} is not a CIDR ({exc})") from None
    return tuple(networks)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> Address | None:
    """An address as a peer or X-Forwarded-For hop gives it; IPv4-mapped IPv6 becomes IPv4.

    Cached: ipaddress parses in microseconds, and a gateway sees the same few peers (its load
    balancer, its proxies) on request after request.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address, networks: tuple[Network, ...]) -> bool:
    # Mixed versions are simply not contained (ipaddress raises TypeError only for subnet_of).
    return any(address in net for net in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> Address | None:
    """The client's address: the peer, or the right-most untrusted X-Forwarded-For hop behind trusted peers.

    None when the peer has no IP address (a Unix socket); an unparsable hop ends the walk at the
    last trusted address seen, so garbage cannot stand in for a client.
    """
    address = parse_address(peer) if peer else None
    if address is None or not forwarded_for or not trusted or not within(address, trusted):
        return address
    for hop in reversed(forwarded_for.split(",")):
        parsed = parse_address(hop)
        if parsed is None:
            return address
        address = parsed
        if not within(address, trusted):
            return address
    return address
