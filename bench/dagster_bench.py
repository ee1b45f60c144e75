"""Launch → success of the incremental Dagster runs under the real daemon, with a breakdown.

The instance is the one `make ui` runs (`stripe-sync ui`: its `prepare` and `start_dagster`, so
dagster.yaml's queued run coordinator, Postgres storage, the webserver and the daemon) on a fresh
bench warehouse, backfilled from the emulator (its own process; the backfill at no latency and
no limit, set-up and not measured, then 250 ms latency and the 25 req/s test limit) and built
once. Schedules are off (STRIPE_SYNC_SCHEDULES=off) so that nothing else runs;
runs are launched as the UI launches them (GraphQL `launchRun`) and queue like a scheduled run.

1. `stripe_sync_job` with 0 changes in the emulator since the last run;
2. `stripe_sync_job` after 100 emulator changes (lifecycle ticks, test mode);
3. the webhook sensor's `stripe_build_job` after 100 changes delivered by the emulator to
   `webhooks serve`'s receiver: from the last delivery stored to the run's creation (the
   sensor), then the run.

Each run's time is read from the instance: its record (created, started, ended) and its event
log, split into submit (created → RUN_ENQUEUED: the plan written), queue (→ RUN_STARTING: the
daemon's next dequeue), run process start (→ RUN_START: a new process imports Dagster,
dagster-dbt and the definitions), each step (STEP_START → STEP_SUCCESS: the sync, the asset
checks on the raw tables, dbt; the dbt step split by dagster-dbt's "Running/Finished dbt
command" lines into before dbt, the dbt command and after it) and end (last step →
RUN_SUCCESS). Medians of `--runs` with every raw value, and the machine's 1-minute load.

    .venv/bin/python bench/dagster_bench.py [--customers 10000] [--runs 3] [--changes 100] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import (
    EmulatorProcess,
    emulator_file,
    fresh_database,
    median,
    print_table,
    setup_backfill,
    table,
    write_results,
)
from webhook_bench import WEBHOOK_PATH, _free_port, _serve, _wait_healthy

# The emulator's own process, as backfill_bench's, with commands that change chosen customers.
# {"tick": N}: N test-mode lifecycle events (their ids); {"customers": true}: the ids of the live
# (not deleted) test-mode customers; {"rename": [[id, name], …]}: each customer renamed, with its
# customer.updated event (delivered to the endpoints like any other), answered with the wall
# time of the change; {"names": [ids]}: their current names; {"endpoint": url}: its secret;
# {"latency_ms": .., "rate_limit": ..} as backfill_bench's (setup_backfill sends them).
EMULATOR = """
import copy, json, sys, time
from orchestration.emulator import start_emulator
with start_emulator(**json.loads(sys.argv[1])) as emu:
    print(json.dumps({"url": emu.url, "key": emu.test_key}), flush=True)
    acc = emu.account
    for line in sys.stdin:
        cmd, answer = json.loads(line), {}
        if "latency_ms" in cmd:
            emu.latency_ms = cmd["latency_ms"]
        if "rate_limit" in cmd:
            emu.set_faults(0.0, rate_limit=cmd["rate_limit"])
        if "tick" in cmd:
            ids = []
            while len(ids) < cmd["tick"]:
                ids += [e for e in emu.tick(steps=1)
                        if not acc.store.get("events", e)[0]["livemode"]]
            answer["events"] = ids
        if "customers" in cmd:
            answer["ids"] = [i for i, _ in acc.store.ids("customers", False, deleted=False)]
        if "rename" in cmd:
            events = []
            with emu.lock:
                for cid, name in cmd["rename"]:
                    cust = acc.store.get("customers", cid)[0]
                    before = copy.deepcopy(cust)
                    cust["name"] = name
                    acc.save("customers", cust)
                    events.append(acc.event("customer.updated", "customers", cust,
                                            {"name": before.get("name")})["id"])
            answer["at"], answer["events"] = time.time(), events
        if "names" in cmd:
            answer["names"] = {i: acc.store.get("customers", i)[0].get("name")
                               for i in cmd["names"]}
        if "count" in cmd:
            answer["count"] = sum(1 for _ in acc.store.ids(cmd["count"], False, deleted=False))
        if "endpoint" in cmd:
            import stripe
            from orchestration.webhooks.register import find_or_create_endpoint
            sdk = stripe.StripeClient(emu.test_key, base_addresses={"api": emu.url})
            answer["secret"] = find_or_create_endpoint(sdk, cmd["endpoint"]).secret
        print(json.dumps(answer), flush=True)
"""

TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
# dagster-dbt's log lines around the dbt process, in the dbt step.
DBT_MARKERS = {"Running dbt command": "dbt_start", "Finished dbt command": "dbt_end"}
PENDING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
           dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]  # fmt: skip
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@contextlib.contextmanager
def bench_emulator(**options: Any) -> Iterator[EmulatorProcess]:
    """backfill_bench's emulator process, running this module's command loop."""
    emu = EmulatorProcess(script=EMULATOR, **options)
    try:
        yield emu
    finally:
        emu.close()


@dataclass
class Stack:
    """A warehouse served to the emulator, the Dagster instance of `make ui` on it, and (once
    `serve_webhooks` ran) the receiver the emulator delivers to."""

    emu: EmulatorProcess
    database_url: str
    port: int
    instance: Any
    location: str
    receiver: multiprocessing.Process | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def launch(self, job: str) -> str:
        """Launches `job` as the UI's button does; the run joins the daemon's queue."""
        params = {
            "selector": {
                "repositoryLocationName": self.location,
                "repositoryName": "__repository__",
                "jobName": job,
            },
            "runConfigData": {},
        }
        answer = self.graphql(LAUNCH, {"params": params})["data"]["launchRun"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun of {job}: {answer}")
        return answer["run"]["runId"]

    def serve_webhooks(self, resident: bool = False) -> None:
        """`webhooks serve`'s app in its own process, registered as the emulator's endpoint;
        with `resident`, its resident builder too (the webhook sensor then leaves builds to it).
        """
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        secret = self.emu.send(endpoint=url + WEBHOOK_PATH)["secret"]
        self.receiver = multiprocessing.get_context("spawn").Process(
            target=_serve,
            args=(self.database_url, secret, self.emu.key, self.emu.url, port, resident),
        )
        self.receiver.start()
        _wait_healthy(url, timeout=60.0)

    def runs_of(self, job: str) -> list[str]:
        return [r.run_id for r in self.instance.get_runs(dg.RunsFilter(job_name=job))]


@contextlib.contextmanager
def dagster_stack(
    customers: int,
    latency_ms: float,
    server_limit: float,
    seed: int = 9,
    dequeue_interval: int | None = None,
    data_dir: str | None = None,
) -> Iterator[Stack]:
    """Emulator, backfilled and built warehouse, then `stripe-sync ui`'s webserver and daemon
    (their output in the home's dagster.log). `dequeue_interval` sets the run queue's
    dequeue_interval_seconds in the home's dagster.yaml (the project's is 1 s): an A/B knob.
    The emulator keeps its data in a file under `data_dir` if given, for later runs to reuse."""
    from orchestration.cli.ui import prepare, start_dagster, stop_all, wait_until_loaded
    from orchestration.core.settings import load_settings
    from orchestration.transform.runner import build

    options: dict[str, Any] = {"customers": customers, "seed": seed, "webhooks": True}
    if data_dir:
        options["db_path"] = emulator_file(data_dir, customers, seed)
    saved = dict(os.environ)
    with (
        bench_emulator(**options) as emu,
        fresh_database() as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        processes: list[Any] = []
        stack: Stack | None = None
        try:
            started = time.monotonic()
            sync = setup_backfill(emu, database_url, latency_ms, server_limit)
            print(f"… backfill: {sync['objects']:,} objects in {sync['wall_s']:.0f} s", flush=True)
            built = time.monotonic()
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # dbt's log
                build(database_url, as_of=None, livemode=False, target_path=Path(tmp) / "target")
            print(f"… first build {time.monotonic() - built:.0f} s", flush=True)
            # What `make ui` exports and starts, on this warehouse and a home of our own; the
            # schedules stay off so that only the runs we launch (and the sensor's) run.
            os.environ["STRIPE_SYNC_SCHEDULES"] = "off"
            settings = load_settings(stripe_api_key=emu.key, stripe_api_base=emu.url,
                                     database_url=database_url,
                                     dagster_home=Path(tmp) / "dagster")  # fmt: skip
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                home = prepare(settings)
            if dequeue_interval is not None:
                _set_dequeue_interval(home / "dagster.yaml", dequeue_interval)
            port = free_port()
            log = (home / "dagster.log").open("wb")
            processes = start_dagster(port, new_session=True, output=log)
            wait_until_loaded(port, processes)
            instance = dg.DagsterInstance.get()
            stack = Stack(emu, database_url, port, instance, _location(port))
            print(f"… Dagster up ({time.monotonic() - started:.0f} s since start)", flush=True)
            yield stack
        finally:
            if stack is not None and stack.receiver is not None:
                stack.receiver.terminate()
                stack.receiver.join(10)
            stop_all(processes, group=True)
            os.environ.clear()
            os.environ.update(saved)


def _set_dequeue_interval(path: Path, seconds: int) -> None:
    """Rewrites the dequeue_interval_seconds that the project's dagster.yaml sets."""
    text, found = re.subn(
        r"(?m)^(\s*dequeue_interval_seconds:).*$", rf"\g<1> {seconds}", path.read_text()
    )
    if not found:
        raise RuntimeError(f"{path} sets no dequeue_interval_seconds to change")
    path.write_text(text)


def free_port() -> int:
    return _free_port()


def _location(port: int) -> str:
    from orchestration.cli.ui import graphql

    query = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
    return graphql(port, query)["data"]["workspaceOrError"]["locationEntries"][0]["name"]


def wait_for_run(stack: Stack, run_id: str, timeout: float = 600.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = stack.instance.get_run_by_id(run_id)
        if run is not None and run.status.value in TERMINAL:
            return run.status.value
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f} s")


def wait_new_run(stack: Stack, job: str, known: set[str], timeout: float = 300.0) -> str:
    """The id of the first run of `job` not in `known` (the sensor's next request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r for r in stack.runs_of(job) if r not in known]
        if fresh:
            return fresh[-1]  # newest first: the last is the oldest new one
        time.sleep(0.1)
    raise TimeoutError(f"no new {job} run within {timeout:.0f} s")


def breakdown(stack: Stack, run_id: str) -> dict[str, Any]:
    """Where a run's time went, from its record and its event log (seconds)."""
    record = stack.instance.get_run_record_by_id(run_id)
    created = _epoch(record.create_timestamp)
    events: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    for entry in stack.instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            message = entry.user_message or ""
            for marker, key in DBT_MARKERS.items():
                if entry.step_key and message.startswith(marker):
                    steps.setdefault(entry.step_key, {}).setdefault(key, entry.timestamp)
            continue
        kind, at = event.event_type.name, entry.timestamp  # names: the values say PIPELINE_
        events.setdefault(kind, at)
        if entry.step_key:
            step = steps.setdefault(entry.step_key, {})
            if kind == "STEP_START":
                step["start"] = at
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                step["end"] = at
            elif kind == "ASSET_MATERIALIZATION":
                step.setdefault("first_materialization", at)
                step["last_materialization"] = at
    end = events.get("RUN_SUCCESS") or events.get("RUN_FAILURE") or record.end_time
    enqueued = events.get("RUN_ENQUEUED", created)
    # Dagster 1.13 writes no RUN_DEQUEUED event: the daemon's RUN_STARTING marks the dequeue.
    starting = events.get("RUN_STARTING", enqueued)
    run_start = events.get("RUN_START", record.start_time or starting)
    out: dict[str, Any] = {
        "run_id": run_id,
        "status": record.dagster_run.status.value,
        "total_s": end - created,
        # created → ENQUEUED: the run's plan written (asset and check plans) and submitted.
        "submit_s": enqueued - created,
        # ENQUEUED → STARTING: waiting for the daemon's next dequeue (every 5 s by default).
        "queue_s": starting - enqueued,
        # STARTING → RUN_START: a new process imports Dagster, dagster-dbt and the definitions.
        "process_start_s": run_start - starting,
        "launch_s": run_start - starting,
        "steps": {},
    }
    last = run_start
    for key, step in sorted(steps.items(), key=lambda kv: kv[1].get("start", 0)):
        if "start" not in step or "end" not in step:
            continue
        detail = {"gap_before_s": step["start"] - last, "duration_s": step["end"] - step["start"]}
        if "first_materialization" in step:
            detail["to_first_materialization_s"] = step["first_materialization"] - step["start"]
            detail["after_last_materialization_s"] = step["end"] - step["last_materialization"]
        if "dbt_start" in step and "dbt_end" in step:
            # Before dbt: our runner and dagster-dbt prepare the command; after: dagster-dbt
            # turns dbt's results into Dagster events.
            detail["before_dbt_s"] = step["dbt_start"] - step["start"]
            detail["dbt_command_s"] = step["dbt_end"] - step["dbt_start"]
            detail["after_dbt_s"] = step["end"] - step["dbt_end"]
        out["steps"][key] = detail
        last = step["end"]
    out["end_s"] = end - last
    return out


def _epoch(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def wait_rows(database_url: str, query: str, params: Any, want: int, timeout: float) -> float:
    """Polls until `query` counts `want`; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute(query, params).fetchone()[0] >= want:
                return time.monotonic()
            time.sleep(0.05)
    raise TimeoutError(f"{query} did not reach {want} in {timeout:.0f} s")


def _job_run(stack: Stack, changes: int) -> dict[str, Any]:
    if changes:
        stack.emu.send(tick=changes)
    run_id = stack.launch("stripe_sync_job")
    status = wait_for_run(stack, run_id)
    if status != "SUCCESS":
        raise RuntimeError(f"stripe_sync_job run {run_id} ended {status}")
    return {**breakdown(stack, run_id), "load1": os.getloadavg()[0]}


def _sensor_run(stack: Stack, changes: int) -> dict[str, Any]:
    """K changes delivered by webhooks; the sensor's build from the last delivery to success."""
    known = set(stack.runs_of("stripe_build_job"))
    t0 = time.monotonic()
    ids = stack.emu.send(tick=changes)["events"]
    delivered = wait_rows(
        stack.database_url,
        "select count(*) from stripe_raw.events where id = any(%s)",
        (ids,),
        len(ids),
        timeout=600.0,
    )
    run_id = wait_new_run(stack, "stripe_build_job", known)
    status = wait_for_run(stack, run_id)
    done = time.monotonic()
    # A build the sensor requested mid-burst may miss the last deliveries: the next one (the
    # sensor's debounce) brings them; both count.
    later = [r for r in stack.runs_of("stripe_build_job") if r not in known and r != run_id]
    for extra in later:
        wait_for_run(stack, extra)
        done = time.monotonic()
    if status != "SUCCESS":
        raise RuntimeError(f"stripe_build_job run {run_id} ended {status}")
    out = breakdown(stack, run_id)
    record = stack.instance.get_run_record_by_id(run_id)
    created_ago = time.time() - _epoch(record.create_timestamp)
    out["deliveries_s"] = delivered - t0
    out["delivered_to_created_s"] = (time.monotonic() - created_ago) - delivered
    out["changes_to_success_s"] = done - t0
    out["builds"] = 1 + len(later)
    out["load1"] = os.getloadavg()[0]  # the machine is shared: the 1-minute load at the end
    return out


def summarize(samples: list[dict[str, Any]], fields: list[str]) -> dict[str, Any]:
    """Median and raw values of each field (dotted paths into the samples)."""
    out = {}
    for name in fields:
        values = [_dig(s, name) for s in samples]
        values = [v for v in values if v is not None]
        out[name] = {"median": median(values), "raw": [round(v, 2) for v in values]}
    return out


def _dig(sample: dict[str, Any], path: str) -> Any:
    value: Any = sample
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def raw(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 customers, 1 run")
    parser.add_argument("--customers", type=int, default=None, help="10,000 (500 with --quick)")
    parser.add_argument("--runs", type=int, default=None, help="3 (1 with --quick)")
    parser.add_argument("--changes", type=int, default=100, help="emulator changes per run")
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--server-limit", type=float, default=25.0, help="emulator req/s (test)")
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        default=None,
        help="the run queue's interval, s (dagster.yaml: 1)",
    )
    args, _ = parser.parse_known_args()  # run_all.py passes its own arguments to every bench
    runs = args.runs or (1 if args.quick else 3)
    customers = args.customers or (500 if args.quick else 10_000)

    cases: dict[str, list[dict[str, Any]]] = {}
    with dagster_stack(customers, args.latency_ms, args.server_limit,
                       dequeue_interval=args.dequeue_interval) as stack:  # fmt: skip
        _job_run(stack, 0)  # warm-up: the first run after the backfill applies its events
        job_cases = [("stripe_sync_job, 0 changes", 0),
                     (f"stripe_sync_job, {args.changes} changes", args.changes)]  # fmt: skip
        for name, changes in job_cases:
            for run in range(runs):
                sample = _job_run(stack, changes)
                cases.setdefault(name, []).append(sample)
                print(f"  {name} run {run + 1}: {sample['total_s']:.1f} s "
                      f"(queue {sample['queue_s']:.1f}, launch {sample['launch_s']:.1f})",
                      flush=True)  # fmt: skip
        stack.serve_webhooks()
        name = f"webhook sensor's stripe_build_job, {args.changes} deliveries"
        for run in range(runs):
            sample = _sensor_run(stack, args.changes)
            cases.setdefault(name, []).append(sample)
            print(f"  {name} run {run + 1}: run {sample['total_s']:.1f} s, deliveries "
                  f"{sample['deliveries_s']:.1f} s, delivered → run created "
                  f"{sample['delivered_to_created_s']:.1f} s, builds {sample['builds']}",
                  flush=True)  # fmt: skip

    # Columns: (header, field); a run's phases in order, then the dbt step's parts.
    columns = [("submit s", "submit_s"), ("queue s", "queue_s"),
               ("run process start s", "process_start_s"), ("sync step s", "sync_s"),
               ("check steps s", "checks_s"), ("dbt step s", "dbt_s"),
               ("of which before dbt s", "before_dbt_s"), ("dbt command s", "dbt_command_s"),
               ("after dbt s", "after_dbt_s"), ("end s", "end_s"), ("gaps s", "gaps_s"),
               ("load avg", "load1")]  # fmt: skip
    headers = ["case", "created → success s (raw)", *(h for h, _ in columns)]
    rows, summary = [], {}
    for name, samples in cases.items():
        for s in samples:
            dbt = s["steps"].get("stripe_dbt_models", {})
            s["sync_s"] = _dig(s, "steps.stripe_raw_tables.duration_s")
            s["dbt_s"] = dbt.get("duration_s")
            for part in ("before_dbt_s", "dbt_command_s", "after_dbt_s"):
                s[part] = dbt.get(part)
            s["gaps_s"] = sum(v["gap_before_s"] for v in s["steps"].values())
            s["checks_s"] = sum(v["duration_s"] for k, v in s["steps"].items()
                                if k not in ("stripe_raw_tables", "stripe_dbt_models"))  # fmt: skip
        fields = ["total_s", *(f for _, f in columns), "deliveries_s", "delivered_to_created_s",
                  "changes_to_success_s"]  # fmt: skip
        summary[name] = summarize(samples, fields)
        m = summary[name]
        rows.append([name, f"{m['total_s']['median']:.1f} ({raw(m['total_s']['raw'])})",
                     *(m[f]["median"] if m[f]["raw"] else None for _, f in columns)])  # fmt: skip
    sensor = summary[name]
    sensor_headers = ["webhook path", "median s", "raw s"]
    sensor_rows = [[label, sensor[key]["median"], raw(sensor[key]["raw"])] for label, key in (
        (f"{args.changes} changes → last delivery stored", "deliveries_s"),
        ("last delivery → sensor's run created", "delivered_to_created_s"),
        ("run created → success", "total_s"),
        ("changes → build success (every build it took)", "changes_to_success_s"),
    )]  # fmt: skip
    print()
    print(
        f"Dagster runs under the daemon: {customers:,} customers, {args.latency_ms:.0f} ms "
        f"latency, {args.server_limit:.0f} req/s limit; median of {runs} (raw in brackets)"
    )
    print_table(headers, rows)
    print()
    print_table(sensor_headers, sensor_rows)
    markdown = table(headers, rows) + "\n\n" + table(sensor_headers, sensor_rows)
    path = write_results("dagster_bench", {
        "customers": customers, "latency_ms": args.latency_ms,
        "server_limit_rps": args.server_limit, "runs": runs, "changes": args.changes,
        "dequeue_interval_s": args.dequeue_interval,
        "target_s": 15.0, "summary": summary, "samples": cases, "markdown": markdown,
    })  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
