"""The Stripe client: the official SDK with one pinned API version, a shared request budget, and
retries that never turn a 429 into a silent gap."""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import stripe

from orchestration.core.api_versions import PINNED_VERSION
from orchestration.core.errors import (
    PermissionsError,
    StripeKeyError,
    StripeSyncError,
    StripeUnavailableError,
)
from orchestration.core.modes import key_mode
from orchestration.core.pacing import TokenBucket
from orchestration.extract.objects import EVENTS_PERMISSION, OBJECTS

# The SDK logs every request at INFO; at hundreds of requests a second that buries our own lines.
logging.getLogger("stripe").setLevel(logging.WARNING)

log = logging.getLogger(__name__)

# The default version of every call: the SDK's own (STRIPE_API_VERSION may pin an older one).
# Events rendered in another version are re-fetched (events.py), so stored rows have one shape.
API_VERSION: str = PINNED_VERSION

# Stripe's documented limits are 100 req/s live and 25 test; stay just below them.
DEFAULT_LIVE_RPS = 90.0
DEFAULT_TEST_RPS = 22.0
MAX_ATTEMPTS = 10  # 0.5 s doubling, capped at 20 s: about two minutes of retries
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
REQUEST_TIMEOUT = 30.0
# Until the API base first answers, a refused connection or an unknown host is more likely a
# wrong STRIPE_API_BASE than a blip: a few quick tries, then a clear error, not minutes of retries.
UNREACHED_ATTEMPTS = 3

_KEY_PATTERN = re.compile(r"\b(sk|rk|pk|whsec)_(test|live)_[A-Za-z0-9*]+|\bwhsec_[A-Za-z0-9]+")


def sanitize(text: str) -> str:
    """Removes anything that looks like a Stripe key or secret, so errors can be logged."""
    return _KEY_PATTERN.sub("[redacted key]", text)


# Pacing beats hammering and backing off (measured against the peers: unpaced threads met 429
# storms and ran slower). A bucket of three paces requests just below the rate for every thread
# of the process: after a pause it lets a small burst through, never a whole second's worth,
# since servers count in short windows. It starts with one token, so a new client does not burst.
PACING_CAPACITY = 3.0


_buckets: dict[tuple[str, bool], TokenBucket] = {}
_buckets_lock = threading.Lock()


def shared_bucket(api_base: str, livemode: bool, rate: float) -> TokenBucket:
    """One bucket per API and mode for the whole process, so concurrent syncs and webhook re-fetches
    share one budget; the newest caller's rate wins."""
    with _buckets_lock:
        bucket = _buckets.get((api_base, livemode))
        if bucket is None:
            bucket = _buckets[(api_base, livemode)] = TokenBucket(rate, PACING_CAPACITY, tokens=1)
        bucket.rate = rate
        return bucket


@dataclass
class RequestStats:
    """Counters for SyncResult; updated under a lock by every worker thread."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    seconds_in_flight: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(
        self, *, requests: int = 0, retries: int = 0, rate_limited: int = 0, secs: float = 0.0
    ) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.rate_limited += rate_limited
            self.seconds_in_flight += secs

    @property
    def mean_latency(self) -> float:
        return self.seconds_in_flight / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Response:
    """A parsed body (plain dicts, no StripeObjects), the body's text (list pages go to Postgres
    as is) and Stripe's clock when it answered."""

    data: dict[str, Any]
    server_time: datetime
    body: str = ""

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The objects of a list page (empty for anything else)."""
        objects: list[dict[str, Any]] = self.data.get("data") or []
        return objects


class StripeApi:
    """GET calls to Stripe with pacing and retries. Thread-safe; the SDK keeps one HTTP session per
    thread."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        max_rps: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        api_version: str = API_VERSION,
    ) -> None:
        self.livemode = key_mode(api_key) == "live"
        self.api_version = api_version
        self.max_attempts = max_attempts
        self.api_base = api_base.rstrip("/")
        rate = max_rps or (DEFAULT_LIVE_RPS if self.livemode else DEFAULT_TEST_RPS)
        self.bucket = shared_bucket(self.api_base, self.livemode, rate)
        self.stats = RequestStats()
        self._reached = False  # the API base has answered at least once
        self._skew = 0.0  # seconds Stripe's clock is ahead of its Date headers (see _clock)
        self._skew_samples: list[float] = []  # the two largest seen, largest first
        self.last_server_time = datetime.min.replace(tzinfo=UTC)  # newest "now" Stripe told us
        self._sdk = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            stripe_version=api_version,
            max_network_retries=0,  # we retry ourselves: the SDK skips most 429s
            http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT),
        )

    @property
    def rate(self) -> float:
        return self.bucket.rate

    @functools.cached_property
    def coupons_readable(self) -> bool:
        """Whether the key may read coupons (and so expand them): asked once, when an API version
        that no longer inlines coupons first needs one."""
        try:
            self.get("/v1/coupons", limit=1)
        except PermissionsError:
            log.warning(
                "the key lacks Coupons: Read: discounts are stored without their coupon's "
                "terms, and their customers flagged (customer_fields.has_unreadable_discount)"
            )
            return False
        return True

    def get(self, path: str, **params: Any) -> Response:
        """GET with retries on 429, 5xx, timeouts and connection errors; honours Retry-After.
        Raises StripeUnavailableError after max_attempts, never returns a partial answer."""
        for attempt in range(self.max_attempts):
            self.bucket.acquire()
            started = time.monotonic()
            try:
                body, headers = self._request(path, params)
            except stripe.StripeError as exc:
                self.stats.add(requests=1, secs=time.monotonic() - started)
                delay = self._retry_delay(exc, attempt)
                unreachable = None if self._reached else _unreachable_reason(exc)
                if unreachable is not None and attempt >= UNREACHED_ATTEMPTS - 1:
                    raise StripeUnavailableError(
                        sanitize(f"cannot reach the Stripe API at {self.api_base} ({unreachable})"),
                        "check STRIPE_API_BASE (unset, it is https://api.stripe.com) and the"
                        " network",
                    ) from None
                if delay is None or attempt == self.max_attempts - 1:
                    raise self._translate(exc, path) from None
                self.stats.add(retries=1, rate_limited=int(exc.http_status == 429))
                time.sleep(delay)
                continue
            self.stats.add(requests=1, secs=time.monotonic() - started)
            self._reached = True
            data = json.loads(body)
            return Response(data, self._clock(path, data, headers), body)
        raise AssertionError("unreachable")  # pragma: no cover

    def list_pages(self, path: str, **params: Any) -> Iterator[Response]:
        """The pages of a list, newest first, one GET each, read as the caller iterates: a caller
        that stops early (at the first object already stored) breaks out and reads no further.
        Ends after a page that says no more (or holds no object); the next page starts after
        the last object of this one."""
        while True:
            page = self.get(path, **params)
            yield page
            if not page.data.get("has_more") or not page.objects:
                return
            params["starting_after"] = page.objects[-1]["id"]

    def _request(self, path: str, params: dict[str, Any]) -> tuple[str, Mapping[str, str]]:
        """One GET through the SDK's requestor: the layer under `raw_request`, with its auth,
        pinned version, encoding and typed errors. `raw_request` would also parse every body
        into OrderedDicts (3-4 ms of CPU per 100-object page, the hot path's largest cost);
        here the text is kept for Postgres and parsed once, with plain dicts."""
        requestor = self._sdk._requestor
        rbody, rcode, rheaders = requestor.request_raw(
            "get", path, params=params, options={}, base_address="api", api_mode="V1",
            usage=["raw_request"],
        )  # fmt: skip
        if not 200 <= rcode < 300:
            requestor._interpret_response(rbody, rcode, rheaders, "V1")  # raises the typed error
        body = rbody.decode("utf-8") if isinstance(rbody, bytes) else str(rbody)
        return body, rheaders

    def retrieve(self, path: str, **params: Any) -> Response | None:
        """GET one object; None when Stripe says it does not exist (deleted, or never visible)."""
        try:
            response = self.get(path, **params)
        except NotFoundError:
            return None
        if response.data.get("deleted") is True:
            return None
        return response

    def _clock(self, path: str, data: dict[str, Any], headers: Mapping[str, str]) -> datetime:
        """Stripe's "now": its Date header, or the newest event's `created` if that is later.
        Stripe's clock is not ours; a test clock (or the emulator's moved clock) runs ahead of
        the Date header, and events are the one place Stripe tells its own time."""
        date = _server_time(headers)
        if path.startswith("/v1/events"):
            items = data.get("data") if data.get("object") == "list" else [data]
            created = max((int(e.get("created") or 0) for e in items or []), default=0)
            if created:
                with self.stats._lock:
                    self._skew = self._skew_from(max(0.0, created - date.timestamp()))
        now = date + timedelta(seconds=self._skew)
        self.last_server_time = max(self.last_server_time, now)
        return now

    def _skew_from(self, sample: float) -> float:
        """The skew, given one more sample. Each sample is a lower bound (the newest event is
        at most as new as Stripe's clock), so the largest is the best estimate, unless it is one
        Date header lagging for once: the second largest is used, and a single outlier never
        puts stamps ahead of Stripe's clock. (Called under the stats lock.)"""
        self._skew_samples = sorted([*self._skew_samples, sample], reverse=True)[:2]
        return self._skew_samples[-1]

    def _retry_delay(self, exc: stripe.StripeError, attempt: int) -> float | None:
        status = exc.http_status
        retryable = (
            isinstance(exc, stripe.APIConnectionError)
            or status == 429
            or (status is not None and status >= 500)
        )
        if not retryable:
            return None
        # Full jitter: threads that failed together must not come back together.
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311
        retry_after = _retry_after(exc.headers)
        return max(delay, retry_after) if retry_after is not None else delay

    def _translate(self, exc: stripe.StripeError, path: str) -> Exception:
        message = sanitize(str(exc.user_message or exc))
        if isinstance(exc, stripe.AuthenticationError):
            return StripeKeyError(
                "Stripe rejected the API key (401)",
                "check STRIPE_API_KEY: copy a current secret or restricted key from the Dashboard",
            )
        if isinstance(exc, stripe.PermissionError):
            return PermissionsError([permission_for_path(path)])
        if exc.http_status == 404:
            return NotFoundError(message)
        if exc.http_status == 429 or isinstance(exc, stripe.APIConnectionError | stripe.APIError):
            return StripeUnavailableError(
                f"Stripe kept failing on GET {path} after {self.max_attempts} attempts ({message})",
                "try again later; the next sync resumes where this one stopped",
            )
        return StripeSyncError(f"Stripe refused GET {path}: {message}", "")


class NotFoundError(StripeSyncError):
    """Stripe answered 404: the object (or the parent a list is filtered by) does not exist, or
    not for this key. `retrieve` turns it into None; list readers catch it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "")


def permission_for_path(path: str) -> str:
    """The Dashboard's name for the permission a GET needs."""
    if path.startswith("/v1/events"):
        return EVENTS_PERMISSION
    if path.startswith("/v1/webhook_endpoints"):
        return "Webhook Endpoints: Write"
    if path.startswith("/v1/subscription_items"):  # items past a subscription's embedded 10
        return "Subscriptions: Read"
    for spec in OBJECTS:
        if path.startswith(spec.list_path):
            return spec.permission
    return f"read access to {path}"


def _unreachable_reason(exc: stripe.StripeError) -> str | None:
    """Why no connection to the API base could be opened (refused, unknown host, ...), or None
    when the error is anything else (a timeout, a reset mid-answer, an HTTP error)."""
    if not isinstance(exc, stripe.APIConnectionError):
        return None
    cause = exc.__cause__
    if not isinstance(cause, requests.exceptions.ConnectionError) or isinstance(
        cause, requests.exceptions.Timeout
    ):
        return None
    text = str(cause)
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "its host name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    if "NewConnectionError" in text:
        return "no connection could be opened"
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _server_time(headers: Mapping[str, str]) -> datetime:
    """Stripe's clock from the Date header. The local clock is not Stripe's (and the emulator's can
    be moved), so every "now" that is compared with Stripe timestamps comes from here."""
    value = headers.get("Date") or headers.get("date")
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)
