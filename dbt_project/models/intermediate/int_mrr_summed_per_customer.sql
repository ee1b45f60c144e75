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

subscriptions as (
    select * from {{ ref('int_subscriptions_ranked_per_customer') }}
    where {{ touched_customers('stripe_customer_id') }}
),

items as (
    select * from {{ ref('int_subscription_items_normalized_to_month') }}
    where {{ touched_customers('stripe_customer_id') }}
),

discounts as (
    select * from {{ ref('int_discounts_in_effect') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- The currency MRR is stated in (doc: mrr): the customer's own currency, else that of its
-- primary subscription. Without exchange rates, subscriptions in another currency count nothing.
customer_currencies as (
    select
        customers.stripe_customer_id,
        coalesce(customers.customer_currency, primary_subscriptions.subscription_currency)
            as mrr_currency
    from customers
    left join subscriptions as primary_subscriptions
        on
            customers.stripe_customer_id = primary_subscriptions.stripe_customer_id
            and primary_subscriptions.is_primary_subscription
),

-- Only active and past-due subscriptions earn revenue; trialing, canceled, unpaid... count nothing.
counted_subscriptions as (
    select * from subscriptions
    where subscription_status in ('active', 'past_due')
),

-- Gross monthly amount per subscription, and its billing period (all items of a Stripe
-- subscription share one interval) to normalize amount_off coupons like the price.
subscription_amounts as (
    select
        items.subscription_id,
        sum(items.monthly_amount_in_cents) as gross_monthly_amount_in_cents,
        min(items.months_numerator) filter (where items.item_position = 1) as months_numerator,
        min(items.months_denominator) filter (where items.item_position = 1) as months_denominator
    from items
    group by items.subscription_id
),

-- Percent-offs multiply (two 10 % coupons leave 81 %); amount-offs are per billing period and in
-- the coupon's currency, so only those in the subscription's currency apply.
subscription_discounts as (
    select
        counted_subscriptions.subscription_id,
        coalesce(
            case
                when bool_or(discounts.coupon_percent_off >= 100) then 0
                else exp(sum(ln(1 - discounts.coupon_percent_off / 100.0)))
            end,
            1
        ) as percent_factor,
        coalesce(
            sum(discounts.coupon_amount_off_in_cents) filter (
                where coalesce(
                    discounts.coupon_currency, counted_subscriptions.subscription_currency
                )
                = counted_subscriptions.subscription_currency
            ),
            0
        ) as amount_off_per_period_in_cents
    from counted_subscriptions
    inner join discounts
        on
            counted_subscriptions.subscription_id = discounts.subscription_id
            and discounts.has_coupon_terms
    group by counted_subscriptions.subscription_id
),

-- Customers whose revenue-earning subscriptions carry a discount MRR could not price (doc:
-- unreadable_discount): their MRR leaves it out, an upper bound, and says so.
unreadable_discounts as (
    select distinct counted_subscriptions.stripe_customer_id
    from counted_subscriptions
    inner join discounts
        on
            counted_subscriptions.subscription_id = discounts.subscription_id
            and not discounts.has_coupon_terms
),

-- Percent-offs first, then amount-offs normalized to a month; a discount never makes MRR negative.
subscription_mrr as (
    select
        counted_subscriptions.subscription_id,
        counted_subscriptions.stripe_customer_id,
        counted_subscriptions.subscription_currency,
        greatest(
            coalesce(subscription_amounts.gross_monthly_amount_in_cents, 0)
            * coalesce(subscription_discounts.percent_factor, 1)
            - coalesce(
                subscription_discounts.amount_off_per_period_in_cents
                * subscription_amounts.months_numerator::numeric
                / subscription_amounts.months_denominator,
                0
            ),
            0
        ) as net_monthly_amount_in_cents
    from counted_subscriptions
    left join subscription_amounts
        on counted_subscriptions.subscription_id = subscription_amounts.subscription_id
    left join subscription_discounts
        on counted_subscriptions.subscription_id = subscription_discounts.subscription_id
),

-- Rounded once, to a whole minor unit, after summing.
customer_mrr as (
    select
        customer_currencies.stripe_customer_id,
        customer_currencies.mrr_currency,
        round(coalesce(sum(subscription_mrr.net_monthly_amount_in_cents), 0))::bigint
            as customer_mrr_in_cents,
        bool_or(unreadable_discounts.stripe_customer_id is not null) as has_unreadable_discount
    from customer_currencies
    left join unreadable_discounts
        on customer_currencies.stripe_customer_id = unreadable_discounts.stripe_customer_id
    left join subscription_mrr
        on
            customer_currencies.stripe_customer_id = subscription_mrr.stripe_customer_id
            and customer_currencies.mrr_currency = subscription_mrr.subscription_currency
    group by customer_currencies.stripe_customer_id, customer_currencies.mrr_currency
),

final as (
    select
        -- ids
        stripe_customer_id,

        -- attributes
        mrr_currency,
        has_unreadable_discount,

        -- amounts
        customer_mrr_in_cents,
        coalesce({{ to_major_units('customer_mrr_in_cents', 'mrr_currency') }}, 0) as customer_mrr
    from customer_mrr
)

select * from final
