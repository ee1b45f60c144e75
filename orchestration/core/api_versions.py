"""Stripe API versions: which ones the pipeline supports, and what each changed that it reads."""

from __future__ import annotations

import re

import stripe

# The version every request is made with unless STRIPE_API_VERSION says otherwise: the locked
# SDK's own, whose typed classes describe the shapes it returns.
PINNED_VERSION: str = stripe.api_version
# Stripe names its releases since 2024-09-30: a version is then "<date>.<release>".
RELEASES = {
    "acacia": "2024-09-30",
    "basil": "2025-03-31",
    "clover": "2025-09-30",
    "dahlia": "2026-03-25",  # its first version's date is not in our sources: approximate
    "endive": "2026-10-28",
}
# The oldest version whose shapes the staging models read (every field they use exists there).
OLDEST_SUPPORTED = "2020-08-27"
_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(?:\.([a-z]+))?")


def validate_version(version: str) -> str:
    """The version, or ValueError naming what is wrong with it and what is accepted."""
    match = _VERSION.fullmatch(version.strip())
    accepted = f"use a Stripe API version from {OLDEST_SUPPORTED} to {PINNED_VERSION}"
    if match is None:
        raise ValueError(f"STRIPE_API_VERSION {version!r} is not a Stripe API version; {accepted}")
    date, release = match.groups()
    if not OLDEST_SUPPORTED <= date <= PINNED_VERSION[:10]:
        raise ValueError(f"STRIPE_API_VERSION {version!r} is not supported; {accepted}")
    # A release's versions carry its name; one released earlier can't (a typo, or a made-up one).
    named = [name for name, since in RELEASES.items() if since <= date]
    if (release is None) != (not named) or (release is not None and release not in named):
        form = f"{date}.{named[-1]}" if named else date
        raise ValueError(f"STRIPE_API_VERSION {version!r} is unknown; set it to {form}")
    return match.group(0)


def coupon_is_an_id(version: str) -> bool:
    """Since 2025-09-30.clover a discount's coupon is `source.coupon`, an id unless expanded
    (before, `coupon` came inlined)."""
    return version[:10] >= RELEASES["clover"]
