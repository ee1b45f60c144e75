"""Blocking entry point behind `stripe-sync emulator`."""

from __future__ import annotations

import threading
import time

from orchestration.emulator.server import Emulator


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 12111,
    customers: int = 1000,
    seed: int = 42,
    latency_ms: float = 0,
    rate_limit_test: float | None = 25,
    rate_limit_live: float | None = 100,
    fault_rate: float = 0.0,
    api_version: str | None = None,
    tick_seconds: float | None = None,
) -> None:
    """Generates the dataset and serves it until interrupted; ticks every tick_seconds if set."""
    started = time.perf_counter()
    emu = Emulator(
        customers=customers,
        seed=seed,
        rate_limit=rate_limit_test,
        rate_limit_live=rate_limit_live,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        api_version=api_version,
    )
    url = emu.start(host, port)
    print(
        f"Stripe emulator listening on {url} ({customers} customers, "
        f"ready in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    print(f"  STRIPE_API_BASE={url}", flush=True)
    print(f"  STRIPE_API_KEY={emu.test_key}", flush=True)
    print(f"  live key: {emu.live_key}   account: {emu.account_id}", flush=True)
    stop = threading.Event()
    try:
        while not stop.wait(tick_seconds or 3600):
            if tick_seconds:
                events = emu.tick(1)
                print(f"tick: {len(events)} events", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
