"""`make bench`: runs every benchmark in turn, then prints one summary of their JSON results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
ORDER = ("emulator", "backfill", "incremental", "dbt", "webhook")


def _machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.platform()}"


def main() -> int:
    """Runs bench/<name>_bench.py for each name in ORDER that exists; non-zero on failure."""
    RESULTS.mkdir(exist_ok=True)
    print(f"machine: {_machine()}")
    failures = []
    for name in ORDER:
        script = BENCH_DIR / f"{name}_bench.py"
        if not script.exists():
            continue
        print(f"\n=== {name} ({script.name}) ===", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(script), *sys.argv[1:]], check=False)
        print(f"--- {name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode:
            failures.append(name)
    print("\n=== results (bench/results/*.json) ===")
    for path in sorted(RESULTS.glob("*.json")):
        print(f"{path.name}: {json.dumps(json.loads(path.read_text()))[:300]}")
    if failures:
        print(f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
