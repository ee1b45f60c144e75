"""Views, seeds and comments are written only when they change (macros/unchanged_relations.sql
and macros/persist_docs.sql): a build after a sync re-creates no unchanged view, reloads no
unchanged seed and rewrites no unchanged comment, and whatever changed, or went missing, is
written again."""

from __future__ import annotations

from pathlib import Path

import psycopg
from conftest import create_raw_tables
from dbt_raw_dataset import AS_OF, insert_raw_dataset

from orchestration.transform.runner import BuildResult, build

# Every relation's comment and every column's, in the schemas dbt writes.
COMMENTS = """
select
    n.nspname, c.relname, coalesce(a.attname, ''),
    case
        when a.attname is null then obj_description(c.oid, 'pg_class')
        else col_description(c.oid, a.attnum)
    end
from pg_class as c
join pg_namespace as n on c.relnamespace = n.oid
left join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where
    n.nspname in ('stripe', 'stripe_segments', 'stripe_staging')
    and c.relkind in ('r', 'v')
    and c.relname not in ('customer_keyed_state', 'relation_fingerprints')
order by 1, 2, 3
"""

VIEW_OIDS = """
select c.relname, c.oid::bigint from pg_class as c
join pg_namespace as n on c.relnamespace = n.oid
where n.nspname = 'stripe_staging' and c.relkind = 'v' and c.relname like 'stg\\_%'
"""


def _oids(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {str(name): int(oid) for name, oid in conn.execute(VIEW_OIDS).fetchall()}


def _comments(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(COMMENTS).fetchall()


def _messages(result: BuildResult) -> dict[str, str | None]:
    return {node.name: node.message for node in result.nodes}


def _build(database_url: str, target: Path, *, full_refresh: bool = False) -> BuildResult:
    return build(
        database_url,
        as_of=AS_OF,
        livemode=False,
        target_path=target,
        selector="incremental",
        full_refresh=full_refresh,
    )


SEED = "currency_exponents"


def _seed_rows(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"select * from stripe_staging.{SEED} order by 1").fetchall()


def test_unchanged_views_seeds_and_comments_stay_and_changed_ones_are_written(
    database_url: str, tmp_path: Path
) -> None:
    create_raw_tables(database_url)
    insert_raw_dataset(database_url)
    _build(database_url, tmp_path)
    views, comments, seed = _oids(database_url), _comments(database_url), _seed_rows(database_url)
    assert len(views) >= 10 and len(seed) > 10
    assert sum(1 for row in comments if row[3]) > 500

    # A view whose recorded fingerprint differs (its SQL or docs changed), a view gone, one
    # replaced, and comments that differ from the docs (an upgrade's new wording, a hand edit).
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update stripe_staging.relation_fingerprints set fingerprint = 'older'"
            ' where relation = \'"stripe_staging"."stg_stripe__prices"\''
        )
        conn.execute("drop view stripe_staging.stg_stripe__products")
        # Re-created behind its fingerprint (another version's dbt): a new oid, other SQL.
        conn.execute("drop view stripe_staging.stg_stripe__events")
        conn.execute("create view stripe_staging.stg_stripe__events as select 1 as older")
        conn.execute("comment on column stripe.customer_fields.customer_email is 'older'")
        conn.execute("comment on table stripe_segments.current_trials is 'older'")
        conn.execute(
            "comment on column stripe_segments.current_trials.subscription_trial_ends_at is null"
        )

    messages = _messages(_build(database_url, tmp_path))
    after = _oids(database_url)
    assert messages[SEED] == "UNCHANGED"
    rebuilt = {"stg_stripe__prices", "stg_stripe__products", "stg_stripe__events"}
    unchanged = set(views) - rebuilt
    assert {name: messages[name] for name in unchanged} == dict.fromkeys(unchanged, "UNCHANGED")
    assert {name: after[name] for name in unchanged} == {name: views[name] for name in unchanged}
    for name in rebuilt:
        assert messages[name] == "CREATE VIEW"
        assert after[name] != views[name]
    assert _comments(database_url) == comments

    # The seed, its fingerprint stale, is reloaded.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update stripe_staging.relation_fingerprints set fingerprint = 'older'"
            f' where relation = \'"stripe_staging"."{SEED}"\''
        )
    assert _messages(_build(database_url, tmp_path))[SEED] == f"INSERT {len(seed)}"
    assert _seed_rows(database_url) == seed

    # --full-refresh re-creates every view and reloads the seed.
    messages = _messages(_build(database_url, tmp_path, full_refresh=True))
    refreshed = _oids(database_url)
    assert all(messages[name] == "CREATE VIEW" for name in views)
    assert all(refreshed[name] != after[name] for name in views)
    assert messages[SEED] == f"CREATE {len(seed)}"
    assert _comments(database_url) == comments and _seed_rows(database_url) == seed
