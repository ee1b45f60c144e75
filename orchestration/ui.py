"""`python -m orchestration.ui`: the Dagster UI (webserver + daemon) on the project's instance.

Prepares what `dagster dev` needs (settings, the warehouse, DAGSTER_HOME on Postgres, the dbt
manifest), then runs `dagster dev -w workspace.yaml`. Without STRIPE_API_KEY it serves the local
Stripe emulator with demo data, so the schedules and the webhook sensor have something to sync.

`--snapshot DIR` starts the UI, runs the main job once, takes headless-chromium screenshots of the
asset graph, that run and the customer_fields asset into DIR/*.png, and stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

from orchestration.settings import PROJECT_ROOT, Settings, load_settings

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
    from orchestration.demo import demo_emulator

    with demo_emulator(settings) as emu:
        _say(f"no STRIPE_API_KEY: serving the local Stripe emulator at {emu.url} (demo data)")
        yield load_settings(stripe_api_key=emu.test_key, stripe_api_base=emu.url)


def prepare(settings: Settings) -> Path:
    """Warehouse, DAGSTER_HOME and its Postgres storage, the environment of runs, the manifest."""
    from orchestration.environment import check_database, prepare_dagster_home, warehouse_url
    from orchestration.resources import ensure_manifest
    from orchestration.runs import export_run_environment

    warehouse = warehouse_url(settings)
    check_database(warehouse)
    export_run_environment(settings, warehouse)
    home = prepare_dagster_home(settings, warehouse)
    ensure_manifest()
    return home


def _reset_sigint() -> None:
    # `dagster dev` started from a non-interactive shell ignores SIGINT (STACK-NOTES).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_dagster_dev(port: int, *, new_session: bool) -> subprocess.Popen[bytes]:
    dagster = Path(sys.executable).parent / "dagster"
    command = [
        str(dagster if dagster.exists() else "dagster"),
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        HOST,
        "-p",
        str(port),
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        preexec_fn=_reset_sigint,
        start_new_session=new_session,
    )


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


def wait_until_loaded(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the webserver answers and the code location has loaded."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
        " locationOrLoadError { __typename } } } } }"
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {process.returncode}")
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


def screenshot(
    chromium: str, url: str, target: Path, *, size: str = "1600,1000", wait_ms: int = 20000
) -> bool:
    """One page once the UI has rendered (virtual time lets the page settle)."""
    command = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--virtual-time-budget={wait_ms}",
        f"--screenshot={target}",
        url,
    ]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(command, capture_output=True, timeout=120, check=False)
    return target.exists() and target.stat().st_size > 0


def snapshot(settings: Settings, out_dir: Path) -> int:
    """Screenshots of the asset graph, a run page and the customer_fields asset page."""
    chromium = find_chromium()
    if chromium is None:
        _say(
            "skipped: the snapshot needs Debian's chromium (`apt-get install -y chromium`);"
            " nothing was started"
        )
        return 0
    from orchestration.runs import execute_main_job

    out_dir.mkdir(parents=True, exist_ok=True)
    with demo_stripe(settings) as run_settings:
        prepare(run_settings)
        _say("running the main job once, so the UI has a run to show…")
        outcome = execute_main_job(
            run_settings, as_of=None, mode="import-existing", raise_on_failure=False
        )
        _say(outcome.summary())
        port = free_port()
        process = start_dagster_dev(port, new_session=True)
        try:
            wait_until_loaded(port, process)
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
            stop(process, group=True)
    return 0


def serve(settings: Settings, port: int) -> int:
    """`dagster dev` in the foreground until Ctrl-C."""
    with demo_stripe(settings) as run_settings:
        home = prepare(run_settings)
        _say(f"Dagster UI on http://{HOST}:{port} (instance: {home}); Ctrl-C stops it")
        process = start_dagster_dev(port, new_session=False)
        try:
            return process.wait()
        except KeyboardInterrupt:
            stop(process, group=False)
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--snapshot", metavar="DIR", type=Path, help="write screenshots to DIR")
    args = parser.parse_args(argv)
    from orchestration.errors import StripeSyncError

    try:
        settings = load_settings()
        if args.snapshot:
            return snapshot(settings, args.snapshot)
        return serve(settings, args.port)
    except StripeSyncError as err:
        _say(f"error: {err.one_line()}")
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
