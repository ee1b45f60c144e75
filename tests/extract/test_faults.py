"""Faults and crashes: injected 429/500/resets, and SIGKILL mid-backfill and mid-incremental,
each followed by a rerun, converge to exactly the emulator's data with no duplicates."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg

from orchestration.extract import sync_stripe
from tests.extract.conftest import assert_matches_emulator, duplicate_count

CHILD = """
import sys
from orchestration.extract import sync_stripe
sync_stripe(sys.argv[1], sys.argv[2], api_base=sys.argv[3], max_rps=float(sys.argv[4]))
"""


def _start_sync(database_url: str, emu, max_rps: float) -> subprocess.Popen:
    args = [database_url, emu.test_key, emu.url, str(max_rps)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stderr=subprocess.DEVNULL)


def _kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL after `delay` s; True if the sync was still running (so the kill hit it)."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _rows(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        if conn.execute("select to_regclass(%s)", (f"stripe_raw.{table}",)).fetchone()[0] is None:
            return 0
        return conn.execute(f"select count(*) from stripe_raw.{table}").fetchone()[0]


def _kill_once_rows(
    proc: subprocess.Popen, database_url: str, table: str, at_least: int, jitter: float
) -> bool:
    """SIGKILL a random instant (up to `jitter` s) after `table` holds `at_least` rows; True if
    the sync was still running then."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if _rows(database_url, table) >= at_least:
            return _kill_after(proc, random.uniform(0, jitter))  # noqa: S311
        time.sleep(0.02)
    return _kill_after(proc, 0)


def _backfill_done(database_url: str) -> bool | None:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("select to_regclass('stripe_raw.sync_state')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute(
            "select backfill_done from stripe_raw.sync_state where object = 'events'"
        ).fetchone()
    return row[0] if row else None


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
