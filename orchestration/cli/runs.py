"""`stripe-sync run`: the same `stripe_sync` job the schedule runs, on the persistent instance.

A CLI run is a Dagster run like any other: it appears in the UI's run history with its logs,
materializations and check results. Run config carries `as_of` and `mode` only; the key and the
warehouse URL reach the resources through the environment, never through stored run config.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import dagster as dg

from orchestration.core.errors import StripeSyncError
from orchestration.core.modes import parse_sync_mode
from orchestration.core.settings import Settings
from orchestration.defs.resources import ensure_manifest
from orchestration.embedded.environment import (
    check_database,
    prepare_dagster_home,
    warehouse_url,
)

Executor = Literal["in_process", "multiprocess"]


class JobFailedError(StripeSyncError):
    """A Dagster run of the main job failed."""


def main_job() -> dg.JobDefinition:
    """The main job with its resources, rebuilt by name in every process (reconstructable)."""
    # Lazy: loading the definitions parses the dbt project; only a run needs them.
    from orchestration.defs.definitions import defs  # noqa: PLC0415
    from orchestration.defs.jobs import stripe_sync_job  # noqa: PLC0415

    return defs.resolve_job_def(stripe_sync_job.name)


def run_config(
    *, as_of: datetime | None, mode: str, reconcile: bool = False, executor: Executor
) -> dict[str, object]:
    """What a run records: the time rules' "now", the first-sync mode and the executor."""
    stamp = as_of.astimezone(UTC).isoformat() if as_of is not None else ""
    return {
        "ops": {
            "stripe_raw_tables": {
                "config": {"mode": str(parse_sync_mode(mode)), "reconcile": reconcile}
            },
            "stripe_dbt_models": {"config": {"as_of": stamp, "full_refresh": reconcile}},
        },
        "execution": {"config": {executor: {}}},
        # The CLI shows progress, not Dagster's step-by-step DEBUG events (the UI keeps them all).
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str


@dataclass
class RunOutcome:
    """How a run ended, read back from the instance."""

    run_id: str
    success: bool
    materialized: list[str] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    # Checks the run planned but that yielded no result: Dagster shows them as skipped.
    skipped_checks: list[str] = field(default_factory=list)
    # Why, by check name, when the check logged it ("<check> not evaluated: <reason>").
    skip_reasons: dict[str, str] = field(default_factory=dict)
    # dbt tests an incremental build leaves to the daily full build (not failures, not listed).
    deferred_checks: list[str] = field(default_factory=list)
    error: str | None = None
    dagster_home: str = ""

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        status = "succeeded" if self.success else "failed"
        lines = [
            f"run {self.run_id} {status}: {len(self.materialized)} assets materialized,"
            f" {len(self.checks) - len(self.failed_checks)}/{len(self.checks)} checks passed"
            + (f", {len(self.skipped_checks)} not evaluated" if self.skipped_checks else "")
            + (
                f", {len(self.deferred_checks)} left to the daily full build"
                if self.deferred_checks
                else ""
            )
        ]
        lines += [
            f"  check {c.asset} {c.name}: failed ({c.severity.lower()})" for c in self.failed_checks
        ]
        for name in self.skipped_checks:
            lines.append(f"  check {name}: not evaluated")
            if reason := self.skip_reasons.get(name.rsplit(" ", 1)[-1]):
                lines.append(f"    ({reason})")
        if self.error:
            lines.append(f"  error: {self.error}")
        lines.append("  see it in the UI (`make ui`) → Runs")
        return "\n".join(lines)


def export_run_environment(settings: Settings, warehouse: str) -> None:
    """The variables the resources read, for this process and any step process it starts."""
    os.environ["STRIPE_API_KEY"] = settings.require_api_key()
    os.environ["STRIPE_API_BASE"] = settings.stripe_api_base
    os.environ["DATABASE_URL"] = warehouse


def read_outcome(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    """Materializations, check evaluations and the first error of a run, from the event log."""
    run = instance.get_run_by_id(run_id)
    outcome = RunOutcome(run_id=run_id, success=bool(run and run.is_success))
    planned: list[str] = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            if match := _NOT_EVALUATED.match(record.user_message or ""):
                outcome.skip_reasons[match.group(1)] = match.group(2)
            continue
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            outcome.materialized.append(materialization.asset_key.to_user_string())
        elif event.event_type_value == "ASSET_CHECK_EVALUATION_PLANNED":
            data = event.asset_check_planned_data
            planned.append(f"{data.asset_key.to_user_string()} {data.check_name}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            outcome.checks.append(
                CheckOutcome(
                    asset=evaluation.asset_key.to_user_string(),
                    name=evaluation.check_name,
                    passed=evaluation.passed,
                    severity=evaluation.severity.value,
                )
            )
        elif event.is_step_failure and outcome.error is None:
            error = event.step_failure_data.error
            outcome.error = _one_line(error.cause.message if error and error.cause else None) or (
                _one_line(error.message) if error else None
            )
    evaluated = {f"{check.asset} {check.name}" for check in outcome.checks}
    if outcome.success:
        deferred = set(_deferred_test_names())
        for name in planned:
            if name in evaluated:
                continue
            if name.rsplit(" ", 1)[-1] in deferred:
                outcome.deferred_checks.append(name)
            else:
                outcome.skipped_checks.append(name)
    return outcome


def _deferred_test_names() -> list[str]:
    """The dbt tests an incremental build leaves to full builds (defs/assets/dbt.py)."""
    # Lazy: the dbt assets module loads the manifest; only a finished run needs it.
    from orchestration.defs.assets.dbt import MANIFEST, incremental_excludes  # noqa: PLC0415

    return incremental_excludes(MANIFEST)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# How a check that yields no result says why (orchestration/defs/checks.py).
_NOT_EVALUATED = re.compile(r"^(\w+) not evaluated: (.+)$")
# dbt's summary names each failing node on a line like these; the best one-line reason.
_DBT_FAILURE = re.compile(r"^(Failure|Runtime Error|Database Error|Compilation Error) in ")


def _one_line(message: str | None) -> str | None:
    """The line of an error worth printing: a dbt failure line if any, else the first line."""
    if not message:
        return None
    lines = [_ANSI.sub("", line).strip() for line in message.strip().splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if _DBT_FAILURE.match(line):
            return line[:300]
    return lines[0][:300] if lines else None


def execute_main_job(
    settings: Settings,
    *,
    as_of: datetime | None,
    mode: str,
    reconcile: bool = False,
    executor: Executor = "in_process",
    raise_on_failure: bool = True,
) -> RunOutcome:
    """Runs `stripe_sync` (sync, then build) on the persistent instance (DAGSTER_HOME).

    Raises JobFailedError with the first step error when the run fails (the CLI then exits 1 with
    one line); `raise_on_failure=False` returns the failed outcome instead.
    """
    warehouse = warehouse_url(settings)
    check_database(warehouse)
    export_run_environment(settings, warehouse)
    home = prepare_dagster_home(settings, warehouse)

    ensure_manifest()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(main_job),
            instance=instance,
            run_config=run_config(as_of=as_of, mode=mode, reconcile=reconcile, executor=executor),
            tags={"stripe_sync/trigger": "cli"},
            raise_on_error=False,
        )
        outcome = read_outcome(instance, result.run_id)
    outcome.dagster_home = str(home)
    if raise_on_failure and not outcome.success:
        raise JobFailedError(
            f"run {outcome.run_id} of the main job failed: {outcome.error or 'see its logs'}",
            "open the run in the UI (`make ui`) for its logs",
        )
    return outcome
