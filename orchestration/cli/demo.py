"""`stripe-sync demo`: the whole pipeline on the embedded default, against the local Stripe API.

The demo account is the emulator's seeded dataset. Its clock starts when the first demo ran and
every later demo replays that history plus a few more lifecycle ticks (sign-ups, upgrades,
cancellations, …), so a second `make demo` finds new Stripe events and syncs incrementally.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import psycopg
import typer
from psycopg import sql

from orchestration.cli.runs import JobFailedError, execute_main_job
from orchestration.core.modes import SyncMode
from orchestration.core.rows import one_row
from orchestration.core.settings import Settings, load_settings
from orchestration.core.warehouse import describe, parse_database_url
from orchestration.embedded.environment import check_database, warehouse_url
from orchestration.emulator import start_emulator
from orchestration.transform.reports import (
    MOVEMENTS,
    MrrBridge,
    read_mrr_bridge,
)

if TYPE_CHECKING:
    from orchestration.emulator import Emulator

DEMO_SEED = 42
DEMO_CUSTOMERS = 2000
TICKS_PER_DEMO = 40
STATE_FILE = "demo-emulator.json"
# What the demo suggests running in psql: a segment the demo data always fills.
EXAMPLE_QUERY = (
    "select customer_email, subscription_trial_ends_at from stripe_segments.current_trials;"
)


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
    # A new account already has some lifecycle behind it (sign-ups, lapsed trials, failed
    # payments…), so the first demo finds a member for every segment.
    return DemoState(
        customers=customers or DEMO_CUSTOMERS,
        seed=DEMO_SEED,
        started_at=int(time.time()),
        ticks=TICKS_PER_DEMO if advance else 0,
    )


def _save_state(state_dir: Path, state: DemoState) -> None:
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(state)))


def segment_counts(url: str) -> list[tuple[str, int]]:
    """Members of every segment table, empty ones included."""
    with psycopg.connect(url) as conn:
        # The schema also holds tables about all segments (segment_memberships, segment_changes,
        # …), each named segment_<what>; a segment's table is named after the segment alone.
        tables = [
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = 'stripe_segments' and table_name not like 'segment\\_%'"
                " order by table_name"
            )
        ]
        count = "select count(*) from stripe_segments.{}"
        return [
            (table, one_row(conn.execute(sql.SQL(count).format(sql.Identifier(table))))[0])
            for table in tables
        ]


def todays_segment_changes(url: str) -> list[tuple[str, int, int]]:
    """Per segment, members who entered and left today (UTC), from the change feed."""
    with psycopg.connect(url) as conn:
        return [
            (segment, int(entered), int(exited))
            for segment, entered, exited in conn.execute(
                "select segment, count(*) filter (where change = 'entered'),"
                " count(*) filter (where change = 'exited')"
                " from stripe_segments.segment_changes"
                " where detected_at"
                " >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'"
                " group by segment order by segment"
            )
        ]


def bridge_lines(bridge: MrrBridge) -> list[str]:
    """One line per currency: start, the movements that moved it, end."""
    lines = []
    for currency, amounts in bridge:
        moved = [
            f"{'+' if amounts[name] >= 0 else '-'} {name} {abs(amounts[name]):,.2f}"
            for name in MOVEMENTS
            if amounts[name]
        ]
        steps = " ".join([f"{amounts['start_mrr']:,.2f}", *moved])
        lines.append(f"  {currency} {steps} = {amounts['end_mrr']:,.2f}")
    return lines


@contextlib.contextmanager
def demo_emulator(
    settings: Settings, customers: int | None = None, *, advance: bool = False
) -> Iterator[Emulator]:
    """The local Stripe API serving the demo account, as the last demo left it (or `advance`d)."""
    state = _load_state(settings.state_dir, customers, advance=advance)
    with start_emulator(
        customers=state.customers, seed=state.seed, now=state.started_at, webhooks=False
    ) as emu:
        if state.ticks:
            emu.tick(state.ticks)
        yield emu
    _save_state(settings.state_dir, state)


def psql_command(url: str) -> str:
    """A `psql` line that connects to `url` (no password in it): libpq's key=value form, which
    takes a Unix-socket directory as host, where a URL would read the path as the database."""
    params = parse_database_url(url)
    parts = {"host": params.host, "port": str(params.port), "dbname": params.dbname}
    parts["user"] = params.user
    if parts["port"] == "5432":
        del parts["port"]
    conninfo = " ".join(f"{key}={_conninfo_value(value)}" for key, value in parts.items())
    if any(char in conninfo for char in '"$`\\!'):
        return f"psql {shlex.quote(conninfo)}"
    return f'psql "{conninfo}"'


def _conninfo_value(value: str) -> str:
    # libpq conninfo: a value with spaces or quotes is single-quoted, with \ and ' escaped.
    if value and not any(char in value for char in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class CustomerCounts:
    """Where the demo's customer numbers come from: the account, then what the sync stored."""

    requested: int
    live: int
    deleted: int
    other_mode: int
    synced: int | None = None

    def lines(self) -> list[str]:
        """Generated, deleted, in Stripe, synced: each number next to where it comes from."""
        signups = self.live + self.deleted - self.requested
        lines = [
            f"customers: {self.requested:,} generated"
            + (f" and {signups:,} signed up since" if signups > 0 else "")
            + f"; {self.deleted:,} of them were deleted by the demo's lifecycle",
            f"  → {self.live:,} in Stripe (test mode; Stripe lists no deleted customer)"
            + (f" = {self.synced:,} synced" if self.synced is not None else ""),
        ]
        if self.other_mode:
            lines.append(f"  ({self.other_mode:,} live-mode customers stay out: a test key)")
        return lines


def customer_counts(emu: Emulator, requested: int, url: str) -> CustomerCounts:
    """Customers of the demo account by state, and the rows of stripe.customer_fields."""
    store = emu.account.store
    counts = CustomerCounts(
        requested=requested,
        live=sum(1 for _ in store.ids("customers", False, deleted=False)),
        deleted=sum(1 for _ in store.ids("customers", False, deleted=True)),
        other_mode=sum(1 for _ in store.ids("customers", True, deleted=False)),
    )
    with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
        counts.synced = one_row(conn.execute("select count(*) from stripe.customer_fields"))[0]
    return counts


# Lines of the run's output that move the progress: the sync's summary and dbt's node results.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SYNC_DONE = re.compile(
    r"(\w+) sync \((?:test|live) mode\): (\d+) objects, (\d+) requests in ([\d.]+)s"
)
# dbt prints its lines with the time first ("21:36:59  3 of 47 OK ...").
_DBT_TIME = r"^(?:\d\d:\d\d:\d\d\s+)?"
_DBT_NODE = re.compile(_DBT_TIME + r"(\d+) of (\d+) (OK|PASS|FAIL|ERROR|WARN|SKIP|NO-OP)\b")
_DBT_START = re.compile(r"dbt build in (?:test|live) mode")
_DBT_DONE = re.compile(_DBT_TIME + r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)")
BAR_WIDTH = 24


class Progress:
    """One line per stage (sync, build) on the terminal while the full output goes to a log.

    On a terminal the line of the running stage is redrawn as a bar; elsewhere each stage prints
    one line when it ends, so a CI log stays short too.
    """

    def __init__(self, console: TextIO) -> None:
        self.console = console
        self.live = console.isatty()
        self.stage: str | None = None
        self.done = 0
        self.total = 0
        self.built = 0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        """Reads one line of the run's output."""
        with self.lock:
            if match := _SYNC_DONE.search(text):
                kind, objects, requests, seconds = match.groups()
                self._finish(
                    f"{kind} sync: {int(objects):,} objects, {int(requests):,} requests"
                    f" in {float(seconds):.1f} s",
                )
            elif _DBT_START.search(text):
                self._start("build")
            elif match := _DBT_NODE.match(text):
                self.stage = "build"
                self.done, self.total = self.done + 1, int(match.group(2))
                self.built += match.group(3) == "OK"
                self._draw()
            elif match := _DBT_DONE.match(text):
                passed, warned, errors, skipped = (int(n) for n in match.groups())
                text = (
                    f"dbt build: {self.built} models and seeds built, {passed - self.built} tests"
                )
                text += " passed" + "".join(
                    f", {n} {what}"
                    for n, what in ((warned, "warned"), (errors, "failed"), (skipped, "skipped"))
                    if n
                )
                self._finish(text, ok=not errors)

    def start(self, stage: str) -> None:
        with self.lock:
            self._start(stage)

    def _start(self, stage: str) -> None:
        self.stage, self.done, self.total = stage, 0, 0
        self._draw()

    def _draw(self) -> None:
        if not self.live or self.stage is None:
            return
        if self.total:
            filled = BAR_WIDTH * self.done // self.total
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total}"
        else:
            bar = "…"
        self.console.write(f"\r\x1b[K  {self.stage:<6} {bar}")
        self.console.flush()

    def _finish(self, text: str, *, ok: bool = True) -> None:
        prefix = "\r\x1b[K" if self.live else ""
        self.console.write(f"{prefix}{'✓' if ok else '✗'} {text}\n")
        self.console.flush()
        self.stage = None


class OutputToLog:
    """Sends everything this process and its children print to a log file (ANSI colours
    stripped), and each line to `on_line`; with `verbose`, to the terminal as well.

    Works on file descriptors 1 and 2, so Dagster's console logger, dbt's output streamed by
    dagster-dbt and any library writing to stderr all land in the one log.
    """

    def __init__(self, path: Path, *, verbose: bool, on_line: Callable[[str], None]) -> None:
        self.path = path
        self.verbose = verbose
        self.on_line = on_line
        self.console: TextIO = sys.stdout

    def __enter__(self) -> OutputToLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        self.console = open(os.dup(1), "w", encoding="utf-8", errors="replace")
        read_end, write_end = os.pipe()
        self.log = self.path.open("w", encoding="utf-8")
        self.reader = threading.Thread(target=self._pump, args=(read_end,), daemon=True)
        self.reader.start()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        # The pipe's last write end closed with fd 1 and 2: the reader sees the end of it.
        self.reader.join(timeout=10)
        self.log.close()
        self.console.close()

    def _pump(self, fd: int) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
                self.log.write(text)
                self.log.flush()
                if self.verbose:
                    self.console.write(text)
                    self.console.flush()
                else:
                    self.on_line(text.rstrip("\n"))


def log_path(settings: Settings) -> Path:
    """Where a demo writes its full output: one file per run in the state dir."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return settings.state_dir / "logs" / f"demo-{stamp}.log"


def run_demo_job(settings: Settings, *, customers: int, verbose: bool = False) -> None:
    """Starts the local Stripe API, runs the main job on it, prints segments and where to look.

    The full output (Dagster's log, every dbt node) goes to a log file the summary names; the
    terminal gets one line per stage. `verbose` prints the full output as it runs.
    """
    url = warehouse_url(settings)
    version = check_database(url)
    embedded = not settings.database_url
    where = (
        f"embedded Postgres {version.split()[0]}, database {parse_database_url(url).dbname}"
        if embedded
        else describe(url)
    )
    typer.echo(f"✓ warehouse: {where}")
    path = log_path(settings)
    with demo_emulator(settings, customers, advance=True) as emu:
        typer.echo(f"✓ local Stripe API: {emu.url} (demo account, {customers:,} customers)")
        # The job's resources read the key from the environment, never from run config.
        os.environ["STRIPE_API_KEY"] = emu.test_key
        os.environ["STRIPE_API_BASE"] = emu.url
        progress = Progress(sys.stdout)
        with OutputToLog(path, verbose=verbose, on_line=progress.line) as output:
            progress.console = output.console
            progress.live = output.console.isatty() and not verbose
            progress.start("sync")
            outcome = execute_main_job(
                load_settings(), as_of=None, mode=SyncMode.import_existing, raise_on_failure=False
            )
        counts = customer_counts(emu, customers, url)
    typer.echo(outcome.summary())
    if not outcome.success:
        raise JobFailedError(
            f"run {outcome.run_id} of the main job failed: {outcome.error or 'see its logs'}",
            f"read {path}, or open the run in the UI (`make ui`)",
        )
    typer.echo("")
    for line in counts.lines():
        typer.echo(line)
    typer.echo("\nsegments (stripe_segments), members:")
    for segment, members in segment_counts(url):
        typer.echo(f"  {segment:<24} {members:>6,}")
    typer.echo("\ntoday's segment changes (stripe_segments.segment_changes), entered / exited:")
    for segment, entered, exited in todays_segment_changes(url):
        typer.echo(f"  {segment:<24} {entered:>6,} / {exited:,}")
    typer.echo("\nthis month's MRR bridge (stripe.mrr_movements), per currency:")
    with psycopg.connect(url) as conn:
        bridge = read_mrr_bridge(conn)
    for line in bridge_lines(bridge) or ["  no MRR yet"]:
        typer.echo(line)
    typer.echo(f"\nfull log: {path}\n  (`stripe-sync demo --verbose` prints it as it runs)")
    if embedded:
        typer.echo("the embedded Postgres keeps running for the UI and psql; `make stop` stops it")
    typer.echo(
        "\nnext:"
        "\n  make ui    → Dagster UI on http://127.0.0.1:3000 (runs, asset lineage, sync health)"
        "\n  make docs  → dbt docs on http://127.0.0.1:8080 (every field's lineage)"
        f"\n  {psql_command(url)}"
        f"\n    → {EXAMPLE_QUERY}"
    )
