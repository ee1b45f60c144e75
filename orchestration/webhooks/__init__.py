"""Stripe webhooks: receive and verify (server.py), apply through the extractor's apply_events
(store.py), register the endpoint (register.py), report health (health.py)."""
