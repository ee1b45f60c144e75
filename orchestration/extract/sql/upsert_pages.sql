-- List pages, as Stripe sent them, into stripe_raw.{table}: Postgres splits each page into its
-- objects, so the backfill's hot path spends no Python time per object. Same guard as
-- upsert_objects.sql: a row is replaced only by a snapshot at least as new.
insert into stripe_raw.{table} as target (
    id, livemode, created, data, is_deleted, snapshot_at, synced_at
)
select distinct on (item.value ->> 'id')
    item.value ->> 'id',
    coalesce((item.value ->> 'livemode')::boolean, false),
    to_timestamp((item.value ->> 'created')::bigint),
    item.value,
    false,
    page.snapshot_at,
    now()
from stage_pages as page
cross join lateral jsonb_array_elements(page.body -> 'data') as item (value)
order by item.value ->> 'id' asc, page.snapshot_at desc
on conflict (id) do update set
    livemode = excluded.livemode,
    created = excluded.created,
    data = excluded.data,
    is_deleted = target.is_deleted or excluded.is_deleted,
    snapshot_at = excluded.snapshot_at,
    synced_at = excluded.synced_at
where excluded.snapshot_at >= target.snapshot_at
