"""Is a delivery from Stripe? The SDK's own signature check, tried with every accepted secret."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import stripe

# Stripe's default: a signed delivery older than five minutes is a replay, not a retry (retries
# are signed anew).
TOLERANCE_SECONDS = 300


class Rejected(Exception):
    """A delivery we refuse: the HTTP status and a reason safe to log (no payload, no secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# The SDK's SignatureVerificationError messages → our reasons. The SDK checks the signature
# before the timestamp, so "outside the tolerance zone" means the signature itself was right.
_SDK_REASONS = (
    ("tolerance zone", "stale timestamp (signed more than 300 s ago)"),
    ("Unable to extract timestamp", "malformed Stripe-Signature header"),
    ("expected scheme", "no v1 signature in the Stripe-Signature header"),
)
BAD_SIGNATURE = "signature does not match any webhook secret"


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raises Rejected(400) unless `header` signs `payload` with one of `secrets` within
    `tolerance` seconds. Several secrets: a rotation, where Stripe signs with old and new secrets
    (several v1 entries), or we accept old and new for a while."""
    if not header:
        raise Rejected(400, "missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    reason = BAD_SIGNATURE
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            message = str(exc.user_message or exc)
            known = next((ours for sdk, ours in _SDK_REASONS if sdk in message), None)
            if known is not None:
                reason = known
                if "stale" in known or "header" in known:
                    break  # right secret but too old, or a header no secret can fix
            continue
        return
    raise Rejected(400, reason)


def parse_event(payload: bytes) -> dict[str, Any]:
    """The verified body as a plain dict, or Rejected(400) when it is not a Stripe event."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise Rejected(400, "body is not JSON") from None
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if (
        not isinstance(event, dict)
        or event.get("object") != "event"
        or not isinstance(event.get("id"), str)
        or not event["id"]
        or not isinstance(event.get("type"), str)
        or not isinstance(obj, dict)
    ):
        raise Rejected(400, "body is not a Stripe event")
    return event
