"""The resident builder: deliveries reach customer_fields with no build call, through the
receiver's NOTIFY and a warm dbt in a process of its own; its builds are recorded in Dagster."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
from starlette.testclient import TestClient

from orchestration.defs.definitions import defs
from orchestration.extract import loader
from orchestration.transform.resident import (
    BuilderOptions,
    DagsterRecorder,
    ResidentBuilder,
    resident_covered_seq,
    running_builder,
)
from orchestration.transform.runner import build
from tests.webhooks.conftest import customer_event, post

# Raw objects in Stripe's shapes (tests/dbt is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt"))
from dbt_raw_dataset import PRICE_PRO, PRODUCTS, customer, item, subscription

BUILDER_READY_SECONDS = 180.0  # the first build parses the project and creates every relation
CHANGE_SECONDS = 60.0  # far above the seconds a warm build takes: a bound, not a benchmark
# Long enough for the builder's clock build to see the trial before it ends, on a busy machine.
TRIAL_SECONDS = 60.0
MRR_HISTORY = {
    "int_mrr_invoice_periods",
    "int_mrr_subscription_states",
    "mrr_daily",
    "mrr_movements",
}


def _options(database_url: str) -> BuilderOptions:
    return BuilderOptions(
        database_url=database_url, key_mode="test", stale_after_hours=24, report_to_dagster=False
    )


def _name_in_customer_fields(database_url: str, customer_id: str) -> str | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            row = conn.execute(
                "select customer_name from stripe.customer_fields where stripe_customer_id = %s",
                (customer_id,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return row[0] if row else None


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not seen within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def test_deliveries_reach_customer_fields_with_no_build_call(
    database_url: str, app_factory: Callable[..., TestClient]
) -> None:
    http = app_factory()
    with running_builder(_options(database_url)) as supervisor:
        applied = post(http, customer_event("evt_resident_1", "cus_resident", name="Ada"))
        assert applied.json()["outcome"] == "applied"
        _wait_for(
            lambda: _name_in_customer_fields(database_url, "cus_resident") == "Ada",
            BUILDER_READY_SECONDS,
            "the first delivery in customer_fields",
        )
        # The builder listens now: only the receiver's NOTIFY can start the next build.
        post(http, customer_event("evt_resident_2", "cus_resident", name="Grace"))
        _wait_for(
            lambda: _name_in_customer_fields(database_url, "cus_resident") == "Grace",
            CHANGE_SECONDS,
            "the second delivery in customer_fields",
        )
        # A builder that dies is started again, and builds what landed meanwhile.
        crashed = supervisor.process
        os.kill(crashed.pid, signal.SIGKILL)  # type: ignore[arg-type]
        crashed.join(10)
        post(http, customer_event("evt_resident_3", "cus_resident", name="Hopper"))
        _wait_for(
            lambda: _name_in_customer_fields(database_url, "cus_resident") == "Hopper",
            BUILDER_READY_SECONDS,
            "a delivery after the builder was killed",
        )
        assert supervisor.process is not crashed and supervisor.process.is_alive()
        restarted = supervisor.process
    assert not restarted.is_alive(), "the builder stops with the block that started it"
    assert restarted.exitcode == 0, "SIGTERM ends it cleanly"


def _views(manifest_path: Path) -> set[str]:
    nodes = json.loads(manifest_path.read_text())["nodes"]
    return {
        uid
        for uid, node in nodes.items()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "view"
    }


def test_warm_builds_leave_views_seed_and_mrr_history_until_another_mode_built(
    database_url: str, tmp_path: Path
) -> None:
    builder = ResidentBuilder(_options(database_url))
    first = builder.build()
    second = builder.build()
    assert first is not None and second is not None
    views = _views(builder.target / "manifest.json")
    assert views, "the staging layer is views"
    assert views <= {n.unique_id for n in first.nodes}, "the first build makes every view"
    assert first.count("seed") == 1
    assert {n.name for n in first.nodes} >= MRR_HISTORY
    # Between two parses nothing alters a view or a seed, and the MRR history is left to the
    # scheduled builds; every field and segment table is built.
    assert not views & {n.unique_id for n in second.nodes}
    assert second.count("seed") == 0
    assert not {n.name for n in second.nodes} & MRR_HISTORY
    assert {"customer_fields", "customer_feed", "current_trials", "segment_memberships"} <= {
        n.name for n in second.nodes
    }
    assert builder.dbt.parses == 1, "the project is parsed once per process"
    # A warm build's window starts where the previous warm build's ended: the MRR models it
    # leaves out keep their older stamps and must not hold it back.
    with psycopg.connect(database_url, autocommit=True) as conn:
        stamp_before = conn.execute(
            "select stamp from stripe_staging.customer_keyed_state where model = 'customer_fields'"
        ).fetchone()
        assert builder.build() is not None
        since = conn.execute("select since from stripe_staging.int_build_window").fetchone()
    assert stamp_before is not None and since == stamp_before

    # Another build in the same mode and project (a scheduled one) leaves the views as they were.
    build(database_url, as_of=None, livemode=False, target_path=tmp_path, selector="incremental")
    third = builder.build()
    assert third is not None
    assert not views & {n.unique_id for n in third.nodes}
    # One in the other mode made them for it: the builder's next build makes them again.
    build(database_url, as_of=None, livemode=True, target_path=tmp_path, selector="incremental")
    fourth = builder.build()
    assert fourth is not None
    assert views <= {n.unique_id for n in fourth.nodes}


def test_resident_builds_are_recorded_in_dagster_and_move_the_sensor(
    database_url: str, app_factory: Callable[..., TestClient]
) -> None:
    http = app_factory()
    post(http, customer_event("evt_recorded_1", "cus_recorded", name="Ada"))
    post(http, customer_event("evt_recorded_2", "cus_recorded", name="Grace"))
    builder = ResidentBuilder(_options(database_url))
    with dg.DagsterInstance.ephemeral() as instance:
        builder.recorder = DagsterRecorder(instance)
        assert resident_covered_seq(instance) is None
        result = builder.build()
        assert result is not None
        key = dg.AssetKey(["stripe", "customer_fields"])
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
        assert metadata["trigger"].value == "webhooks (resident builder)"
        assert resident_covered_seq(instance) == 2, "both deliveries were in before the build"
        # Every model built has its materialization, under the dbt assets' own keys.
        built = {keys for n in result.nodes if (keys := builder._asset_keys().get(n.unique_id))}
        assert key in built
        for asset_key in built:
            assert instance.get_latest_materialization_event(asset_key) is not None
        assert built <= set(defs.resolve_all_asset_keys())

        # A build with no new delivery (the clock's) is not recorded again.
        records = len(instance.fetch_materializations(key, limit=100).records)
        assert builder.build() is not None
        assert len(instance.fetch_materializations(key, limit=100).records) == records


def _write_trial_ending_in(database_url: str, seconds: float) -> None:
    """A customer whose trial ends `seconds` from now, written as a sync would: no NOTIFY."""
    now = datetime.now(UTC).replace(microsecond=0)
    trial = subscription(
        "sub_clock",
        "cus_clock",
        "trialing",
        created=now - timedelta(days=13),
        items=[item("si_clock", "sub_clock", PRICE_PRO, 1, period_start=now - timedelta(days=13))],
        trial_start=now - timedelta(days=13),
        trial_end=now + timedelta(seconds=seconds),
    )
    objects = {
        "products": PRODUCTS,
        "prices": [PRICE_PRO],
        "customers": [customer("cus_clock", email="clock@example.com", name="Clock", created=now)],
        "subscriptions": [trial],
    }
    with psycopg.connect(database_url) as conn:
        loader.ensure_raw_tables(conn)
        for table, rows in objects.items():
            loader.upsert_objects(conn, table, (loader.object_row(obj, now) for obj in rows))


def test_rules_that_come_due_reach_the_segments_with_no_delivery(database_url: str) -> None:
    """With no delivery, the builder builds every clock_seconds: a raw write with no NOTIFY (a
    sync's) arrives, and a trial that ends with no Stripe event at all enters expired_trials."""
    with psycopg.connect(database_url) as conn:
        loader.ensure_raw_tables(conn)
    options = BuilderOptions(
        database_url=database_url,
        key_mode="test",
        stale_after_hours=24,
        clock_seconds=1.0,
        report_to_dagster=False,
    )
    with running_builder(options):
        _wait_for(
            lambda: _relation_exists(database_url, "stripe_segments.segment_memberships"),
            BUILDER_READY_SECONDS,
            "the builder's first build",
        )
        _write_trial_ending_in(database_url, TRIAL_SECONDS)
        _wait_for(
            lambda: _trial_segments(database_url) == {"current_trials"},
            CHANGE_SECONDS,
            "the trial in current_trials, not yet in expired_trials",
        )
        _wait_for(
            lambda: "expired_trials" in _trial_segments(database_url),
            TRIAL_SECONDS + CHANGE_SECONDS,
            "the ended trial in expired_trials",
        )


def _trial_segments(database_url: str) -> set[str]:
    """The trial segments cus_clock is in, as one build left them (one statement)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select segment from stripe_segments.segment_memberships"
            " where stripe_customer_id = 'cus_clock'"
            " and segment in ('current_trials', 'expired_trials')"
        ).fetchall()
    return {row[0] for row in rows}


def _relation_exists(database_url: str, relation: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]
