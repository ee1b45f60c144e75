"""`make ui`: the webserver and the daemon start on the project's instance without a warning about
our configuration, and the smoke test's page check tells an error banner from a working page."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.cli.ui import (
    free_port,
    page_problems,
    prepare,
    start_dagster,
    startup_warnings,
    stop_all,
    wait_until_loaded,
)
from orchestration.core.settings import load_settings

# Variables prepare() exports; registered with monkeypatch so each test restores them.
EXPORTED = (
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "DATABASE_URL",
    "DAGSTER_HOME",
    "STRIPE_SYNC_DAGSTER_PG_URL",
)


def test_ui_starts_without_warnings_from_our_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, emulator
) -> None:
    for name in EXPORTED:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    settings = load_settings(
        database_url=database_url,
        stripe_api_key=emulator.test_key,
        stripe_api_base=emulator.url,
        dagster_home=tmp_path / "dagster",
    )
    home = prepare(settings)
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("wb") as output:
        processes = start_dagster(port, new_session=True, output=output)
        try:
            wait_until_loaded(port, processes)
        finally:
            stop_all(processes, group=True)
    text = log.read_text()
    assert "dagster-webserver" in text or "Serving dagster-webserver" in text, text
    assert startup_warnings(text) == [], text
    assert (home / "dagster.yaml").is_file(), "the one instance configuration, in DAGSTER_HOME"


def test_page_check_finds_error_banners_and_missing_content() -> None:
    ok = "<html><body><div>stripe/customer_fields Materialized</div></body></html>"
    assert page_problems("customer_fields", ok, "customer_fields") == []
    broken = "<html><body><div>PythonError: code location failed to load</div></body></html>"
    assert page_problems("customer_fields", broken, "customer_fields") == [
        "customer_fields: shows 'PythonError'",
        "customer_fields: shows 'failed to load'",
        "customer_fields: 'customer_fields' is not on the page",
    ]
    assert page_problems("runs", "<html><body></body></html>", "stripe_sync_job") == [
        "runs: the page rendered nothing"
    ]


def test_startup_warnings_are_found() -> None:
    output = (
        "2026-12-05 - dagster-webserver - INFO - Serving dagster-webserver on http://127.0.0.1:3000\n"
        "SupersessionWarning: Function `dev_command` is superseded. Use 'dg dev' instead.\n"
        "Found a dagster instance configuration value (dagster.yaml) in the current folder, but"
        " your DAGSTER_HOME is /x. This dagster.yaml will not be used.\n"
    )
    assert len(startup_warnings(output)) == 2
