"""Outbound delivery of the segment change feed: signed POSTs, a durable cursor, dead letters.

A plain library: it reads no environment and imports no Dagster (from orchestration, only
core's error types); the CLI and the sensor pass it the database URL, the receiver's URL and its
secret.
"""

from orchestration.delivery.deliverer import (
    FEED_TABLE,
    DeliveryResult,
    FeedMissingError,
    RetryPolicy,
    Verdict,
    classify,
    deliver_changes,
    encode_change,
    ensure_delivery_tables,
)
from orchestration.delivery.endpoint import (
    DeliveryError,
    Endpoint,
    EndpointError,
    endpoint_from_settings,
)
from orchestration.delivery.signature import (
    HEADER,
    TOLERANCE_SECONDS,
    SignatureVerificationError,
    sign,
    verify_signature,
)
from orchestration.delivery.status import (
    DeadLetter,
    EndpointStatus,
    count_dead_letters,
    delivery_status,
    list_dead_letters,
    pending_changes,
)

__all__ = [
    "FEED_TABLE",
    "HEADER",
    "TOLERANCE_SECONDS",
    "DeadLetter",
    "DeliveryError",
    "DeliveryResult",
    "Endpoint",
    "EndpointError",
    "EndpointStatus",
    "FeedMissingError",
    "RetryPolicy",
    "SignatureVerificationError",
    "Verdict",
    "classify",
    "count_dead_letters",
    "deliver_changes",
    "delivery_status",
    "encode_change",
    "endpoint_from_settings",
    "ensure_delivery_tables",
    "list_dead_letters",
    "pending_changes",
    "sign",
    "verify_signature",
]
