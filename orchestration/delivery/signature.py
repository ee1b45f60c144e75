"""The signature of an outbound segment change: Stripe's scheme, under our own header name.

`Stripe-Sync-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>`.
The timestamp is signed with the body, so a receiver that refuses old timestamps refuses replays;
every attempt is signed anew, so a retry is never stale. A header may carry several `v1` entries
(a secret rotation); one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "Stripe-Sync-Signature"
# Stripe's default tolerance: a delivery signed more than five minutes ago is a replay.
TOLERANCE_SECONDS = 300
_MAX_HEADER_CHARS = 2048


class SignatureVerificationError(ValueError):
    """The header does not sign this body with this secret (or is malformed, or stale)."""


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<payload>` keyed by `secret`."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Sync-Signature` header value for `payload`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(payload, secret, t)}"


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str | Sequence[str],
    tolerance: int = TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> None:
    """Returns when `header` signs `payload` with `secret` (or one of several, during a rotation)
    no more than `tolerance` seconds ago; raises SignatureVerificationError otherwise. `payload`
    is the request body exactly as received, before any JSON parsing."""
    if not header or len(header) > _MAX_HEADER_CHARS:
        raise SignatureVerificationError(f"missing or oversized {HEADER} header")
    body = payload.encode() if isinstance(payload, str) else payload
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureVerificationError(f"malformed {HEADER} header: no single t=<unix time>")
    if not signatures:
        raise SignatureVerificationError(f"no v1 signature in the {HEADER} header")
    timestamp = int(timestamps[0])
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [compute_signature(body, s, timestamp) for s in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureVerificationError("signature does not match the secret")
    # Checked after the signature, so a stale error means the sender was right but late.
    if tolerance > 0 and timestamp < (time.time() if now is None else now) - tolerance:
        raise SignatureVerificationError(f"timestamp older than {tolerance} s (a replay?)")
