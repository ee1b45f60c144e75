-- The raw landing zone (docs/contract.md § stripe_raw): one table per synced Stripe object, the input
-- table activity_events, and the extractor's bookkeeping. Idempotent: safe before every sync.

create schema if not exists stripe_raw;

-- One table per Stripe object, all of one shape. snapshot_at orders the snapshots of one object:
-- a row is replaced only by a snapshot at least as new (an event: its created time; a list or
-- retrieve: when Stripe served it), so an old event replayed late never overwrites newer state.
do $$
declare
    object_table text;
begin
    foreach object_table in array array[
        'customers', 'subscriptions', 'invoices', 'charges',
        'prices', 'products', 'checkout_sessions', 'events'
    ] loop
        execute format(
            'create table if not exists stripe_raw.%I (
                id text primary key,
                livemode boolean not null,
                created timestamptz not null,
                data jsonb not null,
                is_deleted boolean not null default false,
                snapshot_at timestamptz not null,
                synced_at timestamptz not null default now()
            )',
            object_table
        );
    end loop;
end
$$;

-- lz4 compresses and decompresses the jsonb several times faster than the default pglz, and
-- the backfill is bound by Postgres' CPU. Servers built without lz4 keep pglz.
do $$
declare
    object_table text;
begin
    foreach object_table in array array[
        'customers', 'subscriptions', 'invoices', 'charges',
        'prices', 'products', 'checkout_sessions', 'events'
    ] loop
        execute format(
            'alter table stripe_raw.%I alter column data set compression lz4', object_table
        );
    end loop;
exception when feature_not_supported or invalid_parameter_value then
    null;
end
$$;

-- Events are also looked up by type and by the object they touch.
alter table stripe_raw.events add column if not exists type text;
alter table stripe_raw.events add column if not exists object_id text;
alter table stripe_raw.events add column if not exists api_version text;
create index if not exists events_created_idx on stripe_raw.events (created, id);
create index if not exists customers_livemode_idx on stripe_raw.customers (livemode);
create index if not exists subscriptions_customer_idx on stripe_raw.subscriptions ((data ->> 'customer'));
create index if not exists charges_customer_idx on stripe_raw.charges ((data ->> 'customer'));
-- Subscriptions stored with part of their items (Stripe embeds 10): items.py completes them on
-- every sync, and this keeps finding none cheap.
create index if not exists subscriptions_items_incomplete_idx on stripe_raw.subscriptions (id)
where (data -> 'items' ->> 'has_more') = 'true';

-- Product activity written by the user (SQL, reverse ETL, ...), read for "Last Activity".
create table if not exists stripe_raw.activity_events (
    stripe_customer_id text null,
    customer_email text null,
    occurred_at timestamptz not null
);

-- Per object type and mode: where the sync stands. Each mode (test/live) keeps its own state;
-- account_id guards against mixing two Stripe accounts in one warehouse.
create table if not exists stripe_raw.sync_state (
    object text not null,
    livemode boolean not null,
    account_id text not null,
    status text not null default 'running',
    cursor text,
    cursor_at timestamptz,
    backfill_done boolean not null default false,
    last_success_at timestamptz,
    last_error text,
    rows bigint not null default 0,
    updated_at timestamptz not null default now(),
    primary key (object, livemode)
);

-- Added by the extractor (columns only ever added, so older tables upgrade in place):
-- mode is the first sync's choice (import-existing/new-only); backfill_progress records the
-- windows of `created` already committed, so a killed backfill resumes instead of restarting.
alter table stripe_raw.sync_state add column if not exists mode text;
alter table stripe_raw.sync_state add column if not exists backfill_progress jsonb;
alter table stripe_raw.sync_state add column if not exists started_at timestamptz;
-- New-only mode past the event retention (events.refresh_stored_customers), on the events row:
-- the cursor the refresh restarts from and the last customer id refreshed, so a kill resumes.
alter table stripe_raw.sync_state add column if not exists refresh_progress jsonb;

-- A sync holds the warehouse-wide sync lock (loader.sync_lock), a session advisory lock, on a
-- connection of its own: if that connection drops, Postgres releases the lock and another sync
-- may start. The sync's other connections name the lock holder (stripe_sync.lock_pid and
-- stripe_sync.lock_key, set by loader.fenced_url); their writes of sync state (cursor, backfill
-- progress, status) then fail once that backend no longer holds the lock, so a sync that lost it
-- stops at its next commit instead of interleaving with the next one.
create or replace function stripe_raw.require_sync_lock() returns trigger
language plpgsql as $$
declare
    holder text := current_setting('stripe_sync.lock_pid', true);
    lock_key text := current_setting('stripe_sync.lock_key', true);
begin
    if coalesce(holder, '') <> '' and not exists (
        select 1 from pg_locks
        where locktype = 'advisory'
          and granted
          and pid = holder::integer
          and objsubid = 1
          and (classid::bigint << 32) | objid::bigint = lock_key::bigint
    ) then
        raise exception 'the sync lock is no longer held by backend %', holder
        using errcode = 'SSYNC';
    end if;
    return new;
end
$$;

do $$
begin
    if not exists (
        select 1 from pg_trigger
        where tgrelid = 'stripe_raw.sync_state'::regclass
          and tgname = 'sync_state_requires_sync_lock'
    ) then
        create trigger sync_state_requires_sync_lock
        before insert or update on stripe_raw.sync_state
        for each row execute function stripe_raw.require_sync_lock();
    end if;
end
$$;
