"""A build SIGKILLed between two merges of the customer-keyed tables leaves some tables merged and
the others as they were; the next incremental build must converge to the full-refresh result.

The kill lands deterministically: a lock held on one table stops the build at that table's merge
(the tables before it have committed theirs), the dbt process is killed there, then the lock is
released and the killed build's transaction can only roll back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import psycopg
import pytest

from orchestration.core.warehouse import dbt_env
from orchestration.extract import loader
from orchestration.transform.runner import PROFILES_DIR, PROJECT_DIR, build
from tests.chaos.conftest import FULL

# The account and the comparison live with the equivalence test (tests/dbt is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt"))
from test_incremental_equivalence import (
    Account,
    assert_same_tables,
    copy_raw_tables,
    table_rows,
)

# Where the build is stopped: after customer_fields and some segments merged, or after every
# segment table merged but before segment_memberships.
BLOCKED = (
    [
        "stripe_segments.current_trials",
        "stripe_segments.segment_memberships",
        "stripe.customer_feed",
    ]
    if FULL
    else ["stripe_segments.current_trials"]
)


@pytest.fixture
def warehouses(database_factory: Callable[[], str]) -> Iterator[tuple[str, str]]:
    urls = (database_factory(), database_factory())
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            loader.ensure_raw_tables(conn)
    yield urls


def _start_build(url: str, account: Account, target: Path) -> subprocess.Popen[str]:
    """`dbt build --selector incremental` as its own process group, as stripe-sync runs it."""
    dbt = Path(sys.executable).parent / "dbt"
    build_vars = json.dumps(
        {"as_of": account.now.astimezone(UTC).isoformat(), "livemode": account.livemode}
    )
    command = [
        str(dbt),
        "--no-use-colors",
        "build",
        "--vars",
        build_vars,
        "--selector",
        "incremental",
        "--profiles-dir",
        str(PROFILES_DIR),
        "--project-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    env = {**os.environ, **dbt_env(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _waiting_on(url: str, relation: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "select count(*) from pg_locks where relation = %s::regclass and not granted",
                (relation,),
            ).fetchone()[0]
        )


def _other_backends(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and pid != pg_backend_pid()"
        ).fetchone()[0]


def _took_snapshot(url: str, account: Account) -> bool:
    """Whether the build at account.now committed its mrr_daily merge (and so its snapshot)."""
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "select count(*) from stripe_staging.customer_keyed_state"
                " where model = 'mrr_daily' and as_of = %s",
                (account.now,),
            ).fetchone()[0]
        )


def _full_rebuild(url: str, account: Account, tmp_path: Path) -> None:
    build(
        url,
        as_of=account.now,
        livemode=False,
        target_path=tmp_path / "rebuilt",
        selector="incremental",
        full_refresh=True,
    )


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("blocked", BLOCKED)
def test_build_killed_between_merges_converges_on_next_build(
    warehouses: tuple[str, str], tmp_path: Path, blocked: str
) -> None:
    incremental_url, rebuilt_url = warehouses
    account = Account.with_customers(incremental_url, 7, customers=20)
    target = tmp_path / "incremental"
    build(
        incremental_url,
        as_of=account.now,
        livemode=False,
        target_path=target,
        selector="incremental",
    )
    # The rebuilt warehouse takes the same first build: mrr_daily keeps each build's day as a
    # snapshot, which no later rebuild can reproduce, so both must have taken it.
    copy_raw_tables(incremental_url, rebuilt_url)
    _full_rebuild(rebuilt_url, account, tmp_path)

    # Changes and time passing, then a build stopped at the blocked table's merge and killed.
    account.now += timedelta(days=3)
    for _ in range(3):
        account.random_batch()
    with psycopg.connect(incremental_url) as lock:
        lock.execute(f"lock table {blocked} in access exclusive mode")
        process = _start_build(incremental_url, account, target)
        try:
            _wait_until(lambda: _waiting_on(incremental_url, blocked), 600, f"a merge of {blocked}")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        lock.rollback()
    # The killed build's backends notice their client is gone and roll back.
    _wait_until(lambda: _other_backends(incremental_url) == 0, 120, "the killed build's backends")
    with psycopg.connect(incremental_url) as conn:
        merged = conn.execute(
            "select count(*) from stripe_staging.customer_keyed_state where as_of = %s",
            (account.now,),
        ).fetchone()[0]
    assert merged > 0, "no table merged before the kill: the kill came too early to test anything"
    if _took_snapshot(incremental_url, account):
        # The killed build's mrr_daily merge committed: its day and the days it reconstructed are
        # history now, so the rebuilt warehouse takes that build too (on the same raw rows).
        copy_raw_tables(incremental_url, rebuilt_url)
        _full_rebuild(rebuilt_url, account, tmp_path)

    # More changes, then the next build must give the full rebuild's tables.
    account.random_batch()
    build(
        incremental_url,
        as_of=account.now,
        livemode=False,
        target_path=target,
        selector="incremental",
    )
    copy_raw_tables(incremental_url, rebuilt_url)
    _full_rebuild(rebuilt_url, account, tmp_path)
    incremental = table_rows(incremental_url)
    assert_same_tables(incremental, rebuilt_url, f"after a kill at {blocked}")
