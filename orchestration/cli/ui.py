"""`stripe-sync ui`: the Dagster UI (webserver + daemon) on the project's instance.

Prepares what Dagster needs (settings, the warehouse, DAGSTER_HOME on Postgres, the dbt
manifest), then runs the webserver and the daemon on workspace.yaml. Without STRIPE_API_KEY it
serves the local Stripe emulator with demo data, so the schedules and the webhook sensor have
something to sync.

`stripe-sync ui --snapshot DIR` starts the UI, runs the main job once, takes headless-chromium
screenshots of the asset graph, that run and the customer_fields asset into DIR/*.png, and stops
everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from orchestration.cli.demo import demo_emulator
from orchestration.cli.runs import execute_main_job, export_run_environment
from orchestration.core.modes import SyncMode
from orchestration.core.settings import PROJECT_ROOT, Settings, load_settings
from orchestration.defs.resources import ensure_manifest
from orchestration.embedded.environment import (
    check_database,
    prepare_dagster_home,
    warehouse_url,
)

HOST = "127.0.0.1"
DEFAULT_PORT = 3000
READY_TIMEOUT = 180.0
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def demo_stripe(settings: Settings) -> Iterator[Settings]:
    """The user's Stripe key if set; else the emulator with demo data while the UI runs."""
    if settings.api_key:
        yield settings
        return

    with demo_emulator(settings) as emu:
        _say(f"no STRIPE_API_KEY: serving the local Stripe emulator at {emu.url} (demo data)")
        yield load_settings(stripe_api_key=emu.test_key, stripe_api_base=emu.url)


def prepare(settings: Settings) -> Path:
    """Warehouse, DAGSTER_HOME and its Postgres storage, the environment of runs, the manifest."""
    warehouse = warehouse_url(settings)
    check_database(warehouse)
    export_run_environment(settings, warehouse)
    home = prepare_dagster_home(settings, warehouse)
    ensure_manifest()
    return home


def _reset_sigint() -> None:
    # Dagster started from a non-interactive shell ignores SIGINT (measured with dagster 1.13).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_dagster(
    port: int, *, new_session: bool, output: IO[bytes] | None = None
) -> list[subprocess.Popen[bytes]]:
    """The webserver and the daemon, each in its own process, on the project's workspace.

    These are the two services `dagster dev` wraps (which Dagster 1.13 supersedes by `dg dev`,
    from a package we do not ship). They run in DAGSTER_HOME, not in the project root: Dagster
    warns about a dagster.yaml in the working directory that is not the instance's, and the
    project's is the template `prepare` copies into DAGSTER_HOME.
    """
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    commands = [
        [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", HOST, "-p", str(port)],
        [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
    ]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return [
        subprocess.Popen(
            command,
            cwd=os.environ["DAGSTER_HOME"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            preexec_fn=_reset_sigint,
            start_new_session=new_session,
        )
        for command in commands
    ]


def stop_all(processes: list[subprocess.Popen[bytes]], *, group: bool) -> None:
    """Stops the daemon, then the webserver."""
    for process in reversed(processes):
        stop(process, group=group)


def stop(process: subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGINT (a clean shutdown of webserver and daemon), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def wait_until_loaded(port: int, processes: list[subprocess.Popen[bytes]]) -> None:
    """Until the webserver answers and the code location has loaded."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
        " locationOrLoadError { __typename } } } } }"
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                args = process.args
                name = Path(str(args[0] if isinstance(args, list | tuple) else args)).name
                raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            entries = graphql(port, query)["data"]["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError):
            time.sleep(1)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if errors:
                raise RuntimeError("the code location failed to load; open the UI to see why")
            return
        time.sleep(1)
    raise TimeoutError(f"the Dagster UI did not load within {READY_TIMEOUT:.0f} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def headless_chromium(chromium: str, wait_ms: int) -> list[str]:
    """Chromium without a display, sandbox or GPU, given `wait_ms` of virtual time to render."""
    return [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--virtual-time-budget={wait_ms}",
    ]


def screenshot(
    chromium: str, url: str, target: Path, *, size: str = "1600,1000", wait_ms: int = 20000
) -> bool:
    """One page once the UI has rendered (virtual time lets the page settle)."""
    command = [
        *headless_chromium(chromium, wait_ms),
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--screenshot={target}",
        url,
    ]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(command, capture_output=True, timeout=120, check=False)
    return target.exists() and target.stat().st_size > 0


def snapshot_pages(settings: Settings, out_dir: Path) -> int:
    """Screenshots of the asset graph, a run page and the customer_fields asset page."""
    chromium = find_chromium()
    if chromium is None:
        _say(
            "skipped: the snapshot needs Debian's chromium (`apt-get install -y chromium`);"
            " nothing was started"
        )
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    with demo_stripe(settings) as run_settings:
        prepare(run_settings)
        _say("running the main job once, so the UI has a run to show…")
        outcome = execute_main_job(
            run_settings, as_of=None, mode=SyncMode.import_existing, raise_on_failure=False
        )
        _say(outcome.summary())
        port = free_port()
        processes = start_dagster(port, new_session=True)
        try:
            wait_until_loaded(port, processes)
            # The UI greets a local user with a newsletter dialog; mark it seen on the instance.
            graphql(port, "mutation { setNuxSeen }")
            base = f"http://{HOST}:{port}"
            lineage = "?view=lineage&lineageScope=upstream&lineageDepth=6"
            pages = {
                "dagster-asset-graph.png": (f"{base}/asset-groups", "1600,1000"),
                "dagster-lineage.png": (
                    f"{base}/assets/stripe_segments/current_trials{lineage}",
                    "2400,1300",
                ),
                "dagster-run.png": (f"{base}/runs/{outcome.run_id}", "1600,1000"),
                "dagster-customer-fields.png": (
                    f"{base}/assets/stripe/customer_fields",
                    "1600,1000",
                ),
            }
            for name, (url, size) in pages.items():
                target = out_dir / name
                target.unlink(missing_ok=True)
                ok = screenshot(chromium, url, target, size=size)
                _say(f"{'wrote' if ok else 'FAILED'} {target} ({url})")
        finally:
            stop_all(processes, group=True)
    return 0


# The pages a newcomer opens first, each with a text it must show once rendered.
SMOKE_PAGES = {
    "lineage": (
        "/assets/stripe_segments/current_trials?view=lineage&lineageScope=upstream&lineageDepth=6",
        "customer_fields",
    ),
    "customer_fields": ("/assets/stripe/customer_fields", "Latest materialization"),
    "segment": ("/assets/stripe_segments/current_trials", "Latest materialization"),
    "runs": ("/runs", "stripe_sync_job"),
    "automation": ("/automation", "incremental_sync_schedule"),
}
# What the UI shows when something is broken: error banners, failed code-location loads.
ERROR_MARKERS = (
    "PythonError",
    "Unexpected GraphQL error",
    "Something went wrong",
    "failed to load",
    "Error loading",
    "Code location failed",
    "No assets were found",
)
# Start-up output that comes from our own configuration, not from Dagster's internals.
CONFIG_WARNINGS = (
    "SupersessionWarning",
    "will not be used",
    "dagster.yaml",
    "ExperimentalWarning",
    "PreviewWarning",
    "BetaWarning",
    "DeprecationWarning",
)


def dump_dom(chromium: str, url: str, *, wait_ms: int = 20000) -> str:
    """The page's DOM once the app has rendered (headless chromium, virtual time)."""
    command = [
        *headless_chromium(chromium, wait_ms),
        "--dump-dom",
        url,
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=180, check=False, text=True)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def page_problems(name: str, dom: str, expected: str) -> list[str]:
    """What is wrong with one rendered page: no content, an error banner, or its text missing."""
    body = dom.split("<body", 1)[-1].split(">", 1)[-1]
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", body, flags=re.S)
    if not text.strip():
        return [f"{name}: the page rendered nothing"]
    problems = [f"{name}: shows {marker!r}" for marker in ERROR_MARKERS if marker in text]
    if expected not in text:
        problems.append(f"{name}: {expected!r} is not on the page")
    return problems


def startup_warnings(output: str) -> list[str]:
    """Lines of the webserver's and the daemon's output that warn about our configuration."""
    return [line for line in output.splitlines() if any(w in line for w in CONFIG_WARNINGS)]


def smoke_test(settings: Settings) -> int:
    """`make ui-test`: the UI on the demo instance, in a real browser; 1 on any problem."""
    chromium = find_chromium()
    if chromium is None:
        _say(
            "skipped: the UI smoke test needs a browser; install one with"
            " `apt-get install -y chromium` (Debian/Ubuntu)"
        )
        return 0

    problems: list[str] = []
    with demo_stripe(settings) as run_settings:
        home = prepare(run_settings)
        _say("running the main job once, so the UI has a run to show…")
        outcome = execute_main_job(
            run_settings, as_of=None, mode=SyncMode.import_existing, raise_on_failure=False
        )
        if not outcome.success:
            problems.append(f"run {outcome.run_id} failed: {outcome.error}")
        problems += [f"check {c.asset} {c.name} failed" for c in outcome.failed_checks]
        port = free_port()
        log = home / "ui-smoke.log"
        with log.open("wb") as output:
            processes = start_dagster(port, new_session=True, output=output)
            try:
                wait_until_loaded(port, processes)
                graphql(port, "mutation { setNuxSeen }")
                for name, (path, expected) in SMOKE_PAGES.items():
                    found = page_problems(
                        name, dump_dom(chromium, f"http://{HOST}:{port}{path}"), expected
                    )
                    _say(f"{'✗' if found else '✓'} {name} ({path})")
                    problems += found
            except (RuntimeError, TimeoutError) as err:
                problems.append(str(err))
            finally:
                stop_all(processes, group=True)
        problems += [f"start-up warns: {line}" for line in startup_warnings(log.read_text())]
    for problem in problems:
        _say(f"  {problem}")
    _say(f"UI smoke test: {'failed' if problems else 'passed'} (webserver and daemon log: {log})")
    return 1 if problems else 0


def serve(settings: Settings, port: int) -> int:
    """The webserver and the daemon in the foreground until Ctrl-C."""
    with demo_stripe(settings) as run_settings:
        home = prepare(run_settings)
        _say(f"Dagster UI on http://{HOST}:{port} (instance: {home}); Ctrl-C stops it")
        processes = start_dagster(port, new_session=False)
        try:
            return processes[0].wait()
        except KeyboardInterrupt:
            stop_all(processes, group=False)
            return 0
        finally:
            stop_all(processes, group=False)


def run_ui(settings: Settings, *, port: int, snapshot: Path | None, smoke: bool) -> int:
    """`stripe-sync ui`: screenshots, the browser smoke test, or the UI until interrupted."""
    if snapshot:
        return snapshot_pages(settings, snapshot)
    if smoke:
        return smoke_test(settings)
    return serve(settings, port)
