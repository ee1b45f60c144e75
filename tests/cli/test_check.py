"""`stripe-sync check` on the local Stripe API: a line per check, missing permissions named."""

from __future__ import annotations

import pytest

from orchestration.emulator import PERMISSIONS
from tests.cli.helpers import run_cli

SYNC_PERMISSIONS = sorted(p for p in PERMISSIONS if p != "Webhook Endpoints: Write")


def _env(emulator, key: str, database_url: str) -> dict[str, str]:
    return {"STRIPE_API_KEY": key, "STRIPE_API_BASE": emulator.url, "DATABASE_URL": database_url}


def test_check_passes_with_a_full_key_and_lists_every_permission(
    emulator, database_url: str
) -> None:
    result = run_cli("check", env=_env(emulator, emulator.test_key, database_url))
    assert result.code == 0, result.stderr
    assert "test mode" in result.stdout
    for permission in PERMISSIONS:
        assert f"✓ {permission}: granted" in result.stdout
    assert emulator.test_key not in result.stdout + result.stderr


@pytest.mark.parametrize("missing", SYNC_PERMISSIONS)
def test_check_names_each_missing_permission(emulator, database_url: str, missing: str) -> None:
    key = emulator.restricted_key(set(PERMISSIONS) - {missing})
    result = run_cli("check", env=_env(emulator, key, database_url))
    assert result.code == 1
    assert f"✗ {missing}: missing" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert missing in lines[0]


def test_check_without_webhooks_write_still_passes(emulator, database_url: str) -> None:
    key = emulator.restricted_key(set(SYNC_PERMISSIONS))
    result = run_cli("check", env=_env(emulator, key, database_url))
    assert result.code == 0, result.stderr
    assert "Webhook Endpoints: Write: missing (needed only for" in result.stdout
