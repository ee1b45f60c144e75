"""The Dagster instance's Postgres storage, holding its connection instead of opening one per query.

dagster-postgres opens a new connection for every statement outside the webserver (SQLAlchemy's
NullPool), and a run writes each of its events in several: one build at 10k customers wrote 324
events over 1,043 connections, 4.0 s of a 12 s run spent in connect() alone (cProfile,
bench/README (g)). This storage keeps one connection per storage per process, as dagster-postgres
does in the webserver (`optimize_for_webserver`), with overflow connections for the threads of
the daemon. dagster.yaml names it as its `custom` storage; the tables and their schema are
dagster-postgres's own.
"""

from __future__ import annotations

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Statements run without a time limit, as dagster-postgres runs them outside the webserver (the
# webserver sets its own limit on its own instance).
NO_STATEMENT_TIMEOUT = 0
# A held connection is replaced after an hour, as the webserver's are.
POOL_RECYCLE_SECONDS = 3600
# Connections beyond the held one, for a process's concurrent threads (the daemon's); closed
# when returned. The webserver's default.
MAX_OVERFLOW = 20


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's storage, each of its three stores with one held connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for store in (self._run_storage, self._event_log_storage, self._schedule_storage):
            store.optimize_for_webserver(
                statement_timeout=NO_STATEMENT_TIMEOUT,
                pool_recycle=POOL_RECYCLE_SECONDS,
                max_overflow=MAX_OVERFLOW,
            )

    @classmethod  # the parent's builds the parent class
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
