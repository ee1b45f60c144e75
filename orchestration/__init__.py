"""Stripe Sync: Stripe billing data in your Postgres, as fields and segments."""
