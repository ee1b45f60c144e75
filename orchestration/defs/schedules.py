"""Schedules: the main job every 15 minutes, the reconcile once a day (both overridable)."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.defs.jobs import stripe_reconcile_job, stripe_sync_job

SYNC_CRON = os.environ.get("STRIPE_SYNC_SCHEDULE_CRON", "*/15 * * * *")  # every 15 minutes
RECONCILE_CRON = os.environ.get("STRIPE_SYNC_RECONCILE_CRON", "30 3 * * *")  # daily at 03:30
TIMEZONE = os.environ.get("STRIPE_SYNC_SCHEDULE_TIMEZONE", "UTC")


def default_status() -> dg.DefaultScheduleStatus:
    """Running (the demo syncs on its own), unless STRIPE_SYNC_SCHEDULES=off."""
    off = os.environ.get("STRIPE_SYNC_SCHEDULES", "on").lower() in ("off", "0", "false", "no")
    return dg.DefaultScheduleStatus.STOPPED if off else dg.DefaultScheduleStatus.RUNNING


incremental_sync_schedule = dg.ScheduleDefinition(
    name="incremental_sync_schedule",
    job=stripe_sync_job,
    cron_schedule=SYNC_CRON,
    execution_timezone=TIMEZONE,
    default_status=default_status(),
    description="Sync then build; cron from STRIPE_SYNC_SCHEDULE_CRON (default every 15 minutes).",
)

daily_reconcile_schedule = dg.ScheduleDefinition(
    name="daily_reconcile_schedule",
    job=stripe_reconcile_job,
    cron_schedule=RECONCILE_CRON,
    execution_timezone=TIMEZONE,
    default_status=default_status(),
    description="Full reconcile then build; cron from STRIPE_SYNC_RECONCILE_CRON (daily 03:30).",
)

schedules = [incremental_sync_schedule, daily_reconcile_schedule]
