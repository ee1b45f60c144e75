"""Runs `stripe-sync` as a user would: a subprocess with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# CLI calls never touch the project's own state dir (.stripe-sync/): without an explicit
# STRIPE_SYNC_HOME they share this throwaway one, whose embedded Postgres conftest stops.
ISOLATED_HOME = Path(tempfile.mkdtemp(prefix="stripe-sync-cli-"))

ENV_VARS = (
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "DATABASE_URL",
    "STRIPE_WEBHOOK_SECRET",
    "DAGSTER_HOME",
    "STRIPE_MAX_RPS",
)


@dataclass
class Completed:
    """What a CLI call printed and returned."""

    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> Completed:
    """Runs `stripe-sync ARGS` with a clean environment plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    base["STRIPE_SYNC_HOME"] = str(ISOLATED_HOME)
    done = subprocess.run(
        [sys.executable, "-c", "from orchestration.cli.main import main; main()", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(done.returncode, done.stdout, done.stderr)
