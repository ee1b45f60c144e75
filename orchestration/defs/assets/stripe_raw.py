"""Extraction assets: one asset per stripe_raw table, all written by one call of sync_stripe.

The events API feeds every table at once, so one `@dg.multi_asset` with a spec per table shows
that coupling instead of hiding it. The asset is thin: orchestration.extract does
the work and this module reports its figures as metadata a user can plot.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from orchestration.core.modes import SyncMode
from orchestration.core.rows import one_row
from orchestration.core.settings import load_settings
from orchestration.defs.resources import StripeResource, WarehouseResource
from orchestration.extract import sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import RAW_OBJECTS
from orchestration.webhooks.health import read_webhook_health
from orchestration.webhooks.store import prune_deliveries

GROUP = "stripe_raw"
OWNERS = ["team:data-platform"]
SERIAL_POOL = "stripe_warehouse"

# Tables that hold Stripe objects, described by their records in extract/objects.py.
OBJECT_TABLES: tuple[str, ...] = tuple(spec.table for spec in RAW_OBJECTS)
# stripe_raw tables written by a sync, with what a user should know about each: the objects' and
# the extractor's bookkeeping.
SYNCED_TABLES: dict[str, str] = {
    **{spec.table: spec.description for spec in RAW_OBJECTS},
    "sync_state": (
        "Where each object's sync stands, per mode: status, cursor, last success, rows, last error."
    ),
}

ACTIVITY_EVENTS_KEY = dg.AssetKey([GROUP, "activity_events"])


def raw_key(table: str) -> dg.AssetKey:
    """A raw table's asset key is its warehouse address: stripe_raw/<table>."""
    return dg.AssetKey([GROUP, table])


class SyncConfig(dg.Config):
    """Run config of a sync. The key is never here: it comes from STRIPE_API_KEY."""

    mode: str = Field(
        default=SyncMode.import_existing.value,
        description="First sync of an account in a mode: "
        + " or ".join(mode.value for mode in SyncMode)
        + " (import existing data, or only new).",
    )
    reset: bool = Field(default=False, description="Drop another account's data and start over.")
    reconcile: bool = Field(
        default=False, description="Re-list every object and flag what Stripe no longer returns."
    )


def _spec(table: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=raw_key(table),
        description=description,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"stripe", "postgres"},
        metadata={"dagster/table_name": f"stripe_raw.{table}"},
    )


activity_events = dg.AssetSpec(
    key=ACTIVITY_EVENTS_KEY,
    description=(
        "Product activity written by you (SQL, reverse ETL, any tool): one row per activity of a"
        " customer, matched by Stripe customer id or email, for the Last Activity field."
    ),
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres"},
    metadata={"dagster/table_name": "stripe_raw.activity_events"},
)


def count_stripe_customers(api_key: str, api_base: str, max_rps: float | None) -> int:
    """Stripe's own count of customers in the key's mode, by paging the list endpoint.

    The reconcile job records it next to the raw count, so `raw_customer_count_matches_stripe`
    compares the warehouse with Stripe itself rather than with what the extractor believes.
    """
    client = StripeApi(api_key, api_base, max_rps=max_rps)
    return sum(len(page.objects) for page in client.list_pages("/v1/customers", limit=100))


def count_raw_customers(warehouse: WarehouseResource, livemode: bool) -> int:
    """Customers of a mode in stripe_raw that are not deleted."""
    with warehouse.connect() as conn:
        row = one_row(
            conn.execute(
                "select count(*) from stripe_raw.customers where livemode = %s and not is_deleted",
                (livemode,),
            )
        )
    return int(row[0])


def webhook_log_upkeep(warehouse: WarehouseResource, *, prune: bool) -> dict[str, int]:
    """Webhook figures for the events asset: verified events that failed to apply in the last
    day and, on the daily reconcile (`prune`), delivery-log rows deleted past
    WEBHOOK_DELIVERIES_RETENTION_DAYS."""
    with warehouse.connect() as conn:
        figures = {"webhook_events_failed_last_day": read_webhook_health(conn)["failed_last_day"]}
        if prune:
            days = load_settings().webhook_deliveries_retention_days
            figures["webhook_deliveries_pruned"] = prune_deliveries(conn, days)
    return figures


def table_metadata(result: Any, table: str) -> dict[str, dg.MetadataValue]:
    """The figures of one table's materialization, typed so the UI plots them."""
    totals = {
        "objects_per_second": dg.MetadataValue.float(round(float(result.objects_per_second), 1)),
        "requests": dg.MetadataValue.int(int(result.requests)),
        "retries": dg.MetadataValue.int(int(result.retries)),
        "rate_limited_429s": dg.MetadataValue.int(int(result.rate_limited)),
        "cursor_lag_seconds": dg.MetadataValue.float(round(float(result.lag_seconds or 0.0), 1)),
        "sync_seconds": dg.MetadataValue.float(round(float(result.seconds), 3)),
        "sync_kind": dg.MetadataValue.text(str(result.kind)),
        "sync_mode": dg.MetadataValue.text(str(result.mode)),
        "livemode": dg.MetadataValue.bool(bool(result.livemode)),
    }
    figures: dict[str, dg.MetadataValue]
    if table == "events":
        figures = {
            "objects_synced": dg.MetadataValue.int(int(result.events_applied)),
            "objects_synced_all_tables": dg.MetadataValue.int(int(result.total_objects)),
        }
    elif table == "sync_state":
        figures = {
            "objects_synced_all_tables": dg.MetadataValue.int(int(result.total_objects)),
            "cursor": dg.MetadataValue.text(str(result.cursor or "")),
        }
    else:
        per_object = result.objects.get(table)
        figures = {
            "objects_synced": dg.MetadataValue.int(int(per_object.objects if per_object else 0)),
            "rows": dg.MetadataValue.int(int(per_object.rows if per_object else 0)),
            "deleted": dg.MetadataValue.int(int(per_object.deleted if per_object else 0)),
            "objects_synced_all_tables": dg.MetadataValue.int(int(result.total_objects)),
        }
    return {**figures, **totals}


@dg.multi_asset(
    name="stripe_raw_tables",
    specs=[_spec(table, text) for table, text in SYNCED_TABLES.items()],
    can_subset=True,
    pool=SERIAL_POOL,
    description="Extracts Stripe into stripe_raw: a first sync imports, later syncs replay events.",
)
def stripe_raw_tables(
    context: dg.AssetExecutionContext,
    config: SyncConfig,
    stripe: StripeResource,
    warehouse: WarehouseResource,
):
    """One sync_stripe call writes every raw table; each selected table reports its figures.

    Subsetting selects which tables report; the sync itself is one transaction-safe pass over
    all objects (the events API does not split by object).
    """
    api_base = stripe.resolved_api_base()
    result = sync_stripe(
        warehouse.url(),
        stripe.api_key,
        api_base=api_base,
        mode=config.mode,
        reset=config.reset,
        max_rps=stripe.resolved_max_rps(),
        reconcile=config.reconcile,
        lock_timeout=60,
        api_version=stripe.resolved_api_version(),
    )
    context.log.info(
        f"{result.kind} sync ({'live' if result.livemode else 'test'} mode): "
        f"{result.total_objects} objects, {result.requests} requests in {result.seconds:.1f}s"
    )
    for warning in result.warnings:
        context.log.warning(warning)
    webhooks = webhook_log_upkeep(warehouse, prune=config.reconcile)
    if webhooks["webhook_events_failed_last_day"]:
        context.log.warning(
            f"{webhooks['webhook_events_failed_last_day']} webhook events failed to apply in the"
            " last day; `stripe-sync status` shows the last reason"
        )
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        table = key.path[-1]
        metadata = table_metadata(result, table)
        if table == "events":
            metadata.update({name: dg.MetadataValue.int(n) for name, n in webhooks.items()})
        if table == "customers" and config.reconcile:
            metadata["stripe_customers"] = dg.MetadataValue.int(
                count_stripe_customers(stripe.api_key, api_base, stripe.resolved_max_rps())
            )
            metadata["raw_customers"] = dg.MetadataValue.int(
                count_raw_customers(warehouse, result.livemode)
            )
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
