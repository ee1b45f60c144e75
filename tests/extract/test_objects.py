"""The ObjectSpec records against what they describe: the raw-table DDL in a real database, the
sync state rows, and the emulator's list endpoints. Adding a record without its table (or a table
without its record) fails here."""

from __future__ import annotations

import psycopg
import pytest

from orchestration.extract import loader
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import (
    DISCOUNT_EVENT_TYPES,
    OBJECTS,
    RAW_OBJECTS,
    STATE_OBJECTS,
)

# stripe_raw tables that are no Stripe object: written by the user, and the extractor's bookkeeping.
OTHER_RAW_TABLES = {"activity_events", "sync_state"}
# The shape every object table shares (create_raw_tables.sql), which the loader's upsert relies on.
OBJECT_COLUMNS = {"id", "livemode", "created", "data", "is_deleted", "snapshot_at", "synced_at"}


@pytest.fixture
def raw_columns(database_url: str) -> dict[str, set[str]]:
    """Columns of every stripe_raw table, once create_raw_tables.sql has run."""
    with psycopg.connect(database_url) as conn:
        loader.ensure_raw_tables(conn)
        conn.commit()
        columns: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'stripe_raw'"
        ):
            columns.setdefault(table, set()).add(column)
    return columns


def test_every_raw_table_is_a_spec_or_named_bookkeeping(raw_columns: dict[str, set[str]]) -> None:
    assert set(raw_columns) == {spec.table for spec in RAW_OBJECTS} | OTHER_RAW_TABLES


@pytest.mark.parametrize("spec", RAW_OBJECTS, ids=lambda spec: spec.table)
def test_spec_table_has_the_object_shape(spec, raw_columns: dict[str, set[str]]) -> None:
    assert raw_columns[spec.table] >= OBJECT_COLUMNS


def test_sync_state_rows_are_the_object_tables(raw_columns: dict[str, set[str]]) -> None:
    assert set(STATE_OBJECTS) == set(raw_columns) - OTHER_RAW_TABLES
    assert len(set(STATE_OBJECTS)) == len(STATE_OBJECTS)


@pytest.mark.parametrize("spec", OBJECTS, ids=lambda spec: spec.table)
def test_spec_event_types_are_its_own(spec) -> None:
    assert spec.event_types, "a synced object needs the events that keep it current"
    assert len(set(spec.event_types)) == len(spec.event_types)
    assert spec.delete_event is None or spec.delete_event in spec.event_types
    assert not set(spec.event_types) & set(DISCOUNT_EVENT_TYPES)
    assert spec.description


def test_no_event_type_belongs_to_two_specs() -> None:
    types = [t for spec in OBJECTS for t in spec.event_types]
    assert len(set(types)) == len(types)


@pytest.mark.parametrize("spec", RAW_OBJECTS, ids=lambda spec: spec.table)
def test_emulator_lists_and_stores_every_spec(spec, emulator) -> None:
    # The emulator models Stripe, not our pipeline, and cannot import extract (the layers
    # contract): this holds its endpoints and tables to the records instead.
    client = StripeApi(emulator.test_key, emulator.url, max_rps=1000)
    page = next(client.list_pages(spec.list_path, limit=1, **spec.list_params))
    assert page.data["object"] == "list"
    assert all(obj["object"] == spec.stripe_object for obj in page.objects)
    assert isinstance(emulator.objects(spec.table), dict)
