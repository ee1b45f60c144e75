{#- One row per customer in the key's mode: the next moment, from the window's previous as_of on,
    at which a time-based rule could change the customer's rows without any new data (doc:
    incremental_builds). The next build whose as_of reaches it recomputes the customer. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=[
            "{{ record_customer_keyed_state() }}",
            "{{ create_index_once(this, 'next_change_at') }}",
        ],
    )
}}

with

build_window as (
    select * from {{ ref('int_build_window') }}
),

customers as (
    select * from {{ ref('stg_stripe__customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

primary_subscriptions as (
    select * from {{ ref('int_subscriptions_ranked_per_customer') }}
    where
        is_primary_subscription
        and {{ touched_customers('stripe_customer_id') }}
),

subscriptions as (
    select * from {{ ref('int_subscriptions_ranked_per_customer') }}
    where {{ touched_customers('stripe_customer_id') }}
),

activity as (
    select * from {{ ref('int_activity_matched_to_customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

subscription_discounts as (
    select * from {{ ref('stg_stripe__subscription_discounts') }}
    {% if is_customer_incremental() %}
        where subscription_id = any(array(select subscriptions.subscription_id from subscriptions))
    {% endif %}
),

customer_discounts as (
    select * from {{ ref('stg_stripe__customer_discounts') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- Every moment a rule compares with as_of (docs/contract.md, segments and MRR): the trial end
-- (expired_trials), the last activity plus 2 and 15 days (slipping_trials, slipping_customers),
-- and each discount's start and end (MRR; a repeating one ends its months after its start).
boundaries as (
    select
        stripe_customer_id,
        subscription_trial_ends_at as boundary_at
    from primary_subscriptions

    union all

    select
        stripe_customer_id,
        last_activity_at + interval '2 days' as boundary_at
    from activity

    union all

    select
        stripe_customer_id,
        last_activity_at + interval '15 days' as boundary_at
    from activity

    union all

    select
        subscriptions.stripe_customer_id,
        discount_moments.boundary_at
    from subscription_discounts
    inner join subscriptions
        on subscription_discounts.subscription_id = subscriptions.subscription_id
    cross join
        lateral (
            values
            (subscription_discounts.discount_started_at),
            (subscription_discounts.discount_ends_at),
            (
                subscription_discounts.discount_started_at
                + make_interval(months => subscription_discounts.coupon_duration_in_months)
            )
        ) as discount_moments (boundary_at)

    union all

    select
        customer_discounts.stripe_customer_id,
        discount_moments.boundary_at
    from customer_discounts
    cross join lateral (
        values
        (customer_discounts.discount_started_at),
        (customer_discounts.discount_ends_at),
        (
            customer_discounts.discount_started_at
            + make_interval(months => customer_discounts.coupon_duration_in_months)
        )
    ) as discount_moments (boundary_at)
),

-- The earliest boundary not before the oldest as_of any customer-keyed model was last built at
-- (this build's as_of when they all kept up): a build at as_of' >= it may see the rule flip. A
-- model that missed a build (killed, failed) thus still sees the flips since its own last build.
next_changes as (
    select
        boundaries.stripe_customer_id,
        min(boundaries.boundary_at) as next_change_at
    from boundaries
    cross join build_window
    where
        boundaries.boundary_at
        >= least(coalesce(build_window.previous_as_of, {{ as_of() }}), {{ as_of() }})
    group by boundaries.stripe_customer_id
),

final as (
    select
        -- ids
        customers.stripe_customer_id,

        -- timestamps
        next_changes.next_change_at
    from customers
    left join next_changes
        on customers.stripe_customer_id = next_changes.stripe_customer_id
)

select * from final
