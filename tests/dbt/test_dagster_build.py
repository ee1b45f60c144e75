"""The Dagster build (stripe_build_job), whose dbt command runs in the run's own process: the same
materializations and check results as dbt's own run results, and a failing model fails the run
with dbt's error line."""

from __future__ import annotations

import json

import dagster as dg
import psycopg
import pytest
from conftest import create_raw_tables
from dbt_raw_dataset import AS_OF, insert_raw_dataset

from orchestration.cli.runs import _one_line
from orchestration.defs.assets.dbt import MANIFEST, READER_GUARD, stripe_dbt_models
from orchestration.defs.definitions import defs
from orchestration.defs.resources import build_resources
from orchestration.transform.runner import target_path_for

# Every build here runs at the dataset's instant.
AT_DATASET_TIME = {"ops": {"stripe_dbt_models": {"config": {"as_of": AS_OF.isoformat()}}}}


def _build() -> dg.ExecuteInProcessResult:
    """stripe_build_job on the database DATABASE_URL names (the fixtures set it)."""
    job = defs.resolve_job_def("stripe_build_job")
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            instance=instance, run_config=AT_DATASET_TIME, raise_on_error=False
        )


@pytest.fixture
def dataset_url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database with the raw dataset, as the definitions' resources read it."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    return database_url


@pytest.fixture
def built_url(dataset_url: str) -> str:
    """dataset_url after a first, successful Dagster build."""
    assert _build().success
    return dataset_url


def _run_results(database_url: str) -> dict[str, str]:
    """unique_id → status of the build's nodes, from dbt's run_results.json."""
    results = json.loads((target_path_for(database_url) / "run_results.json").read_text())
    return {r["unique_id"]: r["status"] for r in results["results"]}


def test_a_dagster_build_records_what_dbt_built_and_tested(dataset_url: str) -> None:
    result = _build()
    assert result.success

    statuses = _run_results(dataset_url)
    built = {uid.split(".")[-1] for uid in statuses if uid.startswith(("model.", "seed."))}
    materialized = {event.asset_key.path[-1] for event in result.get_asset_materialization_events()}
    assert materialized == built, "one materialization per model and seed dbt built"
    tests = {uid for uid in statuses if uid.startswith("test.")}
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(tests) > 0, "one check result per test dbt ran"
    assert all(e.passed for e in evaluations)
    assert {e.check_name for e in evaluations} == {uid.split(".")[2] for uid in tests}
    guards = {
        uid
        for uid, node in MANIFEST["nodes"].items()
        if node["resource_type"] == "test" and READER_GUARD in node.get("tags", [])
    }
    assert tests == guards, "an incremental build runs the reader_guard checks, and only them"


def test_a_failing_model_fails_the_run_with_dbts_error_line(built_url: str) -> None:
    with psycopg.connect(built_url) as conn:  # the next write into customer_fields fails
        conn.execute(
            "create function stripe.refuse() returns trigger language plpgsql as"
            " $$ begin raise exception 'customer_fields refuses writes'; end $$"
        )
        conn.execute(
            "create trigger refuse before insert on stripe.customer_fields"
            " for each statement execute function stripe.refuse()"
        )
    result = _build()
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None
    line = _one_line(error.message)
    assert line is not None
    assert line.startswith("Failure in model customer_fields"), line
    assert "customer_fields refuses writes" in error.message, "the database's own words"
    assert _run_results(built_url)["model.stripe_sync.customer_fields"] == "error"


def test_a_subset_picked_in_the_ui_builds_just_that_subset(built_url: str) -> None:
    picked = dg.AssetKey(["stripe_segments", "current_trials"])
    job = dg.define_asset_job("one_segment", selection=dg.AssetSelection.assets(picked))
    one = dg.Definitions(assets=[stripe_dbt_models], jobs=[job], resources=build_resources())
    with dg.DagsterInstance.ephemeral() as instance:
        result = one.resolve_job_def("one_segment").execute_in_process(
            instance=instance, run_config=AT_DATASET_TIME
        )
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [picked]
    built = [uid for uid in _run_results(built_url) if uid.startswith("model.")]
    assert built == ["model.stripe_sync.current_trials"]
