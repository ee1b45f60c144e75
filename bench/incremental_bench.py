"""Incremental sync time for about 100 changes: after a backfill, the emulator (its own process)
makes changes, then a sync process replays them. Target: <= 5 s, start-up included.

    .venv/bin/python bench/incremental_bench.py [--customers 2000] [--runs 5] [--latency-ms 250]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: share backfill_bench's harness

from backfill_bench import fresh_database, median, print_table, run_sync, write_results

CHANGES = 100

# The emulator in a child process that also obeys "tick N" and "advance N" lines on stdin.
EMULATOR = """
import json, sys
from orchestration.emulator import start_emulator
with start_emulator(**json.loads(sys.argv[1])) as emu:
    print(json.dumps({"url": emu.url, "key": emu.test_key}), flush=True)
    for line in sys.stdin:
        verb, n = line.split()
        if verb == "tick":
            events = []
            while len(events) < int(n):  # test-mode events: the sync's key is a test key
                events += [e for e in emu.tick(steps=1)
                           if not emu.account.store.get("events", e)[0]["livemode"]]
            print(json.dumps({"events": len(events)}), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--server-limit", type=float, default=25.0, help="emulator req/s (test)")
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench

    options = {"customers": args.customers, "seed": 9, "latency_ms": args.latency_ms,
               "rate_limit": args.server_limit}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, json.dumps(options)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    samples: list[dict[str, Any]] = []
    try:
        emu = json.loads(proc.stdout.readline())
        sync_args = {"api_key": emu["key"], "api_base": emu["url"]}  # default test budget
        with fresh_database() as database_url:
            backfill = run_sync(database_url=database_url, **sync_args)
            for _ in range(args.runs):
                proc.stdin.write(f"tick {CHANGES}\n")
                proc.stdin.flush()
                changes = json.loads(proc.stdout.readline())["events"]
                time.sleep(1.1)  # the changes' second is over: nothing of it still to come
                sample = run_sync(database_url=database_url, **sync_args)
                sample["changes"] = changes
                samples.append(sample)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

    print_table(
        ["run", "events", "applied objects", "re-fetched", "requests", "in-call s", "wall s"],
        [[i + 1, s["events_applied"], s["objects"], s["refetched"], s["requests"], s["seconds"],
          s["wall_s"]] for i, s in enumerate(samples)],
    )  # fmt: skip
    summary = {
        "customers": args.customers,
        "latency_ms": args.latency_ms,
        "server_limit_rps": args.server_limit,
        "backfill_objects": backfill["objects"],
        "changes_per_run": CHANGES,
        "median_wall_s": median([s["wall_s"] for s in samples]),
        "median_in_call_s": median([s["seconds"] for s in samples]),
        "target_s": 5.0,
        "runs": samples,
    }
    print(f"median: {summary['median_wall_s']:.2f} s wall (process start-up included), "
          f"{summary['median_in_call_s']:.2f} s in sync_stripe; target <= 5 s")  # fmt: skip
    print(f"wrote {write_results('incremental_bench', summary)}")


if __name__ == "__main__":
    main()
