"""Benchmark of `dbt build` (fields, feed, segments) on N generated customers: median seconds.

Generates realistic raw Stripe JSON directly in Postgres (generate_series + jsonb_build_object) in a
scratch database, then, with a fixed as_of: the first build (everything, unit and data tests
included), full rebuilds (`--full-refresh` of the production selector) and incremental builds (the
`incremental` selector, a fresh dbt process each) after K = 0, 10, 100 and 1,000 changed raw rows,
then the same K through the resident builder's warm dbt (transform/resident.py: the project parsed
once, its `incremental_warm` selector), the build a webhook delivery waits for. For each fresh
incremental build it lists the sequential scans of tables over 10,000 rows (pg_stat_user_tables):
the incremental path should find the touched customers through indexes.

    .venv/bin/python bench/dbt_bench.py              # 10k and 100k customers
    .venv/bin/python bench/dbt_bench.py --quick      # 2k customers
    .venv/bin/python bench/dbt_bench.py --customers 50000 --runs 5

`--account emulator` builds the emulator's account instead (backfilled through a sync at no
latency: objects in the API's shape with their histories, where the generated rows give each
customer one subscription, one invoice and three events), at the current time: the first build
(its MRR history reconstructed) and the full rebuilds only.

    .venv/bin/python bench/dbt_bench.py --account emulator --customers 100000 [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import (
    drop_database,
    emulator_file,
    emulator_process,
    fresh_database,
    print_table,
    setup_backfill,
    table,
    write_results,
)

from orchestration.core.warehouse import with_database
from orchestration.embedded.environment import server_url_for_tests
from orchestration.transform.resident import WARM_SELECTOR, WarmDbt
from orchestration.transform.runner import BuildResult, build, ensure_raw_tables

AS_OF = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)

# One statement per raw table; __N__ is the number of customers. Customer i has one subscription
# (a second, older canceled one for every 10th), two charges, one invoice, three events and one
# activity row.
GENERATE_SQL = """
insert into stripe_raw.products (id, livemode, created, data, snapshot_at)
select
    'prod_' || k, false, timestamptz '2025-01-01',
    jsonb_build_object('id', 'prod_' || k, 'object', 'product', 'name', 'Plan ' || k,
        'active', true, 'created', 1735689600, 'livemode', false, 'metadata', '{}'::jsonb),
    now()
from generate_series(0, 4) as k;

insert into stripe_raw.prices (id, livemode, created, data, snapshot_at)
select
    'price_' || k, false, timestamptz '2025-01-01',
    jsonb_build_object(
        'id', 'price_' || k, 'object', 'price', 'active', true, 'billing_scheme', 'per_unit',
        'currency', case when k = 4 then 'jpy' else 'usd' end, 'livemode', false,
        'nickname', 'Plan ' || k,
        'product', 'prod_' || k, 'type', 'recurring',
        'unit_amount', (array[1900, 4900, 49000, 1500, 5000])[k + 1],
        'recurring', jsonb_build_object(
            'interval', (array['month', 'month', 'year', 'week', 'month'])[k + 1],
            'interval_count', case when k = 1 then 3 else 1 end,
            'usage_type', 'licensed')),
    now()
from generate_series(0, 4) as k;

insert into stripe_raw.customers (id, livemode, created, data, is_deleted, snapshot_at, synced_at)
select
    'cus_' || lpad(i::text, 8, '0'), false, created_at,
    jsonb_build_object(
        'id', 'cus_' || lpad(i::text, 8, '0'), 'object', 'customer', 'balance', 0,
        'created', extract(epoch from created_at)::bigint,
        'currency', case when i % 5 = 4 then 'jpy' else 'usd' end,
        'delinquent', i % 50 = 0, 'description', case when i % 4 = 0 then 'VIP' end,
        'email', 'user' || i || '@example.com', 'name', 'User ' || i,
        'phone', '+1555' || lpad(i::text, 7, '0'), 'livemode', false, 'metadata', '{}'::jsonb,
        'address', jsonb_build_object(
            'line1', i || ' Main St', 'line2', case when i % 3 = 0 then 'Apt ' || i % 100 end,
            'city', 'Springfield', 'state', 'IL', 'country', 'US', 'postal_code', '62701'),
        'invoice_settings', jsonb_build_object('default_payment_method', null),
        'preferred_locales', '[]'::jsonb, 'tax_exempt', 'none'),
    i % 200 = 0, now(), now()
from generate_series(1, __N__) as i,
    lateral (select timestamptz '2026-01-01' + (i % 300) * interval '1 day' as created_at) as t;

insert into stripe_raw.subscriptions (id, livemode, created, data, snapshot_at)
select
    'sub_' || lpad(i::text, 8, '0') || '_' || s, false, created_at,
    jsonb_build_object(
        'id', 'sub_' || lpad(i::text, 8, '0') || '_' || s, 'object', 'subscription',
        'customer', 'cus_' || lpad(i::text, 8, '0'), 'status', status,
        'created', extract(epoch from created_at)::bigint,
        'currency', prices.data ->> 'currency',
        'cancel_at_period_end', i % 11 = 0,
        'canceled_at', case when status = 'canceled' then created_epoch + 86400 end,
        'trial_start', case when status = 'trialing' then created_epoch end,
        'trial_end', case when status = 'trialing' then created_epoch + 14 * 86400 end,
        'livemode', false, 'metadata', '{}'::jsonb,
        'discounts', case when i % 7 = 0 then jsonb_build_array(jsonb_build_object(
            'id', 'di_' || i, 'object', 'discount', 'start', created_epoch, 'end', null,
            'source', jsonb_build_object('type', 'coupon', 'coupon', jsonb_build_object(
                'id', 'SAVE20', 'object', 'coupon', 'percent_off', 20, 'amount_off', null,
                'duration', 'forever', 'duration_in_months', null)))) else '[]'::jsonb end,
        'items', jsonb_build_object('object', 'list', 'has_more', false, 'data', jsonb_build_array(
            jsonb_build_object(
                'id', 'si_' || lpad(i::text, 8, '0') || '_' || s, 'object', 'subscription_item',
                'quantity', 1 + i % 3, 'price', prices.data,
                'current_period_start', extract(epoch from timestamptz '2026-11-01')::bigint,
                'current_period_end', extract(epoch from timestamptz '2026-12-01')::bigint)))),
    now()
from generate_series(1, __N__) as i
cross join generate_series(1, 2) as s
inner join stripe_raw.prices on prices.id = 'price_' || (i % 5)
cross join lateral (
    select
        timestamptz '2026-02-01' + (i % 280) * interval '1 day' - (s - 1) * interval '30 days'
            as created_at,
        case
            when s = 2 then 'canceled'
            else (array['active', 'active', 'active', 'active', 'trialing', 'past_due',
                'canceled', 'active', 'unpaid', 'active'])[i % 10 + 1]
        end as status
) as t
cross join lateral (select extract(epoch from t.created_at)::bigint as created_epoch) as e
where s = 1 or i % 10 = 0;

insert into stripe_raw.charges (id, livemode, created, data, snapshot_at)
select
    'ch_' || lpad(i::text, 8, '0') || '_' || c, false, created_at,
    jsonb_build_object(
        'id', 'ch_' || lpad(i::text, 8, '0') || '_' || c, 'object', 'charge',
        'customer', 'cus_' || lpad(i::text, 8, '0'),
        'amount', 1900 + (i % 5) * 1000, 'amount_refunded', 0, 'currency', 'usd',
        'created', extract(epoch from created_at)::bigint, 'description', 'Subscription update',
        'status', case when c = 2 and i % 9 = 0 then 'failed' else 'succeeded' end,
        'paid', true, 'refunded', false, 'livemode', false),
    now()
from generate_series(1, __N__) as i
cross join generate_series(1, 2) as c
cross join lateral (
    select timestamptz '2026-10-01' + (i % 40) * interval '1 day' + c * interval '1 hour'
        as created_at
) as t;

insert into stripe_raw.invoices (id, livemode, created, data, snapshot_at)
select
    'in_' || lpad(i::text, 8, '0'), false, timestamptz '2026-11-01',
    jsonb_build_object(
        'id', 'in_' || lpad(i::text, 8, '0'), 'object', 'invoice',
        'customer', 'cus_' || lpad(i::text, 8, '0'), 'amount_due', 4900, 'amount_paid', 4900,
        'currency', 'usd', 'status', 'paid', 'total', 4900, 'livemode', false,
        'parent', jsonb_build_object('type', 'subscription_details', 'subscription_details',
            jsonb_build_object('subscription', 'sub_' || lpad(i::text, 8, '0') || '_1'))),
    now()
from generate_series(1, __N__) as i;

insert into stripe_raw.events
    (id, livemode, created, data, snapshot_at, type, object_id, api_version)
select
    'evt_' || lpad(i::text, 8, '0') || '_' || e, false,
    timestamptz '2026-11-01' + e * interval '1 hour',
    jsonb_build_object(
        'id', 'evt_' || lpad(i::text, 8, '0') || '_' || e, 'object', 'event',
        'api_version', '2026-10-28.endive', 'livemode', false,
        'created', extract(epoch from timestamptz '2026-11-01')::bigint + e * 3600,
        'type', (array['customer.subscription.created', 'invoice.paid', 'charge.succeeded'])[e],
        'data', jsonb_build_object('object', case e
            when 1 then (select data from stripe_raw.subscriptions
                         where id = 'sub_' || lpad(i::text, 8, '0') || '_1')
            when 2 then (select data from stripe_raw.invoices
                         where id = 'in_' || lpad(i::text, 8, '0'))
            else (select data from stripe_raw.charges
                  where id = 'ch_' || lpad(i::text, 8, '0') || '_1')
        end)),
    now(),
    (array['customer.subscription.created', 'invoice.paid', 'charge.succeeded'])[e],
    (array['sub_', 'in_', 'ch_'])[e] || lpad(i::text, 8, '0') || (array['_1', '', '_1'])[e],
    '2026-10-28.endive'
from generate_series(1, __N__) as i
cross join generate_series(1, 3) as e;

insert into stripe_raw.activity_events (stripe_customer_id, customer_email, occurred_at)
select
    case when i % 2 = 0 then 'cus_' || lpad(i::text, 8, '0') end,
    case when i % 2 = 1 then 'USER' || i || '@Example.com' end,
    timestamptz '2026-11-20' - (i % 30) * interval '1 day'
from generate_series(1, __N__) as i;

insert into stripe_raw.sync_state (object, livemode, account_id, status, last_success_at, rows)
select object, false, 'acct_bench', 'ok', timestamptz '2026-11-20 11:00', __N__
from unnest(array['customers', 'subscriptions', 'invoices', 'charges', 'prices', 'products',
    'checkout_sessions', 'events']) as object;

analyze;
"""


def generate(database_url: str, customers: int) -> float:
    """Creates the raw tables and fills them; returns the seconds it took."""
    started = time.monotonic()
    ensure_raw_tables(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in GENERATE_SQL.split(";\n\n"):
            if statement.strip():
                conn.execute(statement.replace("__N__", str(int(customers))))
    return time.monotonic() - started


# K changed raw rows, as a sync writes them (synced_at = now()): half of them customer records
# (a new name), a quarter subscription statuses, a quarter new activity rows. __K__ is K, __N__ the
# number of customers; __R__ varies the changed customers from one run to the next.
CHANGES_SQL = """
update stripe_raw.customers
set data = jsonb_set(data, '{name}', to_jsonb('Renamed ' || id)), synced_at = now()
where id in (
    select 'cus_' || lpad((1 + (i::bigint * 7919 + __R__) % __N__)::text, 8, '0')
    from generate_series(1, __K__ / 2) as i
);

update stripe_raw.subscriptions
set
    data = jsonb_set(data, '{status}', to_jsonb(case data ->> 'status'
        when 'active' then 'past_due' else 'active' end)),
    synced_at = now()
where id in (
    select 'sub_' || lpad((1 + (i::bigint * 104729 + __R__) % __N__)::text, 8, '0') || '_1'
    from generate_series(1, __K__ / 4) as i
);

insert into stripe_raw.activity_events (stripe_customer_id, customer_email, occurred_at)
select
    'cus_' || lpad((1 + (i::bigint * 15485863 + __R__) % __N__)::text, 8, '0'), null,
    timestamptz '2026-11-20 11:00'
from generate_series(1, __K__ / 4) as i
"""

# Tables smaller than this may be scanned whole on any path (prices, products, state, seeds).
BIG_TABLE_ROWS = 10_000


def change(database_url: str, customers: int, changes: int, run: int) -> None:
    """Writes `changes` raw rows as a sync would."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in CHANGES_SQL.split(";\n\n"):
            conn.execute(
                statement.replace("__N__", str(int(customers)))
                .replace("__K__", str(int(changes)))
                .replace("__R__", str(run * 31))
            )


def seq_scans(database_url: str) -> dict[str, tuple[int, int]]:
    """Sequential scans so far and live rows, per table of the project's schemas."""
    time.sleep(1.2)  # table statistics reach pg_stat_user_tables within a second
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select schemaname || '.' || relname, seq_scan, n_live_tup from pg_stat_user_tables"
            " where schemaname in ('stripe_raw', 'stripe_staging', 'stripe', 'stripe_segments')"
        ).fetchall()
    return {name: (scans, live) for name, scans, live in rows}


def big_scans(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Tables over BIG_TABLE_ROWS rows scanned sequentially between two snapshots."""
    return sorted(
        f"{name} x{scans - before.get(name, (0, 0))[0]}"
        for name, (scans, live) in after.items()
        if live > BIG_TABLE_ROWS and scans > before.get(name, (0, 0))[0]
    )


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def children_cpu() -> float:
    """CPU seconds of the finished child processes (the dbt processes): steadier than wall time
    on a shared machine, though Postgres's own work is not in it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench(server_url: str, customers: int, runs: int) -> dict[str, list[float]]:
    """Builds on a fresh database of `customers` customers; returns the durations per kind."""
    name = f"stripe_sync_bench_{uuid.uuid4().hex[:8]}"
    admin_url = with_database(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    durations: dict[str, list[float]] = {}

    def record(kind: str, seconds: float, note: str = "") -> None:
        durations.setdefault(kind, []).append(seconds)
        print(f"{customers:>7} customers: {kind}: {seconds:.1f} s {note}".rstrip(), flush=True)

    try:
        seconds = generate(url, customers)
        print(f"{customers:>7} customers: generated raw data in {seconds:.1f} s", flush=True)
        with tempfile.TemporaryDirectory() as target:
            target_path = Path(target)
            record(
                "first build, all tests",
                timed(lambda: build(url, as_of=AS_OF, livemode=False, target_path=target_path)),
            )
            for _ in range(runs):
                record(
                    "full rebuild",
                    timed(
                        lambda: build(
                            url,
                            as_of=AS_OF,
                            livemode=False,
                            target_path=target_path,
                            selector="incremental",
                            full_refresh=True,
                        )
                    ),
                )
            for changes in (0, 10, 100, 1000):
                for run in range(runs):
                    change(url, customers, changes, run)
                    before = seq_scans(url)
                    cpu = children_cpu()
                    seconds = timed(
                        lambda: build(
                            url,
                            as_of=AS_OF,
                            livemode=False,
                            target_path=target_path,
                            selector="incremental",
                        )
                    )
                    cpu = children_cpu() - cpu
                    scans = big_scans(before, seq_scans(url))
                    record(f"incremental, K={changes}", seconds, f"seq scans: {scans or 'none'}")
                    record(f"incremental, K={changes}, dbt CPU", cpu)
            warm_builds(url, customers, runs, target_path, record)
        return durations
    finally:
        drop_database(server_url, name)


def emulator_account_bench(
    customers: int, runs: int, data_dir: str | None
) -> dict[str, list[float]]:
    """The first build and `runs` full rebuilds of the emulator's account of `customers`
    customers (incremental_bench's: seed 9), at the current time."""
    durations: dict[str, list[float]] = {}

    def record(kind: str, action: Callable[[], BuildResult]) -> None:
        started = time.monotonic()
        result = action()
        seconds = time.monotonic() - started
        durations.setdefault(kind, []).append(seconds)
        slowest = sorted(result.nodes, key=lambda n: n.execution_time, reverse=True)[:6]
        print(
            f"{customers:>7} customers (emulator): {kind}: {seconds:.1f} s; slowest: "
            + ", ".join(f"{n.name} {n.execution_time:.0f} s" for n in slowest),
            flush=True,
        )

    options: dict[str, object] = {"customers": customers, "seed": 9}
    if data_dir:
        options["db_path"] = emulator_file(data_dir, customers, 9)
    with (
        emulator_process(**options) as emu,
        fresh_database() as url,
        tempfile.TemporaryDirectory() as target,
    ):
        backfill = setup_backfill(emu, url, latency_ms=0.0, server_limit=None)
        print(f"{customers:>7} customers (emulator): backfill {backfill['objects']:,} objects in "
              f"{backfill['wall_s']:.0f} s", flush=True)  # fmt: skip
        target_path = Path(target)
        record("first build", lambda: build(url, as_of=None, livemode=False,
                                            target_path=target_path))  # fmt: skip
        for _ in range(runs):
            record("full rebuild", lambda: build(
                url, as_of=None, livemode=False, target_path=target_path,
                selector="incremental", full_refresh=True))  # fmt: skip
    return durations


def warm_builds(
    url: str, customers: int, runs: int, target_path: Path, record: Callable[[str, float], None]
) -> None:
    """The resident builder's builds after K changes: one dbt parsed once, in this process."""
    warm = WarmDbt()

    def warm_build() -> object:
        return build(url, as_of=AS_OF, livemode=False, target_path=target_path,
                     selector=WARM_SELECTOR, dbt=warm)  # fmt: skip

    record("warm incremental, first (parses the project)", timed(warm_build))
    for changes in (0, 10, 100, 1000):
        for run in range(runs):
            change(url, customers, changes, runs + run)  # other customers than the fresh runs'
            record(f"warm incremental, K={changes}", timed(warm_build))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 customers")
    parser.add_argument("--customers", type=int, nargs="+", default=None)
    parser.add_argument("--runs", type=int, default=None, help="3 (1 with --quick)")
    parser.add_argument(
        "--account",
        choices=["generated", "emulator"],
        default="generated",
        help="generated raw rows (the default) or the emulator's account, backfilled",
    )
    parser.add_argument("--data-dir", default=None, help="keep the emulator's data files here")
    parser.add_argument("--results", default="dbt_bench", help="bench/results/NAME.json")
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    args.runs = args.runs or (1 if args.quick else 3)
    sizes = args.customers or ([2_000] if args.quick else [10_000, 100_000])
    server_url = server_url_for_tests(
        os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    )
    if args.account == "emulator":
        results = {n: emulator_account_bench(n, args.runs, args.data_dir) for n in sizes}
    else:
        results = {n: bench(server_url, n, args.runs) for n in sizes}
    headers = ["customers", "build", "median s", "min s", "max s"]
    rows = [
        [n, kind, statistics.median(d), min(d), max(d)]
        for n, kinds in results.items()
        for kind, d in kinds.items()
    ]
    print()
    when = "at the current time" if args.account == "emulator" else "as_of fixed"
    print(f"dbt build of the {args.account} account, {when}; median of {args.runs} runs"
          " (the first build: one run)")  # fmt: skip
    print_table(headers, rows)
    path = write_results(args.results, {
        "account": args.account,
        "runs": args.runs,
        "results": [
            {"customers": n, "build": kind, "durations_s": d, "median_s": statistics.median(d)}
            for n, kinds in results.items()
            for kind, d in kinds.items()
        ],
        "markdown": table(headers, rows),
    })  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
