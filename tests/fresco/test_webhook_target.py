"""Which webhook targets are refused (fresco/webhook_target.py), without the API."""
from __future__ import annotations

import ipaddress

import pytest

from fresco.webhook_target import TargetRefused, check_url, pinned


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://10.0.0.1/", "http://172.16.5.5/", "http://192.168.0.1/",
                                 "http://100.64.0.1/", "http://169.254.169.254/", "http://[fe80::1]/",
                                 "http://224.0.0.1/", "http://240.0.0.1/", "http://[::]/", "http://[fc00::1]/",
                                 "ftp://8.8.8.8/", "http:///nohost", "http://host.invalid/"])
def test_refused(url):
    with pytest.raises(TargetRefused):
        check_url(url, [])


def test_public_address_is_accepted():
    check_url("https://8.8.8.8/hook", [])
    check_url("http://[2001:4860:4860::8888]:8080/hook", [])


def test_allowlist_by_host_address_or_network():
    check_url("http://127.0.0.1:8000/", ["127.0.0.1"])
    check_url("http://10.9.8.7/", ["10.0.0.0/8"])
    check_url("http://localhost:8000/", ["localhost"])
    with pytest.raises(TargetRefused):
        check_url("http://10.9.8.7/", ["10.0.0.0/16", "127.0.0.1"])


def test_a_delivery_is_pinned_to_the_checked_address():
    ip = ipaddress.ip_address("93.184.216.34")
    p = pinned("https://user:pw@Example.com:8443/hook?x=1", ip)
    assert (p.url, p.host_header, p.sni_hostname) == ("https://user:pw@93.184.216.34:8443/hook?x=1",
                                                      "example.com:8443", "example.com")
    p = pinned("http://hooks.example/", ipaddress.ip_address("2001:db8::1"))
    assert (p.url, p.host_header) == ("http://[2001:db8::1]/", "hooks.example")


def test_addresses_are_returned_for_pinning():
    assert check_url("http://127.0.0.1:8000/", ["127.0.0.1"]) == [ipaddress.ip_address("127.0.0.1")]
