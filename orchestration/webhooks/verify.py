"""Is a delivery from Stripe? The SDK's own signature check, tried with every accepted secret."""

from __future__ import annotations

import json
import re
import time
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


BAD_SIGNATURE = "signature does not match any webhook secret"
MISSING_HEADER = "missing Stripe-Signature header"
MALFORMED_HEADER = "malformed Stripe-Signature header"
NO_V1 = "no v1 signature in the Stripe-Signature header"
STALE = "stale timestamp (signed more than 300 s ago)"

# The SDK's SignatureVerificationError messages → our reasons. The SDK checks the signature
# before the timestamp, so "outside the tolerance zone" means the signature itself was right.
_SDK_REASONS = (
    ("tolerance zone", STALE),
    ("Unable to extract timestamp", MALFORMED_HEADER),
    ("expected scheme", NO_V1),
)
# Stripe's v1 signature is an HMAC-SHA256 in lower-case hex; anything else can never match.
_V1 = re.compile(r"^[0-9a-f]{64}$")
_MAX_HEADER_CHARS = 2048  # a timestamp and a few signatures (more during a secret rotation)


def check_signature_header(
    header: str | None, *, tolerance: int = TOLERANCE_SECONDS, now: float | None = None
) -> None:
    """Raises Rejected(400) unless `header` has the form Stripe signs with (`t=<unix time>`, at
    least one 64-hex `v1=` signature) and a timestamp within `tolerance` seconds. It needs no
    body, so a delivery that cannot be Stripe's is refused before its body is read; the SDK's
    check on the body follows for everything that passes."""
    if not header:
        raise Rejected(400, MISSING_HEADER)
    if len(header) > _MAX_HEADER_CHARS:
        raise Rejected(400, MALFORMED_HEADER)
    timestamps: list[str] = []
    v1: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise Rejected(400, MALFORMED_HEADER)
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            v1.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise Rejected(400, MALFORMED_HEADER)
    if not v1:
        raise Rejected(400, NO_V1)
    if not all(_V1.match(signature) for signature in v1):
        raise Rejected(400, MALFORMED_HEADER)
    # Only the past is refused, as the SDK does: a retry is signed anew, so an old timestamp is a
    # replay; a timestamp ahead of our clock is Stripe's clock, not an attack.
    if int(timestamps[0]) < (time.time() if now is None else now) - tolerance:
        raise Rejected(400, STALE)


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
        raise Rejected(400, MISSING_HEADER)
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
