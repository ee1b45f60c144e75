"""`stripe-sync demo`: the whole pipeline on the embedded default, against the local Stripe API.

The demo account is the emulator's seeded dataset. Its clock starts when the first demo ran and
every later demo replays that history plus a few more lifecycle ticks (sign-ups, upgrades,
cancellations, …), so a second `make demo` finds new Stripe events and syncs incrementally.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import typer
from psycopg import sql

from orchestration.environment import check_database, warehouse_url
from orchestration.settings import Settings, load_settings
from orchestration.warehouse import describe

if TYPE_CHECKING:
    from orchestration.emulator import Emulator

DEMO_SEED = 42
DEMO_CUSTOMERS = 2000
TICKS_PER_DEMO = 40
STATE_FILE = "demo-emulator.json"


@dataclass
class DemoState:
    """What makes the demo account reproducible across runs."""

    customers: int
    seed: int
    started_at: int
    ticks: int = 0


def _load_state(state_dir: Path, customers: int | None, *, advance: bool) -> DemoState:
    """The demo account of earlier runs (with `advance`, some ticks later), or a new one."""
    path = state_dir / STATE_FILE
    if path.exists():
        state = DemoState(**json.loads(path.read_text()))
        if customers in (None, state.customers):
            state.ticks += TICKS_PER_DEMO if advance else 0
            return state
    return DemoState(
        customers=customers or DEMO_CUSTOMERS, seed=DEMO_SEED, started_at=int(time.time())
    )


def _save_state(state_dir: Path, state: DemoState) -> None:
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(state)))


def segment_counts(url: str) -> list[tuple[str, int]]:
    """Members of every segment table, empty ones included."""
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = 'stripe_segments' and table_name <> 'segment_memberships'"
                " order by table_name"
            )
        ]
        count = "select count(*) from stripe_segments.{}"
        return [
            (table, conn.execute(sql.SQL(count).format(sql.Identifier(table))).fetchone()[0])
            for table in tables
        ]


@contextlib.contextmanager
def demo_emulator(
    settings: Settings, customers: int | None = None, *, advance: bool = False
) -> Iterator[Emulator]:
    """The local Stripe API serving the demo account, as the last demo left it (or `advance`d)."""
    from orchestration.emulator import start_emulator

    state = _load_state(settings.state_dir, customers, advance=advance)
    with start_emulator(
        customers=state.customers, seed=state.seed, now=state.started_at, webhooks=False
    ) as emu:
        if state.ticks:
            emu.tick(state.ticks)
        yield emu
    _save_state(settings.state_dir, state)


def run_demo_job(settings: Settings, *, customers: int) -> None:
    """Starts the local Stripe API, runs the main job on it, prints segments and where to look."""
    from orchestration.runs import execute_main_job

    url = warehouse_url(settings)
    check_database(url)
    typer.echo(f"✓ warehouse: {describe(url)}")
    with demo_emulator(settings, customers, advance=True) as emu:
        typer.echo(f"✓ local Stripe API: {emu.url} ({customers} customers, demo data)")
        # The job's resources read the key from the environment, never from run config.
        os.environ["STRIPE_API_KEY"] = emu.test_key
        os.environ["STRIPE_API_BASE"] = emu.url
        outcome = execute_main_job(load_settings(), as_of=None, mode="import-existing")
        typer.echo(outcome.summary())
    typer.echo("\nsegments (stripe_segments):")
    for segment, members in segment_counts(url):
        typer.echo(f"  {segment:<24} {members:>6}")
    typer.echo(
        "\nnext:"
        "\n  make ui    → Dagster UI on http://127.0.0.1:3000 (runs, asset lineage, sync health)"
        "\n  make docs  → dbt docs on http://127.0.0.1:8080 (every field's lineage)"
        f"\n  psql       → {describe(url)}, schema stripe_segments"
    )
