"""Settings: every contract variable parses; keys are validated and never printed whole."""

from __future__ import annotations

import pytest

from orchestration.core.errors import SettingsError
from orchestration.core.settings import Settings, load_settings, mask_secret

TEST_KEY = "sk_test_51AbCdEfGhIjKlMnOpQrStUvWxYz0123"
LIVE_KEY = "rk_live_51ZyXwVuTsRqPoNmLkJiHgFeDcBa9876"


def test_settings_read_every_contract_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111/")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example:5433/warehouse")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_abc123")
    monkeypatch.setenv("DAGSTER_HOME", "/tmp/dagster-home")
    settings = Settings()
    assert settings.api_key == TEST_KEY
    assert settings.key_mode == "test"
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.database_url is not None
    assert settings.webhook_secrets == ["whsec_abc123"]
    assert str(settings.resolved_dagster_home) == "/tmp/dagster-home"


def test_settings_default_to_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_API_KEY", "DATABASE_URL", "STRIPE_WEBHOOK_SECRET", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.api_key is None
    assert settings.database_url is None
    assert settings.stripe_api_base == "https://api.stripe.com"
    assert settings.resolved_dagster_home == settings.state_dir / "dagster"


@pytest.mark.parametrize(
    ("key", "mode"),
    [(TEST_KEY, "test"), (LIVE_KEY, "live"), ("rk_test_abc123def456", "test")],
    ids=["secret-test", "restricted-live", "restricted-test"],
)
def test_key_prefix_decides_the_mode(key: str, mode: str) -> None:
    assert load_settings(stripe_api_key=key).key_mode == mode


def test_masked_key_shows_only_prefix_and_last_four() -> None:
    settings = load_settings(stripe_api_key=TEST_KEY)
    assert settings.masked_key == "sk_test_…0123"
    assert TEST_KEY not in repr(settings)
    assert TEST_KEY not in str(settings.model_dump())
    assert mask_secret(LIVE_KEY) == "rk_live_…9876"
    assert mask_secret("whsec_abcdefghijklmnop") == "whsec_…mnop"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("stripe_api_key", "pk_test_123456789", "publishable"),
        ("stripe_api_key", "sk_test_ abc def", "spaces"),
        ("stripe_api_key", "not-a-key", "sk_test_"),
        ("database_url", "mysql://root@localhost/db", "not a Postgres URL"),
        ("stripe_webhook_secret", "secret123", "whsec_"),
        ("stripe_api_base", "ftp://stripe", "http"),
        ("stripe_max_rps", "-5", "STRIPE_MAX_RPS"),
    ],
    ids=[
        "publishable-key",
        "key-with-spaces",
        "not-a-key",
        "mysql-url",
        "webhook-secret",
        "api-base",
        "negative-rps",
    ],
)
def test_bad_values_raise_one_line_naming_the_fix(variable: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(**{variable: value})
    line = raised.value.one_line()
    assert "\n" not in line
    assert words in line
    assert value not in line or variable != "stripe_api_key"
