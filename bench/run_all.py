"""`make bench`: runs every benchmark in turn, then prints one summary of their JSON results.

    .venv/bin/python -m bench.run_all            # full size (about an hour on 2 cores)
    .venv/bin/python -m bench.run_all --quick    # small smoke version (a few minutes)
    .venv/bin/python -m bench.run_all --only backfill,dbt --runs 5
    .venv/bin/python -m bench.run_all --summary-only   # the summary of the stored results

Every argument is passed on to each bench (each ignores the ones it does not know). The emulator's
own bench (bench/emulator_bench.py) belongs to the emulator work; add it with `--only emulator`.

Secrets audit (issue 9): each bench scans its databases for API keys and webhook secrets before
dropping them (backfill_bench.drop_database); this runner scans what the benches printed and what
they wrote in results/. A hit fails the run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # `python bench/run_all.py` finds tests.helpers too

from tests.helpers.secrets_scan import Scan, scan_files, scan_text  # noqa: E402

RESULTS = BENCH_DIR / "results"
ORDER = (
    "backfill",
    "incremental",
    "memory",
    "dbt",
    "dbt_startup",
    "webhook",
    "dagster",
    "segment_latency",
)
TITLES = {
    "backfill": "(a) backfill throughput vs the request budget's ceiling",
    "incremental": "(b) K changes → updated segment rows",
    "memory": "(c) peak RSS of a sync by account size",
    "dbt": "(d) dbt build time",
    "dbt_startup": "(d2) what an incremental build pays around its SQL: dbt start-up by path",
    "webhook": "(e) webhook endpoint",
    "dagster": "(g) Dagster runs under the daemon: created → success, and where the time goes",
    "segment_latency": "(h) change → the segment tables through webhooks and the resident builder",
}
JSON_NAMES = {"webhook": "webhook"}


def _machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.platform()}"


def _selected(argv: list[str]) -> list[str]:
    for i, arg in enumerate(argv):
        if arg == "--only" and i + 1 < len(argv):
            return argv[i + 1].split(",")
        if arg.startswith("--only="):
            return arg.split("=", 1)[1].split(",")
    return list(ORDER)


def _passed_on(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--only":
            skip = True
            continue
        if not arg.startswith("--only="):
            out.append(arg)
    return out


def _section(name: str) -> str:
    path = RESULTS / f"{JSON_NAMES.get(name, name + '_bench')}.json"
    if not path.exists():
        return f"### {TITLES.get(name, name)}\n\n(no results)\n"
    data = json.loads(path.read_text())
    head = f"### {TITLES.get(name, name)}\n\n_{path.name}, {data.get('at', '?')}_\n\n"
    if "markdown" in data:
        return head + data["markdown"] + "\n"
    if name == "webhook":
        load = data["load"]
        rounds = data.get("events_per_second_rounds", [load["events_per_second"]])
        return head + (
            f"verified events/s: **{load['events_per_second']:.0f}** (median of {len(rounds)}"
            f" rounds: {', '.join(f'{r:.0f}' for r in rounds)}), {data['deliveries']} deliveries"
            f" per round over {data['concurrency']} connections, p50 {load['latency_ms']['p50']}"
            f" ms, p99 {load['latency_ms']['p99']} ms; stored exactly once: "
            f"{data['rows']['distinct_event_rows']} of {data['events']}\n"
        )
    return head + json.dumps(data)[:500] + "\n"


def _run_teed(command: list[str]) -> tuple[int, str]:
    """Runs a bench, its output (stderr too) shown as it comes and also returned for the audit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return proc.wait(), "".join(lines)


def main() -> int:
    """Runs bench/<name>_bench.py for each selected name; non-zero when one fails."""
    argv = sys.argv[1:]
    RESULTS.mkdir(exist_ok=True)
    started_all = time.monotonic()
    print(f"machine: {_machine()}")
    failures, durations = [], {}
    audit = Scan()
    selected = [] if "--summary-only" in argv else _selected(argv)
    for name in selected:
        script = BENCH_DIR / f"{name}_bench.py"
        if not script.exists():
            print(f"no such bench: {script.name}")
            failures.append(name)
            continue
        print(f"\n=== {name} ({script.name}) ===", flush=True)
        started = time.monotonic()
        code, output = _run_teed([sys.executable, str(script), *_passed_on(argv)])
        durations[name] = time.monotonic() - started
        print(f"--- {name}: exit {code} in {durations[name]:.0f} s", flush=True)
        if code:
            failures.append(name)
        audit += scan_text(output, f"output of {script.name}")

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = [f"## Benchmarks, {stamp}", "", f"Machine: {_machine()}.", ""]
    summary += [_section(name) for name in (_selected(argv) if selected else ORDER)
                if name != "emulator"]  # fmt: skip
    text = "\n".join(summary)
    (RESULTS / "summary.md").write_text(text + "\n")
    print("\n=== summary (bench/results/summary.md) ===\n")
    print(text)
    print(f"total {time.monotonic() - started_all:.0f} s; "
          + ", ".join(f"{n} {s:.0f} s" for n, s in durations.items()))  # fmt: skip
    # Each bench audits its databases before dropping them; what they printed and wrote is here.
    audit += scan_files(RESULTS)
    print(f"secrets audit of the benches' output and {RESULTS.name}/: {audit.report()}")
    if audit.hits:
        print("SECRETS FOUND in the bench output or results (masked above): failing the run")
        failures.append("secrets audit")
    if failures:
        print(f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
