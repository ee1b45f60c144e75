"""Jobs: the main sync-then-build, the daily reconcile, and the build webhooks trigger.

Every job carries the `stripe_sync/serial` tag: dagster.yaml's run queue admits one run per value
at a time, so segments are never rebuilt concurrently with themselves. Runs started outside the
queue (the CLI) are serialized by the advisory locks of the sync and of the build.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from orchestration.defs.assets.dbt import stripe_dbt_models
from orchestration.defs.assets.stripe_raw import stripe_raw_tables
from orchestration.defs.tags import SERIAL_TAGS

sync_and_build = dg.AssetSelection.assets(stripe_raw_tables, stripe_dbt_models)

# Every job runs its steps in the run's own process: they run one after the other (sync, build,
# checks), so a process per step (Dagster's default) only adds seconds of start-up to each run
# the daemon launches. Run config may still pick `multiprocess`.
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}

stripe_sync_job = dg.define_asset_job(
    name="stripe_sync_job",
    selection=sync_and_build,
    description="The main job: sync Stripe into stripe_raw (incremental), then dbt build.",
    tags=SERIAL_TAGS,
    config=IN_PROCESS,
)

stripe_reconcile_job = dg.define_asset_job(
    name="stripe_reconcile_job",
    selection=sync_and_build,
    description=(
        "Daily full reconcile: re-list every Stripe object, flag what Stripe no longer returns,"
        " count Stripe's customers for the parity check, then dbt build."
    ),
    tags=SERIAL_TAGS,
    # The daily full build: every customer recomputed, unit tests and every data test run.
    config={
        **IN_PROCESS,
        "ops": {
            "stripe_raw_tables": {"config": {"reconcile": True}},
            "stripe_dbt_models": {"config": {"full_refresh": True}},
        },
    },
)

stripe_build_job = dg.define_asset_job(
    name="stripe_build_job",
    selection=dg.AssetSelection.assets(stripe_dbt_models),
    description="dbt build only: fields, feed and segments from the raw tables as they are.",
    tags=SERIAL_TAGS,
    config=IN_PROCESS,
)

jobs = [stripe_sync_job, stripe_reconcile_job, stripe_build_job]
