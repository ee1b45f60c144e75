"""Dagster resources: the Stripe account, the Postgres warehouse and the dbt CLI.

Secrets never travel in run config: the key comes from the environment (`dg.EnvVar`), the
warehouse URL from DATABASE_URL (or the embedded Postgres) at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from orchestration.core.modes import key_mode
from orchestration.core.settings import load_settings
from orchestration.embedded.environment import warehouse_url
from orchestration.transform.runner import dbt_project, dbt_resource, parse


def ensure_manifest() -> None:
    """`dbt parse` when the manifest is missing or older than the dbt project's files (or always
    under `dagster dev`).

    Definitions cannot load without target/manifest.json, and a manifest older than the models
    (a `git pull` that added one) makes a run fail on the node it lacks; parsing needs no database.
    """
    dbt_project.prepare_if_dev()
    manifest = dbt_project.manifest_path
    if not manifest.exists() or _newest_project_file() > manifest.stat().st_mtime:
        parse(dbt_project.target_path)


def _newest_project_file() -> float:
    root = Path(dbt_project.project_dir)
    files = [root / "dbt_project.yml", root / "selectors.yml", *(root / "dbt_project").rglob("*")]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


class StripeResource(dg.ConfigurableResource):
    """The Stripe account: the key from STRIPE_API_KEY, the API base from STRIPE_API_BASE."""

    api_key: str
    api_base: str | None = None
    max_rps: float | None = None

    def resolved_api_base(self) -> str:
        """The configured base, else STRIPE_API_BASE (settings), else api.stripe.com."""
        return (self.api_base or load_settings().stripe_api_base).rstrip("/")

    def resolved_max_rps(self) -> float | None:
        return self.max_rps if self.max_rps is not None else load_settings().stripe_max_rps

    def resolved_api_version(self) -> str:
        """STRIPE_API_VERSION, else the version the locked SDK pins."""
        return load_settings().stripe_api_version

    @property
    def livemode(self) -> bool:
        """The key's mode decides which rows a sync writes and the marts show."""
        return key_mode(self.api_key) == "live"


class WarehouseResource(dg.ConfigurableResource):
    """The Postgres warehouse: DATABASE_URL, or the embedded Postgres the project starts."""

    database_url: str | None = None

    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return warehouse_url(load_settings())

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            yield conn


def build_resources() -> dict[str, object]:
    """The resources of the code location. Only names of environment variables, no values."""
    return {
        "stripe": StripeResource(api_key=dg.EnvVar("STRIPE_API_KEY")),
        "warehouse": WarehouseResource(),
        "dbt": dbt_resource(),
    }
