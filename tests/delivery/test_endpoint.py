"""Receiver URLs and secrets: https outside localhost, one-line errors that show no secret."""

from __future__ import annotations

import pytest

from orchestration.delivery import Endpoint, EndpointError
from tests.delivery.receiver import SECRET


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/segments",
        "http://localhost:8080/hook",
        "http://127.0.0.1/hook",
        "http://[::1]:9000/hook",
        "HTTPS://Hooks.Example.com",
    ],
    ids=["https", "localhost", "ipv4-loopback", "ipv6-loopback", "upper-case"],
)
def test_https_and_local_http_urls_are_accepted(url: str) -> None:
    assert Endpoint(url, SECRET).id


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://hooks.example.com/segments?token=abc123",
            "the segment webhook URL http://hooks.example.com is plain http outside localhost."
            " Use https:// (http:// only for localhost, 127.0.0.1 or ::1).",
        ),
        (
            "http://127.0.0.2/hook",
            "the segment webhook URL http://127.0.0.2 is plain http outside localhost."
            " Use https:// (http:// only for localhost, 127.0.0.1 or ::1).",
        ),
        (
            "ftp://hooks.example.com/x",
            "the segment webhook URL is not an http(s) URL with a host."
            " Use the form https://your.host/path.",
        ),
        (
            "hooks.example.com/x",
            "the segment webhook URL is not an http(s) URL with a host."
            " Use the form https://your.host/path.",
        ),
    ],
    ids=["http-remote", "http-other-loopback-address", "ftp", "no-scheme"],
)
def test_other_urls_are_refused_with_one_line_naming_the_fix(url: str, expected: str) -> None:
    with pytest.raises(EndpointError) as caught:
        Endpoint(url, SECRET)
    assert caught.value.one_line() == expected
    assert "abc123" not in str(caught.value)


def test_a_short_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(EndpointError) as caught:
        Endpoint("https://hooks.example.com/x", "short-secret")
    assert "short-secret" not in str(caught.value)
    assert "token_hex" in caught.value.one_line()


def test_neither_repr_nor_name_shows_the_secret_or_the_path() -> None:
    endpoint = Endpoint("https://user:pw@hooks.example.com:8443/catch/abc123?k=v", SECRET)
    assert endpoint.name == "https://hooks.example.com:8443"
    assert SECRET not in repr(endpoint) and "abc123" not in repr(endpoint)
    assert "pw" not in repr(endpoint)


def test_the_receiver_key_ignores_case_of_the_host_and_the_default_port() -> None:
    a = Endpoint("https://Hooks.Example.com:443/x", SECRET)
    b = Endpoint("https://hooks.example.com/x", SECRET + "-rotated")
    c = Endpoint("https://hooks.example.com/y", SECRET)
    assert a.id == b.id != c.id
