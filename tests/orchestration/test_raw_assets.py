"""The extraction assets derive from the ObjectSpec records: one asset per record's table, with
the record's description, plus the extractor's sync_state."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.assets.stripe_raw import stripe_raw_tables
from orchestration.extract.objects import RAW_OBJECTS


def test_extraction_assets_are_the_records_and_sync_state() -> None:
    keys = {key.to_user_string() for key in stripe_raw_tables.keys}
    assert keys == {f"stripe_raw/{spec.table}" for spec in RAW_OBJECTS} | {"stripe_raw/sync_state"}


def test_extraction_asset_descriptions_come_from_the_records() -> None:
    descriptions = stripe_raw_tables.descriptions_by_key
    for spec in RAW_OBJECTS:
        assert descriptions[dg.AssetKey(["stripe_raw", spec.table])] == spec.description
