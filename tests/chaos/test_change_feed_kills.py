"""SIGKILLs of the build (its process group: the Python runner and dbt) and of the deliverer at
random moments across several builds; the change feed must come out as a warehouse built without
kills makes it, and the receiver must get every change, twice only when it was in flight.

Two warehouses sync the same emulator at the same clock. The calm one is built once per step. The
other is built in a child process killed at a random moment, then built again at the same as_of
until a build succeeds (a killed build is retried, never skipped: a skipped as_of would record
its changes at the next one); meanwhile deliverers in child processes are killed too.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from orchestration.delivery import Endpoint, deliver_changes
from orchestration.emulator import Emulator
from orchestration.extract import sync_stripe
from orchestration.transform.runner import build
from tests.chaos.conftest import FULL
from tests.delivery.receiver import Receiver, serve

STEPS = 5 if FULL else 2  # builds after the first, each after some lifecycle changes
CUSTOMERS = 300 if FULL else 40
START = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
DELIVERY_APP = "stripe-sync segment delivery"  # the deliverer's application_name
DBT_APP = "dbt"  # dbt-postgres's default application_name: a build's SQL

BUILD_CHILD = """
import sys
from datetime import datetime
from pathlib import Path
from orchestration.transform.runner import build
build(sys.argv[1], as_of=datetime.fromisoformat(sys.argv[2]), livemode=False,
      target_path=Path(sys.argv[3]))
"""

DELIVER_CHILD = """
import os, sys
from orchestration.delivery import Endpoint, deliver_changes
deliver_changes(sys.argv[1], Endpoint(sys.argv[2], os.environ["RECEIVER_SECRET"]))
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A Python child in its own process group (dbt's too), its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_after(proc: subprocess.Popen[bytes], delay: float) -> bool:
    """SIGKILLs the child's process group after `delay` s; True if it was still running."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _backends_of(url: str, application: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where datname = current_database()"
            " and application_name = %s and pid != pg_backend_pid()",
            (application,),
        ).fetchall()
    return {pid for (pid,) in rows}


def _no_backend_of(url: str, application: str) -> bool:
    return not _backends_of(url, application)


def _wait_for_new_backend(
    proc: subprocess.Popen[bytes], url: str, application: str, before: set[int]
) -> None:
    """Until the child has opened a connection of `application` not in `before`, or ended."""
    _wait_until(
        lambda: proc.poll() is not None or bool(_backends_of(url, application) - before),
        120,
        f"the child's first {application} connection",
    )


def _in_flight(url: str, endpoint: Endpoint) -> int | None:
    """The change after the receiver's committed cursor: the one a killed deliverer may have
    POSTed without recording it."""
    with psycopg.connect(url) as conn:
        cursor = 0  # a deliverer killed before it created its tables has moved no cursor
        if conn.execute("select to_regclass('stripe_raw.segment_delivery_state')").fetchone()[0]:
            row = conn.execute(
                "select last_change_id from stripe_raw.segment_delivery_state"
                " where endpoint_id = %s",
                (endpoint.id,),
            ).fetchone()
            cursor = row[0] if row else 0
        first = conn.execute(
            "select min(change_id) from stripe_segments.segment_changes where change_id > %s",
            (cursor,),
        ).fetchone()
    return first[0] if first else None


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


HISTORY = (
    "select * from stripe_segments.segment_membership_history"
    " order by segment, stripe_customer_id, entered_at"
)
FEED = "select * from stripe_segments.segment_changes order by change_id"


class _Killer:
    """Kills deliverers of one receiver at random moments and remembers what was in flight."""

    def __init__(self, url: str, receiver: Receiver, rng: random.Random) -> None:
        self.url = url
        self.receiver = receiver
        self.endpoint = Endpoint(receiver.url, receiver.secret)
        self.rng = rng
        self.kills = 0
        self.mid_feed = 0  # kills after the run's first POST
        self.in_flight: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        return _child(
            DELIVER_CHILD,
            self.url,
            self.receiver.url,
            env={"RECEIVER_SECRET": self.receiver.secret},
        )

    def kill(self, proc: subprocess.Popen[bytes], delay: float) -> None:
        """Kills the deliverer `delay` s after the receiver got its first POST (start-up takes
        a second or two, and a kill there tests nothing), if it still runs then."""
        before = len(self.receiver.deliveries)
        _wait_until(
            lambda: proc.poll() is not None or len(self.receiver.deliveries) > before,
            120,
            "the deliverer's first POST",
        )
        if not _kill_after(proc, delay):
            return
        self.kills += 1
        if len(self.receiver.deliveries) > before:
            self.mid_feed += 1
        # The killed client's backend rolls back (or finishes a commit already sent) and goes.
        _wait_until(lambda: _no_backend_of(self.url, DELIVERY_APP), 60, "the deliverer's backend")
        change_id = _in_flight(self.url, self.endpoint)
        if change_id is not None:
            self.in_flight.append(change_id)


def test_killed_builds_and_deliverers_leave_the_feed_whole(
    emulator_factory: Callable[..., Emulator],
    database_factory: Callable[[], str],
    tmp_path: Path,
) -> None:
    killed_url, calm_url = database_factory(), database_factory()
    emu = emulator_factory(customers=CUSTOMERS, seed=29, now=int(START.timestamp()))
    rng = random.Random(29)  # noqa: S311 - reproducible moments, not secrets
    build_kills, build_attempts = 0, 0
    # Each POST takes a moment, so a deliverer is killed mid-feed rather than after it.
    with serve(Receiver(delay=0.02)) as receiver:
        killer = _Killer(killed_url, receiver, rng)
        for step in range(STEPS + 1):
            if step:
                emu.advance_clock(int(timedelta(hours=rng.uniform(3, 30)).total_seconds()))
                emu.tick(steps=rng.randint(15, 40))
            for url in (killed_url, calm_url):
                sync_stripe(url, emu.test_key, api_base=emu.url, max_rps=1000)
            as_of = datetime.fromtimestamp(emu.now(), tz=UTC)
            # The calm warehouse is the reference: the production build (models and the
            # reader_guard checks) gives it the same tables; the killed one runs every test.
            calm = tmp_path / "calm"
            calm_started = time.monotonic()
            build(calm_url, as_of=as_of, livemode=False, target_path=calm, selector="incremental")
            calm_s = time.monotonic() - calm_started

            # A build killed at a random moment, a deliverer killed beside it (once a feed exists).
            dbt_before = _backends_of(killed_url, DBT_APP)
            building = _child(BUILD_CHILD, killed_url, as_of.isoformat(), str(tmp_path / "killed"))
            delivering = killer.start() if step else None
            if delivering is not None:
                killer.kill(delivering, rng.uniform(0.0, 0.5))
            build_attempts += 1
            # At a random moment of the build's SQL, not of its start-up (a kill there tests
            # nothing), within the time the calm build took: fewer tests and no process start-up,
            # so the killed build's SQL lasts longer. A fixed range of delays missed every build on
            # a fast machine.
            _wait_for_new_backend(building, killed_url, DBT_APP, dbt_before)
            build_kills += _kill_after(building, rng.uniform(0.0, 0.8) * calm_s)
            # Retried at the same as_of until it succeeds, as a scheduler retries a failed run.
            build(killed_url, as_of=as_of, livemode=False, target_path=tmp_path / "killed")
            killer.kill(killer.start(), rng.uniform(0.0, 0.5))

        result = deliver_changes(killed_url, killer.endpoint)
    print(
        f"{build_kills} of {build_attempts} builds and {killer.kills} deliverers killed"
        f" ({killer.mid_feed} mid-feed);"
        f" in flight at a kill: {killer.in_flight}; POSTs cut short by a kill: {receiver.cut}"
    )
    assert build_kills >= 1, "no kill hit a running build"
    assert killer.mid_feed >= 1, "no kill hit a deliverer in the middle of the feed"

    # The same history and the same feed, row for row, as the warehouse built without kills.
    assert _rows(killed_url, HISTORY) == _rows(calm_url, HISTORY)
    feed = _rows(killed_url, FEED)
    assert feed == _rows(calm_url, FEED)
    ids = [int(str(row[0])) for row in feed]
    assert ids == list(range(1, len(ids) + 1)), "a gap or a repeat in change_id"

    # Every change arrived, in order, each once but for the changes in flight at a kill.
    assert result.pending == 0 and not result.failed, result
    assert receiver.unsigned == 0
    received = receiver.received_ids()
    assert set(received) == set(ids)
    assert sorted(dict.fromkeys(received)) == list(dict.fromkeys(received)), "out of order"
    for change_id in set(received):
        extra = received.count(change_id) - 1
        assert extra <= killer.in_flight.count(change_id), (change_id, killer.in_flight)
