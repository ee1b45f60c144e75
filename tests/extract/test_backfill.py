"""Backfill ("import existing") against the emulator over HTTP and real Postgres."""

from __future__ import annotations

import logging

import psycopg
import pytest

from orchestration.extract import sync_stripe
from tests.extract.conftest import (
    TABLES,
    TEST_CUSTOMERS,
    assert_matches_emulator,
    assert_only_preflight_listed,
    duplicate_count,
    list_requests,
    raw_rows,
)

LEGACY_VERSION = "2025-02-24.acacia"  # before 2025-03-31: current_period_* on the subscription


def test_backfill_lands_every_object_exactly_once(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=TEST_CUSTOMERS, seed=11)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "backfill"
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0
    assert result.objects["customers"].rows == len(emu.objects("customers"))
    assert result.rate_limited == 0
    # Pages are full: far fewer requests than one per 50 objects.
    assert result.requests < result.total_objects / 50 + 200


def test_rerun_after_backfill_reads_only_events(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=300, seed=12)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    before = list_requests(emu)
    again = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert again.kind == "incremental"
    assert again.total_objects == 0
    assert_only_preflight_listed(before, list_requests(emu))
    assert_matches_emulator(database_url, emu)


@pytest.mark.parametrize("api_version", [LEGACY_VERSION, None], ids=["pre-basil", "current"])
def test_both_api_shapes_load(emulator_factory, database_url: str, api_version) -> None:
    emu = emulator_factory(customers=200, seed=13, api_version=api_version)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.tick(steps=20)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.events_applied > 0
    if api_version == LEGACY_VERSION:
        assert result.refetched > 0  # events in the old shape are re-read in ours
    assert_matches_emulator(database_url, emu)


def test_sync_state_records_mode_account_and_rows(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=100, seed=14)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select object, livemode, account_id, status, backfill_done, mode, rows, cursor"
            " from stripe_raw.sync_state order by object"
        ).fetchall()
    assert [r[0] for r in rows] == sorted([*TABLES, "events"])
    assert {(r[1], r[2], r[3], r[4], r[5]) for r in rows} == {
        (False, emu.account_id, "ok", True, "import-existing")
    }
    counts = {r[0]: r[6] for r in rows}
    assert counts["customers"] == len(emu.objects("customers"))


def test_reconcile_repairs_drift_and_flags_vanished_rows(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=200, seed=15)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    with psycopg.connect(database_url) as conn:
        # Drift: a row edited by hand, a row lost, a row Stripe no longer has.
        conn.execute(
            'update stripe_raw.customers set data = data || \'{"name": "drifted"}\','
            " snapshot_at = snapshot_at - interval '1 day'"
            " where id = (select min(id) from stripe_raw.customers)"
        )
        conn.execute(
            "delete from stripe_raw.invoices where id = (select min(id) from stripe_raw.invoices)"
        )
        conn.execute(
            "insert into stripe_raw.charges (id, livemode, created, data, snapshot_at)"
            " values ('ch_gone', false, now() - interval '1 year', '{\"id\": \"ch_gone\"}',"
            " now() - interval '1 day')"
        )
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000, reconcile=True)
    assert result.kind == "reconcile"
    assert result.objects["charges"].deleted == 1
    assert raw_rows(database_url, "charges")["ch_gone"][1] is True
    with psycopg.connect(database_url) as conn:  # not one of the emulator's deleted charges
        conn.execute("delete from stripe_raw.charges where id = 'ch_gone'")
    assert_matches_emulator(database_url, emu)


def test_backfill_logs_plain_progress_lines_without_a_terminal(
    emulator_factory, database_url, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator_factory(customers=100, seed=16)
    with caplog.at_level(logging.INFO, logger="stripe_sync.extract"):
        sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000, progress=True)
    lines = [r.getMessage() for r in caplog.records if "backfill imported" in r.getMessage()]
    assert lines and "customers" in lines[-1]
