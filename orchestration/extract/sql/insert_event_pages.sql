-- Pages of past events (the backfill's history import), as Stripe sent them, into
-- stripe_raw.events: Postgres splits each page into its events. Stored for history only (the
-- person feed, segment changes, MRR movements): never applied to the object tables, whose
-- backfilled rows are newer. Each event is kept once, as insert_events.sql does: a resumed import
-- or a replay of the same event changes nothing.
insert into stripe_raw.events (
    id, livemode, created, data, is_deleted, snapshot_at, synced_at, type, object_id, api_version
)
select distinct on (item.value ->> 'id')
    item.value ->> 'id',
    coalesce((item.value ->> 'livemode')::boolean, false),
    to_timestamp((item.value ->> 'created')::bigint),
    item.value,
    false,
    to_timestamp((item.value ->> 'created')::bigint),
    now(),
    coalesce(item.value ->> 'type', ''),
    item.value -> 'data' -> 'object' ->> 'id',
    item.value ->> 'api_version'
from stage_pages as page
cross join lateral jsonb_array_elements(page.body -> 'data') as item (value)
order by item.value ->> 'id' asc
on conflict (id) do nothing
