"""What one incremental build pays before and around its SQL: dbt's start-up, by way of running it.

On a small generated warehouse (nothing changed, so the SQL is the smallest a build runs), each
build gets its own as_of, as every Dagster build does, and runs the `incremental` selector:

- `cli, as_of in env`: the product's path (runner.build): a fresh `dbt` process, partial parsing
  warm in the warehouse's target folder, as_of in the environment;
- `cli, as_of in --vars`: the same with as_of passed in --vars, as builds did before: dbt re-parses
  the whole project whenever --vars change;
- `dbtRunner, long-lived`: dbt's programmatic runner in one process that imported dbt and parsed
  the project once, each build reusing the parsed manifest (what a resident build service would
  do).

It prints wall seconds and the CPU seconds of the dbt process (its own user+sys; Postgres's work
is not in it), medians of `--runs`. CPU time is the steadier figure on a shared machine.

    .venv/bin/python bench/dbt_startup_bench.py [--runs 5] [--customers 2000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import fresh_database, median, print_table, table, write_results
from dbt_bench import AS_OF, generate

from orchestration.transform.runner import (
    AS_OF_ENV,
    PROFILES_DIR,
    PROJECT_DIR,
    as_of_env,
    build,
    dbt_process_env,
    dbt_vars,
    run_dbt,
)

# A long-lived process: imports dbt once, parses once, then builds once per line on stdin (an
# as_of), answering with the build's wall and CPU seconds on a line starting with @@ (dbt logs to
# the same stdout).
RESIDENT = """
import json, os, sys, time
from dbt.cli.main import dbtRunner
a = json.loads(sys.argv[1])
os.environ.update(a["env"])
os.chdir(a["project_dir"])
common = ["--project-dir", a["project_dir"], "--profiles-dir", a["profiles_dir"],
          "--target-path", a["target"]]
parsed = dbtRunner().invoke(["parse", *common, "--vars", a["vars"]])
runner = dbtRunner(manifest=parsed.result)
print("@@" + json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    os.environ[a["as_of_env"]] = json.loads(line)
    wall, cpu = time.monotonic(), time.process_time()
    result = runner.invoke(["build", *common, "--selector", "incremental", "--vars", a["vars"],
                            "--quiet"])
    print("@@" + json.dumps({"ok": result.success, "wall_s": time.monotonic() - wall,
                             "cpu_s": time.process_time() - cpu}), flush=True)
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_build(url: str, target: Path, as_of: Any, as_of_in_vars: bool) -> dict[str, float]:
    """One build in a fresh dbt process; the CPU is that of the finished child processes."""
    wall, cpu = time.monotonic(), children_cpu()
    if as_of_in_vars:
        build_vars = json.loads(dbt_vars(livemode=False))
        build_vars["as_of"] = as_of.isoformat()
        args = ["build", "--selector", "incremental", "--vars", json.dumps(build_vars)]
        if run_dbt(args, url, target).returncode:
            raise RuntimeError("dbt build failed")
    else:
        build(url, as_of=as_of, livemode=False, target_path=target, selector="incremental")
    return {"wall_s": time.monotonic() - wall, "cpu_s": children_cpu() - cpu}


def _answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The resident process's next answer, skipping dbt's log lines."""
    while line := proc.stdout.readline():
        if line.startswith("@@"):
            return json.loads(line[2:])
    raise RuntimeError("the resident dbt process ended")


def resident_builds(url: str, target: Path, runs: int) -> list[dict[str, float]]:
    options = {
        "env": dbt_process_env(url),
        "project_dir": str(PROJECT_DIR),
        "profiles_dir": str(PROFILES_DIR),
        "target": str(target),
        "vars": dbt_vars(livemode=False),
        "as_of_env": AS_OF_ENV,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", RESIDENT, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _answer(proc)
        samples = []
        for run in range(runs + 1):
            as_of = as_of_env(AS_OF + timedelta(minutes=200 + run))[AS_OF_ENV]
            proc.stdin.write(json.dumps(as_of) + "\n")
            proc.stdin.flush()
            sample = _answer(proc)
            if not sample["ok"]:
                raise RuntimeError("dbtRunner build failed")
            samples.append(sample)
        return samples[1:]  # the first build warms the process's caches
    finally:
        proc.stdin.close()
        proc.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=None, help="5 (2 with --quick)")
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    runs = args.runs or (2 if args.quick else 5)
    results: dict[str, list[dict[str, float]]] = {}
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        generate(url, args.customers)
        target = Path(tmp) / "cli"
        build(url, as_of=AS_OF, livemode=False, target_path=target)  # relations, warm parse
        for mode, in_vars, offset in (("cli, as_of in env", False, 0), ("cli, as_of in --vars",
                                                                          True, 100)):  # fmt: skip
            results[mode] = [
                cli_build(url, target, AS_OF + timedelta(minutes=offset + run + 1), in_vars)
                for run in range(runs)
            ]
            print(f"{mode}: {[round(s['wall_s'], 1) for s in results[mode]]} s", flush=True)
        results["dbtRunner, long-lived"] = resident_builds(url, Path(tmp) / "resident", runs)
        print(f"dbtRunner: {[round(s['wall_s'], 1) for s in results['dbtRunner, long-lived']]}")
    headers = ["build", "runs", "wall p50 s", "dbt CPU p50 s", "wall min s", "wall max s"]
    rows = [
        [mode, len(s), median([x["wall_s"] for x in s]), median([x["cpu_s"] for x in s]),
         min(x["wall_s"] for x in s), max(x["wall_s"] for x in s)]
        for mode, s in results.items()
    ]  # fmt: skip
    print()
    print(f"incremental build, nothing changed, {args.customers:,} customers; median of {runs}")
    print_table(headers, rows)
    path = write_results("dbt_startup_bench", {
        "customers": args.customers, "runs": runs, "results": results,
        "markdown": table(headers, rows)})  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
