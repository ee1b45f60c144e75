"""The delivery log is kept WEBHOOK_DELIVERIES_RETENTION_DAYS (30 by default): the daily reconcile
deletes older rows; a log created by an older version is upgraded in place."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from orchestration.core.errors import SettingsError
from orchestration.core.settings import load_settings
from orchestration.defs.assets.stripe_raw import stripe_raw_tables
from orchestration.defs.resources import StripeResource, WarehouseResource
from orchestration.webhooks.store import ensure_webhook_tables, prune_deliveries
from tests.webhooks.conftest import rows

AGES = (400, 40, 29, 6, 0)  # days


def _log_with_rows_aged(database_url: str, ages: tuple[int, ...] = AGES) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        ensure_webhook_tables(conn)
        for age in ages:
            conn.execute(
                "insert into stripe_raw.webhook_deliveries (received_at, event_id, outcome)"
                " values (now() - make_interval(days => %s), %s, 'applied')",
                (age, f"evt_{age}d"),
            )


def _kept(database_url: str) -> list[str]:
    return [
        row[0]
        for row in rows(
            database_url, "select event_id from stripe_raw.webhook_deliveries order by 1"
        )
    ]


def test_prune_deletes_rows_older_than_the_retention_only(database_url):
    _log_with_rows_aged(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert prune_deliveries(conn, 30) == 2
        assert prune_deliveries(conn, 30) == 0
    assert _kept(database_url) == ["evt_0d", "evt_29d", "evt_6d"]


def test_prune_without_a_delivery_log_does_nothing(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert prune_deliveries(conn, 30) == 0


def test_retention_setting_defaults_to_30_days_and_refuses_zero(monkeypatch):
    monkeypatch.delenv("WEBHOOK_DELIVERIES_RETENTION_DAYS", raising=False)
    assert load_settings().webhook_deliveries_retention_days == 30
    monkeypatch.setenv("WEBHOOK_DELIVERIES_RETENTION_DAYS", "7")
    assert load_settings().webhook_deliveries_retention_days == 7
    monkeypatch.setenv("WEBHOOK_DELIVERIES_RETENTION_DAYS", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "WEBHOOK_DELIVERIES_RETENTION_DAYS" in caught.value.one_line()


def _materialize(emulator, database_url: str, *, reconcile: bool) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [stripe_raw_tables],
        resources={
            "stripe": StripeResource(api_key=emulator.test_key, api_base=emulator.url),
            "warehouse": WarehouseResource(database_url=database_url),
        },
        run_config={"ops": {"stripe_raw_tables": {"config": {"reconcile": reconcile}}}},
    )


def _events_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = [
        m
        for m in result.asset_materializations_for_node("stripe_raw_tables")
        if m.asset_key == dg.AssetKey(["stripe_raw", "events"])
    ]
    return {name: value.value for name, value in event.metadata.items()}


def test_daily_reconcile_prunes_the_log_with_the_setting_and_other_runs_do_not(
    emulator, database_url, monkeypatch
):
    monkeypatch.setenv("WEBHOOK_DELIVERIES_RETENTION_DAYS", "5")
    _log_with_rows_aged(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into stripe_raw.webhook_deliveries (event_id, outcome, reason)"
            " values ('evt_failed', 'failed', 'PermissionsError: the Stripe key lacks X')"
        )
    incremental = _materialize(emulator, database_url, reconcile=False)
    assert incremental.success
    assert "webhook_deliveries_pruned" not in _events_metadata(incremental)
    assert _events_metadata(incremental)["webhook_events_failed_last_day"] == 1  # in the UI
    assert len(_kept(database_url)) == len(AGES) + 1
    reconcile = _materialize(emulator, database_url, reconcile=True)
    assert reconcile.success
    metadata = _events_metadata(reconcile)
    assert metadata["webhook_deliveries_pruned"] == 4
    assert metadata["webhook_events_failed_last_day"] == 1
    assert _kept(database_url) == ["evt_0d", "evt_failed"]


def test_a_log_from_before_failed_events_and_summary_rows_is_upgraded(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema stripe_raw")
        conn.execute(
            """
            create table stripe_raw.webhook_deliveries (
                received_at timestamptz not null default now(),
                event_id text null,
                event_type text null,
                outcome text not null check (outcome in ('applied', 'duplicate', 'rejected')),
                reason text null
            )
            """
        )
        conn.execute(
            "insert into stripe_raw.webhook_deliveries (event_id, outcome) values (%s, %s)",
            ("evt_a", "applied"),
        )
        ensure_webhook_tables(conn)
        ensure_webhook_tables(conn)  # idempotent: the second start changes nothing
        conn.execute(
            "insert into stripe_raw.webhook_deliveries (event_id, outcome) values (%s, %s)",
            ("evt_b", "failed"),
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into stripe_raw.webhook_deliveries (outcome) values ('other')")
    assert rows(
        database_url,
        "select event_id, outcome, delivery_count from stripe_raw.webhook_deliveries order by 1",
    ) == [("evt_a", "applied", 1), ("evt_b", "failed", 1)]
