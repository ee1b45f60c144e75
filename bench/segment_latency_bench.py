"""End-to-end latency from a change in Stripe to the warehouse's marts, through webhooks and
`webhooks serve`'s resident builder (or, with `--builder sensor`, the Dagster daemon's webhook
sensor and its runs).

The stack is dagster_bench's: the emulator in its own process (after the set-up backfill, 250 ms
latency and the 25 req/s test limit) delivering its events to `webhooks serve`'s receiver (with
its resident builder unless `--builder sensor`), a backfilled and built warehouse, and
`stripe-sync ui`'s webserver and daemon, whose webhook sensor requests `stripe_build_job` runs
while no resident builder runs. A change renames one customer to a unique marker (`lag <tag>
<n>`, with its customer.updated event); a poller reads the segment table
stripe_segments.syncing_with_stripe (every customer, a copy of customer_fields' row) every 0.2 s,
by key, for the customers with a change not shown yet, and notes when each marker shows (a later
marker of the same customer counts for the earlier ones). Before 2026-12-08 it read
stripe.customer_fields, written earlier in the same build.

1. bursts: K = 1, 10, 100, 1,000 changes at once, then the time until every one of them shows;
   p50 and p95 over `--runs` runs per K (each starts with the pipeline idle);
2. sustained: `--rate` changes/s (20) for `--minutes` (5; 1 with --quick), one change at a time;
   each change's lag (p50, p95, max, and per minute), then every changed customer's name in
   customer_fields and in the segment must equal the emulator's, and syncing_with_stripe must
   hold exactly the emulator's customers.

    .venv/bin/python bench/segment_latency_bench.py [--customers 10000] [--ks 1,10,100,1000]
        [--runs 5] [--rate 20] [--minutes 5] [--builder resident|sensor] [--data-dir DIR]
        [--settle SECONDS] [--results NAME] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import print_table, table, wait_builds_idle, write_results
from dagster_bench import PENDING, Stack, dagster_stack, raw

POLL_S = 0.2
# A segment table that holds every customer: the change has reached the segments.
WATCHED = sql.Identifier("stripe_segments", "syncing_with_stripe")
NAMES_OF = sql.SQL(
    "select stripe_customer_id, customer_name from {} where stripe_customer_id = any(%s)"
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Watcher:
    """Polls the segment for the markers of one bench run; notes when each change shows."""

    def __init__(self, database_url: str, tag: str) -> None:
        self.database_url = database_url
        self.prefix = f"lag {tag} "
        self.lock = threading.Lock()
        self.sent: dict[int, tuple[str, float]] = {}  # n → (customer, wall time sent)
        self.pending: dict[str, list[int]] = defaultdict(list)  # customer → unseen changes
        self.seen: dict[int, float] = {}  # n → wall time it showed
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def record(self, changes: list[tuple[int, str]], at: float) -> None:
        with self.lock:
            for n, customer in changes:
                self.sent[n] = (customer, at)
                self.pending[customer].append(n)

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stop.is_set():
                with self.lock:
                    waited_for = [c for c, waiting in self.pending.items() if waiting]
                # By key (the segment's index), not by a scan for the prefix: at 1M customers a
                # scan five times a second would take a core from the builds it measures.
                rows = conn.execute(NAMES_OF.format(WATCHED), (waited_for,)).fetchall()
                now = time.time()
                with self.lock:
                    for customer, name in rows:
                        if not (name or "").startswith(self.prefix):
                            continue
                        shown = int(name.rsplit(" ", 1)[1])
                        waiting = self.pending.get(customer)
                        if not waiting:
                            continue
                        for n in [n for n in waiting if n <= shown]:
                            self.seen[n] = now
                            waiting.remove(n)
                self.stop.wait(POLL_S)

    def lags(self, ns: list[int]) -> list[float] | None:
        """Each change's lag, or None while one has not shown."""
        with self.lock:
            if any(n not in self.seen for n in ns):
                return None
            return [self.seen[n] - self.sent[n][1] for n in ns]

    def wait(self, ns: list[int], timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (lags := self.lags(ns)) is not None:
                return lags
            time.sleep(0.05)
        with self.lock:
            missing = [n for n in ns if n not in self.seen]
        raise TimeoutError(f"{len(missing)} of {len(ns)} changes never showed in {timeout:.0f} s")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


class Changer:
    """Renames customers in the emulator, one unique marker per change."""

    def __init__(self, stack: Stack, watcher: Watcher, seed: int = 5) -> None:
        self.stack, self.watcher = stack, watcher
        self.customers = stack.emu.send(customers=True)["ids"]
        random.Random(seed).shuffle(self.customers)
        self.n = 0
        self.changed: set[str] = set()

    def change(self, k: int) -> list[int]:
        batch = []
        for _ in range(k):
            self.n += 1
            batch.append((self.n, self.customers[self.n % len(self.customers)]))
        sent = time.time()
        names = [[customer, f"{self.watcher.prefix}{n}"] for n, customer in batch]
        self.stack.emu.send(rename=names)
        self.watcher.record(batch, sent)
        self.changed.update(customer for _, customer in batch)
        return [n for n, _ in batch]


def wait_idle(stack: Stack, timeout: float = 600.0) -> None:
    """Until no build is queued or running and the sensor has had a look (a fresh start), and
    no build held the warehouse's build lock for a while (the resident builder's)."""
    wait_builds_idle(stack.database_url, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = stack.instance.get_runs(
            dg.RunsFilter(job_name="stripe_build_job", statuses=PENDING), limit=1
        )
        if not busy:
            return
        time.sleep(0.5)
    raise TimeoutError("a build was still pending")


def builds_between(stack: Stack, start: float, end: float) -> list[dict[str, Any]]:
    """The sensor's build runs created in [start, end] (wall time): their run times."""
    out = []
    for record in stack.instance.get_run_records(dg.RunsFilter(job_name="stripe_build_job")):
        created = record.create_timestamp.timestamp()
        if start <= created <= end:
            ended = record.end_time
            out.append({"run_id": record.dagster_run.run_id, "created": created,
                        "total_s": ended - created if ended else None,
                        "status": record.dagster_run.status.value})  # fmt: skip
    return sorted(out, key=lambda r: r["created"])


def bursts(stack: Stack, changer: Changer, ks: list[int], runs: int) -> list[dict[str, Any]]:
    results = []
    for k in ks:
        samples = []
        for run in range(runs):
            wait_idle(stack)
            time.sleep(1.0)
            started = time.time()
            ns = changer.change(k)
            lags = changer.watcher.wait(ns, timeout=900.0)
            builds = builds_between(stack, started, time.time())
            samples.append({"all_s": max(lags), "p50_change_s": percentile(lags, 0.5),
                            "builds": len(builds), "load1": os.getloadavg()[0]})  # fmt: skip
            print(f"  K={k} run {run + 1}: all shown in {max(lags):.1f} s "
                  f"(median change {percentile(lags, 0.5):.1f} s, {len(builds)} builds)",
                  flush=True)  # fmt: skip
        alls = [s["all_s"] for s in samples]
        results.append({"k": k, "p50_s": percentile(alls, 0.5), "p95_s": percentile(alls, 0.95),
                        "raw_s": [round(v, 2) for v in alls], "samples": samples})  # fmt: skip
    return results


def settle(stack: Stack, seconds: float) -> None:
    """Lets the set-up's writes reach the disk before the load: a checkpoint, the kernel's dirty
    pages flushed, then a wait. At 1M customers the set-up's first build writes GBs; the disk was
    still flushing them (io pressure ~40 %) while the first minutes of load ran."""
    started = time.monotonic()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("checkpoint")
    os.sync()
    flushed = time.monotonic() - started
    time.sleep(max(0.0, seconds - flushed))
    print(f"… settled: checkpoint and sync {flushed:.0f} s, then idle to {seconds:.0f} s",
          flush=True)  # fmt: skip


def sustained(stack: Stack, changer: Changer, rate: float, minutes: float) -> dict[str, Any]:
    wait_idle(stack)
    started = time.time()
    ns: list[int] = []
    sent_at: dict[int, float] = {}
    total = int(rate * minutes * 60)
    for i in range(total):
        due = started + i / rate
        if (ahead := due - time.time()) > 0:
            time.sleep(ahead)
        n = changer.change(1)[0]
        ns.append(n)
        sent_at[n] = time.time() - started
    sending_s = time.time() - started
    print(f"  sent {total} changes in {sending_s:.0f} s; waiting for the last ones", flush=True)
    lags = changer.watcher.wait(ns, timeout=900.0)
    ended = time.time()
    per_minute: dict[int, list[float]] = defaultdict(list)
    for n, lag in zip(ns, lags, strict=True):
        per_minute[int(sent_at[n] // 60)].append(lag)
    builds = builds_between(stack, started, ended)
    return {
        "changes": total,
        "rate": rate,
        "sending_s": sending_s,
        "p50_s": percentile(lags, 0.5),
        "p95_s": percentile(lags, 0.95),
        "max_s": max(lags),
        "per_minute": {str(m + 1): {"p50_s": percentile(v, 0.5), "p95_s": percentile(v, 0.95),
                                    "max_s": max(v)} for m, v in sorted(per_minute.items())},
        "builds": len(builds),
        "build_run_s": [round(b["total_s"], 1) for b in builds if b["total_s"] is not None],
        "failed_builds": sum(b["status"] == "FAILURE" for b in builds),
        "load1_at_end": os.getloadavg()[0],
    }  # fmt: skip


def consistent(stack: Stack, changer: Changer) -> dict[str, Any]:
    """Every changed customer's name as the emulator has it; the segment's customers too."""
    ids = sorted(changer.changed)
    truth = stack.emu.send(names=ids)["names"]
    with psycopg.connect(stack.database_url) as conn:
        tables = (sql.Identifier("stripe", "customer_fields"), WATCHED)
        stored: list[dict[str, str]] = [
            dict(conn.execute(NAMES_OF.format(table), (ids,)).fetchall()) for table in tables
        ]
        in_segment = conn.execute(
            "select count(*) from stripe_segments.syncing_with_stripe"
        ).fetchone()[0]
    emulator_customers = stack.emu.send(count="customers")["count"]
    wrong = [i for i in ids if any(names.get(i) != truth[i] for names in stored)]
    return {"changed_customers": len(ids), "names_differing": len(wrong),
            "segment_customers": in_segment, "emulator_customers": emulator_customers,
            "equal": not wrong and in_segment == emulator_customers}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 customers, 2 runs, 1 minute")
    parser.add_argument("--customers", type=int, default=None, help="10,000 (500 with --quick)")
    parser.add_argument(
        "--ks", default="1,10,100,1000", help="burst sizes, comma-separated ('' skips the bursts)"
    )
    parser.add_argument("--runs", type=int, default=None, help="per K: 5 (2 with --quick)")
    parser.add_argument("--rate", type=float, default=20.0, help="sustained changes/s")
    parser.add_argument("--minutes", type=float, default=None, help="sustained: 5 (1 quick)")
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--server-limit", type=float, default=25.0, help="emulator req/s (test)")
    parser.add_argument("--data-dir", default=None, help="keep the emulator's data files here")
    parser.add_argument(
        "--builder",
        choices=["resident", "sensor"],
        default="resident",
        help="who builds after deliveries: `webhooks serve`'s resident builder (the product's"
        " default) or the Dagster sensor's runs (the receiver without its builder)",
    )
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        default=None,
        help="the run queue's interval, s (dagster.yaml: 1)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds after the set-up for its writes to reach the disk (a checkpoint, a sync,"
        " a wait) before the load: steady state, not the set-up's aftermath",
    )
    parser.add_argument(
        "--results",
        default="segment_latency_bench",
        help="bench/results/NAME.json to write (another name keeps the default size's results)",
    )
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    customers = args.customers or (500 if args.quick else 10_000)
    runs = args.runs or (2 if args.quick else 5)
    minutes = args.minutes or (1.0 if args.quick else 5.0)
    ks = [int(k) for k in args.ks.split(",") if k.strip()]

    with dagster_stack(customers, args.latency_ms, args.server_limit,
                       dequeue_interval=args.dequeue_interval,
                       data_dir=args.data_dir) as stack:  # fmt: skip
        stack.serve_webhooks(resident=args.builder == "resident")
        watcher = Watcher(stack.database_url, uuid.uuid4().hex[:6])
        try:
            changer = Changer(stack, watcher)
            if args.settle:
                settle(stack, args.settle)
            burst = bursts(stack, changer, ks, runs)
            print(f"… sustained: {args.rate:.0f} changes/s for {minutes:g} min", flush=True)
            load = sustained(stack, changer, args.rate, minutes)
            wait_idle(stack)
            check = consistent(stack, changer)
        finally:
            watcher.close()

    headers = ["K changes", "runs", "all shown p50 s", "p95 s", "raw s", "builds per run",
               "load avg"]  # fmt: skip
    rows = [[b["k"], len(b["samples"]), b["p50_s"], b["p95_s"], raw(b["raw_s"]),
             ", ".join(str(s["builds"]) for s in b["samples"]),
             percentile([s["load1"] for s in b["samples"]], 0.5)] for b in burst]  # fmt: skip
    load_headers = ["sustained", "changes", "lag p50 s", "p95 s", "max s", "builds",
                    "build run s (median)", "segments = emulator", "load avg"]  # fmt: skip
    build_runs = sorted(load["build_run_s"])
    load_rows = [[f"{args.rate:.0f}/s for {minutes:g} min", load["changes"], load["p50_s"],
                  load["p95_s"], load["max_s"], load["builds"],
                  build_runs[len(build_runs) // 2] if build_runs else None,
                  "yes" if check["equal"] else f"NO ({check})", load["load1_at_end"]]]  # fmt: skip
    minute_headers = ["minute", "lag p50 s", "p95 s", "max s"]
    minute_rows = [[m, v["p50_s"], v["p95_s"], v["max_s"]] for m, v in load["per_minute"].items()]
    print()
    print(
        f"change → stripe_segments through webhooks and the {args.builder} builder: {customers:,} "
        f"customers, {args.latency_ms:.0f} ms latency, {args.server_limit:.0f} req/s limit"
    )
    print_table(headers, rows)
    print()
    print_table(load_headers, load_rows)
    print()
    print_table(minute_headers, minute_rows)
    markdown = "\n\n".join(table(h, r) for h, r in ((headers, rows), (load_headers, load_rows),
                                                    (minute_headers, minute_rows)))  # fmt: skip
    path = write_results(args.results, {
        "customers": customers, "latency_ms": args.latency_ms,
        "server_limit_rps": args.server_limit, "runs": runs, "builder": args.builder,
        "settle_s": args.settle,
        "dequeue_interval_s": args.dequeue_interval, "bursts": burst, "sustained": load,
        "consistency": check, "markdown": markdown,
    })  # fmt: skip
    print(f"wrote {path}")
    return 0 if check["equal"] and not load["failed_builds"] else 1


if __name__ == "__main__":
    sys.exit(main())
