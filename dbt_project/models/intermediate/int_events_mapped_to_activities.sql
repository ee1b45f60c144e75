{#- Incremental on the event id: a Stripe event never changes, and neither does its mapping, so each
    build maps only events not mapped yet: those stored since the customer-keyed window's stamp
    (an index lookup), or all not mapped yet when the window recomputes everything. Rows of the
    other mode (after a switch of key) stay here, unused: customer_feed keeps only customers of
    customer_fields. Tagged customer_keyed so the window waits for it like for the others. -#}
{{
    config(
        materialized='incremental',
        unique_key='stripe_event_id',
        incremental_strategy='indexed_delete_insert',
        tags=['customer_keyed'],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=[
            "{{ record_customer_keyed_state() }}",
            "{{ create_index_once(this, 'stripe_event_id') }}",
        ],
    )
}}

{%- set window = customer_window() %}

with

events as (
    select * from {{ ref('stg_stripe__events') }} as stg_events
    where
        stripe_customer_id is not null
        {% if is_incremental() and not window.full %}
            and synced_at >= '{{ window.since }}'::timestamptz
        {% endif %}
        {% if is_incremental() %}
            and not exists (
                select 1 from {{ this }} as mapped
                where mapped.stripe_event_id = stg_events.stripe_event_id
            )
        {% endif %}
        and event_type in (
            'customer.subscription.created',
            'customer.subscription.updated',
            'customer.subscription.deleted',
            'invoice.created',
            'invoice.paid',
            'charge.succeeded',
            'charge.failed',
            'charge.refunded'
        )
),

-- What a subscription bills per period, before and after an update. Items carry the price
-- (`price`, or `plan` on old API versions); single-plan subscriptions of old API versions carry
-- `quantity` and `plan` on the subscription itself. previous_attributes only holds changed fields,
-- so a side that did not change falls back to the current values. Summed beside each event in one
-- pass (lateral, only for subscription events) rather than joined back on the event id: a join
-- back made Postgres spill every event's JSON to disk to read the events twice.
subscription_totals as (
    select
        events.*,
        current_items.total_quantity as current_quantity,
        current_items.total_amount_in_cents as current_amount_in_cents,
        current_items.currency as current_currency,
        current_items.plan_interval as current_interval,
        previous_items.total_quantity as previous_items_quantity,
        previous_items.total_amount_in_cents as previous_items_amount_in_cents,
        case
            when events.event_type like 'customer.subscription.%'
                then (events.event_previous_attributes ->> 'quantity')::numeric
        end as previous_legacy_quantity,
        case
            when events.event_type like 'customer.subscription.%'
                then (events.event_previous_attributes -> 'plan' ->> 'amount')::numeric
        end as previous_legacy_unit_amount
    from events
    left join lateral (
        select
            sum(coalesce((item ->> 'quantity')::numeric, 1)) as total_quantity,
            sum(
                coalesce(
                    (item -> 'price' ->> 'unit_amount')::numeric,
                    (item -> 'plan' ->> 'amount')::numeric,
                    0
                )
                * coalesce((item ->> 'quantity')::numeric, 1)
            ) as total_amount_in_cents,
            min(lower(coalesce(item -> 'price' ->> 'currency', item -> 'plan' ->> 'currency')))
                as currency,
            min(
                coalesce(
                    item -> 'price' -> 'recurring' ->> 'interval',
                    item -> 'plan' ->> 'interval'
                )
            ) as plan_interval
        from
            jsonb_array_elements(
                {{ json_array_or_empty("events.event_object -> 'items' -> 'data'") }}
            ) as item
        where events.event_type like 'customer.subscription.%'
    ) as current_items on true
    left join lateral (
        select
            sum(coalesce((item ->> 'quantity')::numeric, 1)) as total_quantity,
            sum(
                coalesce(
                    (item -> 'price' ->> 'unit_amount')::numeric,
                    (item -> 'plan' ->> 'amount')::numeric,
                    0
                )
                * coalesce((item ->> 'quantity')::numeric, 1)
            ) as total_amount_in_cents
        from jsonb_array_elements(events.event_previous_attributes -> 'items' -> 'data') as item
        where
            events.event_type like 'customer.subscription.%'
            and jsonb_typeof(events.event_previous_attributes -> 'items' -> 'data') = 'array'
    ) as previous_items on true
),

subscription_changes as (
    select
        *,
        coalesce(
            previous_items_quantity,
            previous_legacy_quantity,
            current_quantity
        ) as previous_quantity,
        coalesce(
            previous_items_amount_in_cents,
            previous_legacy_unit_amount
            * coalesce(previous_items_quantity, previous_legacy_quantity, current_quantity),
            current_amount_in_cents
        ) as previous_amount_in_cents
    from subscription_totals
),

-- The contract's ten activities. Decisions (doc: feed_activities): a subscription created in
-- `trialing` is "Trial started" (one row per event, and for a marketer the trial is the news);
-- a trial ends when an update moves status away from `trialing` (trial_will_end only warns);
-- "Subscription expanded" is an update whose total quantity or billed amount went up.
mapped as (
    select
        events.*,
        case events.event_type
            when 'customer.subscription.created'
                then case
                    when events.event_object ->> 'status' = 'trialing' then 'Trial started'
                    else 'Subscription created'
                end
            when 'customer.subscription.updated'
                then case
                    when
                        events.event_previous_attributes ->> 'status' = 'trialing'
                        and events.event_object ->> 'status' != 'trialing'
                        then 'Trial ended'
                    when
                        events.event_previous_attributes ->> 'status' != 'trialing'
                        and events.event_object ->> 'status' = 'trialing'
                        then 'Trial started'
                    when
                        events.current_quantity > events.previous_quantity
                        or events.current_amount_in_cents > events.previous_amount_in_cents
                        then 'Subscription expanded'
                end
            when 'customer.subscription.deleted' then 'Subscription canceled'
            when 'invoice.created' then 'Invoice created'
            when 'invoice.paid' then 'Invoice paid'
            when 'charge.succeeded' then 'Charge succeeded'
            when 'charge.failed' then 'Charge failed'
            when 'charge.refunded' then 'Charge refunded'
        end as activity
    from subscription_changes as events
),

-- The amount each activity speaks of, in minor units, and its currency.
amounts as (
    select
        *,
        case
            when event_type like 'customer.subscription.%' then current_amount_in_cents
            when event_type = 'invoice.created' then (event_object ->> 'amount_due')::numeric
            when event_type = 'invoice.paid' then (event_object ->> 'amount_paid')::numeric
            when event_type = 'charge.refunded' then (event_object ->> 'amount_refunded')::numeric
            when event_type like 'charge.%' then (event_object ->> 'amount')::numeric
        end as event_amount_in_cents,
        case
            when event_type like 'customer.subscription.%' then current_currency
            else lower(event_object ->> 'currency')
        end as event_currency
    from mapped
    where activity is not null
),

money as (
    select
        *,
        {{
            format_money(
                to_major_units('event_amount_in_cents', 'event_currency'),
                'event_currency'
            )
        }} as event_amount_text
    from amounts
),

-- One short sentence per event, money as symbol (or code) and major units.
summarized as (
    select
        *,
        case activity
            when 'Subscription created'
                then
                    'Created subscription ' || event_object_id
                    || coalesce(' for ' || event_amount_text || '/' || current_interval, '')
            when 'Subscription expanded'
                then
                    'Expanded subscription ' || event_object_id
                    || coalesce(' to ' || event_amount_text || '/' || current_interval, '')
            when 'Subscription canceled'
                then 'Canceled subscription ' || event_object_id
            when 'Trial started'
                then
                    'Started a trial on subscription ' || event_object_id
                    || coalesce(
                        ', ending '
                        || to_char(
                            {{ from_epoch("event_object ->> 'trial_end'") }} at time zone 'UTC',
                            'YYYY-MM-DD'
                        ),
                        ''
                    )
            when 'Trial ended'
                then
                    'Trial ended on subscription ' || event_object_id
                    || coalesce(', now ' || replace(event_object ->> 'status', '_', ' '), '')
            when 'Invoice created'
                then
                    'Invoice ' || event_object_id || ' created for '
                    || coalesce(event_amount_text, 'an unknown amount')
            when 'Invoice paid'
                then
                    'Paid invoice ' || event_object_id
                    || coalesce(' for ' || event_amount_text, '')
            when 'Charge succeeded'
                then
                    'Charge ' || event_object_id
                    || coalesce(' of ' || event_amount_text, '') || ' succeeded'
            when 'Charge failed'
                then
                    'Charge ' || event_object_id
                    || coalesce(' of ' || event_amount_text, '') || ' failed'
                    || coalesce(': ' || (event_object ->> 'failure_message'), '')
            when 'Charge refunded'
                then
                    'Refunded ' || coalesce(event_amount_text || ' of ', '')
                    || 'charge ' || event_object_id
        end as summary  -- noqa: RF04
    from money
),

final as (
    select
        -- ids
        stripe_event_id,
        stripe_customer_id,
        event_object_id,

        -- attributes
        event_type,
        activity,
        summary,

        -- timestamps
        occurred_at
    from summarized
)

select * from final
