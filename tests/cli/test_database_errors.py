"""`stripe-sync check` with a bad DATABASE_URL: one line naming problem and fix, exit 1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestration.embedded.postgres import start_embedded_server
from tests.cli.helpers import run_cli


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded Postgres that demands a password (scram), to test a wrong one."""
    state = tmp_path_factory.mktemp("pw-server")
    server = start_embedded_server(state)
    info = server.get_postmaster_info()
    url = f"postgresql://postgres@/postgres?host={info.socket_dir}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter user postgres password 'right-password'")
        hba = Path(conn.execute("show hba_file").fetchone()[0])
        hba.write_text("local all all scram-sha-256\n")
        conn.execute("select pg_reload_conf()")
    yield str(info.socket_dir)
    server.stop()


def _assert_one_line_error(result, *words: str) -> None:
    assert result.code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_closed_port_names_host_and_port() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/warehouse"
    _assert_one_line_error(run_cli("check", env={"DATABASE_URL": url}), "nothing answers", "port")


def test_unknown_host_names_the_host() -> None:
    url = "postgresql://postgres@no-such-host.invalid:5432/warehouse"
    _assert_one_line_error(run_cli("check", env={"DATABASE_URL": url}), "host", "unknown")


def test_not_a_url_says_the_expected_form() -> None:
    _assert_one_line_error(
        run_cli("check", env={"DATABASE_URL": "warehouse.example.com"}), "postgresql://"
    )


def test_wrong_password_says_check_the_password(password_server: str) -> None:
    url = f"postgresql://postgres:wrong-password@/postgres?host={password_server}"
    result = run_cli("check", env={"DATABASE_URL": url})
    _assert_one_line_error(result, "rejected the user or password")
    assert "wrong-password" not in result.stderr


def test_unknown_database_says_create_it(server_url: str) -> None:
    from orchestration.core.warehouse import with_database

    url = with_database(server_url, "no_such_database_here")
    _assert_one_line_error(run_cli("check", env={"DATABASE_URL": url}), "does not exist")


def test_debug_shows_the_traceback() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/warehouse"
    result = run_cli("--debug", "check", env={"DATABASE_URL": url})
    assert result.code != 0
    assert "Traceback" in result.stderr
