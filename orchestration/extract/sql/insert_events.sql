-- Every event read is kept once; replays after a crash change nothing.
insert into stripe_raw.events (
    id, livemode, created, data, is_deleted, snapshot_at, synced_at, type, object_id, api_version
)
select
    staged.id,
    staged.livemode,
    to_timestamp(staged.created),
    staged.data,
    false,
    to_timestamp(staged.created),
    now(),
    staged.type,
    staged.object_id,
    staged.api_version
from stage_events as staged
on conflict (id) do nothing
