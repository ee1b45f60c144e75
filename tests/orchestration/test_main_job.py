"""The main job against the emulator and a real Postgres, through the persistent Dagster instance:
the run, its materializations with their metadata and its check results are read back from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from orchestration.cli.runs import RunOutcome, execute_main_job
from orchestration.core.settings import load_settings

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# Variables execute_main_job exports; registered with monkeypatch so each test restores them.
EXPORTED = ("STRIPE_API_KEY", "STRIPE_API_BASE", "DATABASE_URL", "DAGSTER_HOME")


@pytest.fixture
def run_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, emulator):
    for name in (*EXPORTED, "STRIPE_SYNC_DAGSTER_PG_URL"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    return load_settings(
        database_url=database_url,
        stripe_api_key=emulator.test_key,
        stripe_api_base=emulator.url,
        dagster_home=tmp_path / "dagster",
    )


def _latest_metadata(instance: dg.DagsterInstance, key: str) -> dict[str, object]:
    records = instance.fetch_materializations(dg.AssetKey(key.split("/")), limit=1).records
    assert records, f"no materialization of {key}"
    return dict(records[0].asset_materialization.metadata)


def _live_customers(emulator) -> int:
    return sum(1 for c in emulator.objects("customers").values() if not c.get("deleted"))


def test_main_job_runs_on_the_instance_and_records_metadata_and_checks(
    run_env, emulator, database_url: str
) -> None:
    outcome = execute_main_job(run_env, as_of=AS_OF, mode="import-existing")
    assert isinstance(outcome, RunOutcome)
    assert outcome.success, outcome.summary()

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        run = instance.get_run_by_id(outcome.run_id)
        assert run.job_name == "stripe_sync_job"
        assert run.tags["stripe_sync/serial"] == "warehouse"
        stored = json.dumps(run.run_config) + json.dumps(dict(run.tags))
        assert emulator.test_key not in stored, "the key never lands in run config or tags"
        as_of = run.run_config["ops"]["stripe_dbt_models"]["config"]["as_of"]
        assert as_of.startswith("2026-11-20")

        raw = _latest_metadata(instance, "stripe_raw/customers")
        assert isinstance(raw["objects_synced"], dg.IntMetadataValue)
        assert raw["objects_synced"].value >= _live_customers(emulator)
        assert raw["requests"].value > 0
        assert isinstance(raw["objects_per_second"], dg.FloatMetadataValue)
        assert isinstance(raw["cursor_lag_seconds"], dg.FloatMetadataValue)
        for name in ("retries", "rate_limited_429s"):
            assert isinstance(raw[name], dg.IntMetadataValue)

        # activity_events is the user's table: each build observes it (rows, latest activity).
        observed = instance.fetch_observations(
            dg.AssetKey(["stripe_raw", "activity_events"]), limit=1
        ).records
        assert observed, "the build observes stripe_raw/activity_events"
        activity = observed[0].asset_observation.metadata
        assert activity["dagster/row_count"].value == 0
        assert activity["latest_activity_at"].value == "no activity yet"

        fields = _latest_metadata(instance, "stripe/customer_fields")
        assert fields["customers_in_sync"].value == _live_customers(emulator)

        segment = _latest_metadata(instance, "stripe_segments/syncing_with_stripe")
        assert segment["dagster/row_count"].value == _live_customers(emulator)
        preview = segment["preview"].value  # a table the asset's page shows inline
        assert len(preview.records) == 10, "the first 10 members"
        assert "stripe_customer_id" in [column.name for column in preview.schema.columns]
        assert preview.records[0].data["stripe_customer_id"].startswith("cus_")
        # Plottable per build: on the first build every member entered, none left.
        assert segment["entered"].value == _live_customers(emulator)
        assert segment["exited"].value == 0
        # The month's MRR bridge, on the mrr_movements asset's page.
        bridge = _latest_metadata(instance, "stripe/mrr_movements")["month_bridge"].value
        assert bridge.startswith("| currency | start_mrr | new |"), bridge
        assert "| usd |" in bridge, bridge

        checks = {(c.asset, c.name): c for c in outcome.checks}
        assert checks[("stripe_raw/customers", "sync_is_recent")].passed
        assert checks[("stripe_raw/customers", "rows_match_sync_mode")].passed
        # No reconcile counted Stripe's customers yet: the parity check is skipped, not green.
        assert ("stripe_raw/customers", "raw_customer_count_matches_stripe") not in checks
        assert outcome.skipped_checks == ["stripe_raw/customers raw_customer_count_matches_stripe"]
        # An incremental build runs the reader_guard checks and leaves the rest to full builds.
        assert outcome.deferred_checks, "the heavy dbt tests wait for the daily full build"
        assert not any("reader_guard" in name for name in outcome.deferred_checks)
        assert "left to the daily full build" in outcome.summary()
        assert "1 not evaluated" in outcome.summary()
        assert "(no reconcile has counted Stripe's customers yet;" in outcome.summary()
        assert any(asset == "stripe_segments/segment_memberships" for asset, _ in checks), (
            "dbt tests as checks: the reader_guard ones run on every build"
        )
        assert not outcome.failed_checks, outcome.summary()

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select count(*) from stripe_segments.syncing_with_stripe").fetchone()
    assert rows[0] == _live_customers(emulator)


def test_reconcile_records_stripes_customer_count_for_the_parity_check(run_env, emulator) -> None:
    # On a first sync a reconcile is the import itself; either way Stripe's count is recorded.
    outcome = execute_main_job(run_env, as_of=AS_OF, mode="import-existing", reconcile=True)
    assert outcome.success, outcome.summary()
    with dg.DagsterInstance.get() as instance:
        raw = _latest_metadata(instance, "stripe_raw/customers")
        assert raw["stripe_customers"].value == _live_customers(emulator)
        assert raw["stripe_customers"].value == raw["raw_customers"].value
    parity = next(c for c in outcome.checks if c.name == "raw_customer_count_matches_stripe")
    assert parity.passed
    assert not outcome.skipped_checks


def test_main_job_runs_unchanged_under_the_multiprocess_executor(run_env, emulator) -> None:
    outcome = execute_main_job(
        run_env, as_of=AS_OF, mode="import-existing", executor="multiprocess"
    )
    assert outcome.success, outcome.summary()
    assert "stripe_raw/customers" in outcome.materialized
    assert "stripe_segments/current_trials" in outcome.materialized
