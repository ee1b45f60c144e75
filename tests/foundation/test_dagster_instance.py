"""The Dagster instance keeps runs in Postgres (dagster-postgres), never SQLite."""

from __future__ import annotations

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
