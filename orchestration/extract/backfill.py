"""Import of existing objects through list endpoints: `created` sliced into windows read
concurrently, pages streamed into Postgres in bounded batches, progress committed with the rows."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from orchestration.extract import loader, state
from orchestration.extract.client import StripeApi
from orchestration.extract.objects import EVENT_HISTORY, ObjectSpec
from orchestration.extract.progress import Reporter

PAGE_SIZE = 100  # Stripe's maximum
THREADS = 48  # enough in flight to spend a 100 req/s budget at 300 ms per request
BATCH_ROWS = 2000  # rows per COPY + upsert transaction: bounds memory, amortises commits
# Postgres parsing and compressing jsonb is the backfill's bottleneck once requests run in
# parallel; each writer is one backend (one core). All pages of one window go to one writer, in
# order, so a page's progress (which covers the window's earlier pages) never commits before them;
# windows of one table spread over the writers, which merge their progress under a row lock.
WRITERS = 3
MAX_SPLIT = 16
GROWTH = 1.5  # each older slice this much wider than the newer one (see _slice_bounds)
# A slice's last page comes back part-empty, so a split must leave slices of several pages;
# measured on 100k objects: 3 pages cost 5 % more requests than 8.
MIN_SPLIT_PAGES = 8
QUEUED_PAGES = 8  # per writer: the bound on pages (bodies) waiting in memory


@dataclass(frozen=True)
class Job:
    """One page request: objects of `spec` with lo <= created < hi, older than `after`."""

    spec: ObjectSpec
    lo: int = 0
    hi: int = 0
    after: str | None = None
    writer: int = 0  # the writer thread that commits this window's pages


@dataclass
class PageResult:
    spec: ObjectSpec
    writer: int
    body: str  # the page as Stripe sent it; Postgres splits it into objects
    count: int
    snapshot_at: datetime
    done: tuple[int, int] | None  # created range now completely read (windowed objects)
    after: str | None  # last id read (objects without windows)
    complete: bool  # the job's whole range is read


@dataclass
class Intervals:
    """A set of [a, b) integer ranges, kept merged."""

    ranges: list[list[int]] = field(default_factory=list)

    def add(self, a: int, b: int) -> None:
        if a >= b:
            return
        merged: list[list[int]] = []
        for lo, hi in sorted([*self.ranges, [a, b]]):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.ranges = merged

    def gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out, pos = [], lo
        for a, b in self.ranges:
            if a > pos:
                out.append((pos, min(a, hi)))
            pos = max(pos, b)
        if pos < hi:
            out.append((pos, hi))
        return [(a, b) for a, b in out if a < b]


def new_progress(started_at: datetime, upper: int, hint: int) -> dict[str, Any]:
    """Progress of a fresh backfill: nothing done yet; `upper` bounds `created` (newer objects
    come through the events replay); `hint` is where the account's data probably starts."""
    return {"started_at": started_at.isoformat(), "upper": upper, "hint": hint, "done": []}


def initial_jobs(spec: ObjectSpec, progress: dict[str, Any]) -> list[Job]:
    """What is left to read of one object, from its committed progress. `lower` (the events
    history: Stripe's last 30 days) bounds `created` from below; objects start at 0."""
    if not spec.windowed:
        return [] if progress.get("complete") else [Job(spec, after=progress.get("after"))]
    done = Intervals([list(r) for r in progress.get("done", [])])
    jobs = []
    for a, b in done.gaps(progress.get("lower", 0), progress["upper"]):
        # Split at the hint so the decades before the account existed cost one request.
        hint = progress.get("hint", 0)
        if a < hint < b:
            jobs += [Job(spec, hint, b), Job(spec, a, hint)]
        else:
            jobs.append(Job(spec, a, b))
    return jobs


def _slice_bounds(lo: int, hi: int, k: int) -> list[int]:
    """k slices of [lo, hi), each GROWTH times wider than the next newer one. Accounts grow, so
    objects are denser in recent times: equal-width slices would leave the old ones nearly empty
    (one part-empty page each), and a slice that proves dense is split again anyway."""
    weights = [GROWTH**i for i in range(k)]  # newest slice first
    total, width, bounds, edge = sum(weights), hi - lo, [hi], float(hi)
    for weight in weights[:-1]:
        edge -= width * weight / total
        bounds.append(max(lo + 1, min(int(edge), bounds[-1] - 1)))
    bounds.append(lo)
    return sorted(set(bounds))


class Backfill:
    """Worker threads fetch pages and split dense windows; writer threads commit them."""

    def __init__(
        self,
        database_url: str,
        client: StripeApi,
        livemode: bool,
        progress: dict[str, dict[str, Any]],
        reporter: Reporter,
        threads: int = THREADS,
        writers: int = WRITERS,
    ) -> None:
        self.database_url = database_url
        self.client = client
        self.livemode = livemode
        self.progress = progress
        self.reporter = reporter
        self.threads = threads
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._queues: list[queue.Queue[PageResult | None]] = [
            queue.Queue(maxsize=QUEUED_PAGES) for _ in range(writers)
        ]
        self._next_writer = 0
        self._outstanding = 0
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._stop = threading.Event()

    def run(self, specs: Iterable[ObjectSpec]) -> None:
        jobs = [job for spec in specs for job in initial_jobs(spec, self.progress[spec.table])]
        jobs = [self._assign(job) for job in jobs]
        if not jobs:
            return
        self._enqueue(jobs)
        writers = [
            threading.Thread(target=self._guard, args=(self._write_loop, q), name=f"write-{i}")
            for i, q in enumerate(self._queues)
        ]
        workers = [
            threading.Thread(target=self._guard, args=(self._work_loop,), name=f"fetch-{i}")
            for i in range(self.threads)
        ]
        for thread in writers + workers:
            thread.start()
        for worker in workers:
            worker.join()
        for writer, pages in zip(writers, self._queues, strict=True):
            if writer.is_alive():
                pages.put(None)
            writer.join()
        if self._error is not None:
            raise self._error

    def _guard(self, loop: Any, *args: Any) -> None:
        try:
            loop(*args)
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
            self._shutdown()

    def _shutdown(self) -> None:
        self._stop.set()
        for _ in range(self.threads):
            self._jobs.put(None)
        # Unblock workers waiting on a full page queue.
        for pages in self._queues:
            while True:
                try:
                    pages.get_nowait()
                except queue.Empty:
                    break

    def _assign(self, job: Job) -> Job:
        """A new window's writer: round robin, so a large table's windows spread over all."""
        with self._lock:
            self._next_writer = (self._next_writer + 1) % len(self._queues)
            return replace(job, writer=self._next_writer)

    def _enqueue(self, jobs: list[Job]) -> None:
        with self._lock:
            self._outstanding += len(jobs)
        for job in jobs:
            self._jobs.put(job)

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            follow_ups = self._fetch(job)
            if self._stop.is_set():
                return
            self._enqueue(follow_ups)
            with self._lock:
                self._outstanding -= 1
                finished = self._outstanding == 0
            if finished:
                for _ in range(self.threads):
                    self._jobs.put(None)

    def _fetch(self, job: Job) -> list[Job]:
        spec = job.spec
        params: dict[str, Any] = {"limit": PAGE_SIZE, **spec.list_params}
        if expand := spec.expand_for(self.client):
            params["expand"] = [f"data.{path}" for path in expand]
        if spec.windowed:
            params["created"] = {"gte": job.lo, "lt": job.hi}
        if job.after:
            params["starting_after"] = job.after
        response = self.client.get(spec.list_path, **params)
        objects = response.data.get("data") or []
        count, has_more = len(objects), bool(response.data.get("has_more")) and bool(objects)
        last_id = objects[-1]["id"] if objects else job.after
        newest = int(objects[0]["created"]) if objects else job.lo
        oldest = int(objects[-1]["created"]) if objects else job.lo
        # Only the body travels on: the parsed page (several times its size) is dropped before
        # this thread may wait on a full queue, which keeps memory flat with account size.
        body, snapshot_at = response.body, response.server_time
        del response, objects
        if not spec.windowed:
            page = PageResult(
                spec, job.writer, body, count, snapshot_at, None, last_id, not has_more
            )
            self._put(page)
            return [replace(job, after=last_id)] if has_more else []
        done = (job.lo, job.hi) if not has_more else (oldest + 1, job.hi)
        self._put(PageResult(spec, job.writer, body, count, snapshot_at, done, None, not has_more))
        return self._follow_ups(job, count, newest, oldest, last_id) if has_more else []

    def _follow_ups(
        self, job: Job, count: int, newest: int, oldest: int, last_id: str | None
    ) -> list[Job]:
        """Continue the window below the last object; when workers would sit idle, split what
        is left into time slices read in parallel, each expected to hold several pages. Splitting
        only for idle workers keeps windows long, so few pages come back part-empty and the
        request budget buys full pages."""
        span = max(1, newest - oldest + 1)
        est_pages = count / span * (oldest - job.lo + 1) / PAGE_SIZE
        k = min(self._idle() + 1, int(est_pages / MIN_SPLIT_PAGES), oldest - job.lo + 1, MAX_SPLIT)
        if k < 2:
            return [replace(job, after=last_id)]
        bounds = _slice_bounds(job.lo, oldest + 1, k)
        k = len(bounds) - 1
        fresh = [self._assign(Job(job.spec, bounds[i], bounds[i + 1])) for i in range(k - 1)]
        return [replace(job, lo=bounds[k - 1], after=last_id), *fresh]

    def _idle(self) -> int:
        """Workers that would wait for a job, up to what the request budget can use. None while
        requests already queue for the budget: more windows would not go faster, they would
        only end in more part-empty pages."""
        if self.client.bucket.backlog > 0:
            return 0
        latency = self.client.stats.mean_latency or 0.3
        useful = math.ceil(self.client.rate * max(latency, 0.02) * 1.25) + 2
        with self._lock:
            return max(0, min(self.threads, useful) - self._outstanding)

    def _put(self, page: PageResult) -> None:
        pages = self._queues[page.writer]
        while not self._stop.is_set():
            try:
                pages.put(page, timeout=0.5)
                return
            except queue.Full:
                continue

    def _write_loop(self, pages: queue.Queue[PageResult | None]) -> None:
        with loader.connect(self.database_url, autocommit=True) as conn:
            while True:
                batch, finished = self._next_batch(pages)
                if batch:
                    self._commit(conn, batch)
                if finished:
                    return

    def _next_batch(self, pages: queue.Queue[PageResult | None]) -> tuple[list[PageResult], bool]:
        """Blocks for one page, then takes whatever else is ready, up to BATCH_ROWS rows."""
        first = pages.get()
        if first is None:
            return [], True
        batch, rows = [first], first.count
        while rows < BATCH_ROWS:
            try:
                page = pages.get_nowait()
            except queue.Empty:
                break
            if page is None:
                return batch, True
            batch.append(page)
            rows += page.count
        return batch, False

    def _commit(self, conn: psycopg.Connection, batch: list[PageResult]) -> None:
        """Rows and the progress that covers them in one transaction: a crash loses both or
        neither, so a resumed backfill never skips a page it did not store."""
        by_table: dict[str, list[PageResult]] = {}
        for page in batch:
            by_table.setdefault(page.spec.table, []).append(page)
        with conn.transaction():
            for table, pages in by_table.items():
                bodies = ((p.body, p.snapshot_at) for p in pages)
                if table == EVENT_HISTORY.table:
                    # Past events: stored for history, never applied over the newer objects.
                    loader.insert_event_pages(conn, bodies)
                else:
                    loader.upsert_pages(conn, table, bodies)
            # Progress last, in a fixed order: the row locks are held only until the commit.
            for table in sorted(by_table):
                self._merge_progress(conn, table, by_table[table])
        for table, pages in by_table.items():
            self.reporter.add(table, sum(p.count for p in pages))

    def _merge_progress(
        self, conn: psycopg.Connection, table: str, pages: list[PageResult]
    ) -> None:
        """Adds these pages' ranges to the table's committed progress (other writers add theirs)."""
        progress = state.lock_progress(conn, table, self.livemode) or dict(self.progress[table])
        done = Intervals([list(r) for r in progress.get("done", [])])
        for page in pages:
            if page.done:
                done.add(*page.done)
            if not page.spec.windowed:
                progress["after"], progress["complete"] = page.after, page.complete
        progress["done"] = done.ranges
        state.save_progress(conn, table, self.livemode, progress)
