"""IP networks: parsing operator input and matching source addresses."""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(networks: tuple[str, ...] | list[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings -> networks; ValueError names the bad entry."""
    out = []
    for text in networks:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"bad network {text!r}: expected CIDR like 192.0.2.0/24") from None
    return tuple(out)


def in_networks(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Is `ip` inside one of `networks`? (Callers cache the answer per source:
    parsing an address is not cheap.)"""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in networks)
