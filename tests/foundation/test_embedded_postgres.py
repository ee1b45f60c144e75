"""The embedded Postgres: starts, keeps its data across a restart, and tolerates concurrent CLIs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from orchestration.core.warehouse import with_database
from orchestration.embedded.postgres import (
    embedded_server_url,
    start_embedded_server,
    stop_embedded_server,
)

START_AND_WRITE = """
import sys
from pathlib import Path
import psycopg
from orchestration.embedded.environment import ensure_database
from orchestration.embedded.postgres import embedded_server_url
url = ensure_database(embedded_server_url(Path(sys.argv[1])), "shared")
with psycopg.connect(url) as conn:
    conn.execute("select pg_advisory_xact_lock(1)")  # DDL races are not what this test is about
    conn.execute("create table if not exists marks (who text)")
    conn.execute("insert into marks values (%s)", (sys.argv[2],))
"""


def test_embedded_server_starts_and_answers(tmp_path: Path) -> None:
    url = embedded_server_url(tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert stop_embedded_server(tmp_path)


def test_embedded_server_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    url = embedded_server_url(tmp_path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table kept (value int)")
        conn.execute("insert into kept values (42)")
    assert stop_embedded_server(tmp_path)
    assert not stop_embedded_server(tmp_path)  # already stopped
    url = embedded_server_url(tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("select value from kept").fetchall() == [(42,)]
    start_embedded_server(tmp_path).stop()


def test_two_concurrent_clis_share_one_server(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", START_AND_WRITE, str(tmp_path), f"cli-{i}"])
        for i in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    url = with_database(embedded_server_url(tmp_path), "shared")
    with psycopg.connect(url) as conn:
        rows = sorted(r[0] for r in conn.execute("select who from marks"))
        assert rows == ["cli-0", "cli-1"]
        assert conn.execute("select count(*) from pg_stat_activity").fetchone()[0] >= 1
    assert len(list((tmp_path / "postgres").glob("postmaster.pid"))) == 1
    assert stop_embedded_server(tmp_path)
