"""Every dbt model and column is described; customer_fields descriptions lead with field names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fetch_dicts

from orchestration.cli.commands import run_docs
from orchestration.core.settings import load_settings
from orchestration.transform.runner import BuildResult, parse

# CONTRACT.md's "Encharge field" for columns that name one field each.
DISPLAY_NAMES = {
    "stripe_customer_id": "Stripe Customer ID",
    "customer_email": "Customer email",
    "customer_name": "Customer name",
    "customer_mrr": "Customer MRR",
    "is_customer_delinquent": "Is customer delinquent",
    "customer_description": "Customer Description",
    "customer_phone": "Customer phone number",
    "customer_last_sync_at": "Customer last sync at",
    "customer_address": "Customer address",
    "subscription_id": "Subscription ID",
    "subscription_status": "Status of customer's subscription",
    "subscription_created_at": "Subscription created at",
    "subscription_canceled_at": "Subscription canceled at",
    "plan_id": "Plan ID",
    "plan_price_in_cents": "Plan price in cents",
    "plan_price": "Plan price",
    "last_activity_at": "Last Activity",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = parse(target_path=tmp_path_factory.mktemp("dbt_parse"))
    return json.loads(Path(path).read_text())


def _models(manifest: dict[str, object]) -> list[dict[str, object]]:
    nodes = manifest["nodes"]
    assert isinstance(nodes, dict)
    return [node for node in nodes.values() if node["resource_type"] in ("model", "seed")]


def test_every_model_has_a_description(manifest: dict[str, object]) -> None:
    undescribed = [node["name"] for node in _models(manifest) if not node["description"].strip()]
    assert undescribed == []


def test_every_documented_column_has_a_description(manifest: dict[str, object]) -> None:
    undescribed = [
        f"{node['name']}.{name}"
        for node in _models(manifest)
        for name, column in node["columns"].items()
        if not column["description"].strip()
    ]
    assert undescribed == []


def test_every_built_column_is_documented(
    manifest: dict[str, object], built_warehouse: tuple[str, BuildResult]
) -> None:
    url, _ = built_warehouse
    rows = fetch_dicts(
        url,
        "select table_schema, table_name, column_name from information_schema.columns"
        " where table_schema in ('stripe', 'stripe_segments', 'stripe_staging')",
    )
    documented = {
        (node["schema"], node["name"]): set(node["columns"]) for node in _models(manifest)
    }
    missing = sorted(
        f"{row['table_schema']}.{row['table_name']}.{row['column_name']}"
        for row in rows
        if (row["table_schema"], row["table_name"]) in documented
        and row["column_name"] not in documented[(row["table_schema"], row["table_name"])]
    )
    assert missing == []
    built = {(row["table_schema"], row["table_name"]) for row in rows}
    assert set(documented) <= built, "every model is built where its schema says"


def test_customer_fields_descriptions_start_with_the_display_name(
    manifest: dict[str, object],
) -> None:
    node = next(n for n in _models(manifest) if n["name"] == "customer_fields")
    columns = node["columns"]
    wrong = {
        name: columns[name]["description"][:60]
        for name, display in DISPLAY_NAMES.items()
        if not columns[name]["description"].startswith(display + ".")
    }
    assert wrong == {}


def test_models_land_in_the_contract_schemas(manifest: dict[str, object]) -> None:
    schemas = {node["name"]: node["schema"] for node in _models(manifest)}
    assert schemas["customer_fields"] == "stripe"
    assert schemas["customer_feed"] == "stripe"
    assert schemas["sync_health"] == "stripe"
    assert schemas["segment_memberships"] == "stripe_segments"
    assert schemas["customers"] == "stripe_segments"
    assert schemas["stg_stripe__customers"] == "stripe_staging"
    assert schemas["int_mrr_summed_per_customer"] == "stripe_staging"


def test_docs_open_on_the_projects_own_overview(manifest: dict[str, object]) -> None:
    docs = manifest["docs"]
    assert isinstance(docs, dict)
    ours = docs.get("doc.stripe_sync.__overview__")
    assert ours, "without it dbt docs open on dbt's generic welcome page"
    text = ours["block_contents"]
    for part in ("# Stripe Sync", "## Where to start", "## The layers", "## Decision log"):
        assert part in text
    assert "#!/model/model.stripe_sync.customer_fields" in text


def test_make_docs_writes_a_catalog_and_a_log_without_colour_codes(
    built_warehouse: tuple[str, BuildResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = built_warehouse
    monkeypatch.setenv("DATABASE_URL", url)
    run_docs(load_settings(), serve=False, port=8080, target_path=tmp_path)
    assert (tmp_path / "index.html").is_file()
    catalog = json.loads((tmp_path / "catalog.json").read_text())
    assert "model.stripe_sync.customer_fields" in catalog["nodes"]
    log = (tmp_path / "dbt.log").read_text()
    assert "docs generate" in log or "Catalog written" in log
    assert "\x1b[" not in log
