"""`stripe-sync demo` as a newcomer runs it: short output, a named full log, hints that work.

One demo runs on a fresh state dir (its own embedded Postgres), a second one (incremental) with
`--verbose`; then the printed `psql` line is executed and `make stop` stops the Postgres.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from orchestration.cli.demo import Progress
from orchestration.core.settings import PROJECT_ROOT
from tests.cli.helpers import Completed, run_cli

DEMO_CUSTOMERS = "300"
MAX_LINES = 60
# A test that passed, as dbt prints it in the run's process (the time first).
DBT_PASS_LINE = r"^(\d\d:\d\d:\d\d +)?\d+ of \d+ PASS "


@dataclass
class Demo:
    home: Path
    first: Completed
    verbose: Completed

    def line(self, prefix: str) -> str:
        """The first line of the first demo's output that starts with `prefix` (stripped)."""
        lines = [line.strip() for line in self.first.stdout.splitlines()]
        found = [line for line in lines if line.startswith(prefix)]
        assert found, f"no line starting with {prefix!r} in:\n{self.first.stdout}"
        return found[0]


def _stop(home: Path) -> subprocess.CompletedProcess:
    # Exactly what `make stop` runs, on this state dir.
    return subprocess.run(
        ["make", "--no-print-directory", "stop"],
        cwd=PROJECT_ROOT,
        env={**_env(home), "PATH": f"{PROJECT_ROOT / '.venv' / 'bin'}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "STRIPE_SYNC_HOME": str(home)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # A short path: the embedded Postgres listens on a Unix socket in it (108 bytes at most).
    home = tmp_path_factory.mktemp("demo")
    env = {"STRIPE_SYNC_HOME": str(home)}
    try:
        first = run_cli("demo", "--customers", DEMO_CUSTOMERS, env=env, timeout=600)
        assert first.code == 0, first.stdout + first.stderr
        verbose = run_cli("demo", "--customers", DEMO_CUSTOMERS, "--verbose", env=env, timeout=600)
        assert verbose.code == 0, verbose.stdout + verbose.stderr
        yield Demo(home, first, verbose)
    finally:
        _stop(home)


def test_demo_output_is_short_and_names_its_full_log(demo: Demo) -> None:
    lines = demo.first.stdout.splitlines()
    assert len(lines) < MAX_LINES, demo.first.stdout
    assert demo.first.stderr == ""
    log = Path(demo.line("full log:").removeprefix("full log:").strip())
    assert log.is_file()
    assert log.parent == demo.home / "logs"
    full = log.read_text()
    # The build is incremental (2 of its checks run, the rest wait for the daily full build), so
    # the log is shorter than it was, still well beyond the console's lines.
    assert len(full.splitlines()) > 2 * len(lines), "the log holds the whole output"
    assert re.search(DBT_PASS_LINE, full, re.MULTILINE), "dbt's node lines are in the log"
    assert "Finished dbt command" in full
    assert "\x1b[" not in full, "no ANSI colour codes in the log"


def test_demo_shows_one_line_per_stage(demo: Demo) -> None:
    assert demo.line("✓ backfill sync:").endswith(" s")
    assert re.fullmatch(
        r"✓ dbt build: \d+ models and seeds built, \d+ tests passed", demo.line("✓ dbt build")
    )
    assert " PASS " not in demo.first.stdout, "dbt's node lines stay in the log"


def test_demo_output_has_no_warning_from_our_configuration(demo: Demo) -> None:
    log = Path(demo.line("full log:").removeprefix("full log:").strip()).read_text()
    for text in (demo.first.stdout, log, demo.verbose.stdout, demo.verbose.stderr):
        assert "AssetObservation" not in text
        assert " - WARNING - " not in text
        assert "Warning:" not in text


def test_verbose_demo_prints_the_full_output(demo: Demo) -> None:
    assert len(demo.verbose.stdout.splitlines()) > MAX_LINES
    assert re.search(DBT_PASS_LINE, demo.verbose.stdout, re.MULTILINE)
    assert "✓ incremental sync:" not in demo.verbose.stdout, "no progress lines in verbose mode"


def test_demo_explains_its_customer_numbers(demo: Demo) -> None:
    generated = demo.line("customers:")
    assert generated.startswith(f"customers: {DEMO_CUSTOMERS} generated")
    assert re.search(r"; \d+ of them were deleted by the demo's lifecycle$", generated)
    match = re.fullmatch(
        r"→ (\d+) in Stripe \(test mode; Stripe lists no deleted customer\) = (\d+) synced",
        demo.line("→ ").replace(",", ""),
    )
    assert match, demo.first.stdout
    in_stripe, synced = (int(n) for n in match.groups())
    assert in_stripe == synced


def test_demo_fills_every_segment(demo: Demo) -> None:
    lines = demo.first.stdout.splitlines()
    start = lines.index("segments (stripe_segments), members:") + 1
    rows = [line.split() for line in lines[start : lines.index("", start)]]
    assert len(rows) == 8, rows
    empty = [name for name, members in rows if int(members.replace(",", "")) == 0]
    assert not empty, f"segments without members on the demo data: {empty}"


def test_demo_says_the_embedded_postgres_keeps_running_and_how_to_stop_it(demo: Demo) -> None:
    assert "`make stop` stops it" in demo.line("the embedded Postgres keeps running")


def test_printed_psql_line_connects_and_its_query_returns_rows(demo: Demo) -> None:
    command = shlex.split(demo.line("psql "))
    assert command[0] == "psql" and len(command) == 2, command
    conninfo = command[1]
    query = demo.line("→ select").removeprefix("→ ").strip()
    if shutil.which("psql"):
        done = subprocess.run(
            [*command, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        rows = [line for line in done.stdout.splitlines() if line]
    else:
        with psycopg.connect(conninfo) as conn:
            rows = conn.execute(query).fetchall()
    assert rows, "the example query returns members on the demo data"


def test_readmes_example_query_returns_rows_on_the_demo_data(demo: Demo) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Reading the segments from BI") :]
    query = section.split("```sql\n", 1)[1].split("```", 1)[0]
    conninfo = shlex.split(demo.line("psql "))[1]
    with psycopg.connect(conninfo) as conn:
        assert conn.execute(query).fetchall(), query


def test_make_stop_stops_the_embedded_postgres(demo: Demo) -> None:
    conninfo = shlex.split(demo.line("psql "))[1]
    stopped = _stop(demo.home)
    assert stopped.returncode == 0, stopped.stderr
    assert "embedded Postgres stopped" in stopped.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo, connect_timeout=5)


def test_progress_reads_dbt_lines_with_and_without_their_time() -> None:
    console = io.StringIO()
    progress = Progress(console)
    progress.line("incremental dbt build in test mode, as of 2026-12-06T21:00:00+00:00")
    progress.line("21:36:59  1 of 2 OK created sql view model stripe_staging.stg_a [OK in 0.1s]")
    progress.line("2 of 2 PASS unique_customer_fields_stripe_customer_id ... [PASS in 0.1s]")
    progress.line("21:37:01  Done. PASS=2 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=2")
    assert console.getvalue() == "✓ dbt build: 1 models and seeds built, 1 tests passed\n"
