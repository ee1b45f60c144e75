"""An unreachable STRIPE_API_BASE (nothing listening, a host that does not resolve) fails the
preflight of `check` and `sync` with one line that names the setting, not a network library's
internals."""

from __future__ import annotations

import socket

import pytest

from tests.cli.helpers import run_cli


def _closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", ["check", "sync"])
@pytest.mark.parametrize(
    ("api_base", "reason"),
    [
        (f"http://127.0.0.1:{_closed_port()}", "connection refused"),
        ("http://stripe-sync-no-such-host.invalid", "does not resolve"),
    ],
    ids=["closed-port", "unresolvable-host"],
)
def test_an_unreachable_api_base_fails_with_one_line_naming_it(
    database_url: str, command: str, api_base: str, reason: str
) -> None:
    env = {
        "STRIPE_API_KEY": "sk_test_51" + "x" * 40,
        "STRIPE_API_BASE": api_base,
        "DATABASE_URL": database_url,
    }
    result = run_cli(command, env=env)
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STRIPE_API_BASE" in lines[0]
    assert api_base in lines[0]
    assert reason in lines[0]
    for internal in ("urllib3", "HTTPConnection", "Errno", "support@stripe.com", "Traceback"):
        assert internal not in result.stdout + result.stderr
