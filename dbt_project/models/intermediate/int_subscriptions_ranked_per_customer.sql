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
    where
        stripe_customer_id is not null
        and {{ touched_customers('stripe_customer_id') }}
),

-- Primary subscription (doc: primary_subscription): live subscriptions first, then the most
-- recently created; equal creation seconds fall back to the greater id so the choice is stable.
ranked as (
    select
        *,
        subscription_status in (
            'active', 'trialing', 'past_due', 'unpaid', 'paused', 'incomplete'
        ) as is_subscription_live,
        row_number() over (
            partition by stripe_customer_id
            order by
                subscription_status in (
                    'active', 'trialing', 'past_due', 'unpaid', 'paused', 'incomplete'
                ) desc,
                subscription_created_at desc,
                subscription_id desc
        ) as subscription_rank
    from subscriptions
),

final as (
    select
        -- ids
        subscription_id,
        stripe_customer_id,

        -- attributes
        subscription_status,
        subscription_cancel_at_period_end,
        subscription_currency,
        is_subscription_live,
        subscription_rank,
        subscription_rank = 1 as is_primary_subscription,

        -- timestamps
        subscription_created_at,
        subscription_canceled_at,
        subscription_trial_started_at,
        subscription_trial_ends_at,
        subscription_current_period_start
    from ranked
)

select * from final
