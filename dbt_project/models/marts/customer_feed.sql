{#- Incremental on the event id: an event never changes once Stripe sends it, so each build only
    maps events not yet in the feed. The post-hook drops rows of customers no longer in
    customer_fields (deleted, or of the other mode after a test -> live switch), which keeps the
    relationship to customer_fields true. -#}
{{
    config(
        materialized='incremental',
        unique_key='stripe_event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['stripe_event_id'], 'unique': true},
            {'columns': ['stripe_customer_id', 'occurred_at']},
        ],
        post_hook=[
            "delete from {{ this }} as feed where not exists (
                select 1 from {{ ref('customer_fields') }} as customer_fields
                where customer_fields.stripe_customer_id = feed.stripe_customer_id
            )"
        ],
    )
}}

with

events as (
    select * from {{ ref('int_events_mapped_to_activities') }} as mapped_events
    {% if is_incremental() %}
        where not exists (
            select 1 from {{ this }} as feed
            where feed.stripe_event_id = mapped_events.stripe_event_id
        )
    {% endif %}
),

customers as (
    select * from {{ ref('customer_fields') }}
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
