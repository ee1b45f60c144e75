{#- One row: this build's window for the customer-keyed models (doc: incremental_builds). Built
    first in every build; each customer-keyed model reads it when compiled. -#}
{{
    config(
        materialized='table',
        tags=['customer_keyed_window'],
    )
}}

{#- The customer-keyed models this build runs. One left out (the resident builder's warm builds
    leave out the MRR history) keeps its own older stamp, which would otherwise hold every other
    model's window back to it, build after build; the next build that runs it catches it up
    from that stamp. -#}
{%- set models = customer_keyed_models(selected_only=true) -%}
{%- set missing = [] -%}
{%- if execute -%}
    {%- for node in models -%}
        {%- if adapter.get_relation(
            database=node.database, schema=node.schema, identifier=node.alias
        ) is none -%}
            {%- do missing.append(node.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}

{#- The window's start: the oldest stamp of these models, read as a literal. new_events and
    older_events compare synced_at with it: compared with a value the planner cannot see (a
    CTE's), Postgres cannot estimate how many rows pass, and a literal lets it use the index on
    `synced_at`. -#}
{%- set since = customer_keyed_since(models) %}

with

state as (
    select * from {{ customer_keyed_state_relation() }}
    where model in (
        {%- for node in models %}
            '{{ node.alias }}'{{ ',' if not loop.last }}
        {%- endfor %}
    )
),

-- Where the previous builds stand: the oldest stamp and as_of of any customer-keyed model, so
-- a model that missed a build (failed, killed, not selected) is caught up by the next.
previous as (
    select
        count(*) as models_recorded,
        {{ since }} as since,
        min(as_of) as previous_as_of,
        max(as_of) as latest_as_of,
        bool_and(livemode = ({{ in_key_mode('true') }})) as is_same_mode,
        bool_and(logic_hash = '{{ customer_keyed_logic_hash() }}') as is_same_logic
    from state
),

-- The stamp this build covers up to. Rows are stamped with their writer's transaction start
-- (synced_at = now()), and a transaction still running now commits rows stamped before now
-- that this build cannot see: the stamp is the oldest running transaction's start, so the next
-- build reads them.
stamp as (
    select
        least(
            now(),
            (
                select min(activity.xact_start)
                from pg_stat_activity as activity
                where
                    activity.datname = current_database()
                    and activity.pid != pg_backend_pid()
                    and activity.backend_type = 'client backend'
                    and activity.xact_start is not null
            )
        ) as stamp
),

-- Events of the key's mode stored since the window's start, fetched by the index on synced_at.
-- Materialized: a min(created) over the table itself let Postgres walk the index on created from
-- the oldest event, filtering on synced_at, whenever it guessed more new events than there were
-- (new events are the newest: it read every event, 0.9 s of each build at 300k customers).
new_events as materialized (
    select events.created
    from {{ source('stripe_raw', 'events') }} as events
    where
        {{ in_key_mode('events.livemode') }}
        and not events.is_deleted
        and events.synced_at >= {{ since }}
),

-- New events older than every event stored before them (a backfill of events): the MRR history
-- then recomputes every customer (macros/mrr_window.sql). Asked here, once per build, so every
-- MRR model of a build gets the same answer even when a backfill commits while it runs (the next
-- build's window covers it). The raw table (staging's filter), not the staging view, whose min()
-- would read every event; the oldest event stored before is the first one of the index on created.
older_events as (
    select
        coalesce(
            (select min(new_events.created) from new_events) < coalesce(
                (
                    select min(events.created)
                    from {{ source('stripe_raw', 'events') }} as events
                    where
                        {{ in_key_mode('events.livemode') }}
                        and not events.is_deleted
                        and events.synced_at < {{ since }}
                ),
                'infinity'
            ),
            false
        ) as is_older_events_stored
    from previous
),

-- Everything is recomputed on --full-refresh, on the first build, after a switch of key mode, a
-- change of any model, an as_of earlier than the last build's, or a table missing.
final as (
    select
        -- ids
        {{ customer_keyed_invocation() }} as invocation_id,

        -- attributes
        ({{ in_key_mode('true') }}) as livemode,
        '{{ customer_keyed_logic_hash() }}'::text as logic_hash,
        coalesce(
            {{ customer_keyed_full_refresh(missing) }}
            or previous.models_recorded < {{ models | length }}
            or not previous.is_same_mode
            or not previous.is_same_logic
            or previous.latest_as_of > {{ as_of() }},
            true
        ) as is_full_rebuild,
        older_events.is_older_events_stored,
        -- For many_touched (macros/customer_keyed.sql): read once, here, so that every node of
        -- the build compares its touched customers with the same number.
        {%- set customer_fields = customer_keyed_relation('customer_fields') %}
        greatest(coalesce((
            select fields_class.reltuples from pg_class as fields_class
            where fields_class.oid = to_regclass('{{ customer_fields }}')
        ), 0), 0)::bigint as customers_estimate,

        -- timestamps
        {{ as_of() }} as as_of,
        previous.previous_as_of,
        previous.since,
        stamp.stamp
    from previous
    cross join stamp
    cross join older_events
)

select * from final
