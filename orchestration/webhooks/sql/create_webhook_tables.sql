-- The webhook receiver's delivery log: one row per delivery that reached the endpoint, whatever
-- its fate. applied: the event was new and is now in stripe_raw; duplicate: it was already there
-- (a Stripe retry or a replay), nothing changed; rejected: refused before anything was written
-- (bad or stale signature, wrong content type, too large, not an event). A rejected row keeps
-- only the reason: never the payload, a header or a secret. Idempotent: safe at every start.

create schema if not exists stripe_raw;

create table if not exists stripe_raw.webhook_deliveries (
    received_at timestamptz not null default now(),
    event_id text null,
    event_type text null,
    outcome text not null check (outcome in ('applied', 'duplicate', 'rejected')),
    reason text null
);

create index if not exists webhook_deliveries_received_at_idx
on stripe_raw.webhook_deliveries (received_at);
