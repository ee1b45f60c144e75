"""The one dbt runner: `stripe-sync build`, the Dagster asset, `dbt parse` and `make docs` all run
dbt through dagster-dbt's DbtCliResource, in one environment (`dbt_environment`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import psycopg
from dagster_dbt import DbtCliResource, DbtProject
from dbt.adapters.base import BaseAdapter
from packaging import version

from orchestration.core.errors import BuildError, DatabaseError
from orchestration.core.warehouse import dbt_env, parse_database_url
from orchestration.extract import loader

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROFILES_DIR = PROJECT_DIR / "profiles"
DEFAULT_TARGET_PATH = PROJECT_DIR / "target"
DOCS_PORT = 8080
# dbt_project.yml's default of var stale_after_hours, which Settings overrides on every build.
STALE_AFTER_HOURS = 24
# selectors.yml's production build: seeds, models and the reader_guard checks.
INCREMENTAL_SELECTOR = "incremental"

# The dbt project sits at the repo root (dbt_project.yml), its models in dbt_project/.
dbt_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROFILES_DIR)

# Failure statuses in dbt's run_results.json (models: error; tests: fail / error).
_FAILED_STATUSES = {"error", "fail", "runtime error"}


@dataclass(frozen=True)
class NodeResult:
    """One dbt node (model, test, seed, unit test) of a build and how it ended."""

    unique_id: str
    status: str
    execution_time: float
    message: str | None = None

    @property
    def name(self) -> str:
        """The node's short name: `model.stripe_sync.customer_fields` -> `customer_fields`."""
        return self.unique_id.split(".", 2)[-1]


@dataclass(frozen=True)
class BuildResult:
    """What a `dbt build` did: success, per-node outcomes, duration and where its artifacts are."""

    success: bool
    as_of: datetime | None
    livemode: bool
    duration_seconds: float
    target_path: Path
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def failures(self) -> list[NodeResult]:
        """Nodes that failed (models in error, tests failing or erroring)."""
        return [node for node in self.nodes if node.status in _FAILED_STATUSES]

    def count(self, resource_type: str) -> int:
        """How many nodes of a type ran (`model`, `test`, `seed`, `unit_test`)."""
        return sum(1 for node in self.nodes if node.unique_id.startswith(resource_type + "."))

    def summary(self) -> str:
        """What `stripe-sync build` prints: one line."""
        return (
            f"build {'succeeded' if self.success else 'failed'} in {self.duration_seconds:.1f} s:"
            f" {self.count('model')} models, {self.count('test')} tests,"
            f" {self.count('unit_test')} unit tests, {self.count('seed')} seeds"
        )


def dbt_executable() -> str:
    """The dbt CLI next to this interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dbt")
    if found is None:
        raise BuildError("dbt is not installed", "run `make setup` to install the dev environment")
    return found


def target_path_for(database_url: str) -> Path:
    """A target folder per warehouse, so builds of different databases never share artifacts."""
    params = parse_database_url(database_url)
    key = hashlib.sha256(f"{params.host}:{params.port}/{params.dbname}".encode()).hexdigest()[:12]
    return DEFAULT_TARGET_PATH / "builds" / f"{params.dbname}-{key}"


# The build's instant reaches dbt in the environment, not in --vars: dbt re-parses the whole
# project whenever --vars change (seconds per build, as every Dagster build has its own as_of),
# and macros/as_of.sql reads it only while executing, where dbt records no env_var dependency.
AS_OF_ENV = "STRIPE_SYNC_BUILD_AS_OF"


def dbt_vars(*, livemode: bool, stale_after_hours: int = STALE_AFTER_HOURS) -> str:
    """The --vars of a build: the mode and the staleness threshold
    (Settings.stripe_sync_stale_after_hours). Both change rarely, so partial parsing holds."""
    return json.dumps({"livemode": bool(livemode), "stale_after_hours": int(stale_after_hours)})


def as_of_env(as_of: datetime | None) -> dict[str, str]:
    """The build's as_of for dbt's environment: ISO-8601 UTC, "" for the build's own start."""
    if as_of is not None and as_of.tzinfo is None:
        raise BuildError("--as-of has no timezone", "give one, e.g. 2026-11-20T12:00:00Z")
    return {AS_OF_ENV: as_of.astimezone(UTC).isoformat() if as_of is not None else ""}


def build(
    database_url: str,
    *,
    as_of: datetime | None,
    livemode: bool,
    select: str | None = None,
    target_path: Path | None = None,
    full_refresh: bool = False,
    stale_after_hours: int = STALE_AFTER_HOURS,
    selector: str | None = None,
    dbt: DbtCommand | None = None,
) -> BuildResult:
    """Runs `dbt build` (seeds, models, unit and data tests) on the warehouse.

    Raises BuildError naming the failing nodes when anything fails (DatabaseError when the
    warehouse cannot be reached). Builds of one database are serialized by a Postgres advisory
    lock, since two concurrent builds would race on the same relations; each database gets its own
    target folder, so builds of different databases never share artifacts. The raw tables are
    created first if missing (the DDL is idempotent), so a build before the first sync yields
    empty marts instead of an error. `dbt` runs the command: a fresh dbt process (`run_dbt`)
    unless the caller keeps one warm (resident.WarmDbt).
    """
    target = target_path or target_path_for(database_url)
    build_env = as_of_env(as_of)
    args = ["build", "--vars", dbt_vars(livemode=livemode, stale_after_hours=stale_after_hours)]
    if select:
        args += ["--select", select]
    # selectors.yml: `incremental` is the production build (models, reader_guard checks only).
    if selector:
        args += ["--selector", selector]
    if full_refresh:
        args.append("--full-refresh")
    with build_lock(database_url):
        ensure_raw_tables(database_url)
        # A failure before dbt writes its results must not be read as the previous build's.
        (target / "run_results.json").unlink(missing_ok=True)
        started = time.monotonic()
        completed = (dbt or run_dbt)(args, database_url, target, build_env)
        duration = time.monotonic() - started
    nodes = _read_run_results(target)
    result = BuildResult(
        success=completed.returncode == 0 and not any(n.status in _FAILED_STATUSES for n in nodes),
        as_of=as_of,
        livemode=livemode,
        duration_seconds=duration,
        target_path=target,
        nodes=nodes,
    )
    if not result.success:
        raise BuildError(_failure_summary(result, completed), _failure_fix(target))
    return result


def parse(target_path: Path | None = None) -> Path:
    """Runs `dbt parse` and returns the manifest.json path (the manifest Dagster loads).

    Parsing needs no database connection, so the profile's defaults suffice.
    """
    target = target_path or DEFAULT_TARGET_PATH
    completed = run_dbt(["parse"], None, target)
    manifest = target / "manifest.json"
    if completed.returncode != 0 or not manifest.exists():
        last = _last_error_line(completed.errors)
        raise BuildError(f"dbt parse failed: {last}", "run `make lint` to see the full dbt output")
    return manifest


# One advisory-lock key for "a dbt build of this database is running".
BUILD_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"stripe_sync.dbt_build").digest()[:8], "big", signed=True
)


@contextmanager
def build_lock(database_url: str) -> Iterator[None]:
    """Holds a session-level advisory lock on the warehouse for the duration of a build."""
    try:
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            "cannot connect to the warehouse to build",
            "check DATABASE_URL and that Postgres is running (`stripe-sync check`)",
        ) from exc
    with conn:
        conn.execute("select pg_advisory_lock(%s)", (BUILD_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (BUILD_LOCK_KEY,))


def ensure_raw_tables(database_url: str) -> None:
    """Creates the stripe_raw tables if missing, as the extractor does (its DDL, under its lock),
    so a build before the first sync yields empty marts instead of an error."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        loader.ensure_raw_tables(conn)


def build_livemode(key_mode: str | None, database_url: str) -> bool:
    """The mode whose data reaches the marts: the key's, else that of the latest sync."""
    if key_mode is not None:
        return key_mode == "live"
    with psycopg.connect(database_url) as conn:
        try:
            row = conn.execute(
                "select livemode from stripe_raw.sync_state"
                " order by last_success_at desc nulls last limit 1"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(row and row[0])


def dbt_process_env(
    database_url: str | None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment variables for a dbt process: the profile's connection, JIT off, and `extra`
    (a build's as_of_env).

    JIT compilation costs seconds per query on plans over jsonb views (whose row estimates are
    guesses) and never pays back on these short whole-table queries; libpq reads PGOPTIONS.
    dbt.log is at `info` unless DBT_LOG_LEVEL_FILE (or DBT_LOG_LEVEL) says otherwise: at dbt's
    default (`debug`) it takes every statement, and its threads queue on the log's lock for a
    quarter of a build's CPU (profiled); `debug` is there for whoever needs the statements.
    """
    env = {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        AS_OF_ENV: "",
        "DBT_LOG_LEVEL_FILE": (
            os.environ.get("DBT_LOG_LEVEL_FILE") or os.environ.get("DBT_LOG_LEVEL") or "info"
        ),
    }
    env["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c jit=off".strip()
    if database_url is not None:
        env.update(dbt_env(database_url))
    env.update(extra or {})
    return env


@contextmanager
def dbt_environment(
    database_url: str | None, extra: dict[str, str] | None = None
) -> Iterator[None]:
    """Exports dbt_process_env for the duration of a dbt command, then restores os.environ.

    DbtCliResource hands os.environ to dbt; restoring it keeps in-process runs (tests, the CLI)
    from leaking one warehouse's settings (or one build's as_of) into the next.
    """
    values = dbt_process_env(database_url, extra)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ProjectDbtCliResource(DbtCliResource):
    """DbtCliResource without the two start-up costs it pays before every dbt command.

    Before each command DbtCliResource runs `dbt --version` in a subprocess (2-4 s here) to learn
    the version, and loads every macro into an adapter of its own (~1 s) that serves only
    fetch_row_counts()/fetch_column_metadata(), which nothing here calls (the asset counts rows
    with its own query). The executable is always this venv's dbt (`dbt_executable`), so its
    version is dbt-core's installed one; tests/dbt/test_dbt_startup.py holds the two equal. Both
    hooks are private to dagster-dbt, which pyproject pins exactly.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> BaseAdapter:
        # None is what dagster-dbt runs with when it cannot make the adapter: dbt runs unchanged.
        return None  # type: ignore[return-value]


def dbt_resource() -> DbtCliResource:
    """The dbt CLI every run uses: the venv's dbt, this project, its profiles, no colour codes."""
    return ProjectDbtCliResource(
        # DbtCliResource's own __init__ takes a DbtProject; a subclass shows mypy only the field.
        project_dir=dbt_project,  # type: ignore[arg-type]
        profiles_dir=str(PROFILES_DIR),
        dbt_executable=dbt_executable(),
        global_config_flags=["--no-use-colors"],
    )


@dataclass(frozen=True)
class DbtRun:
    """How a dbt command ended: its exit status and the error lines it logged."""

    returncode: int
    errors: list[str]


# Runs one dbt command: (args, database_url, target folder, extra environment) -> how it ended.
DbtCommand = Callable[[list[str], str | None, Path, dict[str, str] | None], DbtRun]


def run_dbt(
    args: list[str], database_url: str | None, target: Path, extra_env: dict[str, str] | None = None
) -> DbtRun:
    """Runs one dbt command into `target` (artifacts and dbt.log), keeping its error lines.

    Each warehouse keeps its own target folder, so dbt's partial parsing stays warm across runs.
    """
    target.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    # The dbt process takes its environment (the warehouse, the as_of) when it starts. Builds of
    # two warehouses in two threads (tests, the CLI's callers) would otherwise export one's and
    # start with the other's: the environment is exported only until the process has started.
    with _SPAWN_LOCK, dbt_environment(database_url, extra_env):
        invocation = dbt_resource().cli(args, raise_on_error=False, target_path=target)
    for event in invocation.stream_raw_events():
        info = event.raw_event.get("info", {})
        if info.get("level") == "error" and info.get("msg"):
            errors.append(str(info["msg"]))
    invocation.wait()
    return DbtRun(returncode=invocation.process.returncode or 0, errors=errors)


_SPAWN_LOCK = threading.Lock()


def generate_docs(database_url: str, target: Path) -> None:
    """`dbt docs generate` against the warehouse (the catalog reads its tables and columns)."""
    completed = run_dbt(["docs", "generate"], database_url, target)
    if completed.returncode != 0:
        raise BuildError(
            f"dbt docs generate failed: {_last_error_line(completed.errors)}",
            _failure_fix(target),
        )


def serve_docs(target: Path, port: int = DOCS_PORT) -> None:
    """`dbt docs serve` of generated docs, until interrupted."""
    run_dbt(["docs", "serve", "--port", str(port), "--no-browser"], None, target)


def _read_run_results(target: Path) -> list[NodeResult]:
    path = target / "run_results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text())["results"]
    return [
        NodeResult(
            unique_id=item["unique_id"],
            status=str(item["status"]).lower(),
            execution_time=float(item.get("execution_time") or 0.0),
            message=item.get("message"),
        )
        for item in results
    ]


def _failure_summary(result: BuildResult, completed: DbtRun) -> str:
    failed = result.failures
    if not failed:
        return f"dbt build failed: {_last_error_line(completed.errors)}"
    names = ", ".join(node.name for node in failed[:8])
    more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
    return f"dbt build failed: {len(failed)} failing ({names}{more})"


def _failure_fix(target: Path) -> str:
    return (
        f"see {target / 'dbt.log'} for what failed (DBT_LOG_LEVEL_FILE=debug adds every statement)"
    )


def _last_error_line(errors: list[str]) -> str:
    lines = [
        " ".join(line.split()) for text in errors for line in text.splitlines() if line.strip()
    ]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"
