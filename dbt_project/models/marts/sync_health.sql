{{
    config(
        indexes=[
            {'columns': ['object'], 'unique': true},
        ]
    )
}}

{#- Taken before the branch below, so that dbt always orders this model after customer_fields. -#}
{%- set customer_fields = ref('customer_fields') %}

with

sync_state as (
    select * from {{ ref('stg_stripe__sync_state') }}
),

-- The customers in sync and those whose discount can't be read: counted when the build
-- recomputes every customer, else the totals customer_fields' merge keeps (macro
-- customer_counts), so an incremental build does not read a table of every customer.
{% if customer_window().full %}
    counts as (
        select
            count(*) as customers_in_sync,
            count(*) filter (
                where has_unreadable_discount
            ) as customers_with_unreadable_discount
        from {{ customer_fields }}
    ),
{% else %}
    counts as (
        select
            customers as customers_in_sync,
            customers_with_unreadable_discount
        from {{ customer_counts_relation() }}
        where model = 'customer_fields'
    ),
{% endif %}

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
        counts.customers_with_unreadable_discount as rows,  -- noqa: RF04
        counts.customers_with_unreadable_discount
        || ' customers have a discount whose coupon terms the key cannot read, and'
        || ' customer_mrr leaves it out: grant the key Coupons: Read' as last_error
    from counts
    where counts.customers_with_unreadable_discount > 0
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
        counts.customers_in_sync
    from objects
    cross join counts
)

select * from final
