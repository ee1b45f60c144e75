"""Every option and variable a user can get wrong, on the commands that read it: one line on
stderr naming the problem, a non-zero exit, no traceback, and nothing written to the warehouse.

tests/cli covers the first layer (settings parsing, --as-of, ports, modes, keys on `sync`, bad
database URLs on `check`); this file crosses the bad values with every command that writes, with a
real database behind them, and covers the options those tests leave out."""

from __future__ import annotations

import psycopg
import pytest

from tests.cli.helpers import run_cli

KEY = "sk_test_" + "a" * 24  # well-formed; never reaches Stripe, since every case fails earlier

# (variable, bad value, words of the one line)
BAD_ENV = [
    ("STRIPE_API_KEY", "not-a-key", "sk_test_"),
    ("STRIPE_API_KEY", "pk_test_" + "b" * 24, "publishable"),
    ("STRIPE_API_KEY", "sk_test_ has spaces", "spaces"),
    ("STRIPE_API_KEY", " sk_test_" + "c" * 24, "spaces"),
    ("STRIPE_API_KEY", "sk_test_é" + "d" * 24, "sk_test_"),
    ("STRIPE_API_BASE", "api.stripe.com", "http(s) URL"),
    ("STRIPE_API_BASE", "not a url", "http(s) URL"),
    ("STRIPE_API_BASE", "ftp://api.stripe.com", "http(s) URL"),
    ("STRIPE_MAX_RPS", "-3", "STRIPE_MAX_RPS"),
    ("STRIPE_MAX_RPS", "0", "STRIPE_MAX_RPS"),
    ("STRIPE_MAX_RPS", "fast", "STRIPE_MAX_RPS"),
    ("STRIPE_MAX_RPS", "1e9", "STRIPE_MAX_RPS"),
    ("STRIPE_WEBHOOK_SECRET", "whsec", "whsec_"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_abc def", "whsec_"),
    ("STRIPE_WEBHOOK_SECRET", "sk_test_" + "e" * 24, "whsec_"),
]
WRITERS = [["sync"], ["run", "--as-of", "2026-11-20T12:00:00Z"], ["build"], ["check"]]


def _one_line_error(result, *words: str) -> str:
    assert result.code != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _has_raw_schema(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("select to_regnamespace('stripe_raw')").fetchone()[0] is not None


@pytest.mark.parametrize(("variable", "value", "words"), BAD_ENV,
                         ids=[f"{v}={x!r}" for v, x, _ in BAD_ENV])  # fmt: skip
def test_bad_variable_stops_the_main_job_before_it_writes(
    variable: str, value: str, words: str, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "STRIPE_API_KEY": KEY, variable: value}
    line = _one_line_error(run_cli("run", env=env), words)
    if variable in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET") and len(value) > 8:
        assert value.strip() not in line, "a secret was echoed"
    assert not _has_raw_schema(database_url)


FIRST_OF_EACH = list({v: (v, x, w) for v, x, w in reversed(BAD_ENV)}.values())


@pytest.mark.parametrize(("variable", "value", "words"), FIRST_OF_EACH,
                         ids=[v for v, _, _ in FIRST_OF_EACH])  # fmt: skip
def test_bad_variable_stops_every_command_that_touches_the_warehouse(
    variable: str, value: str, words: str, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "STRIPE_API_KEY": KEY, variable: value}
    for args in WRITERS:
        _one_line_error(run_cli(*args, env=env), words)
    assert not _has_raw_schema(database_url)


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "http://localhost:5432/db", "localhost:5432",
     "postgresql://u@localhost:notaport/db", "postgresql://u@localhost:99999/db"],
)  # fmt: skip
def test_database_url_that_is_not_postgres_is_refused_by_every_command(url: str) -> None:
    for args in (["sync"], ["build"], ["status"], ["run"]):
        _one_line_error(run_cli(*args, env={"DATABASE_URL": url, "STRIPE_API_KEY": KEY}))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--as-of", "2026-11-20T12:00:00"], "no timezone"),
        (["run", "--as-of", "2026-11-20"], "no timezone"),
        (["build", "--as-of", ""], "not an ISO-8601"),
        (["build", "--as-of", "2026-11-20T12:00:00+25:00"], "not an ISO-8601"),
        (["run", "--mode", "all"], "import-existing"),
        (["sync", "--mode", ""], "import-existing"),
    ],
)
def test_bad_option_with_a_database_writes_nothing(args, words, database_url: str) -> None:
    _one_line_error(run_cli(*args, env={"DATABASE_URL": database_url, "STRIPE_API_KEY": KEY}),
                    words)  # fmt: skip
    assert not _has_raw_schema(database_url)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["emulator", "--port", "0"], "out of range"),
        (["emulator", "--port", "abc"], "--port"),
        (["emulator", "--customers", "-5"], "--customers"),
        (["emulator", "--latency-ms", "-1"], "--latency-ms"),
        (["emulator", "--fault-rate", "1.5"], "--fault-rate"),
        (["emulator", "--rate-limit", "-1"], "--rate-limit"),
        (["emulator", "--rate-limit", "0"], "--rate-limit"),
        (["demo", "--customers", "-1"], "--customers"),
        (["webhooks", "serve", "--port", "-1"], "out of range"),
        (["webhooks", "serve", "--port", "65536"], "out of range"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_server_option_is_one_line(args: list[str], words: str) -> None:
    _one_line_error(run_cli(*args, timeout=60), words)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/stripe/webhook", "https"),
        ("example.com/stripe/webhook", "https"),
        ("https://", "https"),
        ("ftp://example.com/hook", "https"),
    ],
)
def test_webhooks_register_refuses_a_url_stripe_cannot_deliver_to(url: str, words: str) -> None:
    _one_line_error(run_cli("webhooks", "register", url, env={"STRIPE_API_KEY": KEY}), words)


@pytest.mark.parametrize(
    ("value", "words"),
    [("whsec", "whsec_"), ("whsec_abc def", "whsec_"), ("whsec_ok123,oops", "whsec_"),
     ("", "not set")],
)  # fmt: skip
def test_webhooks_serve_refuses_a_malformed_secret(value: str, words: str) -> None:
    result = run_cli("webhooks", "serve", env={"STRIPE_WEBHOOK_SECRET": value}, timeout=60)
    line = _one_line_error(result, words)
    if len(value) > 8:
        assert value not in line, "the secret was echoed"
