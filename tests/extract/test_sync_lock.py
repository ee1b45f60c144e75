"""The sync lock is a session advisory lock on a connection of its own: when that connection
drops mid-sync, Postgres releases the lock, and the sync must stop rather than go on beside the
next one."""

from __future__ import annotations

import threading

import psycopg
import pytest

from orchestration.core.errors import SyncBusyError
from orchestration.extract import sync_stripe
from orchestration.extract.loader import SYNC_LOCK_KEY
from tests.extract.races import Writer
from tests.extract.stripe_proxy import StripeProxy
from tests.extract.test_concurrent_writers import wait_until

HOLDER = (
    "select pid from pg_locks where locktype = 'advisory' and granted and objsubid = 1"
    " and (classid::bigint << 32) | objid::bigint = %s"
)


def _is_free(database_url: str) -> bool:
    """Another sync could take the lock now (taken and given back at once)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        taken = conn.execute("select pg_try_advisory_lock(%s)", (SYNC_LOCK_KEY,)).fetchone()[0]
        if taken:
            conn.execute("select pg_advisory_unlock(%s)", (SYNC_LOCK_KEY,))
        return taken


@pytest.mark.parametrize("stage", ["backfill", "incremental"])
def test_a_sync_whose_lock_connection_dropped_stops_at_its_next_commit(
    emulator_factory, database_url: str, stage: str
) -> None:
    emu = emulator_factory(customers=300, seed=66)
    if stage == "incremental":
        sync_stripe(database_url, emu.test_key, api_base=emu.url, max_rps=1000)
        emu.tick(steps=30)

    def in_the_middle(path: str) -> bool:
        if stage == "incremental":
            return path.startswith("/v1/events?") and "ending_before" in path
        return path.startswith("/v1/invoices?") and "created" in path

    reached, release = threading.Event(), threading.Event()

    def hold(path: str) -> None:
        if in_the_middle(path) and not reached.is_set():
            reached.set()
            release.wait()

    proxy = StripeProxy(emu)
    proxy.hook = hold
    with proxy.running():
        sync = Writer(
            lambda: sync_stripe(database_url, emu.test_key, api_base=proxy.url, max_rps=1000)
        )
        sync.start()
        wait_until(lambda: reached.is_set() or not sync.is_alive())
        assert reached.is_set(), "the sync ended before the request it was to be held on"
        with psycopg.connect(database_url, autocommit=True) as admin:
            (holder,) = admin.execute(HOLDER, (SYNC_LOCK_KEY,)).fetchone()
            admin.execute("select pg_terminate_backend(%s)", (holder,))
        wait_until(lambda: _is_free(database_url))  # another sync could start now
        release.set()
        with pytest.raises(SyncBusyError, match="lost its lock"):
            sync.finish()
