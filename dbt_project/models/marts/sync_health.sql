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

-- Status (doc: sync_health_status): failed wins; running while the extractor has touched the row
-- within the staleness threshold (older is a crashed run); otherwise stale when the last success is
-- older than the threshold (var stale_after_hours, STRIPE_SYNC_STALE_AFTER_HOURS, 24 by default).
statuses as (
    select
        *,
        case
            when sync_status in ('failed', 'error') then 'failed'
            when
                sync_status = 'running'
                and updated_at >= {{ as_of() }} - {{ stale_after() }}
                then 'running'
            when
                last_success_at is null
                or last_success_at < {{ as_of() }} - {{ stale_after() }}
                then 'stale'
            else 'ok'
        end as status
    from sync_state
),

-- Customers whose MRR can't apply a discount (doc: unreadable_discount) get a line of their own
-- while there are any: the sync ran, but the key can't read coupons (Coupons: Read).
unreadable_coupons as (
    -- `object` and `rows` are the contract's column names.
    select
        'coupon_terms' as object,  -- noqa: RF04
        'failed' as status,
        null::timestamptz as last_success_at,
        null::timestamptz as cursor_at,
        count(*)::bigint as rows,  -- noqa: RF04
        count(*) || ' customers have a discount whose coupon terms the key cannot read, and'
        || ' customer_mrr leaves it out: grant the key Coupons: Read' as last_error
    from customers
    where customers.has_unreadable_discount
    having count(*) > 0
),

objects as (
    select
        statuses.object,
        statuses.status,
        statuses.last_success_at,
        statuses.cursor_at,
        statuses.rows,
        statuses.last_error
    from statuses

    union all

    select
        unreadable_coupons.object,
        unreadable_coupons.status,
        unreadable_coupons.last_success_at,
        unreadable_coupons.cursor_at,
        unreadable_coupons.rows,
        unreadable_coupons.last_error
    from unreadable_coupons
),

final as (
    select
        objects.object,
        objects.status,
        objects.last_success_at,
        objects.cursor_at,
        objects.rows,
        objects.last_error,
        customers_in_sync.customers_in_sync
    from objects
    cross join customers_in_sync
)

select * from final
