"""The one Definitions object of Stripe Sync, assembled explicitly: everything Dagster loads.

Stripe → stripe_raw (extraction assets) → stripe_staging → stripe (fields) → stripe_segments, as one
lineage: the dbt source `stripe_raw` keys match the extraction assets, so no key is translated.
"""

from __future__ import annotations

import dagster as dg

from orchestration.core.process import fix_mmap_threshold
from orchestration.defs.assets.dbt import stripe_dbt_models
from orchestration.defs.assets.stripe_raw import activity_events, stripe_raw_tables
from orchestration.defs.checks import raw_checks
from orchestration.defs.delivery import segment_delivery_job, segment_delivery_sensor
from orchestration.defs.jobs import jobs
from orchestration.defs.resources import build_resources
from orchestration.defs.schedules import schedules
from orchestration.defs.sensors import sensors

# The code location is the entry point of every Dagster process that syncs (each run's process
# loads it first); process-wide settings belong to entry points, not to the extractor.
fix_mmap_threshold()

defs = dg.Definitions(
    assets=[stripe_raw_tables, activity_events, stripe_dbt_models],
    asset_checks=raw_checks,
    jobs=[*jobs, segment_delivery_job],
    schedules=schedules,
    sensors=[*sensors, segment_delivery_sensor],
    resources=build_resources(),
)
