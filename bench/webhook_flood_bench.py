"""Webhook endpoint under abuse: signed deliveries keep flowing while the endpoint is flooded with
unsigned 1 MB bodies, forged-looking ones and slow clients.

Everything runs on loopback: a fresh database on the test Postgres server and `webhooks serve`'s
app under its own uvicorn configuration (`server_config`) in a child process, whose RSS is sampled
every 50 ms. Signed events are objects in the pinned API version (no re-fetch; the Stripe API
address is an unused loopback port, so nothing leaves the machine).

1. baseline: signed deliveries alone, from a few keep-alive connections at a steady rate.
2. flood, for `--seconds`: the same signed deliveries, plus
   - `--unsigned` connections posting 1 MB bodies without a Stripe-Signature header, in a loop;
   - `--forged` connections posting 1 MB bodies with a well-formed, fresh but wrong signature
     (these are read, within the byte budget, and then refused);
   - `--slow` clients: half send their headers one byte a second, half send a well-formed header
     and then their body one byte a second; each reconnects when dropped.
   Reports the signed deliveries' latency (p50/p99) and statuses, the receiver's peak RSS, how
   long a slow client was held at most, and the rows the flood wrote to webhook_deliveries.

    python bench/webhook_flood_bench.py [--seconds 30] [--unsigned 150] [--forged 8] [--slow 40]
                                        [--rate 200] [--runs 3]

Targets: peak RSS < 150 MB, signed p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: share the harness

from backfill_bench import drop_database
from webhook_bench import _event, _free_port, _percentiles, _post, _wait_healthy

from orchestration.core.warehouse import with_database
from orchestration.embedded.environment import server_url_for_tests

RESULTS = Path(__file__).resolve().parent / "results"
WEBHOOK_PATH = "/stripe/webhook"
SECRET = "whsec_bench_flood_0123456789abcdef"  # noqa: S105 - this bench's endpoint only
API_KEY = "sk_test_benchflood0000"  # never used: signed events need no re-fetch
UNUSED_API = "http://127.0.0.1:9"
MB = 1024 * 1024
TARGET_RSS_MB = 150
TARGET_P99_MS = 1000


def _serve(database_url: str, port: int) -> None:
    import uvicorn

    from orchestration.extract.client import StripeApi
    from orchestration.webhooks.server import create_app, server_config

    app = create_app(database_url, [SECRET], StripeApi(API_KEY, UNUSED_API))
    uvicorn.Server(server_config(app, port=port, log_level="warning")).run()


class RssSampler(threading.Thread):
    """Peak RSS of a process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.last = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.last = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = self.last


# --- traffic ----------------------------------------------------------------------------------


async def _signed(
    port: int, bodies: list[bytes], connections: int, rate: float, stop: asyncio.Event
) -> dict[str, Any]:
    """Posts signed bodies at `rate` per second over keep-alive connections until `stop` (or the
    bodies run out); latency and status of each."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    interval = connections / rate

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        next_at = time.monotonic()
        try:
            while not stop.is_set() and not queue.empty():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                body = queue.get_nowait()
                started = time.perf_counter()
                try:
                    status = await asyncio.wait_for(
                        _post(reader, writer, f"127.0.0.1:{port}", body, SECRET), 30
                    )
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                    status = 0
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:  # the server closed it (a 503 says so): a fresh connection
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return {"sent": len(latencies), "statuses": statuses, "latency_ms": _percentiles(latencies)}


def _head(length: int, signature: str | None) -> bytes:
    lines = [
        f"POST {WEBHOOK_PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if signature is not None:
        lines.append(f"Stripe-Signature: {signature}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _flooder(
    port: int, body: bytes, forged: bool, stop: asyncio.Event, counts: dict[str, int]
) -> None:
    """Posts a 1 MB body again and again, one connection each (the server closes after a
    refusal); counts the answers by status, `reset` when the connection broke first."""
    while not stop.is_set():
        signature = f"t={int(time.time())},v1={'0' * 64}" if forged else None
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_head(len(body), signature) + body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            key = head.split(b" ", 2)[1].decode()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            key = "reset"
        finally:
            if writer is not None:
                writer.close()
        counts[key] = counts.get(key, 0) + 1


async def _slow_client(
    port: int, body_phase: bool, stop: asyncio.Event, held: list[float], counts: dict[str, int]
) -> None:
    """A slowloris client: one byte a second, of its headers or (after a well-formed header) of
    its body; reconnects when the server drops it. Records how long each connection lasted."""
    while not stop.is_set():
        opened = time.monotonic()
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if body_phase:
                signature = f"t={int(time.time())},v1={'0' * 64}"
                writer.write(_head(10_000, signature))
                trickle = b"x"
            else:
                writer.write(
                    f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
                )
                trickle = b"a"
            while not stop.is_set():
                writer.write(trickle)
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    continue
                if not data or reader.at_eof():
                    break
                if data.startswith(b"HTTP/1.1 "):
                    status = data.split(b" ", 2)[1].decode()
                    counts[status] = counts.get(status, 0) + 1
                    if await reader.read() == b"":
                        break
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.close()
        if not stop.is_set():
            held.append(time.monotonic() - opened)
            counts["dropped"] = counts.get("dropped", 0) + 1


async def _flood(port: int, args: argparse.Namespace, run: str) -> dict[str, Any]:
    stop = asyncio.Event()
    body = b"x" * MB
    unsigned: dict[str, int] = {}
    forged: dict[str, int] = {}
    slow: dict[str, int] = {}
    held: list[float] = []
    signed_bodies = [
        json.dumps(_event(n, run)).encode() for n in range(int(args.rate * args.seconds * 2))
    ]
    tasks = [
        asyncio.create_task(_flooder(port, body, False, stop, unsigned))
        for _ in range(args.unsigned)
    ]
    tasks += [
        asyncio.create_task(_flooder(port, body, True, stop, forged)) for _ in range(args.forged)
    ]
    tasks += [
        asyncio.create_task(_slow_client(port, n % 2 == 1, stop, held, slow))
        for n in range(args.slow)
    ]
    await asyncio.sleep(1.0)  # the flood is on before the first measured delivery
    signed_task = asyncio.create_task(
        _signed(port, signed_bodies, args.connections, args.rate, stop)
    )
    await asyncio.sleep(args.seconds)
    stop.set()
    signed = await signed_task
    await asyncio.wait(tasks, timeout=35)
    for task in tasks:
        task.cancel()
    return {
        "signed": signed,
        "unsigned": unsigned,
        "forged": forged,
        "slow": slow,
        "slow_held_max_s": round(max(held), 2) if held else None,
        "slow_held_median_s": round(statistics.median(held), 2) if held else None,
    }


def _delivery_rows(database_url: str, since: datetime) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "select outcome, count(*), sum(delivery_count) from stripe_raw.webhook_deliveries"
            " where received_at >= %s group by 1 order by 1",
            (since,),
        ).fetchall()
    return {outcome: {"rows": rows, "deliveries": int(n)} for outcome, rows, n in found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="flood duration per run")
    parser.add_argument("--unsigned", type=int, default=150, help="unsigned 1 MB flooders")
    parser.add_argument("--forged", type=int, default=8, help="wrongly signed 1 MB flooders")
    parser.add_argument("--slow", type=int, default=40, help="slow clients (headers, bodies)")
    parser.add_argument("--rate", type=float, default=100.0, help="signed deliveries per second")
    parser.add_argument("--connections", type=int, default=16, help="signed keep-alive conns")
    parser.add_argument("--runs", type=int, default=3, help="flood rounds; medians are quoted")
    parser.add_argument("--quick", action="store_true", help="one 10 s round")
    args, _ = parser.parse_known_args()
    if args.quick:
        args.seconds, args.runs = min(args.seconds, 10.0), 1

    server_url = server_url_for_tests(
        os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    )
    dbname = f"stripe_sync_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    database_url = with_database(server_url, dbname)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(database_url, port))
    rounds: list[dict[str, Any]] = []
    started_at = datetime.now(UTC)
    try:
        child.start()
        _wait_healthy(url)
        sampler = RssSampler(child.pid)
        sampler.start()
        stop = asyncio.Event()
        warm = [json.dumps(_event(n, "warm")).encode() for n in range(400)]
        baseline = asyncio.run(_signed(port, warm, args.connections, args.rate, stop))
        baseline_rss = sampler.peak
        print(
            f"baseline: signed p50 {baseline['latency_ms']['p50']} ms, p99"
            f" {baseline['latency_ms']['p99']} ms; RSS {baseline_rss / MB:.0f} MB",
            flush=True,
        )
        for n in range(args.runs):
            sampler.reset()
            print(
                f"flood {n + 1}/{args.runs}: {args.seconds:g} s, {args.unsigned} unsigned +"
                f" {args.forged} forged 1 MB flooders, {args.slow} slow clients, signed at"
                f" {args.rate:g}/s ...",
                flush=True,
            )
            result = asyncio.run(_flood(port, args, uuid.uuid4().hex[:6]))
            result["peak_rss_mb"] = round(sampler.peak / MB, 1)
            result["rss_after_mb"] = round(sampler.last / MB, 1)
            rounds.append(result)
            signed, lat = result["signed"], result["signed"]["latency_ms"]
            print(
                f"  signed: {signed['sent']} sent {signed['statuses']} p50 {lat['p50']} ms, p99"
                f" {lat['p99']} ms; peak RSS {result['peak_rss_mb']} MB; unsigned"
                f" {result['unsigned']}; forged {result['forged']}; slow {result['slow']},"
                f" held ≤ {result['slow_held_max_s']} s",
                flush=True,
            )
        sampler.stop.set()
        overall_peak = round(sampler.peak / MB, 1)
        child.terminate()  # SIGTERM: uvicorn shuts down, the receiver flushes its refusal counts
        child.join(30)
        rows = _delivery_rows(database_url, started_at)
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)
        drop_database(server_url, dbname)

    p99s = [r["signed"]["latency_ms"]["p99"] for r in rounds]
    p50s = [r["signed"]["latency_ms"]["p50"] for r in rounds]
    peaks = [r["peak_rss_mb"] for r in rounds]
    refused = sum(sum(r["unsigned"].values()) + sum(r["forged"].values()) for r in rounds)
    signed_non_200 = sum(
        n for r in rounds for status, n in r["signed"]["statuses"].items() if status != 200
    )
    rejected_rows = rows.get("rejected", {"rows": 0, "deliveries": 0})
    summary = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "baseline": {"latency_ms": baseline["latency_ms"], "rss_mb": round(baseline_rss / MB, 1)},
        "rounds": rounds,
        "median_signed_p50_ms": statistics.median(p50s),
        "median_signed_p99_ms": statistics.median(p99s),
        "median_peak_rss_mb": statistics.median(peaks),
        "max_peak_rss_mb": max([*peaks, overall_peak]),
        "signed_non_200": signed_non_200,
        "flood_requests": refused,
        "webhook_deliveries_rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webhook_flood_bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    signed_sent = sum(r["signed"]["sent"] for r in rounds)
    passed = (
        summary["max_peak_rss_mb"] < TARGET_RSS_MB
        and summary["median_signed_p99_ms"] < TARGET_P99_MS
        and signed_non_200 <= signed_sent / 100  # refusals of signed ones: Stripe retries them
    )
    print()
    print(f"signed p50 / p99 under flood: {summary['median_signed_p50_ms']} /"
          f" {summary['median_signed_p99_ms']} ms (median of {len(rounds)} rounds: p99"
          f" {', '.join(str(p) for p in p99s)}; target < {TARGET_P99_MS} ms);"
          f" not 200: {signed_non_200} of {signed_sent}")  # fmt: skip
    print(f"receiver peak RSS: {summary['median_peak_rss_mb']} MB median, max"
          f" {summary['max_peak_rss_mb']} MB (baseline {summary['baseline']['rss_mb']} MB;"
          f" target < {TARGET_RSS_MB} MB)")  # fmt: skip
    print(f"flood requests: {refused}; rows written to webhook_deliveries for refusals:"
          f" {rejected_rows['rows']} (counting {rejected_rows['deliveries']} deliveries);"
          f" applied rows {rows.get('applied', {}).get('rows', 0)}")  # fmt: skip
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
