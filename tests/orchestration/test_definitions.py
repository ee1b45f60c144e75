"""The Definitions load and show one lineage: Stripe → raw → staging → fields → segments."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.defs.definitions import defs

SEGMENTS = (
    "syncing_with_stripe",
    "current_trials",
    "slipping_trials",
    "slipping_customers",
    "expired_trials",
    "customers",
    "churned_customers",
    "past_due_subscriptions",
)
RAW_TABLES = (
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "prices",
    "products",
    "checkout_sessions",
    "events",
)


@pytest.fixture(scope="module")
def graph() -> dg.AssetGraph:
    return defs.resolve_asset_graph()


def _key(text: str) -> dg.AssetKey:
    return dg.AssetKey(text.split("/"))


def _parents(graph: dg.AssetGraph, key: str) -> set[str]:
    return {parent.to_user_string() for parent in graph.get(_key(key)).parent_keys}


def test_definitions_load_with_every_job() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {job.name for job in defs.jobs} == {
        "stripe_sync_job",
        "stripe_reconcile_job",
        "stripe_build_job",
        "segment_delivery_job",
    }


@pytest.mark.parametrize("table", RAW_TABLES)
def test_raw_table_is_an_extraction_asset_keyed_by_its_address(
    graph: dg.AssetGraph, table: str
) -> None:
    node = graph.get(_key(f"stripe_raw/{table}"))
    assert node.is_materializable
    assert node.group_name == "stripe_raw"
    assert {"stripe", "postgres"} <= set(node.kinds)
    assert node.description


def test_lineage_runs_from_raw_through_staging_to_customer_fields(graph: dg.AssetGraph) -> None:
    assert "stripe_raw/customers" in _parents(graph, "stripe_staging/stg_stripe__customers")
    assert "stripe_raw/subscriptions" in _parents(graph, "stripe_staging/stg_stripe__subscriptions")
    ancestors = graph.upstream_key_iterator(_key("stripe/customer_fields"))
    names = {key.to_user_string() for key in ancestors}
    assert {
        "stripe_staging/stg_stripe__customers",
        "stripe_raw/customers",
        "stripe_raw/subscriptions",
        "stripe_raw/charges",
        "stripe_raw/activity_events",
    } <= names


@pytest.mark.parametrize("segment", SEGMENTS)
def test_each_segment_is_built_from_customer_fields(graph: dg.AssetGraph, segment: str) -> None:
    assert "stripe/customer_fields" in _parents(graph, f"stripe_segments/{segment}")
    node = graph.get(_key(f"stripe_segments/{segment}"))
    assert node.group_name == "stripe_segments"
    assert {"dbt", "postgres"} <= set(node.kinds)


GROUPS = {
    "stripe_raw",
    "stripe_staging",
    "stripe_intermediate",
    "stripe",
    "stripe_segments",
}


@pytest.mark.parametrize(
    ("key", "group"),
    [
        ("stripe_staging/stg_stripe__customers", "stripe_staging"),
        ("stripe_staging/int_subscriptions_ranked_per_customer", "stripe_intermediate"),
        ("stripe/customer_fields", "stripe"),
        ("stripe/sync_health", "stripe"),
        ("stripe_segments/current_trials", "stripe_segments"),
    ],
)
def test_models_are_grouped_by_layer(graph: dg.AssetGraph, key: str, group: str) -> None:
    assert graph.get(_key(key)).group_name == group


def test_every_asset_has_a_description_a_known_group_and_an_owner(graph: dg.AssetGraph) -> None:
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name in GROUPS, key
        assert "team:data-platform" in node.owners, key


def test_main_job_is_scheduled_every_15_minutes() -> None:
    schedule = defs.resolve_schedule_def("incremental_sync_schedule")
    assert schedule.job_name == "stripe_sync_job"
    assert schedule.cron_schedule == "*/15 * * * *"
    reconcile = defs.resolve_schedule_def("daily_reconcile_schedule")
    assert reconcile.job_name == "stripe_reconcile_job"


def test_jobs_are_serialized_by_the_queue_tag() -> None:
    for name in ("stripe_sync_job", "stripe_reconcile_job", "stripe_build_job"):
        assert defs.resolve_job_def(name).tags["stripe_sync/serial"] == "warehouse"


def test_webhook_sensor_requests_a_build_within_a_minute() -> None:
    sensor = defs.resolve_sensor_def("webhook_build_sensor")
    assert sensor.job_name == "stripe_build_job"
    assert sensor.minimum_interval_seconds <= 30


def test_checks_cover_freshness_parity_modes_and_dbt_tests(graph: dg.AssetGraph) -> None:
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    for table in RAW_TABLES:
        assert (f"stripe_raw/{table}", "sync_is_recent") in checks
        assert (f"stripe_raw/{table}", "rows_match_sync_mode") in checks
    assert ("stripe_raw/customers", "raw_customer_count_matches_stripe") in checks
    dbt_checks = {name for key, name in checks if key == "stripe/customer_fields"}
    assert any(name.startswith("unique_") for name in dbt_checks), dbt_checks
    for segment in SEGMENTS:
        assert any(key == f"stripe_segments/{segment}" for key, _ in checks), segment


def test_every_singular_test_is_a_check_of_the_model_its_name_names(graph: dg.AssetGraph) -> None:
    # assert_<model>__<rule> (STYLE.md): a singular test reading several models is still a check
    # of <model>, not an observation logged with a warning on every build.
    from orchestration.defs.assets.dbt import manifest_with_checked_models
    from orchestration.defs.resources import dbt_project

    manifest = manifest_with_checked_models(dbt_project.manifest_path)
    singular = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and not node.get("test_metadata")
    }
    assert singular, "the project has singular tests"
    checks = {key.name: key.asset_key.path[-1] for key in graph.asset_check_keys}
    for name in singular:
        model = name.removeprefix("assert_").split("__")[0]
        assert checks.get(name) == model, name
