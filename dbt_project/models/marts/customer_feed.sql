{#- Customer-keyed incremental (doc: incremental_builds): a build recomputes the feed of the
    customers int_customers_touched lists (a new event touches its customer) and swaps their rows
    in one transaction. A customer who left customer_fields (deleted, or of the other mode after a
    test -> live switch) is touched, so its rows leave too. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['stripe_event_id'], 'unique': true},
            {'columns': ['stripe_customer_id', 'occurred_at']},
        ],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

events as (
    select * from {{ ref('int_events_mapped_to_activities') }}
    where {{ touched_customers('stripe_customer_id') }}
),

customers as (
    select * from {{ ref('customer_fields') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- Only events of customers in customer_fields: not deleted, and in the key's mode.
final as (
    select
        events.stripe_customer_id,
        events.occurred_at,
        events.stripe_event_id,
        events.event_type,
        events.activity,
        events.summary
    from events
    inner join customers
        on events.stripe_customer_id = customers.stripe_customer_id
)

select * from final
