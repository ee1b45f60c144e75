"""Chaos suite sizes: small in CI (`make test`), full with STRIPE_SYNC_CHAOS_FULL=1 (make chaos)."""

from __future__ import annotations

import os

FULL = os.environ.get("STRIPE_SYNC_CHAOS_FULL") == "1"

# Kills that must land while a sync runs; customers of the killed account.
KILLS = 20 if FULL else 3
KILL_CUSTOMERS = 6000 if FULL else 1500
FAULT_CUSTOMERS = 3000 if FULL else 800
RESTART_CUSTOMERS = 3000 if FULL else 1500
CLOCK_CUSTOMERS = 2000 if FULL else 500
