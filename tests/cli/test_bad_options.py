"""Bad CLI options: one clear line, non-zero exit, nothing written."""

from __future__ import annotations

import pytest

from tests.cli.helpers import run_cli


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["build", "--as-of", "2026-11-20T12:00:00"], "no timezone"),
        (["build", "--as-of", "yesterday"], "not an ISO-8601"),
        (["run", "--as-of", "2026-13-45T00:00:00Z"], "not an ISO-8601"),
        (["emulator", "--port", "-1"], "out of range"),
        (["webhooks", "serve", "--port", "70000"], "out of range"),
        (["sync", "--mode", "everything"], "import-existing"),
        (["no-such-command"], "No such command"),
    ],
    ids=[
        "as-of-no-tz",
        "as-of-garbage",
        "as-of-bad-date",
        "negative-port",
        "port-too-big",
        "bad-mode",
        "unknown-command",
    ],
)
def test_bad_option_is_one_line_and_nonzero(args: list[str], words: str) -> None:
    result = run_cli(*args)
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("pk_live_abcdef123456", "publishable"),
        ("sk_test_has space", "spaces"),
        ("hello", "sk_test_"),
    ],
    ids=["publishable", "spaces", "not-a-key"],
)
def test_bad_key_is_refused_before_anything_runs(value: str, words: str) -> None:
    result = run_cli("sync", env={"STRIPE_API_KEY": value})
    assert result.code == 1
    assert words in result.stderr
    assert value not in result.stderr
