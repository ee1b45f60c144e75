"""Backfill throughput of the extractor against the emulator (each in its own process).

For every account size, latency (0 and 250 ms) and server limit (test: 25 req/s with the default
test budget of 22 req/s; live: 100 req/s with the default live budget of 90 req/s), the median
objects/s of `--runs` backfills, the ceiling the request budget sets (budget × 100 objects a
page), and the ratio to a sequential single-threaded pager (the loop of dlt and tap-stripe) run on
the same emulator right after, time-capped at `--pager-cap` seconds (its rate is steady).

    .venv/bin/python bench/backfill_bench.py [--sizes 10000,100000] [--runs 3] [--quick]

Also the shared harness of the other benches (emulator process, fresh database, tables, JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from orchestration.core.warehouse import parse_database_url, with_database
from orchestration.embedded.environment import server_url_for_tests
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import OBJECTS
from orchestration.transform.runner import BUILD_LOCK_KEY
from tests.helpers.secrets_scan import AUDIT_ENABLED, scan_server

PAGE = 100
RESULTS = Path(__file__).resolve().parent / "results"
# name → (server limit req/s, sync budget req/s): the product's default budgets (client.py).
LIMITS = {"test": (25.0, 22.0), "live": (100.0, 90.0)}

# The emulator in a child process, driven by JSON lines on stdin: {"latency_ms": .., "rate_limit":
# ..} changes its settings; {"tick": N} makes N test-mode events (and answers with their ids);
# {"advance": S} moves its clock; {"count": table} answers with the number of live test objects.
EMULATOR = """
import json, sys
from orchestration.emulator import start_emulator
with start_emulator(**json.loads(sys.argv[1])) as emu:
    print(json.dumps({"url": emu.url, "key": emu.test_key}), flush=True)
    for line in sys.stdin:
        cmd, answer = json.loads(line), {}
        if "latency_ms" in cmd:
            emu.latency_ms = cmd["latency_ms"]
        if "rate_limit" in cmd:
            emu.set_faults(0.0, rate_limit=cmd["rate_limit"])
        if "tick" in cmd:
            ids = []
            while len(ids) < cmd["tick"]:  # test-mode events: the benches use the test key
                ids += [e for e in emu.tick(steps=1)
                        if not emu.account.store.get("events", e)[0]["livemode"]]
            answer["events"] = ids
        if "advance" in cmd:
            emu.advance_clock(cmd["advance"])
        if "count" in cmd:
            rows = emu.account.store.ids(cmd["count"], False, deleted=False)
            answer["count"] = sum(1 for _ in rows)
        if "endpoint" in cmd:
            import stripe
            from orchestration.webhooks.register import find_or_create_endpoint
            sdk = stripe.StripeClient(emu.test_key, base_addresses={"api": emu.url})
            answer["secret"] = find_or_create_endpoint(sdk, cmd["endpoint"]).secret
        print(json.dumps(answer), flush=True)
"""

SYNC = """
import json, resource, sys, time
from orchestration.core.process import fix_mmap_threshold
from orchestration.extract import sync_stripe
fix_mmap_threshold()  # as the CLI and the Dagster code location do before a sync
args = json.loads(sys.argv[1])
result = sync_stripe(**args)
print(json.dumps({
    "objects": result.total_objects, "seconds": result.seconds, "requests": result.requests,
    "retries": result.retries, "rate_limited": result.rate_limited, "kind": result.kind,
    "events_applied": result.events_applied, "refetched": result.refetched,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


class EmulatorProcess:
    """start_emulator(**options) in a child process, so its CPU is not the sync's; `script` is
    the child's command loop (EMULATOR's, or a bench's own with more commands)."""

    def __init__(self, script: str = EMULATOR, **options: Any) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        info = json.loads(self.proc.stdout.readline())
        self.url, self.key = info["url"], info["key"]
        self.startup_s = time.monotonic() - started

    def send(self, **command: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@contextmanager
def emulator_process(**options: Any) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(**options)
    try:
        yield emu
    finally:
        emu.close()


def bench_server_url() -> str:
    return server_url_for_tests(
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
    )


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on the bench's Postgres server, dropped afterwards."""
    server = bench_server_url()
    name = f"stripe_sync_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(server, name)
    finally:
        drop_database(server, name)


def drop_database(server: str, name: str) -> None:
    """Drops a bench database and its `_dagster` twin, after auditing both for API keys and
    webhook secrets (issue 9; off with STRIPE_SYNC_SECRETS_AUDIT=0); raises, once they are
    dropped, if either held one."""
    started = time.monotonic()
    scan = scan_server(server, [name, f"{name}_dagster"]) if AUDIT_ENABLED else None
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as admin:
        for db in (name, f"{name}_dagster"):
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db))
            )
    if scan is not None:
        print(f"    secrets audit of {name}: {scan.summary()} ({time.monotonic() - started:.1f} s)",
              flush=True)  # fmt: skip
        scan.raise_on_hits(f"bench database {name}, just before it was dropped")


# The budget of a backfill that only sets up what a bench measures next (setup_backfill).
SETUP_BUDGET_RPS = 90.0


def setup_backfill(
    emu: EmulatorProcess, database_url: str, latency_ms: float, server_limit: float | None
) -> dict[str, Any]:
    """A backfill that is set-up, not measurement (incremental_bench, dagster_bench measure what
    follows it): at no latency and no server limit, with the live budget, so that 1M customers
    take the better part of an hour rather than four or more at the test limit; then the emulator
    takes the latency and limit the bench measures with."""
    emu.send(latency_ms=0.0, rate_limit=None)
    result = run_sync(database_url=database_url, api_key=emu.key, api_base=emu.url,
                      max_rps=SETUP_BUDGET_RPS)  # fmt: skip
    emu.send(latency_ms=latency_ms, rate_limit=server_limit)
    return result


def copy_database(source_url: str, target_url: str) -> None:
    """Makes the target database a copy of the source (Postgres copies its files, far faster than
    a second backfill); no session may be open on the source."""
    source, target = parse_database_url(source_url).dbname, parse_database_url(target_url).dbname
    with psycopg.connect(with_database(bench_server_url(), "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(target)))
        admin.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(target), sql.Identifier(source)))  # fmt: skip


def emulator_file(data_dir: str, customers: int, seed: int) -> str:
    """The emulator's data file for one account in `data_dir`: generated once (1M customers take
    minutes), reused by later runs with the same options."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(data_dir) / f"emu-{customers}-{seed}.sqlite")


def run_sync(**args: Any) -> dict[str, Any]:
    """sync_stripe(**args) in a fresh process; adds the process's wall time (start-up included)."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", SYNC, json.dumps(args)], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"sync failed: {out.stderr.strip().splitlines()[-1:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def wait_builds_idle(database_url: str, settle: float = 2.0, timeout: float = 600.0) -> None:
    """Waits until no build of the database ran for `settle` seconds (longer than the resident
    builder's burst window), so that the polling path's build never shares the CPU with it."""
    free_since, deadline = None, time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            held = conn.execute(
                "select exists (select from pg_locks where locktype = 'advisory' and granted"
                " and ((classid::bigint << 32) | objid::bigint) = %s and objsubid = 1)",
                (BUILD_LOCK_KEY,),
            ).fetchone()[0]
            now = time.monotonic()
            free_since = None if held else (free_since or now)
            if free_since is not None and now - free_since >= settle:
                return
            time.sleep(0.05)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (q in 0..100): a value that was measured, never an
    interpolation; with few runs p95 is the slowest run."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def machine() -> dict[str, Any]:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(mem_gib),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamped = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    path.write_text(json.dumps({**stamped, **payload}, indent=2) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    print(table(headers, rows), flush=True)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def sequential_pager(url: str, key: str, max_rps: float, cap_s: float) -> dict[str, Any]:
    """One request at a time through every list, as dlt's and tap-stripe's loops do (plain dicts,
    no database writes: the pager's best case), same budget as the sync, at most `cap_s` s."""
    client = StripeApi(key, url, max_rps=max_rps)
    started, objects, capped = time.monotonic(), 0, False
    for spec in OBJECTS:
        params: dict[str, Any] = {"limit": PAGE, **spec.list_params}
        while True:
            if time.monotonic() - started >= cap_s:
                capped = True
                break
            page = client.get(spec.list_path, **params).data
            objects += len(page["data"])
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        if capped:
            break
    seconds = time.monotonic() - started
    return {"objects": objects, "seconds": seconds, "objects_per_s": objects / seconds,
            "capped": capped}  # fmt: skip


def measure(emu: EmulatorProcess, runs: int, limit: str, pager_cap: float) -> dict[str, Any]:
    """`runs` backfills into fresh databases, then the sequential pager, same emulator settings."""
    budget = LIMITS[limit][1]
    samples = []
    for _ in range(runs):
        with fresh_database() as database_url:
            r = run_sync(database_url=database_url, api_key=emu.key, api_base=emu.url,
                         max_rps=budget)  # fmt: skip
        r["objects_per_s"] = r["objects"] / r["wall_s"]
        samples.append(r)
        print(f"    run: {r['objects']:,} objects in {r['wall_s']:.1f} s "
              f"= {r['objects_per_s']:,.0f}/s, {r['rate_limited']} × 429", flush=True)  # fmt: skip
    pager = sequential_pager(emu.url, emu.key, budget, pager_cap)
    ops = median([s["objects_per_s"] for s in samples])
    ceiling = budget * PAGE
    return {
        "objects": samples[0]["objects"], "runs": samples, "budget_rps": budget,
        "objects_per_s": ops, "ceiling_objects_per_s": ceiling, "share_of_ceiling": ops / ceiling,
        "rate_limited": max(s["rate_limited"] for s in samples),
        "wall_s": median([s["wall_s"] for s in samples]),
        "maxrss_mb": max(s["maxrss_mb"] for s in samples),
        "sequential": pager, "ratio_to_sequential": ops / pager["objects_per_s"],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 customers, short pager cap")
    parser.add_argument("--sizes", default=None, help="customers, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latencies", default="0,250", help="emulator latency ms")
    parser.add_argument("--limits", default="test,live", help=f"of {sorted(LIMITS)}")
    parser.add_argument("--pager-cap", type=float, default=None, help="seconds")
    parser.add_argument(
        "--merge", action="store_true", help="keep earlier results of other configurations"
    )
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    sizes = [int(s) for s in (args.sizes or ("2000" if args.quick else "10000,100000")).split(",")]
    pager_cap = args.pager_cap or (5.0 if args.quick else 20.0)

    results = []
    for size in sizes:
        with emulator_process(customers=size, seed=7) as emu:
            print(f"… {size:,} customers (emulator up in {emu.startup_s:.1f} s)", flush=True)
            for latency in [float(x) for x in args.latencies.split(",")]:
                for limit in args.limits.split(","):
                    print(f"  … {latency:.0f} ms, {limit} limit", flush=True)
                    emu.send(latency_ms=latency, rate_limit=LIMITS[limit][0])
                    r = measure(emu, args.runs, limit, pager_cap)
                    results.append({"customers": size, "latency_ms": latency, "limit": limit,
                                    "server_limit_rps": LIMITS[limit][0], **r})  # fmt: skip
    if args.merge and (RESULTS / "backfill_bench.json").exists():
        earlier = json.loads((RESULTS / "backfill_bench.json").read_text()).get("throughput", [])
        ran = {(r["customers"], r["latency_ms"], r["limit"]) for r in results}
        kept = [r for r in earlier if (r["customers"], r["latency_ms"], r["limit"]) not in ran]
        results = sorted(kept + results, key=lambda r: (r["customers"], r["latency_ms"],
                                                        r["limit"] != "test"))  # fmt: skip
    headers = ["customers", "objects", "latency", "server limit", "budget", "objects/s",
               "ceiling", "% ceiling", "429s", "sequential/s", "× sequential",
               "peak RSS MB"]  # fmt: skip
    rows = [[r["customers"], r["objects"], f"{r['latency_ms']:.0f} ms",
             f"{r['server_limit_rps']:.0f} req/s ({r['limit']})", r["budget_rps"],
             r["objects_per_s"], r["ceiling_objects_per_s"], f"{r['share_of_ceiling']:.0%}",
             r["rate_limited"],
             f"{r['sequential']['objects_per_s']:,.0f}" + (" (capped)" if r["sequential"]["capped"]
                                                          else ""),
             f"{r['ratio_to_sequential']:.1f}×", r["maxrss_mb"]] for r in results]  # fmt: skip
    print()
    print(f"backfill: median of {args.runs} runs (process start-up included); sequential pager "
          f"capped at {pager_cap:.0f} s, same budget, same emulator, right after")  # fmt: skip
    print_table(headers, rows)
    path = write_results("backfill_bench", {"runs": args.runs, "pager_cap_s": pager_cap,
                                            "quick": args.quick, "throughput": results,
                                            "markdown": table(headers, rows)})  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
