"""Dagster assets: the stripe_raw tables (extraction) and the dbt models (fields, segments)."""
