"""The Dagster instance keeps runs in Postgres (dagster-postgres), never SQLite, over held
connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from orchestration.core.settings import load_settings
from orchestration.core.warehouse import parse_database_url, with_database
from orchestration.embedded.environment import prepare_dagster_home


@dg.op
def _say_hello() -> str:
    return "hello"


@dg.job
def _hello_job() -> None:
    _say_hello()


MATERIALIZATIONS = 40


@dg.op(out={})
def _report_tables() -> Iterator[dg.AssetMaterialization]:
    for n in range(MATERIALIZATIONS):
        yield dg.AssetMaterialization(asset_key=["stripe", f"table_{n}"])


@dg.job
def _report_job() -> None:
    _report_tables()


def _sessions(url: str) -> int:
    """Connections ever opened to the database (Postgres's own counter)."""
    with psycopg.connect(url, autocommit=True) as conn:
        query = "select sessions from pg_stat_database where datname = current_database()"
        return int(conn.execute(query).fetchone()[0])  # type: ignore[index]


def test_runs_are_written_to_postgres(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = load_settings(database_url=database_url, dagster_home=tmp_path / "dagster")
    home = prepare_dagster_home(settings, database_url)
    assert (home / "dagster.yaml").exists()

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # A queued build (the webhook sensor's) is picked up within a second, not five.
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]
        result = dg.execute_job(dg.reconstructable(_hello_job), instance=instance)
        assert result.success
        run_id = result.run_id

    dagster_db = with_database(database_url, f"{parse_database_url(database_url).dbname}_dagster")
    with psycopg.connect(dagster_db) as conn:
        row = conn.execute("select status from runs where run_id = %s", (run_id,)).fetchone()
    assert row == ("SUCCESS",)
    assert not list(home.rglob("*.db")), "no SQLite files in DAGSTER_HOME"


def test_a_run_writes_its_events_over_held_connections(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster-postgres alone opens a connection per statement: 1,043 for one build's 324 events
    (4 s of a 12 s run). Each of the instance's stores holds one instead."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = load_settings(database_url=database_url, dagster_home=tmp_path / "dagster")
    prepare_dagster_home(settings, database_url)
    dagster_db = with_database(database_url, f"{parse_database_url(database_url).dbname}_dagster")

    with dg.DagsterInstance.get() as instance:
        _report_job.execute_in_process(instance=instance)  # creates the tables, warms the pool
        before = _sessions(dagster_db)
        result = _report_job.execute_in_process(instance=instance)
        opened = _sessions(dagster_db) - before - 1  # less the counter's own connection
        stored = len(instance.all_logs(result.run_id))

    assert result.success
    assert stored > MATERIALIZATIONS
    # A few overflow connections (a store's statement nested in another's), not one per event.
    assert opened < MATERIALIZATIONS / 4, f"{opened} connections for {stored} events"
