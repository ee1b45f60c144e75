"""`stripe-sync check` on the local Stripe API: a line per check, missing permissions named."""

from __future__ import annotations

import pytest

from orchestration.emulator import PERMISSIONS
from tests.cli.helpers import run_cli

OPTIONAL = {"Webhook Endpoints: Write", "Coupons: Read"}
SYNC_PERMISSIONS = sorted(p for p in PERMISSIONS if p not in OPTIONAL)


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


def test_check_without_coupons_read_passes_and_says_what_it_costs(
    emulator, database_url: str
) -> None:
    key = emulator.restricted_key(set(PERMISSIONS) - {"Coupons: Read"})
    result = run_cli("check", env=_env(emulator, key, database_url))
    assert result.code == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "Coupons: Read" in line)
    assert "coupon terms are read only through it" in line and "has_unreadable_discount" in line
    old = run_cli(
        "check", env={**_env(emulator, key, database_url), "STRIPE_API_VERSION": "2025-03-31.basil"}
    )
    assert old.code == 0, old.stderr
    assert "not needed at API version 2025-03-31.basil" in old.stdout


def test_an_unknown_api_version_is_one_line(emulator, database_url: str) -> None:
    env = {**_env(emulator, emulator.test_key, database_url), "STRIPE_API_VERSION": "2025-09-30"}
    result = run_cli("check", env=env)
    assert result.code != 0
    assert result.stderr.strip().splitlines() == [
        "error: STRIPE_API_VERSION '2025-09-30' is unknown. Set it to 2025-09-30.clover."
    ]


def test_check_without_webhooks_write_still_passes(emulator, database_url: str) -> None:
    key = emulator.restricted_key(set(SYNC_PERMISSIONS))
    result = run_cli("check", env=_env(emulator, key, database_url))
    assert result.code == 0, result.stderr
    assert "Webhook Endpoints: Write: missing (needed only for" in result.stdout
