"""The dbt models as assets (dagster-dbt), and the translator that only sets their groups.

Keys need no translation: the dbt source `stripe_raw` keys its tables [stripe_raw, table], the very
keys of the extraction assets, and each model folder's `+schema` keys models [schema, model]
(stripe/customer_fields, stripe_segments/current_trials), so lineage runs unbroken from Stripe to
the segments. dbt tests become asset checks.
"""

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from psycopg import sql
from pydantic import Field

from orchestration.core.modes import parse_as_of
from orchestration.core.rows import one_row
from orchestration.core.settings import load_settings
from orchestration.defs.resources import WarehouseResource, ensure_manifest
from orchestration.transform.in_process import stream_dbt_in_process
from orchestration.transform.reports import bridge_markdown, read_mrr_bridge
from orchestration.transform.runner import (
    INCREMENTAL_SELECTOR,
    PROFILES_DIR,
    as_of_env,
    build_livemode,
    build_lock,
    dbt_environment,
    dbt_project,
    dbt_vars,
    ensure_raw_tables,
    target_path_for,
)

SEGMENTS_GROUP = "stripe_segments"
# Tables of the segments schema that are not segments: their rows are stays and changes.
SEGMENT_HISTORY_TABLES = ("segment_membership_history", "segment_changes")
# Groups mirror the dbt project's folders (layers): models/<folder>/… → group stripe_<folder>.
LAYER_GROUPS = {
    "staging": "stripe_staging",
    "intermediate": "stripe_intermediate",
    "marts": "stripe",
    "segments": SEGMENTS_GROUP,
}
ACTIVITY_EVENTS = dg.AssetKey(["stripe_raw", "activity_events"])
# Pages that show the month's MRR bridge (the int_mrr_bridge view).
BRIDGE_TABLES = (("stripe", "mrr_movements"), ("stripe_staging", "int_mrr_bridge"))
OWNERS = ["team:data-platform"]
PREVIEW_ROWS = 10
# Columns a preview shows (of those the table has): enough to recognise a member at a glance.
PREVIEW_COLUMNS = (
    "segment",
    "stripe_customer_id",
    "customer_email",
    "customer_name",
    "subscription_status",
    "customer_mrr",
    "plan_currency",
    "subscription_trial_ends_at",
    "last_activity_at",
)

ensure_manifest()

# Singular tests are named assert_<model>__<rule> (STYLE.md); the model is the one they check.
_SINGULAR_TEST_NAME = re.compile(r"^assert_(\w+?)__\w+$")


def manifest_with_checked_models(path: Path) -> dict[str, Any]:
    """The dbt manifest, with each singular test over several models attached to the model its
    name says it checks (`meta.dagster.ref`), unless it names one itself.

    dagster-dbt loads such a test as an asset check only with that ref, else it logs an
    observation and a warning on every build; and dbt's partial parsing drops the ref when it is
    set in a yml, so the naming convention is the one place that always holds.
    """
    manifest = json.loads(path.read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or node.get("test_metadata"):
            continue  # generic tests are attached to their model by dbt
        meta = node.setdefault("config", {}).setdefault("meta", {})
        dagster_meta = meta.setdefault("dagster", {})
        match = _SINGULAR_TEST_NAME.match(node["name"])
        if "ref" not in dagster_meta and match and match.group(1) in models:
            dagster_meta["ref"] = {"name": match.group(1)}
    return manifest


class StripeDbtTranslator(DagsterDbtTranslator):
    """Groups (and owners) only: one group per layer, as the model folders are."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "source":
            return "stripe_raw"
        fqn = dbt_resource_props.get("fqn") or []
        folder = fqn[1] if len(fqn) > 2 else ""
        # Seeds (currency exponents) are reference data read by staging.
        return LAYER_GROUPS.get(folder, "stripe_staging")

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [*(super().get_owners(dbt_resource_props) or []), *OWNERS]


class BuildConfig(dg.Config):
    """Run config of a build: the contract's `--as-of` ("" = the build's own start time)."""

    as_of: str = Field(default="", description="ISO-8601 with timezone; fixes 'now' for the rules.")
    full_refresh: bool = Field(
        default=False,
        description="Recompute every customer and run every test (the daily reconcile does);"
        " otherwise only touched customers, and only the reader_guard checks.",
    )


# The checks an incremental build runs (selectors.yml's `incremental`): data tests so tagged.
READER_GUARD = "reader_guard"


def incremental_excludes(manifest: Mapping[str, Any]) -> list[str]:
    """What an incremental build of a subset leaves to full builds: unit tests, and every data
    test not tagged reader_guard (selectors.yml's rule, which dbt does not combine with the
    subset's --select)."""
    heavy = sorted(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and READER_GUARD not in node.get("tags", [])
    )
    return ["resource_type:unit_test", *heavy]


def build_as_of(config_as_of: str) -> datetime:
    """The build's "now": the run config's, else the run's own start. Always explicit, so the
    asset knows which segment changes this build detected (their detected_at is it)."""
    return parse_as_of(config_as_of or None) or datetime.now(UTC)


def build_vars(livemode: bool) -> str:
    """dbt --vars for a build: the mode to show and the staleness threshold."""
    return dbt_vars(
        livemode=livemode,
        stale_after_hours=load_settings().stripe_sync_stale_after_hours,
    )


def current_livemode(database_url: str) -> bool:
    """The key's mode; without a key, that of the latest sync (as `stripe-sync build` does)."""
    return build_livemode(load_settings().key_mode, database_url)


# An exact count reads the whole table. Past this many rows (the planner's estimate) a build's
# page shows the estimate instead, so that a build's cost follows its change, not the account:
# at a million customers the feed and history tables hold tens of millions of rows.
EXACT_COUNT_MAX_ROWS = 1_000_000


def table_facts(
    database_url: str, schema: str, table: str, as_of: datetime | None = None
) -> dict[str, dg.MetadataValue]:
    """Row count and, for a segment, its first members as a table the asset's page shows.

    One query of our own rather than dagster-dbt's fetch_row_counts(): that one counts through a
    dbt adapter opened in the run's process, and in a run it attached no count at all."""
    relation = sql.Identifier(schema, table)
    with psycopg.connect(database_url) as conn:
        count, exact = _row_count(conn, relation)
        suffix = "" if exact else "_estimate"
        facts: dict[str, dg.MetadataValue] = {
            "dagster/row_count" if exact else "row_count_estimate": dg.MetadataValue.int(count)
        }
        if schema == SEGMENTS_GROUP and table not in SEGMENT_HISTORY_TABLES:
            facts["members" + suffix] = dg.MetadataValue.int(count)
            facts["preview"] = _preview(conn, relation, table)
            if as_of is not None and table != "segment_memberships":
                facts.update(_changes_of_the_build(conn, table, as_of))
        if (schema, table) in BRIDGE_TABLES:
            facts["month_bridge"] = dg.MetadataValue.md(bridge_markdown(read_mrr_bridge(conn)))
    if (schema, table) == ("stripe", "customer_fields"):
        facts["customers_in_sync" + suffix] = dg.MetadataValue.int(count)
    return facts


def _row_count(conn: psycopg.Connection, relation: sql.Identifier) -> tuple[int, bool]:
    """The table's rows and whether that is exact: counted below EXACT_COUNT_MAX_ROWS (or before
    the table was ever analyzed, when the estimate is -1), else the planner's estimate."""
    estimate = one_row(
        conn.execute(
            "select coalesce((select reltuples::bigint from pg_class where oid = to_regclass(%s)),"
            " -1)",
            (relation.as_string(conn),),
        )
    )[0]
    if estimate > EXACT_COUNT_MAX_ROWS:
        return estimate, False
    return one_row(conn.execute(sql.SQL("select count(*) from {}").format(relation)))[0], True


def _changes_of_the_build(
    conn: psycopg.Connection, segment: str, as_of: datetime
) -> dict[str, dg.MetadataValue]:
    """Members who entered and left the segment in this build (the change feed's rows detected at
    its as_of): numbers the asset's page plots build after build."""
    try:
        with conn.transaction():
            entered, exited = one_row(
                conn.execute(
                    "select count(*) filter (where change = 'entered'),"
                    " count(*) filter (where change = 'exited')"
                    " from stripe_segments.segment_changes"
                    " where segment = %s and detected_at = %s",
                    (segment, as_of),
                )
            )
    except psycopg.errors.UndefinedTable:
        return {}
    return {"entered": dg.MetadataValue.int(entered), "exited": dg.MetadataValue.int(exited)}


def _preview(conn: psycopg.Connection, relation: sql.Identifier, table: str) -> dg.MetadataValue:
    """The first members, in the columns that recognise one at a glance, as text cells."""
    order = "segment, stripe_customer_id" if table == "segment_memberships" else "1"
    cursor = conn.execute(
        sql.SQL("select * from {} order by {} limit {}").format(
            relation, sql.SQL(order), sql.Literal(PREVIEW_ROWS)
        )
    )
    names = [column.name for column in cursor.description or []]
    shown = [n for n in PREVIEW_COLUMNS if n in names] or names[:6]
    records = [
        dg.TableRecord(
            {n: "" if row[names.index(n)] is None else str(row[names.index(n)]) for n in shown}
        )
        for row in cursor.fetchall()
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in shown])
    return dg.MetadataValue.table(records=records, schema=schema)


def observe_activity_events(database_url: str) -> dg.AssetObservation | None:
    """Rows and latest activity of stripe_raw.activity_events, the table the user fills.

    Nothing in Stripe Sync materializes it, so each build observes it: the asset page then shows
    what the Last Activity field was computed from.
    """
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            rows, latest = one_row(
                conn.execute("select count(*), max(occurred_at) from stripe_raw.activity_events")
            )
    except psycopg.Error:
        return None
    metadata: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(int(rows))}
    metadata["latest_activity_at"] = (
        dg.MetadataValue.timestamp(latest) if latest else dg.MetadataValue.text("no activity yet")
    )
    return dg.AssetObservation(asset_key=ACTIVITY_EVENTS, metadata=metadata)


def _event_asset_key(event: Any, context: dg.AssetExecutionContext) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):
        return context.asset_key_for_output(event.output_name)
    return getattr(event, "asset_key", None)


def _shown_after_the_build(event: Any, context: dg.AssetExecutionContext) -> bool:
    key = _event_asset_key(event, context)
    if key is None or len(key.path) != 2:
        return False
    return key.path[0] == SEGMENTS_GROUP or tuple(key.path) in BRIDGE_TABLES


def with_facts(
    event: Any, context: dg.AssetExecutionContext, database_url: str, as_of: datetime | None = None
) -> Any:
    """Adds row counts (and segment previews) to the materialization of a table."""
    if isinstance(event, dg.Output):
        key = context.asset_key_for_output(event.output_name)
    elif isinstance(event, dg.AssetMaterialization):
        key = event.asset_key
    else:
        return event
    shown = ("stripe", SEGMENTS_GROUP)
    if len(key.path) != 2 or (key.path[0] not in shown and tuple(key.path) not in BRIDGE_TABLES):
        return event
    try:
        facts = table_facts(database_url, key.path[0], key.path[1], as_of)
    except Exception as exc:  # a preview must never fail the build
        context.log.warning(f"no row count for {key.to_user_string()}: {exc}")
        return event
    return event.with_metadata({**event.metadata, **facts})


MANIFEST = manifest_with_checked_models(dbt_project.manifest_path)
TRANSLATOR = StripeDbtTranslator()


@dbt_assets(
    manifest=MANIFEST,
    project=dbt_project,
    dagster_dbt_translator=TRANSLATOR,
    name="stripe_dbt_models",
    pool="stripe_warehouse",
)
def stripe_dbt_models(
    context: dg.AssetExecutionContext,
    config: BuildConfig,
    dbt: DbtCliResource,
    warehouse: WarehouseResource,
) -> Iterator[Any]:
    """`dbt build` of the selected models and their tests, in the key's mode, at `as_of`.

    One build of a warehouse at a time: the same advisory lock as `stripe-sync build`.
    """
    url = warehouse.url()
    livemode = current_livemode(url)
    mode = "live" if livemode else "test"
    as_of = build_as_of(config.as_of)
    kind = "full" if config.full_refresh else "incremental"
    context.log.info(f"{kind} dbt build in {mode} mode, as of {as_of.isoformat()}")
    with build_lock(url), dbt_environment(url, as_of_env(as_of)):
        ensure_raw_tables(url)
        args = ["build", "--vars", build_vars(livemode)]
        if config.full_refresh:
            args.append("--full-refresh")
        elif context.is_subset:  # assets or checks picked in the UI: dagster-dbt selects them
            args += ["--exclude", " ".join(incremental_excludes(MANIFEST))]
        else:
            # The whole project, by `stripe-sync build`'s own selector: dbt matches its three
            # rules once, where the same exclusion names ~500 tests, each matched against every
            # node (0.4-0.5 s of every build at 10k customers, and a command line no one reads).
            args += ["--selector", INCREMENTAL_SELECTOR]
        # In the run's process (it imported dbt already), into the warehouse's own target folder
        # as `stripe-sync build`'s, so partial parsing stays warm.
        invocation = stream_dbt_in_process(
            context,
            args,
            manifest=MANIFEST,
            translator=TRANSLATOR,
            project_dir=Path(dbt.project_dir),
            profiles_dir=Path(dbt.profiles_dir or PROFILES_DIR),
            target_path=target_path_for(url),
        )
        # Segment pages count the changes this build detected, and mrr_movements' page shows the
        # bridge view built after it: their events wait for the end of the build. Nothing
        # outside them depends on them, so the run's events stay in dependency order.
        held = []
        for event in invocation:
            if _shown_after_the_build(event, context):
                held.append(event)
            else:
                yield with_facts(event, context, url, as_of)
        for event in held:
            yield with_facts(event, context, url, as_of)
        observation = observe_activity_events(url)
        if observation is not None:
            context.log_event(observation)
