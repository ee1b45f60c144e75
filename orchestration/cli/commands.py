"""What each CLI command does, in plain functions the CLI (and tests) call with Settings."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import typer

from orchestration.core.api_versions import coupon_is_an_id
from orchestration.core.errors import PermissionsError
from orchestration.core.settings import Settings
from orchestration.core.warehouse import describe
from orchestration.embedded.environment import (
    check_database,
    prepare_dagster_home,
    warehouse_url,
)
from orchestration.transform.runner import (
    DEFAULT_TARGET_PATH,
    INCREMENTAL_SELECTOR,
    build,
    build_livemode,
    generate_docs,
    serve_docs,
)

OK, FAIL = "✓", "✗"


def _say(mark: str, what: str, detail: str) -> None:
    typer.echo(f"{mark} {what}: {detail}")


WEBHOOKS_WRITE = "Webhook Endpoints: Write"
COUPONS_READ = "Coupons: Read"


def run_check(settings: Settings) -> int:
    """Checks the database, the key and each permission; one line per check."""
    url = warehouse_url(settings)
    version = check_database(url)
    _say(OK, "database", f"{describe(url)} (PostgreSQL {version})")
    key = settings.require_api_key()
    from orchestration.extract import check_access

    report = check_access(key, settings.stripe_api_base, include_webhooks_write=True)
    mode = "live" if report.livemode else "test"
    _say(OK, "key", f"{settings.masked_key} ({mode} mode, account {report.account_id})")
    for permission, granted in report.checks:
        if permission == WEBHOOKS_WRITE and not granted:
            _say("–", permission, "missing (needed only for `stripe-sync webhooks register`)")
            continue
        if permission == COUPONS_READ and not granted:
            _say("–", permission, _without_coupons(settings.stripe_api_version))
            continue
        _say(OK if granted else FAIL, permission, "granted" if granted else "missing")
    # Webhook Endpoints: Write serves only `webhooks register`; the sync runs without it.
    missing = [permission for permission in report.missing if permission != WEBHOOKS_WRITE]
    if missing:
        raise PermissionsError(missing)
    return 0


def _without_coupons(api_version: str) -> str:
    """What a missing Coupons: Read costs at the configured API version."""
    if not coupon_is_an_id(api_version):
        return f"missing (not needed at API version {api_version}: discounts inline coupons)"
    return (
        f"missing: at API version {api_version} coupon terms are read only through it; "
        "discounted customers are flagged (has_unreadable_discount), not priced. Grant it"
    )


def run_sync(settings: Settings, *, mode: str, reset: bool) -> None:
    """Extracts Stripe into stripe_raw and prints what was synced."""
    key = settings.require_api_key()
    url = warehouse_url(settings)
    check_database(url)
    import sys

    from orchestration.extract import sync_stripe

    result = sync_stripe(
        url,
        key,
        api_base=settings.stripe_api_base,
        mode=mode,
        reset=reset,
        max_rps=settings.stripe_max_rps,
        progress=sys.stderr.isatty(),
        api_version=settings.stripe_api_version,
    )
    typer.echo(result.summary())


def run_build(settings: Settings, *, as_of: datetime | None, full_refresh: bool = False) -> None:
    """Runs `dbt build` for the current mode: incremental (the `incremental` selector: models and
    the reader_guard checks), or with --full-refresh every customer and every test."""
    url = warehouse_url(settings)
    check_database(url)
    result = build(
        url,
        as_of=as_of,
        livemode=build_livemode(settings.key_mode, url),
        stale_after_hours=settings.stripe_sync_stale_after_hours,
        full_refresh=full_refresh,
        selector=None if full_refresh else INCREMENTAL_SELECTOR,
    )
    typer.echo(result.summary())


def run_main_job(settings: Settings, *, as_of: datetime | None, mode: str) -> None:
    """Runs the main job (sync, then build) as a Dagster run on the persistent instance."""
    from orchestration.cli.runs import execute_main_job

    outcome = execute_main_job(settings, as_of=as_of, mode=mode)
    typer.echo(outcome.summary())


def run_status(settings: Settings) -> int:
    """Prints sync health from the warehouse; exit 1 when the last sync failed."""
    from orchestration.cli.status import read_health

    url = warehouse_url(settings)
    check_database(url)
    prepare_dagster_home(settings, url)
    with dg.DagsterInstance.get() as instance:
        health = read_health(
            url,
            livemode=build_livemode(settings.key_mode, url),
            stale_after=timedelta(hours=settings.stripe_sync_stale_after_hours),
            instance=instance,
        )
    typer.echo(health.render())
    return 1 if health.failed else 0


def run_demo(settings: Settings, *, customers: int, verbose: bool = False) -> None:
    """The embedded default: local Postgres, local Stripe API with demo data, the main job."""
    from orchestration.cli.demo import run_demo_job

    run_demo_job(settings, customers=customers, verbose=verbose)


def run_webhooks_serve(settings: Settings, *, host: str, port: int) -> None:
    """Serves the webhook endpoint until interrupted, with the resident builder beside it: the
    segments follow each burst of deliveries within seconds (transform/resident.py)."""
    from orchestration.embedded.environment import prepare_dagster_home
    from orchestration.transform.resident import BuilderOptions, running_builder
    from orchestration.webhooks.server import serve

    def builder(database_url: str) -> AbstractContextManager[object]:
        prepare_dagster_home(settings, database_url)  # its builds are recorded where runs are
        options = BuilderOptions(
            database_url=database_url,
            key_mode=settings.key_mode,
            stale_after_hours=settings.stripe_sync_stale_after_hours,
        )
        return running_builder(options)

    serve(settings, host=host, port=port, alongside=builder)


def run_webhooks_register(settings: Settings, *, url: str) -> None:
    """Creates (or finds) the webhook endpoint in Stripe and prints its secret once."""
    from orchestration.webhooks.register import register_endpoint

    register_endpoint(settings, url=url)


def run_docs(settings: Settings, *, serve: bool, port: int, target_path: Path | None) -> None:
    """Generates the dbt docs against the warehouse (the catalog reads its tables), then serves
    them when asked."""
    target = (target_path or DEFAULT_TARGET_PATH).resolve()
    url = warehouse_url(settings)
    check_database(url)
    generate_docs(url, target)
    typer.echo(f"dbt docs generated in {target} (log: {target / 'dbt.log'})")
    if serve:
        typer.echo(f"serving dbt docs on http://127.0.0.1:{port} (Ctrl-C stops)")
        serve_docs(target, port)
