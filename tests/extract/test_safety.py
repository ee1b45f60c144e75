"""Clear errors, nothing written: wrong key, missing permissions, another account, a busy lock."""

from __future__ import annotations

import psycopg
import pytest

from orchestration.core.errors import (
    PermissionsError,
    StateMismatchError,
    StripeKeyError,
    StripeUnavailableError,
    SyncBusyError,
)
from orchestration.extract import check_access, sync_stripe
from orchestration.extract.client import StripeApi
from orchestration.extract.loader import sync_lock
from orchestration.extract.objects import COUPONS_PERMISSION, EVENTS_PERMISSION, OBJECTS

REQUIRED = sorted({spec.permission for spec in OBJECTS} | {EVENTS_PERMISSION})


def _has_raw_schema(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return bool(
            conn.execute(
                "select 1 from information_schema.schemata where schema_name = 'stripe_raw'"
            ).fetchone()
        )


def test_wrong_key_raises_one_line_key_error(emulator, database_url: str) -> None:
    with pytest.raises(StripeKeyError) as caught:
        sync_stripe(database_url, "sk_test_wrong", api_base=emulator.url)
    assert "401" in caught.value.one_line()
    assert "sk_test_wrong" not in caught.value.one_line()
    assert not _has_raw_schema(database_url)


def test_check_access_reports_every_permission_of_a_full_key(emulator) -> None:
    report = check_access(emulator.test_key, emulator.url)
    assert report.account_id == emulator.account_id
    assert report.livemode is False
    assert report.missing == []
    # Coupons: Read is checked too, but not required (see ObjectSpec.expand_for).
    assert sorted(p for p, ok in report.checks if ok) == sorted([*REQUIRED, COUPONS_PERMISSION])
    assert report.coupons_readable


@pytest.mark.parametrize("missing", REQUIRED, ids=lambda p: p.split(":")[0].lower())
def test_restricted_key_missing_a_permission_is_named(emulator, database_url, missing) -> None:
    key = emulator.restricted_key(permissions=set(REQUIRED) - {missing})
    assert check_access(key, emulator.url).missing == [missing]
    with pytest.raises(PermissionsError) as caught:
        sync_stripe(database_url, key, api_base=emulator.url)
    assert caught.value.missing == [missing]
    assert missing in caught.value.one_line()
    assert not _has_raw_schema(database_url)


def test_webhooks_write_is_checked_only_when_asked(emulator) -> None:
    key = emulator.restricted_key(permissions=set(REQUIRED))
    assert check_access(key, emulator.url).missing == []
    report = check_access(key, emulator.url, include_webhooks_write=True)
    assert report.missing == ["Webhook Endpoints: Write"]


def test_other_account_key_is_refused_unless_reset(emulator, database_url: str) -> None:
    sync_stripe(database_url, emulator.test_key, api_base=emulator.url)
    other = emulator.other_account_key()
    with pytest.raises(StateMismatchError, match="--reset"):
        sync_stripe(database_url, other, api_base=emulator.url)
    result = sync_stripe(database_url, other, api_base=emulator.url, reset=True)
    assert result.account_id != emulator.account_id
    with psycopg.connect(database_url) as conn:
        accounts = conn.execute("select distinct account_id from stripe_raw.sync_state").fetchall()
    assert accounts == [(result.account_id,)]


def test_concurrent_sync_is_refused_while_one_runs(emulator, database_url: str) -> None:
    with sync_lock(database_url), pytest.raises(SyncBusyError, match="another Stripe sync"):
        sync_stripe(database_url, emulator.test_key, api_base=emulator.url, lock_timeout=0.5)


def test_failed_sync_records_status_and_sanitized_error(
    emulator, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_stripe(database_url, emulator.test_key, api_base=emulator.url)

    def failing(*args, **kwargs):
        raise StripeUnavailableError(f"Stripe failed for {emulator.test_key}", "try again")

    monkeypatch.setattr("orchestration.extract.events.run_incremental", failing)
    with pytest.raises(StripeUnavailableError):
        sync_stripe(database_url, emulator.test_key, api_base=emulator.url)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select status, last_error from stripe_raw.sync_state").fetchall()
    assert {status for status, _ in rows} == {"failed"}
    assert all("[redacted key]" in error and emulator.test_key not in error for _, error in rows)


def test_items_past_the_embedded_ten_need_subscriptions_read(emulator) -> None:
    """Completing a subscription's items reads /v1/subscription_items: a key without
    Subscriptions: Read is told so in the Dashboard's words, not with a bare path."""
    key = emulator.restricted_key(permissions=set(REQUIRED) - {"Subscriptions: Read"})
    client = StripeApi(key, emulator.url, max_rps=1000)
    with pytest.raises(PermissionsError) as caught:
        client.get("/v1/subscription_items", subscription="sub_x", limit=100)
    assert "Subscriptions: Read" in caught.value.one_line()
