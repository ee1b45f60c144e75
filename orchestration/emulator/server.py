"""The Emulator (data, keys, limits, webhooks) and start_emulator(), which serves it over HTTP."""

from __future__ import annotations

import functools
import hashlib
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from orchestration.emulator.account import PERMISSIONS, Account, Clock, KeyInfo
from orchestration.emulator.api import Api, ApiError
from orchestration.emulator.generator import generate, load_or_generate
from orchestration.emulator.lifecycle import Lifecycle
from orchestration.emulator.limits import FAULT_KINDS, Limits, Stats
from orchestration.emulator.render import (
    CURRENT_SHAPE,
    CURRENT_VERSION,
    Shape,
    render_subscription_items,
)
from orchestration.emulator.store import Store, loads
from orchestration.emulator.webhooks import Deliverer, matches

TABLES = {
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "prices",
    "products",
    "checkout_sessions",
    "coupons",
    "events",
}
_KEEP = object()


def _token(seed: int, label: str, length: int = 32) -> str:
    """A deterministic key-like token derived from the seed."""
    raw = hashlib.sha256(f"stripe-sync-emulator:{seed}:{label}".encode()).hexdigest()
    mixed = "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(raw))
    return mixed[:length]


class Emulator:
    """A Stripe account (plus a second one) with generated data, served by `Api`."""

    def __init__(
        self,
        *,
        customers: int = 200,
        seed: int = 1,
        live_customers: int | None = None,
        rate_limit: float | None = None,
        rate_limit_live: Any = _KEEP,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        api_version: str | None = None,
        webhooks: bool = True,
        webhook_workers: int = 1,
        now: int | None = None,
        db_path: str = ":memory:",
    ) -> None:
        self.seed = seed
        self.clock = Clock(now)
        # Stripe's Date header and its events' `created` come from one clock: the Date header
        # follows the simulated clock, to the second, trailing it by `date_lag` seconds (a
        # server's cached Date can lag; tests set it to make that worse).
        self.date_lag = 0
        self.latency_ms = latency_ms
        self.default_version = api_version or CURRENT_VERSION
        self.limits = Limits(
            seed=seed,
            rate_test=rate_limit,
            rate_live=rate_limit if rate_limit_live is _KEEP else rate_limit_live,
            fault_rate=fault_rate,
            fault_kinds=fault_kinds,
        )
        self.stats_counters = Stats()
        self.lock = threading.RLock()
        self.rng = random.Random(seed * 31 + 7)  # noqa: S311 - reproducible, not secret
        self.deliverer = (
            Deliverer(self.stats_counters, workers=webhook_workers) if webhooks else None
        )
        self.endpoints: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.account = self._make_account(seed, "Stripe Sync Demo", db_path)
        load_or_generate(
            self.account,
            customers,
            min(max(2, customers // 10), 1000) if live_customers is None else live_customers,
            seed,
        )
        self.test_key = f"sk_test_51{_token(seed, 'test')}"
        self.live_key = f"sk_live_51{_token(seed, 'live')}"
        self.keys[self.test_key] = KeyInfo(self.account, False)
        self.keys[self.live_key] = KeyInfo(self.account, True)
        self.other: Account | None = None
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def account_id(self) -> str:
        """The main account's id."""
        return self.account.id

    def _make_account(self, seed: int, name: str, db_path: str = ":memory:") -> Account:
        acc = Account(
            id=f"acct_1{_token(seed, 'account', 15)}",
            name=name,
            clock=self.clock,
            default_version=self.default_version,
            rng=random.Random(seed),  # noqa: S311 - reproducible, not secret
            store=Store(db_path),
        )
        acc.on_event = functools.partial(self._on_event, acc)
        return acc

    # --- keys -------------------------------------------------------------------------------

    def restricted_key(self, permissions: set[str], livemode: bool = False) -> str:
        """A restricted key with exactly these contract permissions (e.g. "Customers: Read")."""
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)}; known: {sorted(PERMISSIONS)}")
        mode = "live" if livemode else "test"
        key = f"rk_{mode}_51{_token(self.seed, f'rk{len(self.keys)}', 40)}"
        self.keys[key] = KeyInfo(
            self.account, livemode, frozenset(PERMISSIONS[p] for p in permissions)
        )
        return key

    def other_account_key(self, livemode: bool = False) -> str:
        """A full-access key of a different account with a tiny dataset of its own."""
        with self.lock:
            if self.other is None:
                self.other = self._make_account(self.seed + 1000, "Another Account")
                generate(self.other, 3, 2, self.seed + 1000)
            key = f"sk_{'live' if livemode else 'test'}_51{_token(self.seed + 1000, str(livemode))}"
            self.keys[key] = KeyInfo(self.other, livemode)
            return key

    # --- clock and lifecycle ----------------------------------------------------------------

    def now(self) -> int:
        """Simulated clock, epoch seconds."""
        return self.clock.now()

    def advance_clock(self, seconds: int) -> None:
        """Moves the simulated clock forward."""
        self.clock.advance(seconds)

    def tick(self, steps: int = 1) -> list[str]:
        """Applies `steps` random lifecycle changes; returns the ids of the events written."""
        with self.lock:
            if not hasattr(self, "_lifecycle"):
                rng = random.Random(self.seed * 97 + 3)  # noqa: S311 - reproducible, not secret
                self._lifecycle = Lifecycle(self.account, rng)
            return self._lifecycle.run(steps)

    # --- ground truth for tests ---------------------------------------------------------------

    def objects(
        self, table: str, livemode: bool = False, *, all_items: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Every non-deleted object of a table and mode, exactly as GET retrieve returns it.

        With all_items, subscriptions embed every item (`items.has_more` false) instead of the
        first 10: the shape the extractor stores after completing them.
        """
        kind = self._kind(table)
        out = {}
        for obj_id, data in self.account.store.ids(kind, livemode, deleted=False):
            compact = loads(data)
            obj = self.account.rendered(kind, compact, CURRENT_SHAPE)
            if all_items and kind == "subscriptions" and obj["items"]["has_more"]:
                every = render_subscription_items(compact, self.account.catalog, CURRENT_SHAPE)
                obj["items"] = {**obj["items"], "data": every, "has_more": False}
            out[obj_id] = obj
        return out

    def deleted_ids(self, table: str, livemode: bool = False) -> set[str]:
        """Ids of the deleted objects of a table and mode."""
        kind = self._kind(table)
        return {obj_id for obj_id, _ in self.account.store.ids(kind, livemode, deleted=True)}

    def _kind(self, table: str) -> str:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; one of {sorted(TABLES)}")
        return table

    # --- faults and stats -------------------------------------------------------------------

    def set_faults(self, fault_rate: float, rate_limit: Any = _KEEP) -> None:
        """Changes the fault rate and (optionally) the rate limit of both modes at runtime."""
        self.limits.fault_rate = fault_rate
        if rate_limit is not _KEEP:
            self.limits.rate_test = self.limits.rate_live = rate_limit

    def stats(self) -> dict[str, Any]:
        """Same as GET /_emulator/stats."""
        return self.stats_counters.as_dict()

    # --- objects the API builds -------------------------------------------------------------

    def account_object(self, acc: Account) -> dict[str, Any]:
        """GET /v1/account."""
        return {
            "id": acc.id,
            "object": "account",
            "business_profile": {"name": acc.name, "url": "https://example.com"},
            "business_type": "company",
            "capabilities": {"card_payments": "active"},
            "charges_enabled": True,
            "country": "US",
            "created": self.now() - 5 * 365 * 86400,
            "default_currency": "usd",
            "details_submitted": True,
            "email": "owner@example.com",
            "payouts_enabled": True,
            "settings": {
                "branding": {
                    "icon": None,
                    "logo": None,
                    "primary_color": None,
                    "secondary_color": None,
                },
                "card_payments": {
                    "decline_on": {"avs_failure": False, "cvc_failure": False},
                    "statement_descriptor_prefix": None,
                },
                "dashboard": {"display_name": acc.name, "timezone": "Etc/UTC"},
                "payments": {
                    "statement_descriptor": "STRIPE SYNC DEMO",
                    "statement_descriptor_kana": None,
                    "statement_descriptor_kanji": None,
                },
            },
            "type": "standard",
        }

    def create_webhook_endpoint(
        self, acc: Account, livemode: bool, params: dict[str, Any]
    ) -> dict[str, Any]:
        """POST /v1/webhook_endpoints: the only response that shows the signing secret."""
        allowed = {"url", "enabled_events", "description", "api_version", "metadata"}
        for name in params:
            if name not in allowed:
                raise ApiError(400, f"Received unknown parameter: {name}", param=name)
        for name in ("url", "enabled_events"):
            if name not in params:
                raise ApiError(400, f"Missing required param: {name}.", param=name)
        url, events = params["url"], params["enabled_events"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "Invalid URL: must be a valid http(s) URL", param="url")
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not events:
            raise ApiError(400, "Invalid array", param="enabled_events")
        version = params.get("api_version")
        with self.lock:
            endpoint = {
                "id": acc.new_row_id("we_"),
                "object": "webhook_endpoint",
                "api_version": version,
                "application": None,
                "created": self.now(),
                "description": params.get("description"),
                "enabled_events": events,
                "livemode": livemode,
                "metadata": params.get("metadata") or {},
                "secret": "whsec_" + _token(self.rng.getrandbits(64), "whsec"),
                "status": "enabled",
                "url": url,
            }
            acc.save("webhook_endpoints", endpoint)
            self.endpoints.setdefault((acc.id, livemode), []).append(endpoint)
        return dict(endpoint)

    def delete_webhook_endpoint(self, acc: Account, livemode: bool, we_id: str) -> dict[str, Any]:
        """DELETE /v1/webhook_endpoints/{id}."""
        found = acc.store.get("webhook_endpoints", we_id)
        if found is None or found[1] or found[0]["livemode"] != livemode:
            raise ApiError(
                404, f"No such webhook endpoint: '{we_id}'", code="resource_missing", param="id"
            )
        with self.lock:
            acc.save("webhook_endpoints", found[0], deleted=True)
            key = (acc.id, livemode)
            self.endpoints[key] = [e for e in self.endpoints.get(key, []) if e["id"] != we_id]
        return {"id": we_id, "object": "webhook_endpoint", "deleted": True}

    def find_subscription_item(
        self, acc: Account, si: str, livemode: bool, shape: Shape
    ) -> dict[str, Any] | None:
        """GET /v1/subscription_items/{id}; a scan, as nothing in the pipeline needs it fast."""
        with acc.store.lock:
            row = acc.store.db.execute(
                "select data from obj where kind='subscriptions' and livemode=? and deleted=0 "
                "and instr(data, ?) > 0",
                (int(livemode), f'"{si}"'.encode()),
            ).fetchone()
        if row is None:
            return None
        items = render_subscription_items(loads(row[0]), acc.catalog, shape)
        return next((i for i in items if i["id"] == si), None)

    def _on_event(self, acc: Account, event: dict[str, Any]) -> int:
        """Queues signed deliveries; returns how many endpoints will receive the event."""
        targets = [
            e
            for e in self.endpoints.get((acc.id, event["livemode"]), [])
            if matches(e, event["type"])
        ]
        if self.deliverer is not None:
            for endpoint in targets:
                self.deliverer.enqueue(endpoint["url"], endpoint["secret"], event)
        return len(targets)

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Waits until every queued webhook delivery was attempted."""
        if self.deliverer is not None:
            self.deliverer.flush(timeout)

    # --- serving ----------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serves the API from a background thread; returns the base URL."""
        config = uvicorn.Config(
            Api(self),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=30,
            date_header=False,  # ours follows the simulated clock (see date_lag)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="emulator-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator could not listen on {host}:{port}")
            time.sleep(0.005)
        bound = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"
        return self.url

    def stop(self) -> None:
        """Stops the HTTP server and the webhook thread."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
        if self.deliverer is not None:
            self.deliverer.close()


@contextmanager
def start_emulator(
    *,
    customers: int = 200,
    seed: int = 1,
    rate_limit: float | None = None,
    latency_ms: float = 0,
    fault_rate: float = 0.0,
    api_version: str | None = None,
    port: int = 0,
    webhooks: bool = True,
    host: str = "127.0.0.1",
    **options: Any,
) -> Iterator[Emulator]:
    """An Emulator served on a background thread for the duration of the block."""
    emu = Emulator(
        customers=customers,
        seed=seed,
        rate_limit=rate_limit,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        api_version=api_version,
        webhooks=webhooks,
        **options,
    )
    emu.start(host, port)
    try:
        yield emu
    finally:
        emu.stop()
