{{
    config(
        indexes=[
            {'columns': ['object'], 'unique': true},
        ]
    )
}}

with

sync_state as (
    select * from {{ ref('stg_stripe__sync_state') }}
),

customers as (
    select * from {{ ref('customer_fields') }}
),

customers_in_sync as (
    select count(*) as customers_in_sync
    from customers
),

-- Status (doc: sync_health_status): failed wins; running while the extractor has touched the row in
-- the last 24 hours (older is a crashed run); otherwise stale when the last success is more than
-- 24 hours before as_of(), the interval at which a scheduled incremental sync is surely overdue.
statuses as (
    select
        *,
        case
            when sync_status in ('failed', 'error') then 'failed'
            when
                sync_status = 'running'
                and updated_at >= {{ as_of() }} - interval '24 hours'
                then 'running'
            when
                last_success_at is null
                or last_success_at < {{ as_of() }} - interval '24 hours'
                then 'stale'
            else 'ok'
        end as status
    from sync_state
),

final as (
    select
        statuses.object,
        statuses.status,
        statuses.last_success_at,
        statuses.cursor_at,
        statuses.rows,
        statuses.last_error,
        customers_in_sync.customers_in_sync
    from statuses
    cross join customers_in_sync
)

select * from final
