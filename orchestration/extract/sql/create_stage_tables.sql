-- Per-connection staging tables: COPY lands here, then one upsert moves rows into stripe_raw.
-- Emptied at every commit, so a failed batch leaves nothing behind.
create temp table if not exists stage_objects (
    id text not null,
    livemode boolean not null,
    created bigint not null,
    data jsonb not null,
    is_deleted boolean not null,
    snapshot_at timestamptz not null
) on commit delete rows;

create temp table if not exists stage_events (
    id text not null,
    livemode boolean not null,
    created bigint not null,
    data jsonb not null,
    type text not null,
    object_id text,
    api_version text
) on commit delete rows;

create temp table if not exists stage_pages (
    body jsonb not null,
    snapshot_at timestamptz not null
) on commit delete rows;
