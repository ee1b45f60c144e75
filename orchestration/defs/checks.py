"""Asset checks on the raw tables and the sync state: what SQL tests cannot see.

dbt tests arrive as asset checks through dagster-dbt; these Python checks cover how far behind
Stripe the sync is, parity with Stripe's own customer count, and modes never mixing. Each check is
a thin reader around a pure predicate (`*_result`), so the rule is testable without a database.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from orchestration.core.rows import one_row
from orchestration.core.settings import load_settings
from orchestration.defs.assets.dbt import current_livemode
from orchestration.defs.assets.stripe_raw import OBJECT_TABLES, raw_key
from orchestration.defs.resources import WarehouseResource

HOUR = 3600.0


def stale_after_seconds() -> float:
    """The one staleness threshold (STRIPE_SYNC_STALE_AFTER_HOURS), in seconds."""
    return load_settings().stripe_sync_stale_after_hours * HOUR


# --- pure predicates -------------------------------------------------------------------------


def sync_lag_result(
    table: str,
    lag_seconds: float | None,
    *,
    stale_after: float = 24 * HOUR,
    status: str | None = None,
    last_error: str | None = None,
) -> dg.AssetCheckResult:
    """Passes while the table's last successful sync is within `stale_after` seconds (the rule
    sync_health's `stale` follows); fails with severity error past it. Never synced counts as a
    warning, not an error."""
    metadata: dict[str, Any] = {
        "stale_after_seconds": dg.MetadataValue.float(float(stale_after)),
        "status": dg.MetadataValue.text(status or "never synced"),
    }
    if last_error:
        metadata["last_error"] = dg.MetadataValue.text(last_error)
    key = raw_key(table)
    if lag_seconds is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name="sync_is_recent",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"stripe_raw.{table} has never been synced in this mode",
            metadata=metadata,
        )
    metadata["lag_seconds"] = dg.MetadataValue.float(round(float(lag_seconds), 1))
    passed = lag_seconds <= stale_after
    severity = dg.AssetCheckSeverity.WARN if passed else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="sync_is_recent",
        passed=passed,
        severity=severity,
        description=f"last successful sync {lag_seconds / 60:.0f} min ago",
        metadata=metadata,
    )


CUSTOMER_COUNT_NOT_EVALUATED = (
    "not evaluated: no reconcile has counted Stripe's customers yet;"
    " the daily stripe_reconcile_job counts them"
)


def customer_count_result(
    stripe_customers: int, raw_customers: int, reconciled_at: datetime | None = None
) -> dg.AssetCheckResult:
    """Passes when the raw customers (not deleted, key's mode) equal Stripe's count, both taken
    by the same reconcile. Without a reconcile there is nothing to compare: the check is then
    not evaluated (see `CUSTOMER_COUNT_NOT_EVALUATED`), never passed by default."""
    difference = raw_customers - stripe_customers
    metadata: dict[str, Any] = {
        "stripe_customers": dg.MetadataValue.int(stripe_customers),
        "raw_customers": dg.MetadataValue.int(raw_customers),
        "difference": dg.MetadataValue.int(difference),
    }
    if reconciled_at is not None:
        metadata["counted_at"] = dg.MetadataValue.timestamp(reconciled_at)
    return dg.AssetCheckResult(
        asset_key=raw_key("customers"),
        check_name="raw_customer_count_matches_stripe",
        passed=difference == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"stripe_raw.customers holds {raw_customers} customers, Stripe {stripe_customers}"
        ),
        metadata=metadata,
    )


def mode_result(table: str, livemode: bool, other_mode_rows: int) -> dg.AssetCheckResult:
    """Passes when the latest sync of a mode wrote no row of the other mode."""
    this, other = ("live", "test") if livemode else ("test", "live")
    return dg.AssetCheckResult(
        asset_key=raw_key(table),
        check_name="rows_match_sync_mode",
        passed=other_mode_rows == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"the {this}-mode sync wrote {other_mode_rows} {other}-mode rows"
            if other_mode_rows
            else f"every row the {this}-mode sync wrote is {this}-mode"
        ),
        metadata={
            "sync_livemode": dg.MetadataValue.bool(livemode),
            "other_mode_rows": dg.MetadataValue.int(other_mode_rows),
        },
    )


# --- readers ---------------------------------------------------------------------------------


def read_sync_lags(
    warehouse: WarehouseResource, livemode: bool, now: datetime | None = None
) -> dict[str, tuple[float | None, str | None, str | None]]:
    """Per object: (seconds since last success, status, last error) from stripe_raw.sync_state."""
    now = now or datetime.now(UTC)
    with warehouse.connect() as conn:
        try:
            rows = conn.execute(
                "select object, last_success_at, status, last_error from stripe_raw.sync_state"
                " where livemode = %s",
                (livemode,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []
    found = {
        name: ((now - at).total_seconds() if at else None, status, error)
        for name, at, status, error in rows
    }
    return {table: found.get(table, (None, None, None)) for table in OBJECT_TABLES}


def read_other_mode_rows(warehouse: WarehouseResource, livemode: bool) -> dict[str, int]:
    """Per table: rows of the other mode written since this mode's latest sync started."""
    counts: dict[str, int] = {}
    with warehouse.connect() as conn:
        for table in OBJECT_TABLES:
            query = sql.SQL(
                "select count(*) from stripe_raw.{table} r"
                " join stripe_raw.sync_state s on s.object = %s and s.livemode = %s"
                " where r.livemode <> %s and r.synced_at >= coalesce(s.started_at, s.updated_at)"
            ).format(table=sql.Identifier(table))
            try:
                counts[table] = int(one_row(conn.execute(query, (table, livemode, livemode)))[0])
            except psycopg.errors.UndefinedTable:
                counts[table] = 0
    return counts


def latest_reconcile_counts(
    instance: dg.DagsterInstance,
) -> tuple[int, int, datetime] | None:
    """Stripe's and the raw customer count from the latest reconcile's materialization, and when
    it happened; None when no reconcile counted them."""
    records = instance.fetch_materializations(raw_key("customers"), limit=50).records
    for record in records:
        materialization = record.asset_materialization
        metadata = materialization.metadata if materialization else {}
        stripe_count = metadata.get("stripe_customers")
        raw_count = metadata.get("raw_customers")
        # Both are recorded as dg.MetadataValue.int (the reconcile asset).
        if isinstance(stripe_count, dg.IntMetadataValue) and isinstance(
            raw_count, dg.IntMetadataValue
        ):
            return (
                int(stripe_count.value or 0),
                int(raw_count.value or 0),
                datetime.fromtimestamp(record.timestamp, UTC),
            )
    return None


def _livemode(warehouse: WarehouseResource) -> bool:
    return current_livemode(warehouse.url())


# --- checks ----------------------------------------------------------------------------------


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name="sync_is_recent",
            asset=raw_key(table),
            description=(
                "Fails when the last successful sync of this table is older than the staleness"
                " threshold (STRIPE_SYNC_STALE_AFTER_HOURS, 24 by default), as sync_health's"
                " `stale` does."
            ),
        )
        for table in OBJECT_TABLES
    ],
    name="raw_tables_sync_is_recent",
    can_subset=True,
)
def raw_tables_sync_is_recent(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """How far behind Stripe each raw table is, from stripe_raw.sync_state."""
    stale_after = stale_after_seconds()
    lags = read_sync_lags(warehouse, _livemode(warehouse))
    selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
    for table, (lag, status, error) in lags.items():
        if table in selected:
            yield sync_lag_result(
                table, lag, stale_after=stale_after, status=status, last_error=error
            )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name="rows_match_sync_mode",
            asset=raw_key(table),
            description=(
                "Fails when the latest sync of one mode (test or live key) wrote a row of the"
                " other mode."
            ),
        )
        for table in OBJECT_TABLES
    ],
    name="raw_rows_match_sync_mode",
    can_subset=True,
)
def raw_rows_match_sync_mode(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """No live-mode row in a test-mode sync, and vice versa."""
    livemode = _livemode(warehouse)
    selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
    for table, count in read_other_mode_rows(warehouse, livemode).items():
        if table in selected:
            yield mode_result(table, livemode, count)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name="raw_customer_count_matches_stripe",
            asset=raw_key("customers"),
            description=(
                "Fails when the customers in stripe_raw (not deleted, key's mode) differ from"
                " Stripe's own count; both are counted by the daily reconcile job. Skipped (not"
                " evaluated) until a reconcile has counted them."
            ),
        )
    ],
    name="raw_customer_count_matches_stripe",
    # Subsettable outputs are optional: yielding no result records the check as skipped
    # instead of passing it without a comparison.
    can_subset=True,
)
def raw_customer_count_matches_stripe(
    context: dg.AssetCheckExecutionContext,
) -> Iterator[dg.AssetCheckResult]:
    """Parity with Stripe, from the latest reconcile's materialization metadata."""
    counts = latest_reconcile_counts(context.instance)
    if counts is None:
        context.log.info(f"raw_customer_count_matches_stripe {CUSTOMER_COUNT_NOT_EVALUATED}")
        return
    yield customer_count_result(*counts)


raw_checks = [
    raw_tables_sync_is_recent,
    raw_rows_match_sync_mode,
    raw_customer_count_matches_stripe,
]
