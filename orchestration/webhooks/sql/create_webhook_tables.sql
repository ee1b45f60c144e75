-- The webhook receiver's delivery log. applied: the event was new and is now in stripe_raw;
-- duplicate: it was already there (a Stripe retry or a replay), nothing changed; failed: verified
-- but not applicable for a reason no retry fixes (a re-fetch refused with 403 or 400, an object
-- we cannot store); acknowledged so Stripe stops retrying, `reason` says why, and the next
-- incremental sync meets it again in the events API. One row per such delivery. rejected:
-- refused before anything was written (bad or stale signature, wrong content type, too large,
-- not an event); summarized, one row per reason and flush interval with `delivery_count`
-- deliveries, so a flood cannot grow the table. A rejected row keeps only the reason: never the
-- payload, a header or a secret. Rows older than the retention setting are pruned by the daily
-- reconcile. Idempotent: safe at every start, and upgrades a log created by older versions.

create schema if not exists stripe_raw;

create table if not exists stripe_raw.webhook_deliveries (
    received_at timestamptz not null default now(),
    event_id text null,
    event_type text null,
    outcome text not null,
    reason text null,
    delivery_count integer not null default 1
);

alter table stripe_raw.webhook_deliveries
add column if not exists delivery_count integer not null default 1;

-- The allowed outcomes, replaced only when they differ (an older log lacks 'failed'), so a
-- restart takes no table lock.
do $$
begin
    if not exists (
        select 1 from pg_constraint
        where conrelid = 'stripe_raw.webhook_deliveries'::regclass
          and conname = 'webhook_deliveries_outcome_v2_check'
    ) then
        alter table stripe_raw.webhook_deliveries
        drop constraint if exists webhook_deliveries_outcome_check;
        alter table stripe_raw.webhook_deliveries
        add constraint webhook_deliveries_outcome_v2_check
        check (outcome in ('applied', 'duplicate', 'failed', 'rejected'));
    end if;
end
$$;

create index if not exists webhook_deliveries_received_at_idx
on stripe_raw.webhook_deliveries (received_at);
