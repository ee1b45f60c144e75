"""Peak RSS of a backfill at growing account sizes: it must stay flat.

For each size, an emulator (SQLite file under a temp dir or `--data-dir`, as big datasets need) in
its own process and one sync process whose RSS is sampled every 50 ms (psutil). A sync that would
outlast `--cap` seconds is stopped there; its peak is then the peak over that much of the backfill
(the pipeline reaches its steady state within seconds, so the cap loses little), and the table
says so. Flat means flat within a run too: the peaks of its first and second halves are shown.

    .venv/bin/python bench/memory_bench.py [--sizes 10000,100000,1000000] [--cap 1500] [--quick]
        [--data-dir DIR]
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

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import (
    SYNC,
    emulator_file,
    emulator_process,
    fresh_database,
    print_table,
    table,
    write_results,
)


def _rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'stripe_raw'"
            " and table_name in ('customers', 'subscriptions', 'invoices', 'charges', 'prices',"
            " 'products', 'checkout_sessions')"
        ).fetchall()
        return sum(
            conn.execute(f"select count(*) from stripe_raw.{t}").fetchone()[0]  # noqa: S608
            for (t,) in tables
        )


def sampled_sync(args: dict[str, Any], cap: float) -> dict[str, Any]:
    """Runs the sync process, sampling its RSS; stops it after `cap` seconds."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", SYNC, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ps = psutil.Process(proc.pid)
    peak, samples = 0, []
    while proc.poll() is None and time.monotonic() - started < cap:
        try:
            rss = ps.memory_info().rss
        except psutil.Error:
            break
        peak = max(peak, rss)
        samples.append((round(time.monotonic() - started, 2), round(rss / 2**20, 1)))
        time.sleep(0.05)
    capped = proc.poll() is None
    if capped:
        proc.kill()
    out, _ = proc.communicate()
    wall = time.monotonic() - started
    done = json.loads(out.strip().splitlines()[-1]) if not capped and out.strip() else {}
    peak_mb = max(peak / 2**20, done.get("maxrss_mb", 0))
    rows = _rows(args["database_url"])
    # RSS once the pipeline is running (after the first 10 s), for the flatness check: memory
    # bounded by configuration peaks as high in the first half of that as in the second.
    steady = [mb for t, mb in samples if t >= 10]
    half = len(steady) // 2
    return {"peak_rss_mb": peak_mb, "capped": capped, "wall_s": wall, "rows_loaded": rows,
            "objects_per_s": rows / wall, "steady_peak_mb": max(steady) if steady else None,
            "first_half_peak_mb": max(steady[:half]) if half else None,
            "second_half_peak_mb": max(steady[half:]) if half else None,
            "trace": samples[:: max(1, len(samples) // 60)]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k, 5k, 20k customers")
    parser.add_argument("--sizes", default=None, help="customers, comma-separated")
    parser.add_argument("--cap", type=float, default=None, help="seconds per sync")
    parser.add_argument("--max-rps", type=float, default=90.0, help="sync budget (no server limit)")
    parser.add_argument(
        "--data-dir", default=None, help="keep the emulator's files here, to reuse on later runs"
    )
    args, _ = parser.parse_known_args()
    default = "1000,5000,20000" if args.quick else "10000,100000,1000000"
    sizes = [int(s) for s in (args.sizes or default).split(",")]
    cap = args.cap or (60.0 if args.quick else 1500.0)  # a whole 1M backfill takes ~13 min

    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
            # A file generated once serves later runs in seconds (1M customers take minutes).
            db_path = emulator_file(args.data_dir or tmp, size, seed=7)
            options = {"customers": size, "seed": 7, "db_path": db_path}
            started = time.monotonic()
            with emulator_process(**options) as emu, fresh_database() as database_url:
                startup = time.monotonic() - started
                print(f"… {size:,} customers (emulator generated in {startup:.0f} s)", flush=True)
                r = sampled_sync({"database_url": database_url, "api_key": emu.key,
                                  "api_base": emu.url, "max_rps": args.max_rps}, cap)  # fmt: skip
        results.append({"customers": size, "emulator_startup_s": startup, **r})
        print(f"    peak RSS {r['peak_rss_mb']:.0f} MB, {r['rows_loaded']:,} rows in "
              f"{r['wall_s']:.0f} s{' (capped)' if r['capped'] else ''}", flush=True)  # fmt: skip
    headers = ["customers", "emulator start-up s", "rows loaded", "sync s", "objects/s",
               "peak RSS MB", "peak MB, 1st half", "peak MB, 2nd half", "complete"]  # fmt: skip
    rows = [[r["customers"], r["emulator_startup_s"], r["rows_loaded"], r["wall_s"],
             r["objects_per_s"], r["peak_rss_mb"], r["first_half_peak_mb"],
             r["second_half_peak_mb"],
             f"no: stopped at {cap:.0f} s" if r["capped"] else "yes"] for r in results]  # fmt: skip
    print()
    print(f"peak RSS of one sync process, budget {args.max_rps:.0f} req/s, no latency")
    print_table(headers, rows)
    path = write_results("memory_bench", {"cap_s": cap, "max_rps": args.max_rps,
                                          "results": results,
                                          "markdown": table(headers, rows)})  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
