"""Time from K changes in Stripe to updated segment rows, by polling and by webhooks.

After a backfill of two databases from one emulator (its own process, 250 ms latency, 25 req/s
test limit, which signs and delivers webhooks to `webhooks serve`'s app in another process writing
database B), for each K (10, 100, 1,000 test-mode events) and run:

- webhooks: from the end of the K changes until every event is in B's stripe_raw.events
  (deliveries) plus one `build` of B;
- polling: one `sync` process on database A plus one `build` of A, started right after (the
  events already exist, so this is the sync and build time; a schedule adds its interval).

Both end with stripe_segments.syncing_with_stripe holding exactly the emulator's customers.

    .venv/bin/python bench/incremental_bench.py [--changes 10,100,1000] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
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
    emulator_process,
    fresh_database,
    median,
    print_table,
    run_sync,
    table,
    write_results,
)
from webhook_bench import _free_port, _wait_healthy

from orchestration.transform.runner import build

WEBHOOK_PATH = "/stripe/webhook"
SERVE = """
import json, sys, uvicorn
from orchestration.extract.client import StripeApi
from orchestration.webhooks.server import create_app
a = json.loads(sys.argv[1])
app = create_app(a["database_url"], [a["secret"]], StripeApi(a["key"], a["api_base"], max_rps=20))
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


def _segment_customers(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "select count(*) from stripe_segments.syncing_with_stripe"
        return conn.execute(query).fetchone()[0]


def _build(database_url: str, target: Path) -> float:
    started = time.monotonic()
    build(database_url, as_of=None, livemode=False, target_path=target)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 customers, K = 10 and 100")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--changes", default=None, help="K values, comma-separated")
    parser.add_argument("--runs", type=int, default=None, help="3 (1 with --quick)")
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--server-limit", type=float, default=25.0, help="emulator req/s (test)")
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    args.runs = args.runs or (1 if args.quick else 3)
    customers = args.customers or (500 if args.quick else 2000)
    ks = [int(k) for k in (args.changes or ("10,100" if args.quick else "10,100,1000")).split(",")]

    options = {"customers": customers, "seed": 9, "latency_ms": args.latency_ms,
               "rate_limit": args.server_limit, "webhooks": True}  # fmt: skip
    samples: list[dict[str, Any]] = []
    server = None
    with (
        emulator_process(**options) as emu,
        fresh_database() as db_poll,
        fresh_database() as db_hook,
        tempfile.TemporaryDirectory() as tmp,
    ):
        try:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            secret = emu.send(endpoint=url + WEBHOOK_PATH)["secret"]
            sync_args = {"api_key": emu.key, "api_base": emu.url}  # the default test budget
            print("… backfills", flush=True)
            run_sync(database_url=db_poll, **sync_args)
            run_sync(database_url=db_hook, **sync_args)
            serve = {"database_url": db_hook, "secret": secret, "key": emu.key,
                     "api_base": emu.url, "port": port}  # fmt: skip
            server = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(serve)])
            _wait_healthy(url, timeout=60.0)
            targets = {db: Path(tmp) / name for db, name in ((db_poll, "a"), (db_hook, "b"))}
            _build(db_poll, targets[db_poll])  # first builds create the relations
            _build(db_hook, targets[db_hook])
            for k in ks:
                for run in range(args.runs):
                    ids = emu.send(tick=k)["events"]
                    t0 = time.monotonic()
                    delivered = _wait_events(db_hook, ids)
                    deliveries_s = time.monotonic() - t0
                    hook_build_s = _build(db_hook, targets[db_hook])
                    hook_total = time.monotonic() - t0
                    truth = emu.send(count="customers")["count"]
                    hook_ok = delivered and _segment_customers(db_hook) == truth

                    t1 = time.monotonic()
                    sync = run_sync(database_url=db_poll, **sync_args)
                    poll_build_s = _build(db_poll, targets[db_poll])
                    poll_total = time.monotonic() - t1
                    poll_ok = _segment_customers(db_poll) == truth
                    samples.append({
                        "k": k, "run": run + 1, "customers_in_emulator": truth,
                        "webhooks": {"deliveries_s": deliveries_s, "build_s": hook_build_s,
                                     "total_s": hook_total, "consistent": hook_ok},
                        "polling": {"sync_s": sync["wall_s"], "build_s": poll_build_s,
                                    "total_s": poll_total, "consistent": poll_ok,
                                    "events_applied": sync["events_applied"],
                                    "requests": sync["requests"]},
                    })  # fmt: skip
                    print(f"  K={k} run {run + 1}: webhooks {hook_total:.1f} s "
                          f"(deliveries {deliveries_s:.2f} s), polling {poll_total:.1f} s "
                          f"(sync {sync['wall_s']:.1f} s)", flush=True)  # fmt: skip
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)

    summary = []
    for k in ks:
        mine = [s for s in samples if s["k"] == k]
        w = {f: median([s["webhooks"][f] for s in mine]) for f in ("deliveries_s", "build_s",
                                                                     "total_s")}  # fmt: skip
        p = {f: median([s["polling"][f] for s in mine]) for f in ("sync_s", "build_s", "total_s")}
        consistent = all(s["webhooks"]["consistent"] and s["polling"]["consistent"] for s in mine)
        summary.append({"k": k, "webhooks": w, "polling": p, "consistent": consistent,
                        "polling_over_webhooks": p["total_s"] / w["total_s"]})  # fmt: skip
    headers = ["K changes", "polling: sync s", "build s", "total s", "webhooks: deliveries s",
               "build s", "total s", "polling / webhooks", "segments = emulator"]  # fmt: skip
    rows = [[s["k"], s["polling"]["sync_s"], s["polling"]["build_s"], s["polling"]["total_s"],
             s["webhooks"]["deliveries_s"], s["webhooks"]["build_s"], s["webhooks"]["total_s"],
             f"{s['polling_over_webhooks']:.2f}×", "yes" if s["consistent"] else "NO"]
            for s in summary]  # fmt: skip
    print()
    print(f"incremental: {customers:,} customers, {args.latency_ms:.0f} ms latency, "
          f"{args.server_limit:.0f} req/s limit; median of {args.runs} runs")  # fmt: skip
    print_table(headers, rows)
    path = write_results("incremental_bench", {
        "customers": customers, "latency_ms": args.latency_ms,
        "server_limit_rps": args.server_limit, "runs": args.runs, "summary": summary,
        "samples": samples, "markdown": table(headers, rows)})  # fmt: skip
    print(f"wrote {path}")
    return 0 if all(s["consistent"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
