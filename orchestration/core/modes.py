"""The rules every layer shares about modes: how a first sync starts, a key's mode, `--as-of`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from orchestration.core.errors import SettingsError, StripeKeyError

KeyMode = Literal["test", "live"]

# The key prefixes the pipeline accepts, and the mode each one names.
_KEY_PREFIXES: dict[str, KeyMode] = {
    "sk_test_": "test",
    "rk_test_": "test",
    "sk_live_": "live",
    "rk_live_": "live",
}


class SyncMode(StrEnum):
    """How the first sync of an account in a mode starts (docs/contract.md)."""

    import_existing = "import-existing"
    new_only = "new-only"


def parse_sync_mode(value: str) -> SyncMode:
    """A sync mode given as text; a one-line error for anything else."""
    try:
        return SyncMode(value)
    except ValueError:
        raise SettingsError(
            f"unknown sync mode {value!r}", "use import-existing or new-only"
        ) from None


def key_mode(api_key: str) -> KeyMode:
    """A key's mode is in its prefix; raises StripeKeyError for anything but a secret or
    restricted key (a publishable key cannot read the objects)."""
    for prefix, mode in _KEY_PREFIXES.items():
        if api_key.startswith(prefix):
            return mode
    raise StripeKeyError(
        "the Stripe key is not a secret or restricted key",
        "use a key starting with sk_test_, rk_test_, sk_live_ or rk_live_",
    )


def missing_key_error(fix: str | None = None) -> StripeKeyError:
    """The one "STRIPE_API_KEY is not set" error; `fix` replaces the default advice where the
    command needs a particular key."""
    return StripeKeyError(
        "STRIPE_API_KEY is not set",
        fix
        or "export a secret or restricted key (sk_test_…, rk_live_…), or run `stripe-sync demo`"
        " to try the local emulator",
    )


def parse_as_of(value: str | None) -> datetime | None:
    """`--as-of`: ISO-8601 with a timezone, or None for the current time."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SettingsError(
            f"--as-of {value!r} is not an ISO-8601 timestamp", "use e.g. 2026-11-20T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise SettingsError(
            f"--as-of {value!r} has no timezone", "add one, e.g. 2026-11-20T12:00:00Z or +01:00"
        )
    return parsed
