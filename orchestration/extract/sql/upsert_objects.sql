-- Staged snapshots into stripe_raw.{table}. A row is replaced only by a snapshot at least as new,
-- so an old event replayed late (or a list page read before an event) never overwrites newer
-- state. Deletion is sticky: Stripe never reuses an id.
insert into stripe_raw.{table} as target (
    id, livemode, created, data, is_deleted, snapshot_at, synced_at
)
select distinct on (staged.id)
    staged.id,
    staged.livemode,
    to_timestamp(staged.created),
    staged.data,
    staged.is_deleted,
    staged.snapshot_at,
    now()
from stage_objects as staged
order by staged.id asc, staged.snapshot_at desc, staged.is_deleted desc
on conflict (id) do update set
    livemode = excluded.livemode,
    created = excluded.created,
    data = excluded.data,
    is_deleted = target.is_deleted or excluded.is_deleted,
    snapshot_at = excluded.snapshot_at,
    synced_at = excluded.synced_at
where excluded.snapshot_at >= target.snapshot_at
