-- Outbound delivery of the segment change feed: one cursor row per receiver and the changes that
-- receiver refused for good. A receiver is keyed by endpoint_id, the SHA-256 of its normalized
-- URL, and named by endpoint_name (scheme, host and port: a URL's path or query may hold a
-- token). Neither table ever holds the signing secret or the whole URL. Idempotent.

create schema if not exists stripe_raw;

-- last_change_id: the receiver acknowledged (2xx) or dead-lettered every change up to it, so the
-- next run starts after it. failing_change_id / failing_attempts: the change that failed last
-- run(s) without a verdict (receiver unreachable, 5xx) and how often, across runs.
create table if not exists stripe_raw.segment_delivery_state (
    endpoint_id text primary key,
    endpoint_name text not null,
    last_change_id bigint not null default 0,
    delivered_count bigint not null default 0,
    dead_letter_count bigint not null default 0,
    failing_change_id bigint null,
    failing_attempts integer not null default 0,
    last_error text null,
    last_delivered_at timestamptz null,
    updated_at timestamptz not null default now()
);

-- One row per change a receiver refused for good (a 4xx other than 408 and 429, or a 5xx on
-- every attempt): the cursor moved past it. payload is the body that was POSTed (the feed row).
create table if not exists stripe_raw.segment_delivery_dead_letters (
    endpoint_id text not null,
    change_id bigint not null,
    endpoint_name text not null,
    attempts integer not null,
    last_status integer null,
    reason text not null,
    payload jsonb not null,
    dead_lettered_at timestamptz not null default now(),
    primary key (endpoint_id, change_id)
);
