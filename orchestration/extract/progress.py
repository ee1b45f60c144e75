"""Backfill progress: a rich bar on an interactive terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from types import TracebackType

from rich.progress import MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

log = logging.getLogger("stripe_sync.extract")
LOG_EVERY = 5.0  # seconds between plain progress lines
# What a phase is called where its table name would mislead: the backfill reads the events Stripe
# still holds (its last 30 days) for history, not an object table.
LABELS = {"events": "events (30 days)"}


class Reporter:
    """Counts objects per type; thread-safe. Use as a context manager around the backfill."""

    def __init__(self, tables: list[str], *, bar: bool) -> None:
        self.counts: Counter[str] = Counter()
        self._tables = tables
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_line = self._started
        self._progress = None
        self._tasks: dict[str, TaskID] = {}
        if bar and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("{task.description:<18}"),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._tasks = {
                t: self._progress.add_task(LABELS.get(t, t), total=None, rate="") for t in tables
            }

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        else:
            self._log_line(final=True)

    def add(self, table: str, n: int) -> None:
        with self._lock:
            self.counts[table] += n
            elapsed = max(time.monotonic() - self._started, 1e-6)
            if self._progress is not None:
                rate = f"{self.counts[table] / elapsed:,.0f} objects/s"
                self._progress.update(self._tasks[table], completed=self.counts[table], rate=rate)
            elif time.monotonic() - self._last_line >= LOG_EVERY:
                self._log_line(final=False)

    def _log_line(self, *, final: bool) -> None:
        self._last_line = time.monotonic()
        elapsed = max(self._last_line - self._started, 1e-6)
        total = sum(self.counts.values())
        parts = ", ".join(
            f"{LABELS.get(t, t)} {self.counts[t]:,}" for t in self._tables if self.counts[t]
        )
        word = "imported" if final else "importing"
        log.info(
            "backfill %s %s objects (%.0f/s) in %.1f s: %s",
            word,
            f"{total:,}",
            total / elapsed,
            elapsed,
            parts or "none",
        )
