"""Stripe's clock jumps 31 days past the last sync, so the events since then have expired: the
next sync notices, re-backfills on its own, and converges; a kill during that re-backfill too."""

from __future__ import annotations

from orchestration.extract import sync_stripe
from tests.chaos.conftest import CLOCK_CUSTOMERS, FULL
from tests.extract.conftest import assert_matches_emulator, duplicate_count
from tests.helpers.sync_process import backfill_done, kill_after, start_sync

DAYS_31 = 31 * 86400


def test_expired_events_trigger_a_rebackfill_that_converges(emulator_factory, database_url):
    emu = emulator_factory(customers=CLOCK_CUSTOMERS, seed=94)
    first = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert first.kind == "backfill"
    emu.tick(steps=100)  # changes whose events will have expired by the next sync
    emu.advance_clock(DAYS_31)
    emu.tick(steps=100)

    if FULL:  # a kill inside the re-backfill: the rerun resumes it
        emu.latency_ms = 20
        proc = start_sync(database_url, emu, max_rps=60)
        kill_after(proc, 2.0)
        emu.latency_ms = 0
        if backfill_done(database_url) is False:
            resumed = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
            assert resumed.kind == "resumed-backfill"

    again = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    if not FULL:
        assert again.kind == "re-backfill", again
        assert any("running a fresh backfill" in w for w in again.warnings), again.warnings
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0

    emu.tick(steps=50)  # and incremental syncs work again afterwards
    after = sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert after.kind == "incremental"
    assert_matches_emulator(database_url, emu)
