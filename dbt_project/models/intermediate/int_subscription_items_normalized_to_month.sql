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

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- MRR (doc: mrr) counts licensed items only: a metered price bills reported usage, which has no
-- recurring amount. Intervals go to a month as Stripe does: year / 12, week * 52 / 12,
-- day * 365 / 12, then / interval_count; kept as a fraction so the one division is exact.
-- Amounts stay in (fractional) minor units; rounding happens once, per customer.
normalized as (
    select
        *,
        price_usage_type = 'licensed' as is_counted_in_mrr,
        case plan_interval
            when 'month' then 1
            when 'year' then 1
            when 'week' then 52
            when 'day' then 365
        end as months_numerator,
        case plan_interval
            when 'month' then 1
            else 12
        end * nullif(plan_interval_count, 0) as months_denominator
    from items
),

final as (
    select
        -- ids
        subscription_item_id,
        subscription_id,
        stripe_customer_id,
        item_position,
        plan_id,

        -- attributes
        plan_currency,
        plan_interval,
        plan_interval_count,
        price_usage_type,
        quantity,
        is_counted_in_mrr,
        months_numerator,
        months_denominator,

        -- amounts (minor units)
        plan_price_in_cents,
        -- trim_scale: 1000, not 1000.0000000000000000, when the division is exact.
        trim_scale(
            case
                when is_counted_in_mrr
                    then coalesce(
                        plan_price_in_cents * quantity * months_numerator::numeric
                        / months_denominator,
                        0
                    )
                else 0
            end
        ) as monthly_amount_in_cents
    from normalized
)

select * from final
