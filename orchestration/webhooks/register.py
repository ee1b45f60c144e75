"""`stripe-sync webhooks register URL`: creates the webhook endpoint in Stripe (once)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import stripe
import typer

from orchestration.core.errors import (
    PermissionsError,
    SettingsError,
    StripeKeyError,
    StripeSyncError,
    StripeUnavailableError,
)
from orchestration.core.settings import Settings
from orchestration.extract.client import API_VERSION, sanitize
from orchestration.extract.objects import WEBHOOKS_WRITE_PERMISSION
from orchestration.webhooks.event_types import CONSUMED_EVENT_TYPES

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DESCRIPTION = "Stripe Sync (stripe-sync webhooks serve)"


@dataclass(frozen=True)
class Registration:
    """The endpoint for the URL; `secret` only when this call created it (Stripe shows it once)."""

    endpoint_id: str
    url: str
    created: bool
    secret: str | None
    enabled_events: tuple[str, ...]


def check_endpoint_url(url: str) -> str:
    """https, or http to this machine for local testing; anything else is a SettingsError."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.strip()
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        return url.strip()
    raise SettingsError(
        f"the webhook URL must be https (got {url!r})",
        "Stripe delivers to https URLs; use http only with 127.0.0.1 or localhost for local tests",
    )


def _translate(exc: stripe.StripeError) -> StripeSyncError:
    if isinstance(exc, stripe.AuthenticationError):
        return StripeKeyError(
            "Stripe rejected the API key (401)",
            "check STRIPE_API_KEY: copy a current secret or restricted key from the Dashboard",
        )
    if isinstance(exc, stripe.PermissionError):
        return PermissionsError([WEBHOOKS_WRITE_PERMISSION])
    if isinstance(exc, stripe.APIConnectionError) or (exc.http_status or 0) >= 500:
        return StripeUnavailableError(
            f"Stripe did not answer the webhook endpoint request ({sanitize(str(exc))})",
            "try again in a minute",
        )
    return StripeSyncError(
        f"Stripe refused the webhook endpoint request: {sanitize(str(exc.user_message or exc))}",
        "",
    )


def find_or_create_endpoint(
    client: stripe.StripeClient, url: str, api_version: str = API_VERSION
) -> Registration:
    """The endpoint whose URL is `url`, created (with our event types and API version) if there
    is none. Idempotent: a second call finds the first one's endpoint."""
    try:
        endpoints = client.v1.webhook_endpoints.list({"limit": 100})
        for endpoint in endpoints.auto_paging_iter():
            if endpoint.url == url:
                return Registration(
                    endpoint.id, url, False, None, tuple(endpoint.enabled_events or ())
                )
        created = client.v1.webhook_endpoints.create(
            {
                "url": url,
                # The SDK types this as a list of Literal event names; ours are plain str.
                "enabled_events": list(CONSUMED_EVENT_TYPES),  # type: ignore[arg-type]
                # Events rendered in the version we request need no re-fetch.
                "api_version": api_version,  # type: ignore[typeddict-item]
                "description": DESCRIPTION,
            }
        )
    except stripe.StripeError as exc:
        raise _translate(exc) from None
    return Registration(created.id, url, True, created.secret, tuple(created.enabled_events or ()))


def register_endpoint(settings: Settings, *, url: str) -> Registration:
    """Creates the endpoint for `url` (or finds it) and tells the user what to do next. The
    signing secret is printed once, when the endpoint is created: Stripe never shows it again."""
    url = check_endpoint_url(url)
    api_key = settings.require_api_key(
        "export a secret key, or a restricted key with Webhook Endpoints: Write"
    )
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        max_network_retries=2,
    )
    registration = find_or_create_endpoint(client, url, settings.stripe_api_version)
    if registration.created:
        typer.echo(f"✓ webhook endpoint {registration.endpoint_id} created for {url}")
        version = settings.stripe_api_version
        typer.echo(f"  events: {len(CONSUMED_EVENT_TYPES)} types, API version {version}")
        typer.echo(f"  signing secret (shown once): {registration.secret}")
        typer.echo(
            f"  put it in .env as STRIPE_WEBHOOK_SECRET={registration.secret}"
            " then run `stripe-sync webhooks serve`"
        )
        return registration
    typer.echo(f"✓ webhook endpoint {registration.endpoint_id} already exists for {url}")
    typer.echo(
        "  its signing secret cannot be retrieved again; if STRIPE_WEBHOOK_SECRET does not hold"
        " it, roll the secret in the Dashboard (Developers → Webhooks) or delete the endpoint and"
        " register again"
    )
    missing = sorted(set(CONSUMED_EVENT_TYPES) - set(registration.enabled_events))
    if missing and "*" not in registration.enabled_events:
        typer.echo(
            f"  note: it does not send {len(missing)} event type(s) the sync uses"
            f" ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); add them in the"
            " Dashboard, or the next sync picks those changes up from the events API"
        )
    return registration
