"""A Dagster run's dbt command in the run's own process, through dbt's programmatic runner.

dagster-dbt runs every dbt command as a subprocess, which imports dbt again before any SQL: 3.6
of a run's 13 s dbt command at 10k customers (bench/README (g)), while the run's process already
imported dbt with the definitions. Here the same command runs through `dbtRunner` in the run's
process, and its result events become Dagster's through dagster-dbt's own conversion
(`DbtCoreCliEventMessage`, the class its subprocess stream uses), so the materializations and
check results are the ones a subprocess run records. dbt prints its usual lines to the run's
stdout (the compute logs), as dagster-dbt echoes a subprocess's.

dbtRunner is not thread-safe and reads os.environ when invoked: one command at a time per process
(`_RUNNER_LOCK`). A run stopped in the middle leaves dbt's thread to end with the process; dbt's
merges each run in a transaction, so a stop never leaves one half-written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator
from dagster_dbt.asset_utils import (
    DbtCliInvocationPartialParams,
    extract_runtime_selection_from_args,
    get_updated_cli_invocation_params_for_context,
)
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from dbt.cli.main import dbtRunner, dbtRunnerResult
from dbt_common.events.functions import msg_to_dict

_RUNNER_LOCK = threading.Lock()
# The events dagster-dbt turns into materializations and check results (DbtCoreCliEventMessage).
_RESULT_EVENTS = frozenset(
    {"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"}
)


class _Finished:
    """Put on the queue after dbt's last event: how the command ended."""

    def __init__(self, result: dbtRunnerResult | None, error: BaseException | None) -> None:
        self.result = result
        self.error = error


def stream_dbt_in_process(
    context: dg.AssetExecutionContext,
    args: list[str],
    *,
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    project_dir: Path,
    profiles_dir: Path,
    target_path: Path,
) -> Iterator[Any]:
    """Runs `dbt <args>` for the context's selected assets and yields their Dagster events
    (Output, AssetCheckResult, AssetObservation) as dbt finishes each node.

    Raises DagsterDbtCliRuntimeError, naming dbt's error lines, when the command fails.
    """
    cleaned, selects, excludes = extract_runtime_selection_from_args(args)
    # dagster-dbt's own rules for the context's asset selection: a subset picked in the UI builds
    # just that subset; its manifest and translator are the ones the events are converted by.
    params = get_updated_cli_invocation_params_for_context(
        context=context,
        manifest=manifest,
        dagster_dbt_translator=translator,
        runtime_selects=selects,
        runtime_excludes=excludes,
    )
    # The assets' dbt project, or for a large subset dagster-dbt's copy with a generated selector.
    if params.dbt_project is not None:
        project_dir = Path(params.dbt_project.project_dir)
    argv = [*cleaned, *_selection(context, cleaned, params.selection_args)]
    if params.indirect_selection:
        argv += ["--indirect-selection", params.indirect_selection]
    argv += [
        "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir),
        "--target-path", str(target_path), "--log-path", str(target_path), "--no-use-colors",
    ]  # fmt: skip
    target_path.mkdir(parents=True, exist_ok=True)
    command = "dbt " + " ".join(argv)
    # The lines dagster-dbt logs around its subprocess: bench/dagster_bench.py times the step by
    # them, and users know them from the run's logs.
    context.log.info(f"Running dbt command: `{command}` (in the run's process).")
    events: queue.Queue[dict[str, Any] | _Finished] = queue.Queue()
    errors: list[str] = []
    with _RUNNER_LOCK:
        worker = threading.Thread(
            target=_invoke, args=(argv, events, errors), name="dbt", daemon=True
        )
        worker.start()
        finished = yield from _converted(events, context, params, target_path)
        worker.join()
    context.log.info(f"Finished dbt command: `{command}`.")
    _raise_on_failure(command, finished, errors)


def _selection(
    context: dg.AssetExecutionContext, args: list[str], dagster_selection: Sequence[str]
) -> Sequence[str]:
    """dagster-dbt's selection arguments, unless the caller names a YAML selector for the whole
    project: beside --selector dbt ignores --select, so dagster-dbt's would only mislead."""
    if "--selector" not in args:
        return dagster_selection
    if context.is_subset:
        raise DagsterDbtCliRuntimeError(
            description="a --selector builds the whole project; a subset needs dagster-dbt's"
            " selection (pass --exclude instead)"
        )
    return []


def _invoke(argv: list[str], events: queue.Queue[Any], errors: list[str]) -> None:
    """dbt's thread: the command, its result events onto the queue, then how it ended."""

    def on_event(event: Any) -> None:  # an EventMsg
        if event.info.name in _RESULT_EVENTS:
            events.put(msg_to_dict(event))
        elif event.info.level == "error" and event.info.msg:
            errors.append(str(event.info.msg))

    try:
        result = dbtRunner(callbacks=[on_event]).invoke(argv)
    except BaseException as exc:  # reported by the run's thread, which raises it
        events.put(_Finished(None, exc))
        return
    events.put(_Finished(result, None))


def _converted(
    events: queue.Queue[Any],
    context: dg.AssetExecutionContext,
    params: DbtCliInvocationPartialParams,
    target_path: Path,
) -> Generator[Any, None, _Finished]:
    """Dagster's events for each result event until dbt ends; returns how it ended."""
    while True:
        item = events.get()
        if isinstance(item, _Finished):
            return item
        message = DbtCoreCliEventMessage(raw_event=item, event_history_metadata={})
        yield from message.to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target_path,
            project=params.dbt_project,
        )


def _raise_on_failure(command: str, finished: _Finished, errors: list[str]) -> None:
    if finished.error is not None:
        raise DagsterDbtCliRuntimeError(
            description=f"The dbt command `{command}` raised: {finished.error}"
        ) from finished.error
    result = finished.result
    if result is not None and result.success:
        return
    if result is not None and result.exception is not None:
        errors.append(str(result.exception))
    parsed = "\n\n".join(["", "Errors parsed from dbt logs:", *errors]) if errors else ""
    raise DagsterDbtCliRuntimeError(
        description=f"The dbt command `{command}` failed. Check the stdout in the Dagster"
        f" compute logs for the full information about the error.{parsed}"
    )
