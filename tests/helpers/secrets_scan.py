"""The secrets audit: finds Stripe keys and webhook secrets in databases, files and captured text.

Shared by the test fixtures (before a test database is dropped), the benches (before a bench
database is dropped, and over their output) and `make audit-secrets`. A hit names where it was and
shows the secret masked (`sk_test_…abcd`), never whole.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from orchestration.core.settings import mask_secret
from orchestration.core.warehouse import parse_database_url, with_database

# What a secret looks like: secret and restricted keys (the shapes Settings accepts) and webhook
# signing secrets. Publishable keys (pk_) are public by design. At least eight characters after
# the prefix, so prose about prefixes ("sk_test_…", "whsec_ secrets") and Stripe's own masked keys
# ("sk_test_****abcd") are not secrets.
SECRET_SHAPE = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:test|live)_[A-Za-z0-9_]{8,}|whsec_[A-Za-z0-9_+/=]{8,})"
)
# What a row must contain before SECRET_SHAPE runs on it (in Postgres, whose regex engine reads
# the same pattern): LIKE is much cheaper than a regex over every row of a large table.
_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_")
_SYSTEM_SCHEMAS = ("information_schema", "pg_toast")
MAX_HIT_ROWS = 20  # reported per table: enough to see the pattern, bounded if it is full of them
# The audits where data dies (test and bench databases just before they are dropped, test output)
# cost about 1 % of the test suite's time, so they are on unless STRIPE_SYNC_SECRETS_AUDIT=0 (for
# timing something without them); `make audit-secrets` sets it to 1.
AUDIT_ENABLED = os.environ.get("STRIPE_SYNC_SECRETS_AUDIT", "1") != "0"


@dataclass(frozen=True)
class Hit:
    """One secret found: where, and the secret masked."""

    where: str
    masked: str

    def __str__(self) -> str:
        return f"{self.where}: {self.masked}"


@dataclass
class Scan:
    """The hits of one or more scans, and how much they looked at."""

    hits: list[Hit] = field(default_factory=list)
    databases: int = 0
    tables: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0

    def __iadd__(self, other: Scan) -> Scan:
        self.hits += other.hits
        self.databases += other.databases
        self.tables += other.tables
        self.rows += other.rows
        self.files += other.files
        self.bytes += other.bytes
        return self

    def scanned(self) -> str:
        """What was looked at, in words."""
        return (
            f"{self.databases} database(s), {self.tables} table(s), {self.rows:,} row(s),"
            f" {self.files} file(s), {self.bytes:,} byte(s) of files and text"
        )

    def summary(self) -> str:
        """One line: hits and what was scanned."""
        return f"{len(self.hits)} secret(s) found; scanned {self.scanned()}"

    def report(self) -> str:
        """The summary and every hit, one a line (masked)."""
        return "\n".join([self.summary(), *(f"  {hit}" for hit in self.hits)])

    def raise_on_hits(self, context: str) -> None:
        """Raises SecretsFoundError naming every hit, if there is any."""
        if self.hits:
            raise SecretsFoundError(f"secrets found in {context}: {self.report()}")


class SecretsFoundError(AssertionError):
    """A secret was where no secret may be. An AssertionError, so pytest shows it as a failure."""


def needles(secrets: Iterable[str | None]) -> list[str]:
    """Exact strings to look for: each secret, and its body without the `sk_test_` prefix (a key
    stored without its prefix is still the key)."""
    out: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        out.append(secret)
        match = re.match(r"(?:sk|rk|whsec)_(?:(?:test|live)_)?", secret)
        body = secret[match.end() :] if match else ""
        if len(body) >= 16:
            out.append(body)
    return list(dict.fromkeys(out))


def find_in_text(text: str, where: str, secrets: Iterable[str | None] = ()) -> list[Hit]:
    """Every secret-shaped string and every exact secret in `text`, masked."""
    found = {m.group(0) for m in SECRET_SHAPE.finditer(text)}
    found |= {n for n in needles(secrets) if n in text}
    # A key found whole also contains its body: report it once.
    found = {f for f in found if not any(f != g and f in g for g in found)}
    return [Hit(where, mask_secret(secret)) for secret in sorted(found)]


def masked(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every secret it holds masked, so a report can show the rest of it."""
    for secret in sorted(needles(secrets), key=len, reverse=True):
        text = text.replace(secret, mask_secret(secret))
    return SECRET_SHAPE.sub(lambda match: mask_secret(match.group(0)), text)


def scan_text(text: str, where: str, secrets: Iterable[str | None] = ()) -> Scan:
    """Captured output or a log, already in memory."""
    return Scan(find_in_text(text, where, secrets), bytes=len(text.encode()))


def _files_under(root: Path) -> Iterator[Path]:
    """Every regular file under `root`; in a Postgres data dir only its top-level files (config,
    the server log) and log folders: its table files are binary pages, scanned through SQL."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if "PG_VERSION" in files:
            dirs[:] = [d for d in dirs if d in ("log", "pg_log")]
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if path.is_file() and not path.is_symlink():
                yield path


def scan_files(root: Path, secrets: Iterable[str | None] = ()) -> Scan:
    """Every file under `root` (a state dir, logs, results), or `root` itself if it is a file."""
    scan = Scan()
    secrets = list(secrets)
    for path in _files_under(root):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # removed while we walked: it holds nothing any more
            continue
        except OSError:  # unreadable: say so rather than pass it silently
            scan.hits.append(Hit(str(path), "(unreadable, not scanned)"))
            continue
        scan.files += 1
        scan.bytes += len(data)
        scan.hits += find_in_text(data.decode("utf-8", "replace"), str(path), secrets)
    return scan


def _like_patterns(strings: Iterable[str]) -> list[str]:
    def escaped(text: str) -> str:
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    return [f"%{escaped(s)}%" for s in strings]


def _tables(conn: psycopg.Connection) -> list[tuple[str, str, list[str]]]:
    """(schema, table, its bytea columns) for every table and materialized view outside the
    system schemas."""
    rows = conn.execute(
        """
        select n.nspname, c.relname,
               coalesce(array_agg(a.attname::text order by a.attnum)
                        filter (where a.atttypid = 'bytea'::regtype), '{}')
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        left join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'm')
          and n.nspname <> all(%s) and n.nspname not like 'pg\\_%%'
        group by n.nspname, c.relname
        order by n.nspname, c.relname
        """,
        (list(_SYSTEM_SCHEMAS),),
    ).fetchall()
    return [(schema, table, list(binary)) for schema, table, binary in rows]


def _decoded(value: bytes) -> str:
    # Dagster keeps its snapshots zlib-compressed in bytea columns: look inside.
    with contextlib.suppress(zlib.error):
        value = zlib.decompress(value)
    return value.decode("utf-8", "replace")


def scan_database(url: str, secrets: Iterable[str | None] = (), label: str | None = None) -> Scan:
    """Every row of every table of every non-system schema, cast whole to text (so JSON columns
    and metadata are covered); bytea columns are decompressed and read too. One query for all
    tables, so an empty test database costs a few milliseconds."""
    secrets = list(secrets)
    label = label or parse_database_url(url).dbname
    scan = Scan(databases=1)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = _tables(conn)
        scan.tables = len(tables)
        if not tables:
            return scan
        # One statement per database: each table's rows counted, the rows holding a secret named.
        # The CASE runs the regex only on rows the cheap LIKE let through.
        parts = [
            sql.SQL(
                "select {name}, count(*), (array_agg(t.ctid::text) filter (where"
                " case when t::text like any(%(candidates)s)"
                " then t::text ~ %(shape)s or t::text like any(%(exact)s) end))[:{max}]"
                " from {table} as t"
            ).format(
                name=sql.Literal(f"{schema}.{table}"),
                max=sql.Literal(MAX_HIT_ROWS),
                table=sql.Identifier(schema, table),
            )
            for schema, table, _ in tables
        ]
        query = sql.SQL(" union all ").join(parts)
        exact = needles(secrets)
        params = {
            "candidates": _like_patterns([*_PREFIXES, *exact]),
            "shape": SECRET_SHAPE.pattern,
            "exact": _like_patterns(exact),
        }
        counted = conn.execute(query, params).fetchall()
        for (schema, table, binary), (name, rows, ctids) in zip(tables, counted, strict=True):
            scan.rows += rows
            for ctid in ctids or []:
                row = conn.execute(
                    sql.SQL("select to_jsonb(t) from {} as t where t.ctid = %s::tid").format(
                        sql.Identifier(schema, table)
                    ),
                    (ctid,),
                ).fetchone()
                for column, value in (row[0] if row else {}).items():
                    where = f"database {label}, table {name}, row {ctid}, column {column}"
                    scan.hits += find_in_text(str(value), where, secrets)
            for column in binary:
                values = conn.execute(
                    sql.SQL("select ctid::text, {} from {} where {} is not null").format(
                        sql.Identifier(column),
                        sql.Identifier(schema, table),
                        sql.Identifier(column),
                    )
                )
                for ctid, value in values:
                    where = f"database {label}, table {name}, row {ctid}, column {column} (bytea)"
                    scan.hits += find_in_text(_decoded(bytes(value)), where, secrets)
    return scan


def scan_server(
    server_url: str, databases: Iterable[str], secrets: Iterable[str | None] = ()
) -> Scan:
    """The named databases of one server that exist (a test's `<name>_dagster` often does not)."""
    wanted = list(databases)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as admin:
        existing = {
            row[0]
            for row in admin.execute(
                "select datname from pg_database where datname = any(%s)", (wanted,)
            )
        }
    scan = Scan()
    secrets = list(secrets)
    for name in wanted:
        if name in existing:
            scan += scan_database(with_database(server_url, name), secrets, label=name)
    return scan


def scan_embedded(
    state_dir: Path, secrets: Iterable[str | None] = (), *, start: bool = False
) -> Scan:
    """Every database of the embedded Postgres of `state_dir`. A stopped server is scanned only
    with `start` (then stopped again); a state dir without one gives an empty scan."""
    from orchestration.embedded.postgres import embedded_server_url, stop_embedded_server

    pgdata = state_dir / "postgres"
    running = (pgdata / "postmaster.pid").exists()
    if not (pgdata / "PG_VERSION").exists() or not (running or start):
        return Scan()
    try:
        url = embedded_server_url(state_dir)
        with psycopg.connect(url, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "select datname from pg_database where not datistemplate order by datname"
                )
            ]
        scan = Scan()
        secrets = list(secrets)
        for name in names:
            scan += scan_database(with_database(url, name), secrets, label=f"{name} (embedded)")
        return scan
    finally:
        if not running:
            stop_embedded_server(state_dir)
