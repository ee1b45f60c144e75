{{
    config(
        indexes=[
            {'columns': ['segment', 'stripe_customer_id'], 'unique': true},
            {'columns': ['stripe_customer_id']},
        ]
    )
}}

with

syncing_with_stripe as (
    select * from {{ ref('syncing_with_stripe') }}
),

current_trials as (
    select * from {{ ref('current_trials') }}
),

slipping_trials as (
    select * from {{ ref('slipping_trials') }}
),

slipping_customers as (
    select * from {{ ref('slipping_customers') }}
),

expired_trials as (
    select * from {{ ref('expired_trials') }}
),

customers as (
    select * from {{ ref('customers') }}
),

churned_customers as (
    select * from {{ ref('churned_customers') }}
),

past_due_subscriptions as (
    select * from {{ ref('past_due_subscriptions') }}
),

-- One row per (segment, customer): the segment is the segment table's name.
memberships as (
    select
        'syncing_with_stripe' as segment,
        stripe_customer_id
    from syncing_with_stripe

    union all

    select
        'current_trials' as segment,
        stripe_customer_id
    from current_trials

    union all

    select
        'slipping_trials' as segment,
        stripe_customer_id
    from slipping_trials

    union all

    select
        'slipping_customers' as segment,
        stripe_customer_id
    from slipping_customers

    union all

    select
        'expired_trials' as segment,
        stripe_customer_id
    from expired_trials

    union all

    select
        'customers' as segment,
        stripe_customer_id
    from customers

    union all

    select
        'churned_customers' as segment,
        stripe_customer_id
    from churned_customers

    union all

    select
        'past_due_subscriptions' as segment,
        stripe_customer_id
    from past_due_subscriptions
)

select * from memberships
