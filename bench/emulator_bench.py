"""Benchmark of the emulator: start-up time, then pages/s and objects/s (median of runs)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import stripe

SERVE = (
    "from orchestration.emulator.main import serve; "
    "serve(port={port}, customers={customers}, seed=42, rate_limit_test=None, "
    "rate_limit_live=None)"
)


def start_server(customers: int, port: int) -> tuple[subprocess.Popen, str, str, float]:
    """Starts `serve()` in a subprocess (so client and server do not share a GIL)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE.format(port=port, customers=customers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = key = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if "STRIPE_API_BASE=" in line:
            url = line.split("=", 1)[1].strip()
        if "STRIPE_API_KEY=" in line:
            key = line.split("=", 1)[1].strip()
            break
    return proc, url, key, time.perf_counter() - started


def page_all(
    client: httpx.Client, url: str, path: str, window: dict | None = None
) -> tuple[int, int]:
    """Pages through a list with limit=100; returns (pages, objects)."""
    params: dict = {"limit": 100}
    if window:
        params.update({f"created[{k}]": v for k, v in window.items()})
    pages = objects = 0
    while True:
        body = client.get(url + path, params=params).json()
        pages += 1
        objects += len(body["data"])
        if not body["has_more"]:
            return pages, objects
        params["starting_after"] = body["data"][-1]["id"]


def run_sequential(url: str, key: str, path: str) -> tuple[float, int, int]:
    """One client paging a whole list."""
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
        t = time.perf_counter()
        pages, objects = page_all(client, url, path)
        return time.perf_counter() - t, pages, objects


def run_windows(url: str, key: str, path: str, threads: int) -> tuple[float, int, int]:
    """`threads` clients paging disjoint created windows, as the extractor does."""
    now = int(time.time()) + 86_400
    start = now - 6 * 365 * 86_400
    step = (now - start) // threads
    windows = [
        {"gte": start + i * step, "lt": start + (i + 1) * step if i < threads - 1 else now}
        for i in range(threads)
    ]
    t = time.perf_counter()
    with (
        httpx.Client(
            headers={"Authorization": f"Bearer {key}"}, limits=httpx.Limits(max_connections=threads)
        ) as client,
        ThreadPoolExecutor(threads) as pool,
    ):
        results = list(pool.map(lambda w: page_all(client, url, path, w), windows))
    return time.perf_counter() - t, sum(r[0] for r in results), sum(r[1] for r in results)


def run_sdk(url: str, key: str, path: str) -> tuple[float, int, int]:
    """The real SDK's raw_request (plain dicts), one client."""
    client = stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)
    params: dict = {"limit": 100}
    pages = objects = 0
    t = time.perf_counter()
    while True:
        body = client.raw_request("get", path, **params).data
        pages += 1
        objects += len(body["data"])
        if not body["has_more"]:
            return time.perf_counter() - t, pages, objects
        params["starting_after"] = body["data"][-1]["id"]


def main() -> None:
    """Prints start-up time and median pages/s and objects/s per scenario."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=12_199)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    proc, url, key, startup = start_server(args.customers, args.port)
    try:
        print(f"start-up with {args.customers} customers: {startup:.2f} s")
        scenarios = [
            ("customers, 1 client (httpx)", lambda: run_sequential(url, key, "/v1/customers")),
            (
                "subscriptions, 1 client (httpx)",
                lambda: run_sequential(url, key, "/v1/subscriptions?status=all"),
            ),
            (
                f"customers, {args.threads} created windows",
                lambda: run_windows(url, key, "/v1/customers", args.threads),
            ),
            (
                "customers, 1 client (stripe SDK raw_request)",
                lambda: run_sdk(url, key, "/v1/customers"),
            ),
        ]
        for name, scenario in scenarios:
            runs = [scenario() for _ in range(args.runs)]
            seconds = statistics.median(r[0] for r in runs)
            pages, objects = runs[0][1], runs[0][2]
            print(
                f"{name:48s} {pages / seconds:8.0f} pages/s {objects / seconds:10.0f} objects/s"
                f"  ({objects} objects, median of {args.runs})"
            )
        stats = httpx.get(f"{url}/_emulator/stats").json()
        print(f"requests served: {stats['requests']}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
