{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

customers as (
    select * from {{ ref('stg_stripe__customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- On an incremental build, only the touched customers' rows: by id or by email, each an index
-- lookup (ensure_customer_keyed_support).
activity_events as (
    select * from {{ ref('stg_stripe__activity_events') }}
    {% if is_customer_incremental() %}
        where
            stripe_customer_id = any(array(select customers.stripe_customer_id from customers))
            or customer_email_lower
            = any(array(select lower(customers.customer_email) from customers))
    {% endif %}
),

-- Activity matching (doc: activity_matching): a row belongs to a customer by customer id, or by
-- email ignoring case. Two equi-joins (not one join on `a or b`) keep both as hash joins.
matched as (
    select
        customers.stripe_customer_id,
        activity_events.occurred_at
    from customers
    inner join activity_events
        on customers.stripe_customer_id = activity_events.stripe_customer_id

    union all

    select
        customers.stripe_customer_id,
        activity_events.occurred_at
    from customers
    inner join activity_events
        on lower(customers.customer_email) = activity_events.customer_email_lower
),

latest as (
    select
        stripe_customer_id,
        max(occurred_at) as latest_activity_at
    from matched
    group by stripe_customer_id
),

-- The customer's creation is the floor: a new customer counts as active when created.
final as (
    select
        -- ids
        customers.stripe_customer_id,

        -- timestamps
        latest.latest_activity_at,
        greatest(latest.latest_activity_at, customers.customer_created_at) as last_activity_at
    from customers
    left join latest
        on customers.stripe_customer_id = latest.stripe_customer_id
)

select * from final
