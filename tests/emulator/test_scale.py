"""Scale: deep pages are served, slow requests overlap, and objects live in SQLite.

Nothing here asserts a duration: on a shared machine a time limit fails by chance. The page
times, the start-up budget and the wall time of concurrent slow requests are figures printed by
bench/emulator_timing_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orchestration.emulator import Emulator, start_emulator
from orchestration.emulator.api import Api

CONCURRENT = 8


@pytest.fixture(scope="module")
def big() -> Iterator[Emulator]:
    """A 3,000-customer emulator shared by the deep-page tests."""
    with start_emulator(customers=3000, seed=2, webhooks=False) as emu:
        yield emu


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/customers", {}),
        ("/v1/subscriptions", {"status": "all"}),
        ("/v1/invoices", {}),
        ("/v1/events", {}),
        ("/v1/subscriptions", {"expand[]": "data.customer"}),
    ],
    ids=["customers", "subscriptions", "invoices", "events", "expanded"],
)
def test_deep_page_of_100_is_served(big: Emulator, path: str, params: dict) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {big.test_key}"}) as client:
        first = client.get(big.url + path, params={"limit": 100, **params}).json()
        deep = {"limit": 100, "starting_after": first["data"][-1]["id"], **params}
        response = client.get(big.url + path, params=deep)
    assert response.status_code == 200
    page = response.json()["data"]
    assert len(page) == 100
    assert first["data"][-1]["id"] not in {obj["id"] for obj in page}


class _InFlight:
    """Counts requests inside the emulator's handler; a gate lets them in together."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.now = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None

    def wrap(self, handler: Callable) -> Callable:
        async def counting(api: Api, scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http" or scope["path"].startswith("/_emulator/"):
                await handler(api, scope, receive, send)
                return
            if self.gate is None:
                self.gate = asyncio.Event()
            self.arrived += 1
            if self.arrived == self.expected:
                self.gate.set()
            # All requests wait until every one has arrived, so how fast the client threads
            # start does not matter; a server that serves one at a time never opens the gate.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), timeout=60)
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await handler(api, scope, receive, send)
            finally:
                self.now -= 1

        return counting


def test_latency_does_not_block_other_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's latency is a non-blocking wait: released together, all requests are inside
    # the handler at once. A blocking sleep would let them through one by one (peak 1).
    counter = _InFlight(CONCURRENT)
    monkeypatch.setattr(Api, "__call__", counter.wrap(Api.__call__))
    with start_emulator(customers=50, seed=2, latency_ms=300, webhooks=False) as emu:
        headers = {"Authorization": f"Bearer {emu.test_key}"}

        def fetch(_: int) -> int:
            return httpx.get(f"{emu.url}/v1/customers", headers=headers, timeout=120).status_code

        with ThreadPoolExecutor(CONCURRENT) as pool:
            assert list(pool.map(fetch, range(CONCURRENT))) == [200] * CONCURRENT
    assert counter.peak == CONCURRENT


def test_objects_live_in_sqlite_not_python(emulator: Emulator) -> None:
    # The store keeps JSON rows in SQLite; only the small catalog is held as Python objects.
    assert emulator.account.store.db.execute("select count(*) from obj").fetchone()[0] > 200
    assert len(emulator.account.catalog.prices) < 100
