"""The client address: the peer, or the right-most untrusted X-Forwarded-For hop behind trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from tritium.dataplane.security.clientip import client_address, parse_address, parse_networks, within

TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8"], "trustedProxies")


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1", "127.0.0.1"),
    ("192.0.2.7:5123", "192.0.2.7"),
    ("::1", "::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:192.0.2.9", "192.0.2.9"),  # a dual-stack socket's view of an IPv4 client
    ("fe80::1%eth0", "fe80::1"),
    ("unknown", None),
    ("", None),
])
def test_parse_address(text: str, address: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == address


@pytest.mark.parametrize(("peer", "xff", "client"), [
    ("192.0.2.1", None, "192.0.2.1"),
    ("192.0.2.1", "10.9.9.9", "192.0.2.1"),  # an untrusted peer's header is ignored: no spoofing
    ("10.0.0.2", "192.0.2.1", "192.0.2.1"),  # a trusted proxy tells the client
    ("10.0.0.2", "6.6.6.6, 192.0.2.1", "192.0.2.1"),  # the right-most untrusted hop, not what the client wrote
    ("10.0.0.2", "6.6.6.6, 192.0.2.1, 10.1.2.3", "192.0.2.1"),  # through two proxies
    ("10.0.0.2", "10.1.1.1, 10.1.2.3", "10.1.1.1"),  # every hop trusted: the first one
    ("10.0.0.2", "192.0.2.1, garbage", "10.0.0.2"),  # garbage never stands in for a client
    ("fd00::2", "2001:db8::7", "2001:db8::7"),
    ("2001:db8::9", "fd00::1", "2001:db8::9"),
    ("", "192.0.2.1", None),  # a Unix socket has no address
])
def test_client_address(peer: str, xff: str | None, client: str | None) -> None:
    found = client_address(peer, xff, TRUSTED)
    assert (str(found) if found else None) == client


def test_no_trusted_proxies_means_the_peer() -> None:
    assert str(client_address("10.0.0.2", "192.0.2.1", ())) == "10.0.0.2"


def test_within_mixes_versions_safely() -> None:
    nets = parse_networks(["127.0.0.0/8", "2001:db8::/32"], "ipAllowlist")
    assert within(ipaddress.ip_address("127.5.0.1"), nets)
    assert within(ipaddress.ip_address("2001:db8::1"), nets)
    assert not within(ipaddress.ip_address("::1"), nets)
    assert not within(ipaddress.ip_address("128.0.0.1"), nets)


def test_a_bad_cidr_names_its_field() -> None:
    with pytest.raises(ValueError, match="ipAllowlist: 'nope'"):
        parse_networks(["nope"], "ipAllowlist")
