"""Backfill throughput of the extractor against the emulator (run in its own process):
objects/s at 250 ms latency under a 100 req/s limit, against the ceiling the request budget sets
(budget × 100 objects a page) and against a sequential single-threaded pager (the loop of dlt and
tap-stripe) on the same emulator; the same at 0 ms; and peak RSS of the sync at growing sizes.

    .venv/bin/python bench/backfill_bench.py [--customers 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from orchestration.extract.client import StripeApi
from orchestration.extract.objects import OBJECTS
from orchestration.warehouse import server_url_for_tests, with_database

PAGE = 100
RESULTS = Path(__file__).parent / "results"

EMULATOR = """
import json, sys
from orchestration.emulator import start_emulator
options = json.loads(sys.argv[1])
with start_emulator(**options) as emu:
    print(json.dumps({"url": emu.url, "key": emu.test_key}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
"""

SYNC = """
import json, resource, sys, time
from orchestration.extract import sync_stripe
args = json.loads(sys.argv[1])
result = sync_stripe(**args)
print(json.dumps({
    "objects": result.total_objects, "seconds": result.seconds, "requests": result.requests,
    "retries": result.retries, "rate_limited": result.rate_limited, "kind": result.kind,
    "events_applied": result.events_applied, "refetched": result.refetched,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


@contextmanager
def emulator_process(**options: Any) -> Iterator[dict[str, str]]:
    """start_emulator(**options) in a child process; yields its url and test key."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        info["startup_s"] = time.monotonic() - started
        yield info
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@contextmanager
def fresh_database() -> Iterator[str]:
    server = server_url_for_tests(None)
    name = f"stripe_sync_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(with_database(server, "postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def run_sync(**args: Any) -> dict[str, Any]:
    """sync_stripe(**args) in a fresh process; adds the process's wall time."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", SYNC, json.dumps(args)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def sequential_pager(url: str, key: str, max_rps: float, budget_s: float = 30) -> dict[str, float]:
    """One request at a time through every list, as dlt's and tap-stripe's loops do (with plain
    dicts and no database writes, so it is the pager's best case). Its rate is steady, so it runs
    for at most `budget_s` (a full sequential pass at 250 ms takes minutes)."""
    client = StripeApi(key, url, max_rps=max_rps)
    started, objects = time.monotonic(), 0
    for spec in OBJECTS:
        params: dict[str, Any] = {"limit": PAGE, **spec.list_params}
        while time.monotonic() - started < budget_s:
            page = client.get(spec.list_path, **params).data
            objects += len(page["data"])
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
    seconds = time.monotonic() - started
    return {"objects": objects, "seconds": seconds, "objects_per_s": objects / seconds}


def throughput(customers: int, runs: int, latency_ms: float, limit: float | None, budget: float,
               baseline: bool) -> dict[str, Any]:  # fmt: skip
    options = {"customers": customers, "seed": 7, "latency_ms": latency_ms, "rate_limit": limit}
    with emulator_process(**options) as emu:
        samples = []
        for _ in range(runs):
            with fresh_database() as database_url:
                r = run_sync(database_url=database_url, api_key=emu["key"], api_base=emu["url"],
                             max_rps=budget)  # fmt: skip
            r["objects_per_s"] = r["objects"] / r["wall_s"]
            samples.append(r)
        pager = sequential_pager(emu["url"], emu["key"], budget) if baseline else None
    ops = median([s["objects_per_s"] for s in samples])
    ceiling = budget * PAGE
    return {
        "customers": customers, "latency_ms": latency_ms, "server_limit_rps": limit,
        "budget_rps": budget, "objects": samples[0]["objects"], "runs": samples,
        "objects_per_s": ops, "ceiling_objects_per_s": ceiling,
        "share_of_ceiling": ops / ceiling if limit else None,
        "requests": median([s["requests"] for s in samples]),
        "rate_limited": max(s["rate_limited"] for s in samples),
        "wall_s": median([s["wall_s"] for s in samples]),
        "maxrss_mb": max(s["maxrss_mb"] for s in samples),
        "sequential_objects_per_s": pager["objects_per_s"] if pager else None,
        "ratio_to_sequential": ops / pager["objects_per_s"] if pager else None,
        "emulator_startup_s": emu["startup_s"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=95.0, help="max_rps under a 100 req/s limit"
    )
    parser.add_argument("--sizes", default="2000,5000,10000,20000", help="RSS sizes (customers)")
    parser.add_argument("--configs", default="0,1,2", help="which throughput configs to run")
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench

    configs = [
        ("250 ms, 100 req/s limit", 250.0, 100.0, args.budget),
        ("0 ms, 100 req/s limit", 0.0, 100.0, args.budget),
        ("0 ms, no limit", 0.0, None, 10_000.0),
    ]
    configs = [configs[int(i)] for i in args.configs.split(",") if i]
    results = []
    for label, latency, limit, budget in configs:
        print(f"… {label}", flush=True)
        results.append({"config": label, **throughput(args.customers, args.runs, latency, limit,
                                                      budget, baseline=latency > 0)})  # fmt: skip
    print_table(
        ["config", "objects", "objects/s", "ceiling", "% ceiling", "requests", "429s",
         "sequential/s", "× sequential", "RSS MB"],
        [[r["config"], r["objects"], r["objects_per_s"], r["ceiling_objects_per_s"] if
          r["server_limit_rps"] else "-", f"{r['share_of_ceiling']:.0%}" if r["share_of_ceiling"]
          else "-", r["requests"], r["rate_limited"], r["sequential_objects_per_s"] or "-",
          f"{r['ratio_to_sequential']:.1f}×" if r["ratio_to_sequential"] else "-", r["maxrss_mb"]]
         for r in results],
    )  # fmt: skip

    memory = []
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"… RSS at {size:,} customers", flush=True)
        memory.append(throughput(size, 1, 0.0, None, 10_000.0, baseline=False))
    print_table(
        ["customers", "objects", "objects/s", "peak RSS MB"],
        [[m["customers"], m["objects"], m["objects_per_s"], m["maxrss_mb"]] for m in memory],
    )
    path = write_results("backfill_bench", {"throughput": results, "memory": memory})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
