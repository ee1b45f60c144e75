"""Dagster definitions: assets, checks, jobs, schedules, sensors and resources,
gathered in definitions.py."""
