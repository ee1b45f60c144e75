"""Schedules: the main job every 15 minutes, the reconcile once a day (both overridable in
Settings: STRIPE_SYNC_SCHEDULE_CRON, STRIPE_SYNC_RECONCILE_CRON, STRIPE_SYNC_SCHEDULE_TIMEZONE)."""

from __future__ import annotations

import dagster as dg

from orchestration.core.settings import load_settings
from orchestration.defs.jobs import stripe_reconcile_job, stripe_sync_job

_settings = load_settings()
SYNC_CRON = _settings.stripe_sync_schedule_cron
RECONCILE_CRON = _settings.stripe_sync_reconcile_cron
TIMEZONE = _settings.stripe_sync_schedule_timezone


def default_status() -> dg.DefaultScheduleStatus:
    """Running (the demo syncs on its own), unless STRIPE_SYNC_SCHEDULES=off."""
    running = load_settings().stripe_sync_schedules
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


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
