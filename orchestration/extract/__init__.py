"""Stripe → stripe_raw extraction: a plain library (no Dagster, no dbt, no environment reads).

The CLI, the Dagster assets and the webhooks call exactly these entry points.
"""

from orchestration.extract.preflight import AccessReport, check_access
from orchestration.extract.sync import ObjectResult, SyncResult, sync_stripe

__all__ = ["AccessReport", "ObjectResult", "SyncResult", "check_access", "sync_stripe"]
