"""Which webhook targets are refused (fresco/webhook_target.py), without the API."""
from __future__ import annotations

import pytest

from fresco.webhook_target import TargetRefused, check_url


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
