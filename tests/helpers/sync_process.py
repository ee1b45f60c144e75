"""A sync in a child process, and the SIGKILL helpers of the crash and chaos tests."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg

CHILD = """
import sys
from orchestration.extract import sync_stripe
sync_stripe(sys.argv[1], sys.argv[2], api_base=sys.argv[3], max_rps=float(sys.argv[4]))
"""


def start_sync(database_url: str, emu, max_rps: float) -> subprocess.Popen:
    """sync_stripe in a child process (stderr discarded), so a test can SIGKILL it."""
    args = [database_url, emu.test_key, emu.url, str(max_rps)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stderr=subprocess.DEVNULL)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL after `delay` s; True if the sync was still running (so the kill hit it)."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def raw_row_count(database_url: str, table: str) -> int:
    """Rows of stripe_raw.`table`; 0 before the table exists."""
    with psycopg.connect(database_url) as conn:
        if conn.execute("select to_regclass(%s)", (f"stripe_raw.{table}",)).fetchone()[0] is None:
            return 0
        return conn.execute(f"select count(*) from stripe_raw.{table}").fetchone()[0]


def kill_once_rows(
    proc: subprocess.Popen, database_url: str, table: str, at_least: int, jitter: float
) -> bool:
    """SIGKILL a random instant (up to `jitter` s) after `table` holds `at_least` rows; True if
    the sync was still running then."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if raw_row_count(database_url, table) >= at_least:
            return kill_after(proc, random.uniform(0, jitter))  # noqa: S311
        time.sleep(0.02)
    return kill_after(proc, 0)


def backfill_done(database_url: str) -> bool | None:
    """The events state's backfill_done flag; None before the first sync wrote its state."""
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("select to_regclass('stripe_raw.sync_state')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute(
            "select backfill_done from stripe_raw.sync_state where object = 'events'"
        ).fetchone()
    return row[0] if row else None
