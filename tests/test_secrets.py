"""No secret anywhere: after a full run (sync, build, webhooks, status, failures), neither the API
key nor the webhook secret appears in any table, Dagster run or event row, output or state file;
after `make audit-secrets` (demo, benches, chaos) none appears in the demo's databases, the state
dir or the captured logs; and the scanner behind both finds a secret wherever one is planted."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import uuid
import zlib
from pathlib import Path

import httpx
import psycopg
import pytest
import stripe
from starlette.testclient import TestClient

from orchestration.core.settings import PROJECT_ROOT, load_settings
from orchestration.core.warehouse import parse_database_url, with_database
from orchestration.extract.client import StripeApi
from orchestration.transform.runner import DEFAULT_TARGET_PATH
from orchestration.webhooks.server import WEBHOOK_PATH, create_app
from tests.cli.helpers import run_cli
from tests.conftest import _create_database, _drop_database
from tests.helpers.secrets_scan import (
    Scan,
    SecretsFoundError,
    find_in_text,
    masked,
    scan_database,
    scan_embedded,
    scan_files,
    scan_server,
    scan_text,
)

# Set by `make audit-secrets`: the folder holding the demo's, the benches' and chaos' output.
AUDIT_LOGS = os.environ.get("STRIPE_SYNC_AUDIT_LOGS")
WEBHOOK_SECRET = "whsec_secretsTestNeverPrintMe0123456789"


def _signed(payload: str, secret: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def test_no_secret_in_tables_runs_logs_or_files(
    emulator, database_url: str, tmp_path: Path
) -> None:
    key = emulator.test_key
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
    secrets = [key, WEBHOOK_SECRET]
    scan = Scan()
    for n, output in enumerate(outputs):
        scan += scan_text(output.stdout + output.stderr, f"output of CLI call {n}", secrets)
    name = parse_database_url(database_url).dbname
    scan += scan_server(database_url, [name, f"{name}_dagster"], secrets)
    scan += scan_files(tmp_path / "state", secrets)
    assert scan.databases == 2 and scan.rows and scan.files, scan.summary()
    assert scan.hits == [], scan.report()


def _planted_key() -> str:
    """A key-shaped fake, built at run time so no key-like literal sits in the repository."""
    return "_".join(["sk", "live", uuid.uuid4().hex + uuid.uuid4().hex[:8].upper()])


def test_scanner_finds_a_planted_key_in_a_table_a_file_and_a_log(server_url: str) -> None:
    key = _planted_key()
    name = _create_database(server_url, "stripe_sync_test")
    url = with_database(server_url, name)
    with psycopg.connect(url) as conn:
        conn.execute("create schema vendor; create table vendor.notes (id int, meta jsonb)")
        conn.execute(
            "insert into vendor.notes values (1, '{}'), (2, %s)", (json.dumps({"k": key}),)
        )
    log = io.StringIO()  # a logger of its own: pytest's capture must not see the key
    logger = logging.getLogger(f"planted.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(log))
    logger.warning("retrying with api key %s", key)

    with tempfile.TemporaryDirectory() as state:  # outside pytest's tmp dirs, which are audited
        (Path(state) / "dagster" / "storage").mkdir(parents=True)
        (Path(state) / "dagster" / "storage" / "run.json").write_text(json.dumps({"key": key}))
        scan = scan_database(url)
        scan += scan_files(Path(state))
    scan += scan_text(log.getvalue(), "the planted log")

    assert [hit.where.split(",")[0] for hit in scan.hits] == [
        f"database {name}",
        f"{state}/dagster/storage/run.json",
        "the planted log",
    ]
    assert "column meta" in scan.hits[0].where
    assert {hit.masked for hit in scan.hits} == {f"sk_live_…{key[-4:]}"}
    assert key not in scan.report() and key[8:] not in scan.report()
    # The fixtures' hook: dropping the database fails loudly, and the database is gone anyway.
    with pytest.raises(SecretsFoundError, match=name):
        _drop_database(server_url, name)
    assert scan_server(server_url, [name]).databases == 0


def test_scanner_reads_dagster_snapshots_compressed_in_bytea(server_url: str) -> None:
    key = _planted_key()
    name = _create_database(server_url, "stripe_sync_test")
    dagster = f"{name}_dagster"
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'create database "{dagster}"')
    with psycopg.connect(with_database(server_url, dagster)) as conn:
        conn.execute("create table snapshots (id int, snapshot_body bytea)")
        body = zlib.compress(json.dumps({"run_config": {"key": key}}).encode())
        conn.execute("insert into snapshots values (1, %s)", (body,))
    with pytest.raises(SecretsFoundError, match=f"{dagster}, table public.snapshots"):
        _drop_database(server_url, name)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("key=" + "sk_" + "test_" + "x" * 24, ["sk_test_…xxxx"]),
        ("rk_" + "live_" + "AbC0" * 6 + " in a log", ["rk_live_…AbC0"]),
        ('{"secret": "' + "whsec_" + "Zz09" * 8 + '"}', ["whsec_…Zz09"]),
        ("masked sk_test_…abcd, rk_live_…9876, whsec_…mnop", []),
        ("Stripe masks keys too: sk_test_" + "*" * 20 + "abcd", []),
        ("use a key starting with sk_test_, rk_test_, sk_live_ or rk_live_", []),
        ("task_test_" + "a" * 12 + " is a name, not a key", []),
        ("[redacted key] and pk_test_" + "p" * 24 + " (publishable, public)", []),
    ],
    ids=[
        "key",
        "restricted-key",
        "webhook-secret",
        "masked",
        "stripe-masked",
        "prose",
        "inside-a-word",
        "redacted-and-publishable",
    ],
)
def test_secret_shapes(text: str, found: list[str]) -> None:
    assert [hit.masked for hit in find_in_text(text, "here")] == found


def test_masked_shows_no_secret() -> None:
    secret = _planted_key()
    text = f"key {secret}, body {secret[8:]}, webhook " + "whsec_" + "Q" * 32
    assert masked(text, [secret]) == (
        f"key sk_live_…{secret[-4:]}, body …{secret[-4:]}, webhook whsec_…QQQQ"
    )


def test_scanner_finds_an_exact_secret_and_its_body_alone() -> None:
    secret = _planted_key()
    assert len(find_in_text(f"a:{secret}:b", "here", [secret])) == 1
    assert [h.masked for h in find_in_text(f"body={secret[8:]}", "here", [secret])] == [
        f"…{secret[-4:]}"
    ]


def _demo_keys() -> list[str]:
    from orchestration.cli.demo import DEMO_SEED
    from orchestration.emulator import Emulator

    demo = Emulator(customers=1, seed=DEMO_SEED)  # its keys depend on the seed alone
    return [demo.test_key, demo.live_key]


def test_no_secret_after_demo_bench_and_chaos() -> None:
    """The last step of `make audit-secrets`, after the demo, the benches and the chaos tests: the
    demo's warehouse and Dagster databases, the state dir, dbt's logs and artifacts and the captured
    output hold no key and no webhook secret. (The benches and chaos tests audit their own
    databases before dropping them.) Outside the target it audits what is there now."""
    settings = load_settings()
    secrets = [settings.api_key, *settings.webhook_secrets, *_demo_keys()]
    scan = Scan()
    if settings.database_url:  # the demo used DATABASE_URL's database, Dagster's next to it
        url = settings.database_url.get_secret_value()
        name = parse_database_url(url).dbname
        scan += scan_server(url, [name, f"{name}_dagster"], secrets)
    else:
        scan += scan_embedded(settings.state_dir, secrets, start=True)
    roots = [settings.state_dir, settings.resolved_dagster_home, DEFAULT_TARGET_PATH]
    roots += [PROJECT_ROOT / "logs", *([Path(AUDIT_LOGS).resolve()] if AUDIT_LOGS else [])]
    for root in roots:
        if not any(root.is_relative_to(other) for other in roots if other != root):
            scan += scan_files(root, secrets)
    print(f"secrets audit after the demo, benches and chaos: {scan.summary()}")
    if AUDIT_LOGS:  # the target ran: an audit of nothing would be no audit
        logs = sorted(p.name for p in Path(AUDIT_LOGS).glob("*.log"))
        assert logs == ["bench.log", "chaos.log", "demo.log"], logs
        assert scan.databases >= 1 and scan.rows > 0, scan.summary()
    assert scan.hits == [], scan.report()
