"""Postgres restarts while `stripe-sync sync` runs: the sync fails cleanly (one line on stderr,
non-zero exit) or rides it out, and the next sync converges to the emulator's data."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg

from orchestration.embedded.postgres import embedded_server_url, start_embedded_server
from tests.chaos.conftest import RESTART_CUSTOMERS
from tests.cli.helpers import ENV_VARS
from tests.extract.conftest import assert_matches_emulator, duplicate_count
from tests.helpers.secrets_scan import scan_database, scan_text
from tests.helpers.sync_process import raw_row_count


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return subprocess.Popen(
        [sys.executable, "-c", "from orchestration.cli.main import main; main()", *args],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _statuses(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("select status from stripe_raw.sync_state")}


def test_postgres_restart_mid_sync_fails_cleanly_then_converges(emulator_factory, tmp_path):
    emu = emulator_factory(customers=RESTART_CUSTOMERS, seed=93, latency_ms=20)
    state = tmp_path / "state"
    url = embedded_server_url(state)
    env = {
        "DATABASE_URL": url,
        "STRIPE_API_KEY": emu.test_key,
        "STRIPE_API_BASE": emu.url,
        "STRIPE_MAX_RPS": "60",
        "STRIPE_SYNC_HOME": str(tmp_path / "home"),
    }
    server = start_embedded_server(state)
    try:
        proc = _cli(["sync"], env)
        deadline = time.monotonic() + 60
        while raw_row_count(url, "customers") < 300 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert proc.poll() is None, "the sync ended before Postgres restarted; grow the account"
        server.stop()
        time.sleep(1.0)
        server = start_embedded_server(state)
        stdout, stderr = proc.communicate(timeout=300)
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        assert "Traceback" not in stderr, stderr
        if proc.returncode != 0:
            assert lines and lines[-1].startswith("error: "), stderr
            assert len(lines) == 1, stderr
            # The sync waits for the restarted server to take the failure record.
            assert _statuses(url) == {"failed"}

        rerun = _cli(["sync"], env)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        assert _statuses(url) == {"ok"}
        assert_matches_emulator(url, emu)
        assert duplicate_count(url) == 0

        # This warehouse dies with tmp_path, past the fixtures' audit: audit it and the output here.
        audit = scan_database(url, [emu.test_key])
        audit += scan_text(stdout + stderr + out + err, "the syncs' output", [emu.test_key])
        assert audit.hits == [], audit.report()
    finally:
        server.stop()
