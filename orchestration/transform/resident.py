"""The resident builder: segments rebuilt within seconds of webhook deliveries.

A fresh dbt process pays ~10 s of CPU per build before and around its SQL (imports, loading the
parsed project, writing artifacts), whatever the change (bench/dbt_startup_bench.py). The
resident builder is one long-lived process that parsed the project once and keeps dbt's
programmatic runner warm (`WarmDbt`). `stripe-sync webhooks serve` starts it beside the receiver:

- the receiver commits each batch of applied deliveries with a NOTIFY on `RAW_CHANGED_CHANNEL`;
- the builder LISTENs, lets a burst settle (`QUIET_SECONDS` with no new notification, at most
  `MAX_WAIT_SECONDS` after the first), then runs the production build (`stripe-sync build`'s:
  the incremental selector) under the same advisory lock as every other build, so no two
  builds of a warehouse ever overlap; deliveries landing meanwhile make the next build;
- each build is recorded in Dagster (a materialization per model built), as a run's would be,
  with the newest delivery it covered (`COVERED_SEQ`).

One builder serves a warehouse: it holds `RESIDENT_LOCK` for its lifetime (a second receiver's
builder waits as a standby). While it is alive the webhook sensor leaves deliveries to it and
moves its cursor only past what the builder's builds covered; when the builder dies, the lock
goes with its connection and the sensor's runs take over from there. A builder process that
dies is started again (`BuilderSupervisor`); a failed build is retried (`RETRY_SECONDS`). With no
delivery for `CLOCK_SECONDS`, it builds anyway, for the rules that come due with the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DagsterDbtTranslator
from dbt.cli.main import dbtRunner

from orchestration.core.warehouse import RAW_CHANGED_CHANNEL
from orchestration.transform.runner import (
    INCREMENTAL_SELECTOR,
    PROFILES_DIR,
    PROJECT_DIR,
    BuildResult,
    DbtRun,
    build,
    build_livemode,
    dbt_environment,
    target_path_for,
)

log = logging.getLogger("stripe_sync.builder")

# A burst of deliveries becomes one build: it starts once no notification came for QUIET_SECONDS,
# and at most MAX_WAIT_SECONDS after the burst's first (Stripe sends a busy account's events for
# as long as it is busy).
QUIET_SECONDS = 0.25
MAX_WAIT_SECONDS = 1.0
# How often an idle or standby builder checks that the process that started it is still there.
PARENT_CHECK_SECONDS = 5.0
RECONNECT_SECONDS = 5.0
STOP_SECONDS = 10.0
# A failed build is tried again after this long even if no delivery comes.
RETRY_SECONDS = 30.0
# A build runs this long after the last one even if no delivery comes: rules come due with no
# Stripe event (a trial ending, an activity threshold crossed), and an incremental build at a
# later as_of is what recomputes those customers. A warm build with nothing due costs ~3 s.
CLOCK_SECONDS = 60.0

# (classid, objid) of the session-level advisory lock a warehouse's resident builder holds.
RESIDENT_LOCK = (0x5354_5259, 0x0000_0B1D)

# dbt's console output off (the builder logs one line per build) and its file log at warnings: at
# debug level, dbt.log takes every statement and four threads wait on its lock, a fifth of a
# warm build's time (profiled). Errors reach the builder's log through the event callback.
QUIET_FLAGS = ["--quiet", "--log-level-file", "warn"]

# The selectors of a build: `incremental` after a parse, a failure or a build in another mode or
# with other project files (views, seeds and every model), `incremental_warm` otherwise (no
# views, seeds or MRR history: see selectors.yml).
FIRST_SELECTOR = INCREMENTAL_SELECTOR
WARM_SELECTOR = "incremental_warm"

# What the resident dbt parses: every file whose change changes the manifest.
_PROJECT_INPUTS = (
    PROJECT_DIR / "dbt_project",
    PROJECT_DIR / "dbt_project.yml",
    PROJECT_DIR / "selectors.yml",
    PROFILES_DIR,
)


def project_fingerprint() -> str:
    """Names, sizes and modification times of the dbt project's files: a change means a re-parse."""
    stats = []
    for root in _PROJECT_INPUTS:
        paths = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in paths:
            if path.is_file():
                stat = path.stat()
                stats.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()


def _vars_of(args: list[str]) -> str:
    return args[args.index("--vars") + 1] if "--vars" in args else "{}"


class WarmDbt:
    """dbt's programmatic runner, with the project parsed once per process: a drop-in for
    runner.run_dbt (same arguments, same run_results.json), minus dbt's start-up per command.

    The manifest is parsed again when the project's files or the --vars change (a build's as_of
    travels in the environment, so it never does). Not thread-safe, as dbtRunner is not: one
    builder thread per instance.
    """

    def __init__(self) -> None:
        self.parses = 0
        self._manifest: Any = None
        self._parsed_for: tuple[str, str] | None = None
        self._errors: list[str] = []

    def __call__(
        self,
        args: list[str],
        database_url: str | None,
        target: Path,
        extra_env: dict[str, str] | None = None,
    ) -> DbtRun:
        target.mkdir(parents=True, exist_ok=True)
        self._errors = []
        with dbt_environment(database_url, extra_env):
            manifest = self._parsed(target, _vars_of(args))
            if manifest is None:
                return DbtRun(returncode=1, errors=self._errors)
            runner = dbtRunner(manifest=manifest, callbacks=[self._collect_errors])
            result = runner.invoke([*args, *self._paths(target), *QUIET_FLAGS])
        if result.exception is not None:
            self._errors.append(f"error: {result.exception}")
        return DbtRun(returncode=0 if result.success else 1, errors=self._errors)

    def _parsed(self, target: Path, dbt_vars: str) -> Any:
        key = (project_fingerprint(), dbt_vars)
        if self._parsed_for != key:
            runner = dbtRunner(callbacks=[self._collect_errors])
            args = ["parse", *self._paths(target), "--vars", dbt_vars, *QUIET_FLAGS]
            parsed = runner.invoke(args)
            self.parses += 1
            if not parsed.success:
                self._errors.append(f"error: dbt parse failed: {parsed.exception or ''}")
                self._manifest, self._parsed_for = None, None
                return None
            self._manifest, self._parsed_for = parsed.result, key
        return self._manifest

    @staticmethod
    def _paths(target: Path) -> list[str]:
        return [
            "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROFILES_DIR),
            "--target-path", str(target), "--log-path", str(target), "--no-use-colors",
        ]  # fmt: skip

    def _collect_errors(self, event: Any) -> None:
        if event.info.level == "error" and event.info.msg:
            self._errors.append(str(event.info.msg))


def resident_target(database_url: str) -> Path:
    """The resident builder's own target folder: a CLI build's partial-parse state beside it
    stays untouched (dbtRunner writes its artifacts, not that state)."""
    base = target_path_for(database_url)
    return base.with_name(base.name + "-resident")


def resident_builder_running(conn: psycopg.Connection) -> bool:
    """Whether a resident builder holds this warehouse's lock (pg_locks lists the whole
    server's locks: only this database's count)."""
    row = conn.execute(
        "select exists (select from pg_locks where locktype = 'advisory' and granted"
        " and classid = %s and objid = %s and objsubid = 2"
        " and database = (select oid from pg_database where datname = current_database()))",
        RESIDENT_LOCK,
    ).fetchone()
    return bool(row and row[0])


# The metadata key of a resident build's materializations: the newest delivery-log seq that had
# committed when the build started. The webhook sensor moves its cursor up to it, and no further.
COVERED_SEQ = "webhook_deliveries_through_seq"
# The asset whose materializations the sensor reads it from.
COVERED_ASSET = ("stripe", "customer_fields")


def resident_covered_seq(instance: dg.DagsterInstance) -> int | None:
    """The COVERED_SEQ of the latest materialization of customer_fields, if a resident build
    recorded it (a run's build records none)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(list(COVERED_ASSET)))
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get(COVERED_SEQ) if materialization is not None else None
    return value.value if isinstance(value, dg.IntMetadataValue) else None


@dataclass(frozen=True)
class BuilderOptions:
    """What the builder process needs: plain values, as it is started with `spawn`."""

    database_url: str = field(repr=False)  # may hold a password
    key_mode: str | None
    stale_after_hours: int
    quiet_seconds: float = QUIET_SECONDS
    max_wait_seconds: float = MAX_WAIT_SECONDS
    clock_seconds: float = CLOCK_SECONDS
    report_to_dagster: bool = True


@contextmanager
def running_builder(options: BuilderOptions) -> Iterator[BuilderSupervisor]:
    """The resident builder in a process of its own (dbt's CPU stays off the receiver's event
    loop) for the duration of the block, started again if it dies; it also stops by itself if
    this process is killed."""
    supervisor = BuilderSupervisor(options)
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()


class BuilderSupervisor(threading.Thread):
    """Starts the builder process (`process`), and starts it again when it dies: the sensor's
    runs would take over (the builder's lock goes with it), but deliveries deserve seconds."""

    def __init__(self, options: BuilderOptions) -> None:
        super().__init__(name="stripe-sync-builder-watchdog", daemon=True)
        self.options = options
        self.stopping = threading.Event()
        self.process = self._spawn()

    def _spawn(self) -> BaseProcess:
        process = multiprocessing.get_context("spawn").Process(
            target=serve_builds,
            args=(self.options, os.getpid()),
            name="stripe-sync-builder",
            daemon=True,
        )
        process.start()
        return process

    def run(self) -> None:
        while not self.stopping.wait(PARENT_CHECK_SECONDS):
            if not self.process.is_alive():
                log.warning(
                    "the resident builder stopped (exit code %s); starting it again",
                    self.process.exitcode,
                )
                self.process = self._spawn()

    def stop(self) -> None:
        self.stopping.set()
        self.join(PARENT_CHECK_SECONDS + 1)
        # SIGTERM: the builder cancels its running statements, then exits. A build stopped
        # midway is safe: every merge commits whole, and the next build redoes the rest.
        self.process.terminate()
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_SECONDS)


def _stop_on_sigterm() -> None:
    """SIGTERM interrupts a build as Ctrl-C would (dbt then cancels its statements on the server,
    so no query outlives the build lock); Ctrl-C itself is the receiver's to handle."""

    def interrupt(signum: int, frame: object) -> None:
        _STOPPING.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_STOPPING = threading.Event()


def _serving(parent_pid: int) -> bool:
    return os.getppid() == parent_pid and not _STOPPING.is_set()


def serve_builds(options: BuilderOptions, parent_pid: int) -> None:
    """The builder process: take the warehouse's builder lock, then build after every burst of
    notifications (and retry a failed build), until stopped or the parent process is gone. Any
    error is logged and retried after a pause; it never ends the process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _stop_on_sigterm()
    try:
        builder = ResidentBuilder(options)
        while _serving(parent_pid):
            try:
                _listen_and_build(builder, options, parent_pid)
            except Exception as exc:
                log.warning("resident builder: %s; again in %.0f s", _first_line(exc),
                            RECONNECT_SECONDS)  # fmt: skip
                time.sleep(RECONNECT_SECONDS)
    except KeyboardInterrupt:
        return


def _listen_and_build(builder: ResidentBuilder, options: BuilderOptions, parent_pid: int) -> None:
    # Keepalives: a half-open connection would otherwise keep the builder lock (and the sensor
    # deferring to it) for the kernel's two hours while nobody builds.
    with psycopg.connect(options.database_url, autocommit=True, **KEEPALIVES) as conn:
        if not _wait_for_lock(conn, parent_pid):
            return
        conn.execute(f"listen {RAW_CHANGED_CHANNEL}")
        log.info("resident builder ready: builds follow webhook deliveries")
        builder.build()  # what landed while no builder listened
        for count in bursts(conn, options, parent_pid):
            if count or builder.retry_due() or builder.clock_due():
                builder.build()


KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def _wait_for_lock(conn: psycopg.Connection, parent_pid: int) -> bool:
    """Takes the builder lock, waiting as a standby while another builder holds it."""
    announced = False
    while _serving(parent_pid):
        row = conn.execute("select pg_try_advisory_lock(%s, %s)", RESIDENT_LOCK).fetchone()
        if row and row[0]:
            return True
        if not announced:
            log.info("another resident builder serves this warehouse; standing by")
            announced = True
        time.sleep(PARENT_CHECK_SECONDS)
    return False


def bursts(conn: psycopg.Connection, options: BuilderOptions, parent_pid: int) -> Iterator[int]:
    """Yields once per settled burst of notifications (how many it held), and 0 every
    PARENT_CHECK_SECONDS without any, while the builder serves."""
    while _serving(parent_pid):
        first = list(conn.notifies(timeout=PARENT_CHECK_SECONDS, stop_after=1))
        if not first:
            conn.execute("select 1")  # a dead connection raises here, not never
            yield 0
            continue
        count, deadline = 1, time.monotonic() + options.max_wait_seconds
        while (left := deadline - time.monotonic()) > 0:
            more = list(conn.notifies(timeout=min(options.quiet_seconds, left), stop_after=1))
            if not more:
                break
            count += 1
        yield count


class ResidentBuilder:
    """Builds with a warm dbt and records each build in Dagster."""

    def __init__(self, options: BuilderOptions) -> None:
        self.options = options
        self.dbt = WarmDbt()
        self.target = resident_target(options.database_url)
        self.recorder = DagsterRecorder.open() if options.report_to_dagster else None
        # What the views and seeds were last built for (project files, mode), and the mode and
        # logic every customer-keyed model was left in: a warm build needs both unchanged.
        self._warm_for: tuple[str, bool] | None = None
        self._state_after: str | None = None
        self._failed_at: float | None = None
        self._built_at = time.monotonic()
        self._recorded = False
        self._recorded_seq: int | None = None
        self._keys: dict[str, Any] = {}
        self._keys_parse = -1

    def build(self) -> BuildResult | None:
        """One production build; a failure is logged, not raised: it is tried again
        RETRY_SECONDS later or at the next burst, with every view and seed."""
        url = self.options.database_url
        try:
            livemode = build_livemode(self.options.key_mode, url)
            warm_key = (project_fingerprint(), livemode)
            warm = warm_key == self._warm_for and self._state_after == models_state(url)
            covered = newest_delivery_seq(url)
            result = build(
                url,
                # The build's own start, taken by dbt once it holds the build lock: an instant
                # taken before waiting could run backwards, which recomputes every customer.
                as_of=None,
                livemode=livemode,
                target_path=self.target,
                stale_after_hours=self.options.stale_after_hours,
                selector=WARM_SELECTOR if warm else FIRST_SELECTOR,
                dbt=self.dbt,
            )
        except Exception as exc:
            self._warm_for, self._failed_at = None, time.monotonic()
            self._built_at = self._failed_at
            log.error("resident build failed: %s", _first_line(exc))
            return None
        self._warm_for, self._failed_at = warm_key, None
        self._built_at = time.monotonic()
        self._state_after = models_state(url)
        log.info("resident %s", result.summary())
        # A build that covered no new delivery (the clock's) is logged, not recorded: Dagster
        # would otherwise show a materialization of every model every CLOCK_SECONDS.
        due = not self._recorded or covered != self._recorded_seq
        if (
            self.recorder is not None
            and due
            and self.recorder.record(result, self._asset_keys(), covered)
        ):
            self._recorded, self._recorded_seq = True, covered
        return result

    def clock_due(self) -> bool:
        """No build for clock_seconds: rules may have come due with no delivery."""
        return time.monotonic() - self._built_at >= self.options.clock_seconds

    def retry_due(self) -> bool:
        """The last build failed RETRY_SECONDS ago or more."""
        failed = self._failed_at
        return failed is not None and time.monotonic() - failed >= RETRY_SECONDS

    def _asset_keys(self) -> dict[str, Any]:
        """model_asset_keys of the manifest, read again only after dbt parsed the project again."""
        if self._keys_parse != self.dbt.parses:
            self._keys = model_asset_keys(self.target / "manifest.json")
            self._keys_parse = self.dbt.parses
        return self._keys


def newest_delivery_seq(database_url: str) -> int | None:
    """The newest webhook delivery's seq (None before the first): what a build starting now
    covers. One still committing with a lower seq is not covered, but its NOTIFY comes at its
    commit and makes the next build."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            row = conn.execute("select max(seq) from stripe_raw.webhook_deliveries").fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
    return int(row[0]) if row and row[0] is not None else None


def models_state(database_url: str) -> str | None:
    """The modes and logic hashes the customer-keyed models were last built with. Any build
    leaves it as it found it unless it ran in another mode or with other project files (a CLI
    build in the other mode, an upgraded install): then the views may read other rows, and the
    resident builder's next build makes them again."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            row = conn.execute(
                "select string_agg(distinct livemode::text || ':' || logic_hash, ',')"
                " from stripe_staging.customer_keyed_state"
            ).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
    return row[0] if row else None


class DagsterRecorder:
    """Records a resident build in the Dagster instance: a materialization of each model it
    built, under the same asset keys as the dbt assets, so the UI shows when each table last
    changed whichever process built it."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    @classmethod
    def open(cls) -> DagsterRecorder | None:
        """The instance of DAGSTER_HOME, or None (logged) when there is none to record into."""
        if not os.environ.get("DAGSTER_HOME"):
            return None
        try:
            return cls(dg.DagsterInstance.get())
        except Exception as exc:  # recording is a courtesy; the build is what matters
            log.warning("resident builds are not recorded in Dagster: %s", _first_line(exc))
            return None

    def record(self, result: BuildResult, keys: dict[str, Any], covered: int | None) -> bool:
        """One materialization per model or seed the build ran successfully; `keys` maps their
        unique_ids to asset keys (model_asset_keys); `covered` is the COVERED_SEQ. False when
        Dagster refused them (logged): the next build records again."""
        built = [n for n in result.nodes if n.status == "success" and n.unique_id in keys]
        metadata: dict[str, Any] = {
            "trigger": dg.MetadataValue.text("webhooks (resident builder)"),
            "build_seconds": dg.MetadataValue.float(round(result.duration_seconds, 3)),
        }
        if covered is not None:
            metadata[COVERED_SEQ] = dg.MetadataValue.int(covered)
        try:
            for node in built:
                self.instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset_key=keys[node.unique_id], metadata=metadata)
                )
        except Exception as exc:
            log.warning("could not record the build in Dagster: %s", _first_line(exc))
            return False
        return True


def model_asset_keys(manifest_path: Path) -> dict[str, Any]:
    """unique_id → Dagster asset key of every model and seed, by dagster-dbt's own translator
    (the dbt assets change only groups and owners, not keys)."""
    translator = DagsterDbtTranslator()
    nodes = json.loads(manifest_path.read_text())["nodes"]
    return {
        unique_id: translator.get_asset_key(node)
        for unique_id, node in nodes.items()
        if node["resource_type"] in ("model", "seed")
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
