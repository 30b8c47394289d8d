"""Which URLs a webhook may be sent to (server-side request forgery).

A target is refused when its host resolves to an address that is not public (loopback,
link-local, private, shared, multicast, reserved, unspecified) unless
FRESCO_WEBHOOK_ALLOWLIST names the host, the address, or a network containing it. Checked
when the URL is submitted (the API answers 422) and again before each delivery, since a
DNS answer can change in between. Only http and https.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
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


def check_url(url: str, allowlist: Iterable[str]) -> None:
    """Raise TargetRefused unless ``url`` is http(s) and every address its host resolves
    to is public or allow-listed."""
    allowlist = [e.strip() for e in allowlist if e.strip()]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetRefused(f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an http(s) URL with a host")
    host = parts.hostname.lower()
    if host in {e.lower() for e in allowlist}:
        return
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise TargetRefused(f"host {host!r} does not resolve ({e})") from None
    nets = _networks(allowlist)
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _public(ip) and not any(ip in net for net in nets if net.version == ip.version):
            raise TargetRefused(f"host {host!r} resolves to {ip}, a loopback, private, link-local or reserved "
                                "address; FRESCO_WEBHOOK_ALLOWLIST must name it to allow it")
