"""Faults and crashes: injected 429/500/resets, and SIGKILL mid-backfill and mid-incremental,
each followed by a rerun, converge to exactly the emulator's data with no duplicates."""

from __future__ import annotations

from orchestration.extract import sync_stripe
from tests.extract.conftest import assert_matches_emulator, duplicate_count
from tests.helpers.sync_process import backfill_done as _backfill_done
from tests.helpers.sync_process import kill_once_rows as _kill_once_rows
from tests.helpers.sync_process import raw_row_count as _rows
from tests.helpers.sync_process import start_sync as _start_sync


def test_injected_faults_give_the_same_tables(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=1000, seed=31, fault_rate=0.1)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.retries > 0
    emu.tick(steps=50)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    emu.set_faults(0.0)
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_sigkill_mid_backfill_then_rerun_converges(emulator_factory, database_url: str) -> None:
    # 30 ms per request and a 60 req/s budget make the backfill last a few seconds.
    emu = emulator_factory(customers=3000, seed=32, latency_ms=30)
    hits = 0
    for attempt in range(3):
        proc = _start_sync(database_url, emu, max_rps=60)
        killed = _kill_once_rows(proc, database_url, "invoices", 1000 * (attempt + 1), 0.5)
        hits += killed and _backfill_done(database_url) is False
    assert hits, "no kill landed mid-backfill; lengthen the backfill"
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_sigkill_mid_incremental_then_rerun_converges(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=1000, seed=33)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    events_before = _rows(database_url, "events")
    emu.tick(steps=1500)
    emu.latency_ms = 40  # slows the replay so the kill lands inside it
    hits = 0
    for attempt in range(2):
        proc = _start_sync(database_url, emu, max_rps=30)
        hits += _kill_once_rows(
            proc, database_url, "events", events_before + 200 * (attempt + 1), 0.5
        )
    assert hits, "no kill landed mid-incremental; tick more"
    emu.latency_ms = 0
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0


def test_killed_backfill_resumes_instead_of_restarting(emulator_factory, database_url: str) -> None:
    emu = emulator_factory(customers=3000, seed=34, latency_ms=30)
    proc = _start_sync(database_url, emu, max_rps=60)
    assert _kill_once_rows(proc, database_url, "customers", 1000, 0.0)
    stored = _rows(database_url, "customers")
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.kind == "resumed-backfill"
    # Only what was not committed is read again (plus the pages in flight when killed).
    assert result.objects["customers"].objects <= len(emu.objects("customers")) - stored + 3000
    assert_matches_emulator(database_url, emu)


def test_paced_budget_meets_no_429_below_the_server_limit(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=500, seed=35, rate_limit=25)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url)  # test budget: 22 req/s
    assert result.rate_limited == 0
    assert_matches_emulator(database_url, emu)


def test_budget_above_the_server_limit_retries_every_429(emulator_factory, database_url) -> None:
    emu = emulator_factory(customers=500, seed=36, rate_limit=10)
    result = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=40)
    assert result.rate_limited > 0
    assert_matches_emulator(database_url, emu)  # no page dropped
