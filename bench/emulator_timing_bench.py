"""Timing figures of the emulator that tests must not assert: page time, overlap, start-up.

These were once limits in tests/emulator/test_scale.py; on a shared machine a time limit fails by
chance, so they are printed here as figures next to their targets (and written to
results/emulator_timing_bench.json). Nothing here fails on a slow machine.

    .venv/bin/python bench/emulator_timing_bench.py [--runs 3] [--customers 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestration.emulator import start_emulator
from orchestration.emulator.server import Emulator

RESULTS = Path(__file__).parent / "results"
TARGET_MS_PER_PAGE = 20.0  # a page of 100 objects, fastest of 15 requests
TARGET_OVERLAP_SECONDS = 1.5  # 8 requests of 300 ms latency; in sequence they would take 2.4 s
TARGET_STARTUP_SECONDS = 10.0  # 100k customers, modelled from 20k (generation is linear)
PATHS = [
    ("customers", "/v1/customers", {}),
    ("subscriptions", "/v1/subscriptions", {"status": "all"}),
    ("invoices", "/v1/invoices", {}),
    ("events", "/v1/events", {}),
    ("expanded", "/v1/subscriptions", {"expand[]": "data.customer"}),
]


def fastest_page_ms(customers: int) -> dict[str, float]:
    """Fastest of 15 deep pages of 100 objects per list, in ms (wall, client side)."""
    out = {}
    with start_emulator(customers=customers, seed=2, webhooks=False) as emu:
        headers = {"Authorization": f"Bearer {emu.test_key}"}
        with httpx.Client(headers=headers) as client:
            for name, path, params in PATHS:
                first = client.get(emu.url + path, params={"limit": 100, **params}).json()
                deep = {"limit": 100, "starting_after": first["data"][-1]["id"], **params}
                timings = []
                for _ in range(15):
                    started = time.perf_counter()
                    client.get(emu.url + path, params=deep).raise_for_status()
                    timings.append((time.perf_counter() - started) * 1000)
                out[name] = min(timings)
    return out


def overlap_seconds() -> float:
    """Wall seconds of 8 concurrent requests against an emulator with 300 ms latency."""
    with start_emulator(customers=50, seed=2, latency_ms=300, webhooks=False) as emu:
        headers = {"Authorization": f"Bearer {emu.test_key}"}

        def fetch(_: int) -> int:
            return httpx.get(f"{emu.url}/v1/customers", headers=headers).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fetch, range(8)))
        return time.perf_counter() - started


def modelled_startup_seconds() -> float:
    """CPU seconds to generate 20k customers, times 5: the modelled 100k start-up."""
    # CPU seconds (ours, and the generator workers' spread over the cores they get): other
    # processes share this machine, so wall time would measure them.
    cores = min(os.cpu_count() or 1, 4)
    own, workers = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    Emulator(customers=20_000, seed=3, webhooks=False, live_customers=200)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime + after.ru_stime) - (workers.ru_utime + workers.ru_stime)
    return (time.process_time() - own + worker_cpu / cores) * 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=3000)
    args, _ = parser.parse_known_args()

    pages = [fastest_page_ms(args.customers) for _ in range(args.runs)]
    page_ms = {name: statistics.median(run[name] for run in pages) for name, _, _ in PATHS}
    overlap = statistics.median(overlap_seconds() for _ in range(args.runs))
    startup = statistics.median(modelled_startup_seconds() for _ in range(args.runs))

    print(f"median of {args.runs} runs, {os.cpu_count()} cores")
    for name, ms in page_ms.items():
        print(f"  page of 100 {name:<14} {ms:7.1f} ms   (target < {TARGET_MS_PER_PAGE:.0f} ms)")
    print(f"  8 × 300 ms concurrent  {overlap:7.2f} s    (target < {TARGET_OVERLAP_SECONDS} s)")
    target = f"(target < {TARGET_STARTUP_SECONDS:.0f} s)"
    print(f"  100k start-up, modelled {startup:6.1f} s    {target}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "emulator_timing_bench.json").write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "runs": args.runs,
                "page_ms": page_ms,
                "overlap_seconds": overlap,
                "modelled_startup_seconds": startup,
                "targets": {
                    "page_ms": TARGET_MS_PER_PAGE,
                    "overlap_seconds": TARGET_OVERLAP_SECONDS,
                    "startup_seconds": TARGET_STARTUP_SECONDS,
                },
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
