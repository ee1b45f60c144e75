"""Permission preflight: one cheap call per permission the sync needs, before anything is
written, so a restricted key missing a permission fails with its name, never with a gap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestration.core.errors import PermissionsError
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import (
    COUPONS_PERMISSION,
    EVENTS_PERMISSION,
    OBJECTS,
    WEBHOOKS_WRITE_PERMISSION,
)


@dataclass(frozen=True)
class AccessReport:
    """What a key can do: its account, its mode, and each permission checked (in the Dashboard's
    wording, e.g. "Subscriptions: Read")."""

    account_id: str
    livemode: bool
    missing: list[str]
    checks: list[tuple[str, bool]] = field(default_factory=list)
    account_created: int | None = None

    @property
    def coupons_readable(self) -> bool:
        """Coupons: Read is checked but not required (see ObjectSpec.expand_for)."""
        return dict(self.checks).get(COUPONS_PERMISSION, False)


def _probes(include_webhooks_write: bool) -> list[tuple[str, str]]:
    """(permission, path) pairs: one limit=1 list call each, in the contract's order."""
    probes: dict[str, str] = {}
    for spec in OBJECTS:
        probes.setdefault(spec.permission, spec.list_path)
    probes[EVENTS_PERMISSION] = "/v1/events"
    probes[COUPONS_PERMISSION] = "/v1/coupons"
    if include_webhooks_write:
        # Stripe has no dry run for writes: a GET of the same resource is the cheapest probe a
        # restricted key answers with 403 when it lacks the permission.
        probes[WEBHOOKS_WRITE_PERMISSION] = "/v1/webhook_endpoints"
    return sorted(probes.items())


def check_access(
    api_key: str,
    api_base: str = "https://api.stripe.com",
    *,
    include_webhooks_write: bool = False,
    client: StripeApi | None = None,
) -> AccessReport:
    """Checks the key (StripeKeyError on 401) and every permission the sync needs. Returns the
    report; missing permissions are listed, not raised (see `require_access`)."""
    client = client or StripeApi(api_key, api_base)
    probes = _probes(include_webhooks_write)
    # All at once: start-up counts in a sync's wall time, and each call is a round trip.
    with ThreadPoolExecutor(len(probes) + 1) as pool:
        account_call = pool.submit(client.get, "/v1/account")
        oks = list(pool.map(lambda probe: _allowed(client, probe[1]), probes))
        account = account_call.result().data
    checks = [(permission, ok) for (permission, _), ok in zip(probes, oks, strict=True)]
    return AccessReport(
        account_id=account["id"],
        livemode=client.livemode,
        missing=[p for p, ok in checks if not ok and p != COUPONS_PERMISSION],
        checks=checks,
        account_created=account.get("created"),
    )


def require_access(report: AccessReport) -> None:
    """Raises PermissionsError naming every missing permission."""
    if report.missing:
        raise PermissionsError(report.missing)


def _allowed(client: StripeApi, path: str) -> bool:
    try:
        client.get(path, limit=1)
    except PermissionsError:
        return False
    return True
