"""Asset checks: the rules as plain functions, and each check run by Dagster failing on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from orchestration.core.settings import PROJECT_ROOT
from orchestration.defs.assets.stripe_raw import raw_key
from orchestration.defs.checks import (
    CUSTOMER_COUNT_NOT_EVALUATED,
    customer_count_result,
    mode_result,
    raw_checks,
    read_other_mode_rows,
    read_sync_lags,
    stale_after_seconds,
    sync_lag_result,
)
from orchestration.defs.resources import WarehouseResource

HOUR = 3600.0
RAW_DDL = PROJECT_ROOT / "orchestration" / "extract" / "sql" / "create_raw_tables.sql"


@pytest.mark.parametrize(
    ("lag", "passed", "severity"),
    [
        (60.0, True, dg.AssetCheckSeverity.WARN),
        (23 * HOUR, True, dg.AssetCheckSeverity.WARN),
        (25 * HOUR, False, dg.AssetCheckSeverity.ERROR),
        (None, False, dg.AssetCheckSeverity.WARN),
    ],
    ids=["recent", "within-the-day", "over-a-day-fails", "never-synced-warns"],
)
def test_sync_is_recent_fails_past_the_staleness_threshold(
    lag: float | None, passed: bool, severity: dg.AssetCheckSeverity
) -> None:
    result = sync_lag_result("customers", lag, stale_after=24 * HOUR)
    assert result.passed is passed
    assert result.severity == severity
    assert result.asset_key == dg.AssetKey(["stripe_raw", "customers"])


def test_sync_is_recent_threshold_is_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SYNC_STALE_AFTER_HOURS", "2")
    assert stale_after_seconds() == 2 * HOUR
    assert not sync_lag_result("events", 3 * HOUR, stale_after=stale_after_seconds()).passed
    assert sync_lag_result("events", HOUR, stale_after=stale_after_seconds()).passed


@pytest.mark.parametrize(
    ("stripe", "raw", "passed"),
    [(50, 50, True), (50, 49, False), (50, 51, False)],
    ids=["equal", "raw-missing-one", "raw-has-extra"],
)
def test_raw_customer_count_matches_stripe(stripe: int, raw: int, passed: bool) -> None:
    result = customer_count_result(stripe, raw)
    assert result.passed is passed
    assert result.metadata["difference"].value == raw - stripe


@pytest.mark.parametrize(
    ("livemode", "rows", "passed"), [(False, 0, True), (False, 3, False), (True, 1, False)]
)
def test_rows_match_sync_mode(livemode: bool, rows: int, passed: bool) -> None:
    result = mode_result("charges", livemode, rows)
    assert result.passed is passed
    assert result.severity == dg.AssetCheckSeverity.ERROR


@pytest.fixture
def warehouse(database_url: str) -> WarehouseResource:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(RAW_DDL.read_text())
    return WarehouseResource(database_url=database_url)


def _state(url: str, table: str, livemode: bool, last_success: datetime | None, started: datetime):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into stripe_raw.sync_state (object, livemode, account_id, status,"
            " last_success_at, started_at) values (%s, %s, 'acct_1', 'ok', %s, %s)",
            (table, livemode, last_success, started),
        )


def _row(url: str, table: str, object_id: str, livemode: bool, synced_at: datetime) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"insert into stripe_raw.{table} (id, livemode, created, data, snapshot_at, synced_at)"
            " values (%s, %s, now(), '{}', now(), %s)",
            (object_id, livemode, synced_at),
        )


def test_lags_are_read_from_sync_state_of_the_mode(warehouse: WarehouseResource) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    url = warehouse.url()
    _state(url, "customers", False, now - timedelta(hours=2), now - timedelta(hours=2))
    _state(url, "customers", True, now - timedelta(minutes=1), now - timedelta(minutes=1))
    lags = read_sync_lags(warehouse, livemode=False, now=now)
    assert lags["customers"][0] == 2 * HOUR
    assert lags["invoices"][0] is None, "never synced"
    assert not sync_lag_result("customers", lags["customers"][0], stale_after=HOUR).passed


def test_other_mode_rows_written_by_the_latest_sync_are_found(warehouse: WarehouseResource) -> None:
    url = warehouse.url()
    started = datetime.now(UTC) - timedelta(minutes=5)
    _state(url, "customers", False, None, started)
    _row(
        url, "customers", "cus_old_live", True, started - timedelta(days=1)
    )  # an earlier live sync
    _row(url, "customers", "cus_test", False, started + timedelta(minutes=1))
    assert read_other_mode_rows(warehouse, livemode=False)["customers"] == 0
    _row(url, "customers", "cus_leaked_live", True, started + timedelta(minutes=2))
    counts = read_other_mode_rows(warehouse, livemode=False)
    assert counts["customers"] == 1
    assert not mode_result("customers", False, counts["customers"]).passed


# --- each check, run by Dagster, fails on purpose ---------------------------------------------


def _run_check(
    instance: dg.DagsterInstance, warehouse: WarehouseResource, check_name: str, table: str
) -> dg.ExecuteInProcessResult:
    """Runs one asset check of the definitions in a Dagster run, as the UI's "Execute" does."""
    key = dg.AssetCheckKey(raw_key(table), check_name)
    job = dg.define_asset_job("one_check", selection=dg.AssetSelection.checks(key))
    defs = dg.Definitions(asset_checks=raw_checks, jobs=[job], resources={"warehouse": warehouse})
    return defs.resolve_job_def("one_check").execute_in_process(instance=instance)


def _only_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def test_sync_is_recent_check_fails_when_the_last_sync_is_old(
    warehouse: WarehouseResource, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    long_ago = datetime.now(UTC) - timedelta(days=3)
    _state(warehouse.url(), "invoices", False, long_ago, long_ago)
    evaluation = _only_evaluation(_run_check(instance, warehouse, "sync_is_recent", "invoices"))
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR


def test_rows_match_sync_mode_check_fails_on_a_row_of_the_other_mode(
    warehouse: WarehouseResource, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    url = warehouse.url()
    started = datetime.now(UTC) - timedelta(minutes=5)
    _state(url, "charges", False, started, started)
    _row(url, "charges", "ch_leaked_live", True, started + timedelta(minutes=1))
    result = _run_check(instance, warehouse, "rows_match_sync_mode", "charges")
    evaluation = _only_evaluation(result)
    assert evaluation.passed is False
    assert evaluation.metadata["other_mode_rows"].value == 1


def test_customer_count_check_fails_when_the_reconcile_counts_differ(
    warehouse: WarehouseResource, instance: dg.DagsterInstance
) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            raw_key("customers"), metadata={"stripe_customers": 50, "raw_customers": 48}
        )
    )
    result = _run_check(instance, warehouse, "raw_customer_count_matches_stripe", "customers")
    evaluation = _only_evaluation(result)
    assert evaluation.passed is False
    assert evaluation.metadata["difference"].value == -2


def test_customer_count_check_is_not_evaluated_before_any_reconcile(
    warehouse: WarehouseResource, instance: dg.DagsterInstance
) -> None:
    # A sync without reconcile counts must not turn the check green: the run plans the check,
    # yields no result, and Dagster shows it as skipped, with the reason in the run's log.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(raw_key("customers"), metadata={"rows_written": 10})
    )
    result = _run_check(instance, warehouse, "raw_customer_count_matches_stripe", "customers")
    assert result.success
    assert result.get_asset_check_evaluations() == []
    key = dg.AssetCheckKey(raw_key("customers"), "raw_customer_count_matches_stripe")
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    assert record.status.value == "PLANNED"  # a finished run's planned check resolves to SKIPPED
    messages = [event.user_message for event in instance.all_logs(result.run_id)]
    assert any(CUSTOMER_COUNT_NOT_EVALUATED in message for message in messages)
