{#- Customer-keyed incremental (doc: incremental_builds): the touched customers' rows are
    recomputed from the segment tables and swapped in one transaction. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['segment', 'stripe_customer_id'], 'unique': true},
            {'columns': ['stripe_customer_id']},
        ],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

syncing_with_stripe as (
    select * from {{ ref('syncing_with_stripe') }}
    where {{ touched_customers('stripe_customer_id') }}
),

current_trials as (
    select * from {{ ref('current_trials') }}
    where {{ touched_customers('stripe_customer_id') }}
),

slipping_trials as (
    select * from {{ ref('slipping_trials') }}
    where {{ touched_customers('stripe_customer_id') }}
),

slipping_customers as (
    select * from {{ ref('slipping_customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

expired_trials as (
    select * from {{ ref('expired_trials') }}
    where {{ touched_customers('stripe_customer_id') }}
),

customers as (
    select * from {{ ref('customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

churned_customers as (
    select * from {{ ref('churned_customers') }}
    where {{ touched_customers('stripe_customer_id') }}
),

past_due_subscriptions as (
    select * from {{ ref('past_due_subscriptions') }}
    where {{ touched_customers('stripe_customer_id') }}
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
