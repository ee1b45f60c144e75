{#- Customer-keyed incremental (doc: incremental_builds): a build recomputes the customers
    int_customers_touched lists and swaps their rows in one transaction; a renamed product's name
    is set in place (apply_product_renames). product_id is indexed for int_customers_touched's
    lookup of a deleted product's customers. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['stripe_customer_id'], 'unique': true},
            {'columns': ['subscription_status']},
        ],
        pre_hook=[
            "{{ plan_for_touched_customers() }}",
            "{{ count_customers_before_merge() }}",
        ],
        post_hook=[
            "{{ record_customer_keyed_state() }}",
            "{{ apply_product_renames() }}",
            "{{ create_index_once(this, 'product_id') }}",
            "{{ record_customer_counts() }}",
        ],
    )
}}

with

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

first_items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
    where
        item_position = 1
        and {{ touched_customers('stripe_customer_id') }}
),

products as (
    select * from {{ ref('stg_stripe__products') }}
),

mrr as (
    select * from {{ ref('int_mrr_summed_per_customer') }}
    where {{ touched_customers('stripe_customer_id') }}
),

latest_charges as (
    select * from {{ ref('int_charges_latest_succeeded') }}
    where {{ touched_customers('stripe_customer_id') }}
),

activity as (
    select * from {{ ref('int_activity_matched_to_customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- One row per customer; the primary subscription's first item gives product and plan.
final as (
    select
        -- customer
        customers.stripe_customer_id,
        customers.customer_email,
        customers.customer_name,
        coalesce(mrr.customer_mrr, 0) as customer_mrr,
        coalesce(mrr.has_unreadable_discount, false) as has_unreadable_discount,
        customers.is_customer_delinquent,
        customers.customer_description,
        customers.customer_phone,
        customers.customer_last_sync_at,
        customers.customer_city,
        customers.customer_region,
        customers.customer_country,
        customers.customer_postal_code,
        {{ format_address('customers.customer_address_line1', 'customers.customer_address_line2') }}
            as customer_address,

        -- primary subscription
        primary_subscriptions.subscription_id,
        primary_subscriptions.subscription_status,
        primary_subscriptions.subscription_trial_ends_at,
        primary_subscriptions.subscription_trial_started_at,
        primary_subscriptions.subscription_created_at,
        primary_subscriptions.subscription_canceled_at,
        -- Moved from the subscription to its items in API version 2025-03-31.basil.
        coalesce(
            primary_subscriptions.subscription_current_period_start,
            first_items.item_current_period_start
        ) as subscription_current_period_start,
        primary_subscriptions.subscription_cancel_at_period_end,

        -- product and plan: the primary subscription's first item
        first_items.product_id,
        coalesce(products.product_name, first_items.expanded_product_name) as product_name,
        first_items.plan_id,
        first_items.plan_price_in_cents,
        {{ to_major_units('first_items.plan_price_in_cents', 'first_items.plan_currency') }}
            as plan_price,
        first_items.plan_currency,
        first_items.plan_interval,
        first_items.plan_interval_count,
        first_items.plan_nickname,

        -- last payment
        latest_charges.last_amount_paid_in_cents,
        latest_charges.last_amount_paid,
        latest_charges.payment_currency,
        latest_charges.payment_description,

        -- activity
        activity.last_activity_at
    from customers
    left join primary_subscriptions
        on customers.stripe_customer_id = primary_subscriptions.stripe_customer_id
    left join first_items
        on primary_subscriptions.subscription_id = first_items.subscription_id
    left join products
        on first_items.product_id = products.product_id
    left join mrr
        on customers.stripe_customer_id = mrr.stripe_customer_id
    left join latest_charges
        on customers.stripe_customer_id = latest_charges.stripe_customer_id
    left join activity
        on customers.stripe_customer_id = activity.stripe_customer_id
)

select * from final
