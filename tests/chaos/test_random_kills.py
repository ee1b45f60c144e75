"""Repeated SIGKILLs of the sync at random moments (backfill, resume, incremental replay), with the
account changing in between; one clean rerun then leaves exactly the emulator's data."""

from __future__ import annotations

import random

from orchestration.extract import sync_stripe
from tests.chaos.conftest import FULL, KILL_CUSTOMERS, KILLS
from tests.extract.conftest import assert_matches_emulator, duplicate_count
from tests.helpers.sync_process import backfill_done, kill_after, start_sync


def test_random_sigkills_then_rerun_converge(emulator_factory, database_url: str) -> None:
    # 20 ms per request and a 60 req/s budget stretch the backfill over several kills.
    emu = emulator_factory(customers=KILL_CUSTOMERS, seed=91, latency_ms=20)
    rng = random.Random(91)  # noqa: S311 - reproducible moments, not secrets
    landed, attempts, phases = 0, 0, {"backfill": 0, "incremental": 0}
    while landed < KILLS and attempts < KILLS * 4:
        attempts += 1
        if backfill_done(database_url):
            emu.tick(steps=rng.randint(20, 300))  # work for the next incremental sync
        phase = "incremental" if backfill_done(database_url) else "backfill"
        proc = start_sync(database_url, emu, max_rps=60)
        # Start-up (imports, preflight) takes about a second: some kills land inside it.
        if kill_after(proc, rng.uniform(0.3, 3.5 if phase == "backfill" else 2.0)):
            landed += 1
            phases[phase] += 1
    print(f"{landed} SIGKILLs landed in {attempts} attempts: {phases}")
    assert landed >= KILLS, f"only {landed} of {attempts} kills hit a running sync"
    assert phases["backfill"], phases
    if FULL:
        assert phases["incremental"], phases

    emu.tick(steps=50)
    sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
    assert backfill_done(database_url) is True
    assert_matches_emulator(database_url, emu)
    assert duplicate_count(database_url) == 0
