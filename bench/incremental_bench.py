"""Time from K changes in Stripe to updated segment rows, by polling and by webhooks.

For each account size: one emulator (its own process, which signs and delivers webhooks to
`webhooks serve` in another process writing database B, from 8 concurrent delivery workers as
Stripe delivers concurrently); a backfill of database A at no latency and no limit (set-up, not
measured: backfill_bench.setup_backfill), copied to B; then the emulator at 250 ms latency and the
25 req/s test limit by default, and for each K (1, 10, 100, 1,000 test-mode events) and run:

- webhooks: the product's path, `stripe-sync webhooks serve`: the receiver and its resident
  builder (transform/resident.py), with no build call from the bench. Timed from the end of the
  K changes until every event is in B's stripe_raw.events (deliveries), then until every
  customer-keyed model has been built past those rows (the builder's build: its
  customer_keyed_state stamps are later than the events' synced_at);
- polling: one `sync` process on database A plus one production `build` of A (`stripe-sync
  build`, a fresh dbt process), started right after (the events already exist, so this is the
  sync and build time; a schedule adds its interval).

Both end with stripe_segments.syncing_with_stripe holding exactly the emulator's customers.
`--paths webhooks` (or `polling`) measures one path on one database: no copy, one first build, half
the memory (the 1M account's two databases, 28 GB, exceed this host's 24 GB of RAM).
bench/segment_latency_bench.py and bench/dagster_bench.py measure the Dagster daemon's path.

    .venv/bin/python bench/incremental_bench.py [--customers 10000 100000] [--changes 1,10,100]
        [--runs 5] [--data-dir DIR] [--paths both|webhooks|polling] [--results NAME] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import (
    copy_database,
    emulator_file,
    emulator_process,
    fresh_database,
    median,
    percentile,
    print_table,
    run_sync,
    setup_backfill,
    table,
    wait_builds_idle,
    write_results,
)
from webhook_bench import _free_port, _wait_healthy

from orchestration.transform.runner import build

WEBHOOK_PATH = "/stripe/webhook"
# `webhooks serve` (cli/commands.py) without its settings: the receiver and the resident builder.
SERVE = """
import json, sys, uvicorn
from orchestration.extract.client import StripeApi
from orchestration.transform.resident import BuilderOptions, running_builder
from orchestration.webhooks.server import create_app
if __name__ == "__main__":  # the builder's spawned process imports this file again
    a = json.loads(sys.argv[1])
    client = StripeApi(a["key"], a["api_base"], max_rps=20)
    app = create_app(a["database_url"], [a["secret"]], client)
    options = BuilderOptions(database_url=a["database_url"], key_mode="test",
                             stale_after_hours=24, report_to_dagster=False)
    with running_builder(options):
        uvicorn.run(app, host="127.0.0.1", port=a["port"], log_level="warning", access_log=False)
"""


def _wait_events(database_url: str, ids: list[str], timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            n = conn.execute(
                "select count(*) from stripe_raw.events where id = any(%s)", (ids,)
            ).fetchone()[0]
            if n == len(ids):
                return True
            time.sleep(0.02)
    return False


# The MRR history's customer-keyed models (dbt_project/models/intermediate/mrr_history, and the
# marts built from them), which the resident builder's warm builds leave out.
MRR_HISTORY = [
    "int_mrr_invoice_periods",
    "int_mrr_subscription_states",
    "int_mrr_subscription_state_discounts",
    "mrr_daily",
    "mrr_movements",
]


def _built_past(database_url: str, ids: list[str] | None, timeout: float = 600.0) -> bool:
    """Waits until every customer-keyed model the resident builder builds was built past the
    events `ids` (all events when None): the oldest such model's stamp (what its last build
    covered) is later than their synced_at. The MRR history is left out: the builder's warm
    builds leave it to the scheduled builds (selectors.yml, `incremental_warm`), so its stamps
    stay at the builder's first build, and counting them waited for ever as soon as an event
    arrived during that build.
    """
    query = """
        select coalesce((select min(stamp) from stripe_staging.customer_keyed_state
                         where model <> all(%(mrr_history)s))
                        > (select max(synced_at) from stripe_raw.events
                           where %(ids)s::text[] is null or id = any(%(ids)s)), false)
    """
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                if conn.execute(query, {"ids": ids, "mrr_history": MRR_HISTORY}).fetchone()[0]:
                    return True
            except psycopg.errors.UndefinedTable:
                pass  # the builder's first build has not made its state table yet
            time.sleep(0.02)
    return False


def _segment_customers(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "select count(*) from stripe_segments.syncing_with_stripe"
        return conn.execute(query).fetchone()[0]


def _build(database_url: str, target: Path) -> float:
    started = time.monotonic()
    build(database_url, as_of=None, livemode=False, target_path=target, selector="incremental")
    return time.monotonic() - started


def measure(customers: int, ks: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs every K `args.runs` times on one account of `customers` customers; returns samples."""
    options = {"customers": customers, "seed": 9, "webhooks": True,
               "webhook_workers": args.webhook_workers}  # fmt: skip
    if args.data_dir:
        options["db_path"] = emulator_file(args.data_dir, customers, options["seed"])
    samples: list[dict[str, Any]] = []
    server = None
    with emulator_process(**options) as emu, contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        db_poll = stack.enter_context(fresh_database()) if args.paths != "webhooks" else None
        db_hook = stack.enter_context(fresh_database()) if args.paths != "polling" else None
        try:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            secret = emu.send(endpoint=url + WEBHOOK_PATH)["secret"]
            sync_args = {"api_key": emu.key, "api_base": emu.url}  # the default test budget
            first_db = db_poll or db_hook
            backfill = setup_backfill(emu, first_db, args.latency_ms, args.server_limit)
            if db_poll and db_hook:
                copy_database(db_poll, db_hook)
            print(f"… {customers:,} customers: backfill {backfill['objects']:,} objects in "
                  f"{backfill['wall_s']:.0f} s", flush=True)  # fmt: skip
            targets = {db: Path(tmp) / name for db, name in ((db_poll, "a"), (db_hook, "b"))}
            started = time.monotonic()
            if db_hook:
                serve = {"database_url": db_hook, "secret": secret, "key": emu.key,
                         "api_base": emu.url, "port": port}  # fmt: skip
                server = _serve(tmp, serve)
                _wait_healthy(url, timeout=60.0)
            if db_poll:
                _build(db_poll, targets[db_poll])  # the first build creates the relations
            if db_hook:  # the resident builder's first build, to its end
                if not _built_past(db_hook, None, timeout=3600.0):
                    raise RuntimeError("the resident builder did not build the backfill")
                # _built_past held as soon as its first model was recorded: the others have no
                # state yet. The build lock is held to the end of the build, MRR history included.
                wait_builds_idle(db_hook, timeout=7200.0)
            print(f"… first builds: {time.monotonic() - started:.0f} s", flush=True)
            for k in ks:
                for run in range(args.runs):
                    samples.append(_one_run(emu, k, run, db_poll, db_hook, targets, sync_args))
                    samples[-1]["customers"] = customers
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
    return samples


def _serve(tmp: str, options: dict[str, Any]) -> subprocess.Popen[bytes]:
    """`webhooks serve` in a process of its own (a script file: the builder is spawned)."""
    script = Path(tmp) / "serve.py"
    script.write_text(SERVE)
    return subprocess.Popen([sys.executable, str(script), json.dumps(options)])


def _one_run(
    emu: Any, k: int, run: int, db_poll: str | None, db_hook: str | None,
    targets: dict[str | None, Path], sync_args: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """One run of K changes on each measured path; a path not measured has no entry."""
    ids = emu.send(tick=k)["events"]
    truth = emu.send(count="customers")["count"]
    sample: dict[str, Any] = {"k": k, "run": run + 1, "customers_in_emulator": truth}
    if db_hook:
        sample["webhooks"] = _webhook_run(db_hook, ids, truth)
    if db_poll:
        sample["polling"] = _polling_run(db_poll, targets[db_poll], sync_args, truth)
    print(f"  K={k} run {run + 1}: " + ", ".join(
        f"{path} {part['total_s']:.1f} s (" + ", ".join(
            f"{name[:-2]} {value:.2f} s" for name, value in part.items()
            if name.endswith("_s") and name != "total_s") + ")"
        for path, part in sample.items() if path in PATHS), flush=True)  # fmt: skip
    return sample


def _webhook_run(db_hook: str, ids: list[str], truth: int) -> dict[str, Any]:
    """From the end of the changes (just made) to their deliveries, then to the builder's build."""
    t0 = time.monotonic()
    delivered = _wait_events(db_hook, ids)
    deliveries_s = time.monotonic() - t0
    built = _built_past(db_hook, ids)
    total = time.monotonic() - t0
    consistent = delivered and built and _segment_customers(db_hook) == truth
    wait_builds_idle(db_hook)
    return {"deliveries_s": deliveries_s, "build_s": total - deliveries_s, "total_s": total,
            "consistent": consistent}  # fmt: skip


def _polling_run(
    db_poll: str, target: Path, sync_args: dict[str, str], truth: int
) -> dict[str, Any]:
    """A sync process, then a production build (a fresh dbt process)."""
    t1 = time.monotonic()
    sync = run_sync(database_url=db_poll, **sync_args)
    build_s = _build(db_poll, target)
    return {"sync_s": sync["wall_s"], "build_s": build_s, "total_s": time.monotonic() - t1,
            "consistent": _segment_customers(db_poll) == truth,
            "events_applied": sync["events_applied"], "requests": sync["requests"]}  # fmt: skip


# Each path's timed parts, summarized by their medians.
PATHS = {"polling": ("sync_s", "build_s", "total_s"),
         "webhooks": ("deliveries_s", "build_s", "total_s")}  # fmt: skip


def summarize(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median of every part and p95 of the totals, per account size and K."""
    summary = []
    for customers, k in sorted({(s["customers"], s["k"]) for s in samples}):
        mine = [s for s in samples if s["customers"] == customers and s["k"] == k]
        entry: dict[str, Any] = {"customers": customers, "k": k, "runs": len(mine)}
        for path, fields in PATHS.items():
            parts = [s[path] for s in mine if path in s]
            if parts:
                entry[path] = {f: median([part[f] for part in parts]) for f in fields}
                entry[path]["total_p95_s"] = percentile([part["total_s"] for part in parts], 95)
        entry["consistent"] = all(
            s[path]["consistent"] for s in mine for path in PATHS if path in s
        )
        summary.append(entry)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 customers, K = 1 and 100")
    parser.add_argument("--customers", type=int, nargs="+", default=None)
    parser.add_argument("--changes", default=None, help="K values, comma-separated")
    parser.add_argument("--runs", type=int, default=None, help="5 (1 with --quick)")
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--server-limit", type=float, default=25.0, help="emulator req/s (test)")
    parser.add_argument("--webhook-workers", type=int, default=8, help="emulator's concurrency")
    parser.add_argument("--data-dir", default=None, help="keep the emulator's data files here")
    parser.add_argument("--paths", choices=["both", "webhooks", "polling"], default="both",
                        help="the paths measured (one path: one database)")  # fmt: skip
    parser.add_argument("--results", default="incremental_bench",
                        help="the results file's name in bench/results/")  # fmt: skip
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    args.runs = args.runs or (1 if args.quick else 5)
    sizes = args.customers or ([500] if args.quick else [10_000, 100_000])
    default_ks = "1,100" if args.quick else "1,10,100,1000"
    ks = [int(k) for k in (args.changes or default_ks).split(",")]

    samples = [sample for customers in sizes for sample in measure(customers, ks, args)]
    summary = summarize(samples)
    headers = ["customers", "K changes", "polling: sync s", "build s", "total p50 s", "p95 s",
               "webhooks: deliveries s", "then built s", "total p50 s", "p95 s",
               "segments = emulator"]  # fmt: skip
    rows = [[s["customers"], s["k"],
             *[s[path][f] if path in s else "—" for path in ("polling", "webhooks")
               for f in (*PATHS[path][:-1], "total_s", "total_p95_s")],
             "yes" if s["consistent"] else "NO"] for s in summary]  # fmt: skip
    print()
    print(f"incremental: {args.latency_ms:.0f} ms latency, {args.server_limit:.0f} req/s limit, "
          f"{args.webhook_workers} delivery workers; p50 and p95 (nearest rank) of {args.runs} "
          "runs")  # fmt: skip
    print_table(headers, rows)
    path = write_results(args.results, {
        "latency_ms": args.latency_ms, "server_limit_rps": args.server_limit,
        "webhook_workers": args.webhook_workers, "runs": args.runs, "paths": args.paths,
        "summary": summary,
        "samples": samples, "markdown": table(headers, rows)})  # fmt: skip
    print(f"wrote {path}")
    return 0 if all(s["consistent"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
