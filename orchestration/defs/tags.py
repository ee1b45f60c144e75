"""Run tags every Stripe Sync job carries, importable without loading the definitions."""

from __future__ import annotations

# dagster.yaml's run queue admits one run per value of this tag at a time, so segments are never
# rebuilt concurrently with themselves; `stripe-sync status` finds the jobs' runs by it.
SERIAL_TAG = "stripe_sync/serial"
SERIAL_TAGS = {SERIAL_TAG: "warehouse"}
