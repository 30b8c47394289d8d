"""Which URLs a webhook may be sent to (server-side request forgery).

A target is refused when its host resolves to an address that is not public (loopback,
link-local, private, shared, multicast, reserved, unspecified) unless
FRESCO_WEBHOOK_ALLOWLIST names the host, the address, or a network containing it. Checked
when the URL is submitted (the API answers 422) and again before each delivery, since a
DNS answer can change in between; a delivery then connects to the address it checked
(:func:`pinned`), not to whatever a second lookup would answer. Only http and https.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL is not one a webhook may be sent to; the message says why."""


def _networks(allowlist: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for entry in allowlist:
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:  # a host name: compared by name
            pass
    return nets


def _public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allowlist: Iterable[str]) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to; TargetRefused unless it is http(s) and
    every one of them is public or allow-listed (or the allow-list names the host)."""
    allowlist = [e.strip() for e in allowlist if e.strip()]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetRefused(f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an http(s) URL with a host")
    host = parts.hostname.lower()
    named = host in {e.lower() for e in allowlist}
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise TargetRefused(f"host {host!r} does not resolve ({e})") from None
    nets = _networks(allowlist)
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not named and not _public(ip) and not any(ip in net for net in nets if net.version == ip.version):
            raise TargetRefused(f"host {host!r} resolves to {ip}, a loopback, private, link-local or reserved "
                                "address; FRESCO_WEBHOOK_ALLOWLIST must name it to allow it")
        addresses.append(ip)
    return addresses


@dataclass(frozen=True)
class Pinned:
    """A request to ``url``'s host sent to one checked address: the URL names the address,
    the Host header and the TLS server name (SNI, and the name the certificate is checked
    against) stay the host's."""

    url: str
    host_header: str
    sni_hostname: str


def pinned(url: str, ip: IPAddress) -> Pinned:
    parts = urlsplit(url)
    address = f"[{ip}]" if ip.version == 6 else str(ip)
    port = f":{parts.port}" if parts.port is not None else ""
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + address + port
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    return Pinned(parts._replace(netloc=netloc).geturl(), shown + port, host)
