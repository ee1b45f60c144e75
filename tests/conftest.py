"""Shared fixtures: a real Postgres server, one fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from orchestration.warehouse import server_url_for_tests, with_database


@pytest.fixture(scope="session", autouse=True)
def _stop_isolated_cli_postgres() -> Iterator[None]:
    """Stops the embedded Postgres that CLI tests without DATABASE_URL started, if any."""
    yield
    from orchestration.embedded.postgres import stop_embedded_server
    from tests.cli.helpers import ISOLATED_HOME

    stop_embedded_server(ISOLATED_HOME)


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
    # `<name>_dagster` is where a test's Dagster instance keeps its runs (environment.py).
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        for dbname in (name, f"{name}_dagster"):
            drop = sql.SQL("drop database if exists {} with (force)")
            admin.execute(drop.format(sql.Identifier(dbname)))


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
    for name in created:
        _drop_database(server_url, name)


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
