"""Environment (and `.env`) → one typed Settings object; secrets are masked wherever they print."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestration.core.api_versions import PINNED_VERSION, validate_version
from orchestration.core.errors import SettingsError
from orchestration.core.modes import KeyMode, key_mode, missing_key_error

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STRIPE_API_BASE = "https://api.stripe.com"
KEY_PATTERN = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
WEBHOOK_SECRET_PATTERN = re.compile(r"^whsec_[A-Za-z0-9_+/=]+$")


def default_state_dir() -> Path:
    """The state dir (embedded Postgres, Dagster home, logs): STRIPE_SYNC_HOME or .stripe-sync/."""
    home = os.environ.get("STRIPE_SYNC_HOME")
    return Path(home).expanduser().resolve() if home else PROJECT_ROOT / ".stripe-sync"


def mask_secret(secret: str | None) -> str:
    """`sk_test_…abcd`: the prefix tells the kind of key, the last four which one; no more."""
    if not secret:
        return "(none)"
    # sk_test_ / rk_live_ … carry two parts; whsec_ one.
    parts = 2 if secret[:3] in ("sk_", "rk_", "pk_") else 1
    pieces = secret.split("_")
    prefix = "_".join(pieces[:parts]) + "_" if len(pieces) > parts else ""
    return f"{prefix}…{secret[-4:]}" if len(secret) > len(prefix) + 8 else f"{prefix}…"


class Settings(BaseSettings):
    """Every setting of docs/contract.md, read once from the environment and `.env`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = STRIPE_API_BASE
    # For an account or webhook endpoint pinned to an older version; the SDK's own by default.
    stripe_api_version: str = PINNED_VERSION
    database_url: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Outbound delivery of the segment change feed (opt-in): the receiver and the HMAC secret
    # that signs each POST; orchestration.delivery checks both (endpoint_from_settings).
    segment_webhook_url: str | None = None
    segment_webhook_secret: SecretStr | None = None
    # Days of stripe_raw.webhook_deliveries kept; the daily reconcile deletes older rows.
    webhook_deliveries_retention_days: int = Field(default=30, ge=1, le=3650)
    dagster_home: Path | None = None
    stripe_sync_home: Path = Field(default_factory=default_state_dir)
    stripe_max_rps: float | None = Field(default=None, gt=0, le=1000)
    # The one staleness rule: a table whose last successful sync is older is stale in sync_health,
    # in dbt's source freshness, in the asset check and in `stripe-sync status`.
    stripe_sync_stale_after_hours: int = Field(default=24, ge=1, le=24 * 30)
    # The schedules (Dagster): cron strings in their timezone, and whether they start running.
    stripe_sync_schedule_cron: str = "*/15 * * * *"
    stripe_sync_reconcile_cron: str = "30 3 * * *"
    stripe_sync_schedule_timezone: str = "UTC"
    stripe_sync_schedules: bool = True

    @field_validator("stripe_api_key", mode="before")
    @classmethod
    def _key_is_a_secret_key(cls, value: object) -> object:
        if value in (None, ""):
            return None
        text = str(value.get_secret_value() if isinstance(value, SecretStr) else value)
        if text != text.strip() or " " in text:
            raise ValueError(
                "STRIPE_API_KEY contains spaces; paste the key without spaces or quotes"
            )
        if text.startswith("pk_"):
            raise ValueError(
                "STRIPE_API_KEY is a publishable key (pk_…); use a secret (sk_…) or restricted"
                " (rk_…) key from Dashboard → Developers → API keys"
            )
        if not KEY_PATTERN.match(text):
            raise ValueError(
                "STRIPE_API_KEY is not a Stripe secret or restricted key; it must start with"
                " sk_test_, rk_test_, sk_live_ or rk_live_"
            )
        return text

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _webhook_secret_shape(cls, value: object) -> object:
        if value in (None, ""):
            return None
        text = str(value.get_secret_value() if isinstance(value, SecretStr) else value)
        for secret in text.split(","):
            if not WEBHOOK_SECRET_PATTERN.match(secret.strip()):
                raise ValueError(
                    "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_…);"
                    " several may be given separated by commas during a rotation"
                )
        return text

    @field_validator("stripe_api_version")
    @classmethod
    def _api_version_is_supported(cls, value: str) -> str:
        return validate_version(value)

    @field_validator("stripe_api_base")
    @classmethod
    def _api_base_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("STRIPE_API_BASE must be an http(s) URL, e.g. https://api.stripe.com")
        return value.rstrip("/")

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url_is_postgres(cls, value: object) -> object:
        if value in (None, ""):
            return None
        text = str(value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
        if not re.match(r"^postgres(ql)?(\+\w+)?://", text):
            raise ValueError(
                "DATABASE_URL is not a Postgres URL; use postgresql://user:password@host:5432/database"
            )
        return text

    @property
    def api_key(self) -> str | None:
        """The key in clear, for the Stripe client only."""
        return self.stripe_api_key.get_secret_value() if self.stripe_api_key else None

    def require_api_key(self, fix: str | None = None) -> str:
        """The key in clear, or the one "STRIPE_API_KEY is not set" error."""
        if not self.api_key:
            raise missing_key_error(fix)
        return self.api_key

    @property
    def key_mode(self) -> KeyMode | None:
        """test or live, from the key's prefix; None without a key."""
        return key_mode(self.api_key) if self.api_key else None

    @property
    def masked_key(self) -> str:
        """The key as it may be printed: `sk_test_…abcd`."""
        return mask_secret(self.api_key)

    @property
    def webhook_secrets(self) -> list[str]:
        """Every accepted webhook signing secret (several during a rotation)."""
        if not self.stripe_webhook_secret:
            return []
        return [s.strip() for s in self.stripe_webhook_secret.get_secret_value().split(",")]

    @property
    def state_dir(self) -> Path:
        """The project's state directory (embedded Postgres data, Dagster home, logs)."""
        return self.stripe_sync_home.expanduser().resolve()

    @property
    def resolved_dagster_home(self) -> Path:
        """DAGSTER_HOME, or a folder inside the state dir."""
        return (self.dagster_home or self.state_dir / "dagster").expanduser().resolve()


def load_settings(**overrides: Any) -> Settings:  # each value is validated by its field
    """Reads the settings; a bad value becomes a SettingsError naming the variable and fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        field = ".".join(str(part) for part in first.get("loc", ())).upper()
        if field and field.lower() not in message.lower():
            message = f"{field}: {message}"
        problem, _, fix = message.partition("; ")
        raise SettingsError(problem, fix) from None
