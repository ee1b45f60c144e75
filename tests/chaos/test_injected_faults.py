"""10 % of requests fail (429, 500, connection resets, timeouts): the backfill and the incremental
sync still write exactly what a fault-free sync of the same account writes."""

from __future__ import annotations

import psycopg
from psycopg import sql

from orchestration.extract import sync_stripe
from tests.chaos.conftest import FAULT_CUSTOMERS
from tests.extract.conftest import TABLES, assert_matches_emulator, duplicate_count

KINDS = ("429", "500", "reset", "timeout")


def _snapshot(database_url: str) -> dict[str, dict[str, tuple]]:
    """Every live raw row, without when it was synced. (Rows flagged deleted differ on purpose: a
    sync that saw an object before its deletion keeps it flagged, a later first sync never sees
    it; assert_matches_emulator checks those flags.)"""
    out = {}
    with psycopg.connect(database_url) as conn:
        for table in TABLES:
            query = sql.SQL(
                "select id, livemode, created, data from stripe_raw.{} where not is_deleted"
            )
            rows = conn.execute(query.format(sql.Identifier(table))).fetchall()
            out[table] = {row[0]: row[1:] for row in rows}
    return out


def test_ten_percent_faults_give_identical_tables(emulator_factory, database_factory) -> None:
    emu = emulator_factory(customers=FAULT_CUSTOMERS, seed=92, fault_rate=0.1, fault_kinds=KINDS)
    faulty, clean = database_factory(), database_factory()

    result = sync_stripe(faulty, emu.test_key, api_base=emu.url, max_rps=1000)
    assert result.retries > 0
    emu.tick(steps=100)
    again = sync_stripe(faulty, emu.test_key, api_base=emu.url, max_rps=1000)
    assert again.kind == "incremental"
    faults = emu.stats()
    assert result.retries + again.retries > 0, faults

    emu.set_faults(0.0)
    sync_stripe(clean, emu.test_key, api_base=emu.url, max_rps=1000)
    assert _snapshot(faulty) == _snapshot(clean)
    assert_matches_emulator(faulty, emu)
    assert duplicate_count(faulty) == 0
