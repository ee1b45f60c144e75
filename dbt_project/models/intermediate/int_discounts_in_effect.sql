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

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- Filtered by subscription id, which staging's distinct on keeps, so the filter reaches the raw
-- table's primary key on an incremental build.
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

-- A coupon applied to the customer discounts each of its subscriptions that has no discount of
-- its own (Stripe applies a subscription's own discounts instead of the customer's).
discounts as (
    select
        discount_id,
        subscription_id,
        stripe_customer_id,
        coupon_id,
        has_coupon_terms,
        coupon_duration,
        coupon_duration_in_months,
        coupon_percent_off,
        coupon_currency,
        coupon_amount_off_in_cents,
        discount_started_at,
        discount_ends_at
    from subscription_discounts

    union all

    select
        customer_discounts.discount_id,
        subscriptions.subscription_id,
        customer_discounts.stripe_customer_id,
        customer_discounts.coupon_id,
        customer_discounts.has_coupon_terms,
        customer_discounts.coupon_duration,
        customer_discounts.coupon_duration_in_months,
        customer_discounts.coupon_percent_off,
        customer_discounts.coupon_currency,
        customer_discounts.coupon_amount_off_in_cents,
        customer_discounts.discount_started_at,
        customer_discounts.discount_ends_at
    from customer_discounts
    inner join subscriptions
        on customer_discounts.stripe_customer_id = subscriptions.stripe_customer_id
    where not exists (
        select 1 from subscription_discounts
        where subscription_discounts.subscription_id = subscriptions.subscription_id
    )
),

-- A `repeating` discount ends `duration_in_months` after it starts; Stripe sets `end`, and the
-- start + months fallback covers snapshots that lack it.
with_end as (
    select
        *,
        coalesce(
            discount_ends_at,
            case
                when coupon_duration = 'repeating'
                    then discount_started_at + make_interval(months => coupon_duration_in_months)
            end
        ) as discount_effective_ends_at
    from discounts
),

-- In effect at as_of() and recurring (doc: mrr): `forever`, or `repeating` before its end (the end
-- instant itself is no longer covered). `once` applies to a single invoice, so it never lowers MRR.
-- A discount whose coupon terms could not be read (doc: unreadable_discount) is kept while its
-- start/end allow it to be in effect: MRR can't apply it, and the customer is flagged instead.
in_effect as (
    select * from with_end
    where
        (discount_started_at is null or discount_started_at <= {{ as_of() }})
        and (
            coupon_duration = 'forever'
            or (
                coupon_duration = 'repeating'
                and (
                    discount_effective_ends_at is null
                    or discount_effective_ends_at > {{ as_of() }}
                )
            )
            or (
                not has_coupon_terms
                and (discount_ends_at is null or discount_ends_at > {{ as_of() }})
            )
        )
),

final as (
    select
        -- ids
        discount_id,
        subscription_id,
        stripe_customer_id,
        coupon_id,

        -- attributes
        has_coupon_terms,
        coupon_duration,
        coupon_percent_off,
        coupon_currency,

        -- amounts (minor units)
        coupon_amount_off_in_cents,

        -- timestamps
        discount_started_at,
        discount_effective_ends_at as discount_ends_at
    from in_effect
)

select * from final
