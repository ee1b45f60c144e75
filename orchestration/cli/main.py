"""`stripe-sync`: the command line. Known errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestration.cli.segments import segments_app
from orchestration.core.errors import (
    SettingsError,
    StripeSyncError,
)
from orchestration.core.modes import SyncMode, parse_as_of
from orchestration.core.process import fix_mmap_threshold
from orchestration.core.settings import load_settings

app = typer.Typer(
    name="stripe-sync",
    help="Keep Stripe billing data in your Postgres, as per-customer fields and segments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, as click prints it: Rich's option tables print `<bool>` for every flag and
    # break long choices mid-word in an 80-column terminal.
    rich_markup_mode=None,
)
webhooks_app = typer.Typer(
    help="Receive Stripe webhooks, or register the endpoint in Stripe.", rich_markup_mode=None
)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(segments_app, name="segments")

_state = {"debug": False}


def check_port(port: int) -> int:
    """A TCP port the user gave: 1–65535."""
    if not 1 <= port <= 65535:
        raise SettingsError(f"port {port} is out of range", "use a port from 1 to 65535")
    return port


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for every error.")
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def check() -> None:
    """Check the database connection, the key, and each permission the sync needs."""
    from orchestration.cli.commands import run_check

    raise typer.Exit(run_check(load_settings()))


@app.command()
def sync(
    mode: Annotated[
        SyncMode,
        typer.Option(
            # The default is named in the text: click would break "import-existing" at its hyphen.
            help="First sync: import existing data (the default), or only new changes.",
            show_default=False,
        ),
    ] = SyncMode.import_existing,
    reset: Annotated[
        bool,
        typer.Option(
            help="Start over: forget the stored state of another account.", show_default=False
        ),
    ] = False,
) -> None:
    """Extract Stripe into the raw tables (first sync imports; later syncs are incremental)."""
    from orchestration.cli.commands import run_sync

    # Process-wide, so the entry point decides it, not the extractor (see fix_mmap_threshold).
    fix_mmap_threshold()
    run_sync(load_settings(), mode=mode.value, reset=reset)


@app.command()
def build(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Fix 'now' (ISO-8601 with timezone).")
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Recompute every customer and run every test (default: only touched customers).",
        ),
    ] = False,
) -> None:
    """Run the dbt models and checks: fields, feed, segments."""
    from orchestration.cli.commands import run_build

    run_build(load_settings(), as_of=parse_as_of(as_of), full_refresh=full_refresh)


@app.command()
def run(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Fix 'now' (ISO-8601 with timezone).")
    ] = None,
    mode: Annotated[
        SyncMode,
        typer.Option(help="Mode of a first sync (default: import existing).", show_default=False),
    ] = SyncMode.import_existing,
) -> None:
    """The main job: sync, then build; recorded as a Dagster run."""
    from orchestration.cli.commands import run_main_job

    fix_mmap_threshold()  # the job's sync runs in this process (see `sync` above)
    run_main_job(load_settings(), as_of=parse_as_of(as_of), mode=mode.value)


@app.command()
def status() -> None:
    """Sync health: last run, customers in sync, lag behind Stripe, last error."""
    from orchestration.cli.commands import run_status

    raise typer.Exit(run_status(load_settings()))


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Customers in the demo dataset.")] = 2000,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Print the full output (Dagster and dbt) instead of one line a stage."
        ),
    ] = False,
) -> None:
    """Start the embedded Postgres and the local Stripe API with demo data; run the main job."""
    from orchestration.cli.commands import run_demo

    if customers < 0:
        raise SettingsError("--customers must be ≥ 0", "fix the option's value")
    run_demo(load_settings(), customers=customers, verbose=verbose)


@app.command()
def emulator(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 12111,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    customers: Annotated[int, typer.Option(help="Customers to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 42,
    latency_ms: Annotated[int, typer.Option(help="Added latency per request.")] = 0,
    rate_limit: Annotated[
        float | None, typer.Option(help="Requests/s per key (default 25 test, 100 live).")
    ] = None,
    fault_rate: Annotated[float, typer.Option(help="Share of requests failing (0–1).")] = 0.0,
    api_version: Annotated[str | None, typer.Option(help="Account's default API version.")] = None,
    tick: Annotated[
        float | None, typer.Option(help="Apply lifecycle changes every N seconds.")
    ] = None,
) -> None:
    """Serve the local Stripe-compatible API with generated data."""
    check_port(port)
    if customers < 0 or latency_ms < 0 or not 0 <= fault_rate <= 1:
        raise SettingsError(
            "--customers and --latency-ms must be ≥ 0 and --fault-rate within 0–1",
            "fix the option's value",
        )
    if rate_limit is not None and not rate_limit > 0:
        raise SettingsError("--rate-limit must be > 0 requests/s", "fix the option's value")
    from orchestration.emulator.main import serve

    limits = (
        {} if rate_limit is None else {"rate_limit_test": rate_limit, "rate_limit_live": rate_limit}
    )
    serve(
        host=host,
        port=port,
        customers=customers,
        seed=seed,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        api_version=api_version,
        tick_seconds=tick,
        **limits,
    )


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="TCP port of the web UI.")] = 3000,
    snapshot: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Write screenshots of the UI to DIR.")
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Open the main pages in a browser and check them.")
    ] = False,
) -> None:
    """Start the Dagster UI and its daemon (the demo account unless a key is set)."""
    from orchestration.cli.ui import run_ui

    raise typer.Exit(run_ui(load_settings(), port=check_port(port), snapshot=snapshot, smoke=smoke))


@app.command()
def docs(
    serve: Annotated[bool, typer.Option("--serve", help="Serve the docs once generated.")] = False,
    port: Annotated[int, typer.Option(help="TCP port to serve them on.")] = 8080,
    target_path: Annotated[
        Path | None, typer.Option(help="Where the docs go (default: target/).")
    ] = None,
) -> None:
    """Generate the dbt docs (every field's lineage back to Stripe) and optionally serve them."""
    from orchestration.cli.commands import run_docs

    run_docs(load_settings(), serve=serve, port=check_port(port), target_path=target_path)


@webhooks_app.command("serve")
def webhooks_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8787,
) -> None:
    """Receive Stripe webhooks (signature verified) and apply them to the raw tables."""
    from orchestration.cli.commands import run_webhooks_serve

    run_webhooks_serve(load_settings(), host=host, port=check_port(port))


@webhooks_app.command("register")
def webhooks_register(
    url: Annotated[str, typer.Argument(help="Public https URL of `stripe-sync webhooks serve`.")],
) -> None:
    """Create the webhook endpoint in Stripe with the event types we consume."""
    from orchestration.cli.commands import run_webhooks_register

    run_webhooks_register(load_settings(), url=url)


def main() -> None:
    """Console entry point: runs the app and turns known errors into one line."""
    try:
        app(standalone_mode=False)
    except StripeSyncError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {err.one_line()}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as err:  # usage errors: bad option values, unknown commands
        if type(err).__name__ == "NoArgsIsHelpError":
            # show() is on typer's vendored (private) click exception, not on TyperException.
            err.show()  # type: ignore[attr-defined]
            sys.exit(0)
        message = " ".join(err.format_message().split()).replace("Value error, ", "")
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(2)
