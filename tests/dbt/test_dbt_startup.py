"""The dbt runner skips dagster-dbt's per-command start-up work without changing what runs."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import psycopg
from dbt_raw_dataset import AS_OF

from orchestration.core.rows import one_row
from orchestration.transform.runner import build, dbt_executable, dbt_resource


def test_the_version_it_assumes_is_the_executable_s_own() -> None:
    """ProjectDbtCliResource answers dbt's version from dbt-core's metadata instead of running
    `dbt --version`: both must name the same release, or dagster-dbt would pick the wrong path."""
    printed = subprocess.run(
        [dbt_executable(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"installed:\s*(\d+\.\d+\.\d+)", printed)
    assert match, printed
    assert str(dbt_resource()._cli_version) == match.group(1)


def test_no_dbt_subprocess_starts_before_the_command(monkeypatch) -> None:
    """The hooks dagster-dbt calls before spawning dbt start no process and load no adapter."""
    started: list[object] = []
    monkeypatch.setattr(subprocess, "check_output", lambda *a, **k: started.append(a) or b"")
    resource = dbt_resource()
    assert resource._cli_version.major == 1
    assert resource._initialize_dbt_core_adapter(["build"]) is None
    assert started == []


def test_a_new_as_of_keeps_partial_parsing_and_reaches_the_models(
    database_url: str, tmp_path: Path
) -> None:
    """Each build has its own as_of: passed in --vars it made dbt re-parse the whole project on
    every build; in the environment, the second build parses partially and still uses it."""
    first, second = AS_OF, AS_OF + timedelta(hours=1)
    build(database_url, as_of=first, livemode=False, target_path=tmp_path, selector="incremental")
    log = tmp_path / "dbt.log"
    log.unlink()
    build(database_url, as_of=second, livemode=False, target_path=tmp_path, selector="incremental")
    text = log.read_text()
    assert "Unable to do partial parsing" not in text
    with psycopg.connect(database_url) as conn:
        built_as_of = one_row(conn.execute("select as_of from stripe_staging.int_build_window"))[0]
    assert built_as_of == second
