"""Shared fixtures: a real Postgres server, one fresh database per test; the secrets audit."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from orchestration.core.warehouse import with_database
from orchestration.embedded.environment import server_url_for_tests
from tests.helpers.secrets_scan import (
    AUDIT_ENABLED,
    Scan,
    SecretsFoundError,
    masked,
    scan_embedded,
    scan_files,
    scan_server,
    scan_text,
)

# The secrets audit (issue 9): data is scanned for API keys and webhook secrets where it dies:
# every test database just before it is dropped, every test's captured output, and at the end of
# the session the CLI tests' embedded Postgres and every file the tests wrote. The summary line
# says what it cost; STRIPE_SYNC_AUDIT_ENABLED=0 turns it off.


@dataclass
class _AuditTotals:
    """What the secrets audit of this session looked at, and the time it took."""

    scan: Scan = field(default_factory=Scan)
    seconds: float = 0.0


AUDIT = _AuditTotals()


def audit(scanner: Callable[[], Scan]) -> Scan:
    """Runs one secrets scan (or none with STRIPE_SYNC_AUDIT_ENABLED=0), adding it to the totals."""
    if not AUDIT_ENABLED:
        return Scan()
    started = time.perf_counter()
    scan = scanner()
    AUDIT.seconds += time.perf_counter() - started
    AUDIT.scan += scan
    return scan


@pytest.fixture(scope="session", autouse=True)
def _stop_isolated_cli_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stops the embedded Postgres that CLI tests without DATABASE_URL started, if any; first
    audits it, its state dir and every file the session's tests wrote for secrets."""
    yield
    from orchestration.embedded.postgres import stop_embedded_server
    from tests.cli.helpers import ISOLATED_HOME

    try:
        scan = audit(lambda: scan_embedded(ISOLATED_HOME))
    finally:
        stop_embedded_server(ISOLATED_HOME)
    scan += audit(lambda: scan_files(ISOLATED_HOME))
    scan += audit(lambda: scan_files(tmp_path_factory.getbasetemp()))
    scan.raise_on_hits("the CLI tests' state dir or the session's temporary files")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test whose captured output or logs show a secret fails, even if its asserts passed."""
    outcome = yield
    report = outcome.get_result()
    if not AUDIT_ENABLED or not report.passed:
        return
    text = "\n".join(body for title, body in report.sections if title.endswith(report.when))
    scan = audit(lambda: scan_text(text, f"captured output of {item.nodeid} ({report.when})"))
    if scan.hits:
        report.outcome = "failed"
        report.longrepr = f"secrets in the captured output: {scan.report()}"
        # pytest prints a failed test's captured output: not the secrets in it.
        report.sections = [(title, masked(body)) for title, body in report.sections]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: what the secrets audit scanned and what it cost."""
    if AUDIT_ENABLED and AUDIT.scan.databases + AUDIT.scan.files:
        terminalreporter.write_line(
            f"secrets audit (a hit fails its test): scanned {AUDIT.scan.scanned()}"
            f" in {AUDIT.seconds:.1f} s"
        )


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the Postgres server the tests use (TEST_DATABASE_URL, 127.0.0.1:5432, or embedded)."""
    return server_url_for_tests(
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    )


def _create_database(server_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name


def _drop_database(server_url: str, name: str) -> None:
    """Drops a test database and its Dagster database; audits both for secrets first, and fails
    the test (after dropping them) if one holds any."""
    # `<name>_dagster` is where a test's Dagster instance keeps its runs (environment.py).
    names = (name, f"{name}_dagster")
    scan = audit(lambda: scan_server(server_url, names))
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        for dbname in names:
            drop = sql.SQL("drop database if exists {} with (force)")
            admin.execute(drop.format(sql.Identifier(dbname)))
    scan.raise_on_hits(f"test database {name}, just before it was dropped")


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = _create_database(server_url, "stripe_sync_test")
    yield with_database(server_url, name)
    _drop_database(server_url, name)


@pytest.fixture
def database_factory(server_url: str) -> Iterator[object]:
    """Creates as many fresh databases as a test needs; drops them all afterwards."""
    created: list[str] = []

    def make(prefix: str = "stripe_sync_test") -> str:
        name = _create_database(server_url, prefix)
        created.append(name)
        return with_database(server_url, name)

    yield make
    found = []
    for name in created:  # every one is dropped, even after one held a secret
        try:
            _drop_database(server_url, name)
        except SecretsFoundError as exc:
            found.append(str(exc))
    if found:
        raise SecretsFoundError("\n".join(found))


# --- emulator fixtures ---
# Owned by the emulator work (issue 4); other fixtures above are unchanged.

from contextlib import ExitStack  # noqa: E402

from orchestration.emulator import Emulator, start_emulator  # noqa: E402


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh 50-customer emulator per test (no rate limit), so ticks never leak between tests."""
    with start_emulator(customers=50, seed=1, rate_limit=None) as emu:
        yield emu


@pytest.fixture
def emulator_factory() -> Iterator[object]:
    """Starts emulators with any start_emulator() options; stops them all afterwards."""
    stack = ExitStack()

    def make(**options: object) -> Emulator:
        options.setdefault("customers", 50)
        return stack.enter_context(start_emulator(**options))

    with stack:
        yield make
