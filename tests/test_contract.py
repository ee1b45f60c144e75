"""The names users and BI tools rely on match docs/contract.md: tables, columns, segments, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from orchestration.core.settings import PROJECT_ROOT

CONTRACT = PROJECT_ROOT / "docs" / "contract.md"


def _contract() -> str:
    assert CONTRACT.exists(), f"the contract is expected at {CONTRACT}"
    return CONTRACT.read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading) :]
    following = re.search(r"\n#{2,3} ", rest)
    return rest[: following.start()] if following else rest


def _first_column_names(table_text: str) -> list[str]:
    names: list[str] = []
    for line in table_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= {"-", " "} or cells[0] in ("column", "table"):
            continue
        names.extend(re.findall(r"`([a-z_]+)`", cells[0]))
    return names


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    target = tmp_path_factory.mktemp("dbt-target")
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [
            str(dbt),
            "parse",
            "--project-dir",
            str(PROJECT_ROOT),
            "--profiles-dir",
            "profiles",
            "--target-path",
            str(target),
            "--quiet",
        ],
        cwd=PROJECT_ROOT,
        check=True,
    )
    return json.loads((target / "manifest.json").read_text())


def _model(manifest: dict, schema: str, name: str) -> dict:
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"] == name and node["schema"] == schema:
            return node
    raise AssertionError(f"no model {schema}.{name}")


def test_customer_fields_columns_are_the_contracts_in_order(manifest: dict) -> None:
    expected = _first_column_names(_section(_contract(), "### `stripe.customer_fields`"))
    assert len(expected) > 30
    documented = list(_model(manifest, "stripe", "customer_fields")["columns"])
    assert documented == expected


def test_every_segment_of_the_contract_is_a_model(manifest: dict) -> None:
    expected = _first_column_names(_section(_contract(), "### `stripe_segments`"))
    assert "segment_memberships" in expected
    for name in expected:
        _model(manifest, "stripe_segments", name)


def test_marts_of_the_contract_are_models(manifest: dict) -> None:
    for name in ("customer_fields", "customer_feed", "sync_health"):
        _model(manifest, "stripe", name)


def test_raw_tables_have_the_contract_columns(database_url: str) -> None:
    from orchestration.extract.loader import ensure_raw_tables

    raw = _section(_contract(), "### `stripe_raw`")
    tables = re.findall(r"`([a-z_]+)`", raw.split("Each row")[0])
    with psycopg.connect(database_url) as conn:
        ensure_raw_tables(conn)
        conn.commit()
        for table in tables:
            columns = {
                r[0]
                for r in conn.execute(
                    "select column_name from information_schema.columns"
                    " where table_schema = 'stripe_raw' and table_name = %s",
                    (table,),
                )
            }
            assert {"id", "livemode", "created", "data", "is_deleted", "synced_at"} <= columns
        activity = conn.execute(
            "select column_name, data_type, is_nullable from information_schema.columns"
            " where table_schema = 'stripe_raw' and table_name = 'activity_events'"
            " order by ordinal_position"
        ).fetchall()
    assert activity == [
        ("stripe_customer_id", "text", "YES"),
        ("customer_email", "text", "YES"),
        ("occurred_at", "timestamp with time zone", "NO"),
    ]


def test_every_contract_command_exists() -> None:
    from typer.main import get_command

    from orchestration.cli.main import app

    commands = re.findall(r"`stripe-sync ([a-z]+(?: [a-z]+)?)", _section(_contract(), "## Command"))
    root = get_command(app)
    for command in commands:
        words = command.split()
        group = root.commands[words[0]]  # type: ignore[attr-defined]
        if len(words) > 1 and hasattr(group, "commands"):
            assert words[1] in group.commands, command
