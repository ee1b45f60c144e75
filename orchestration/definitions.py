"""The one Definitions object of Stripe Sync, assembled explicitly: everything Dagster loads.

Stripe → stripe_raw (extraction assets) → stripe_staging → stripe (fields) → stripe_segments, as one
lineage: the dbt source `stripe_raw` keys match the extraction assets, so no key is translated.
"""

from __future__ import annotations

import dagster as dg

from orchestration.assets.dbt import stripe_dbt_models
from orchestration.assets.stripe_raw import activity_events, stripe_raw_tables
from orchestration.checks import raw_checks
from orchestration.jobs import jobs
from orchestration.resources import build_resources
from orchestration.schedules import schedules
from orchestration.sensors import sensors

defs = dg.Definitions(
    assets=[stripe_raw_tables, activity_events, stripe_dbt_models],
    asset_checks=raw_checks,
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(),
)
