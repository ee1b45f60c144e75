"""Runs the dbt project: builds, parses and docs through one runner."""
