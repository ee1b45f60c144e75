"""Where changes go: the receiver's URL checked (https outside localhost), its id and safe name.

A receiver's cursor and dead letters are keyed by a hash of its normalized URL: the cursor says
what *that receiver* has acknowledged, so a new URL is a new receiver and starts at the first
change, while a rotated secret is the same receiver and keeps its place (the secret is never part
of a key, a row or a message). Tables and messages name a receiver by scheme, host and port only:
a URL's path, query or user info often holds a token (Zapier, Slack, basic auth).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from orchestration.core.errors import SettingsError, StripeSyncError

if TYPE_CHECKING:
    from orchestration.core.settings import Settings

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A short secret makes the HMAC guessable; 16 characters is the floor, 32 random bytes the advice.
MIN_SECRET_CHARS = 16
SECRET_ADVICE = "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"  # noqa: S105


class DeliveryError(StripeSyncError):
    """An expected failure of delivery a user can fix: the CLI prints it as one line."""


class EndpointError(DeliveryError, SettingsError):
    """The receiver's URL or secret (SEGMENT_WEBHOOK_URL, SEGMENT_WEBHOOK_SECRET) is unusable."""


def _origin(scheme: str, host: str, port: int | None) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port else "")


@dataclass(frozen=True)
class Endpoint:
    """A receiver: its URL and HMAC secret (neither shown by repr), its id and display name."""

    url: str = field(repr=False)
    secret: str = field(repr=False)
    id: str = field(init=False)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        url = self.url.strip()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            host, port = "", None
        if scheme not in ("https", "http") or not host:
            raise EndpointError(
                "the segment webhook URL is not an http(s) URL with a host",
                "use the form https://your.host/path",
            )
        name = _origin(scheme, host, port)
        if scheme == "http" and host not in LOCAL_HOSTS:
            raise EndpointError(
                f"the segment webhook URL {name} is plain http outside localhost",
                "use https:// (http:// only for localhost, 127.0.0.1 or ::1)",
            )
        if len(self.secret) < MIN_SECRET_CHARS:
            raise EndpointError(
                f"SEGMENT_WEBHOOK_SECRET is missing or shorter than {MIN_SECRET_CHARS} characters",
                f"set it to the secret your receiver verifies with; {SECRET_ADVICE}",
            )
        default_port = {"https": 443, "http": 80}[scheme]
        netloc = parts.netloc.rsplit("@", 1)[-1]
        userinfo = parts.netloc[: -len(netloc)] if netloc != parts.netloc else ""
        normalized_host = _origin("", host, None if port in (None, default_port) else port)[3:]
        normalized = urlunsplit(
            (scheme, userinfo + normalized_host, parts.path or "/", parts.query, "")
        )
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "id", hashlib.sha256(normalized.encode()).hexdigest())
        object.__setattr__(self, "name", name)

    def redact(self, text: str) -> str:
        """`text` without the URL (it may hold a token) or the secret, for logs and tables."""
        for value in (self.secret, self.url):
            if value:
                text = text.replace(value, "…")
        return text


def endpoint_from_settings(settings: Settings, url: str | None = None) -> Endpoint:
    """The receiver: `url` (the CLI's --url) or SEGMENT_WEBHOOK_URL, signed with
    SEGMENT_WEBHOOK_SECRET; an EndpointError naming the fix when either is missing or unusable."""
    target = url or settings.segment_webhook_url
    if not target:
        raise EndpointError(
            "no receiver for segment changes", "pass --url https://… or set SEGMENT_WEBHOOK_URL"
        )
    secret = settings.segment_webhook_secret
    return Endpoint(target, secret.get_secret_value() if secret else "")
