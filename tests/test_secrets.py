"""No secret anywhere: after a full run (sync, build, webhooks, status, failures), neither the API
key nor the webhook secret appears in any table, Dagster run or event row, output or state file."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import stripe
from psycopg import sql
from starlette.testclient import TestClient

from orchestration.extract.client import StripeApi
from orchestration.warehouse import parse_database_url, with_database
from orchestration.webhooks.server import WEBHOOK_PATH, create_app
from tests.cli.helpers import run_cli

WEBHOOK_SECRET = "whsec_secretsTestNeverPrintMe0123456789"


def _signed(payload: str, secret: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def _table_text_hits(url: str, needles: list[str]) -> list[str]:
    """Every (schema.table) whose rows, as text, contain a needle."""
    hits = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_type = 'BASE TABLE'"
            " and table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("select count(*) from {}.{} as t where t::text like any(%s)").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            count = conn.execute(query, ([f"%{n}%" for n in needles],)).fetchone()[0]
            if count:
                hits.append(f"{schema}.{table}")
    return hits


def _file_hits(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or "postgres" in path.relative_to(root).parts[:1]:
            continue
        data = path.read_bytes()
        if any(n.encode() in data for n in needles):
            hits.append(str(path))
    return hits


def test_no_secret_in_tables_runs_logs_or_files(
    emulator, database_url: str, tmp_path: Path
) -> None:
    key = emulator.test_key
    needles = [key, key[8:], WEBHOOK_SECRET, WEBHOOK_SECRET[6:]]
    env = {
        "STRIPE_API_KEY": key,
        "STRIPE_API_BASE": emulator.url,
        "DATABASE_URL": database_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SYNC_HOME": str(tmp_path / "state"),
    }
    outputs = [
        run_cli("check", env=env),
        run_cli("run", "--as-of", "2026-11-20T12:00:00Z", env=env, timeout=600),
    ]
    assert outputs[1].code == 0, outputs[1].stderr[-2000:]

    emulator.tick(20)
    client = StripeApi(key, api_base=emulator.url)
    app = create_app(database_url, [WEBHOOK_SECRET], client)
    latest = httpx.get(f"{emulator.url}/v1/events?limit=1", auth=(key, "")).json()["data"][0]
    payload = json.dumps(latest)
    with TestClient(app) as web:
        assert web.post(WEBHOOK_PATH, content=payload, headers=_signed(payload, WEBHOOK_SECRET))
        bad = web.post(WEBHOOK_PATH, content=payload, headers=_signed(payload, "whsec_wrong1"))
        assert bad.status_code == 400
        unsigned = web.post(WEBHOOK_PATH, content=payload, headers={"Content-Type": "text/json"})
        assert unsigned.status_code in (400, 415)

    outputs += [
        run_cli("sync", env=env, timeout=600),
        run_cli("status", env=env),
        # A key of another account is refused: its error must not echo either key.
        run_cli("sync", env={**env, "STRIPE_API_KEY": emulator.other_account_key()}),
        run_cli("check", env={**env, "STRIPE_API_KEY": "sk_test_" + "x" * 24}),
    ]
    for output in outputs:
        for needle in needles:
            assert needle not in output.stdout + output.stderr

    dagster_db = with_database(database_url, f"{parse_database_url(database_url).dbname}_dagster")
    assert _table_text_hits(database_url, needles) == []
    assert _table_text_hits(dagster_db, needles) == []
    assert _file_hits(tmp_path / "state", needles) == []
