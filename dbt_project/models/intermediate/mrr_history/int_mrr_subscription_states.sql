{#- Customer-keyed (doc: mrr_incremental_builds; configured by its folder, mrr_history, in
    dbt_project.yml): a build recomputes the states of the touched customers' subscriptions;
    every customer when the MRR window is full. -#}
with

-- Every customer.subscription.* event carries the whole subscription as it was at that moment:
-- each is a state of the subscription, valid until its next event.
events as (
    select * from {{ ref('stg_stripe__events') }}
    where
        event_type like 'customer.subscription.%'
        and event_object ->> 'object' = 'subscription'
        and event_object ? 'status'
        and {{ mrr_touched_customers('stripe_customer_id') }}
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
    where {{ mrr_touched_customers('stripe_customer_id') }}
),

current_items as (
    select * from {{ ref('int_subscription_items_normalized_to_month') }}
    where {{ mrr_touched_customers('stripe_customer_id') }}
),

-- Stored events are taken to be complete from the oldest one on (the incremental syncs read every
-- event after the first sync's cursor; a backfill may import Stripe's last 30 days before it).
-- Over every customer's events, read from the raw table with staging's filter: the staging
-- view (a WITH clause) is not flattened, so its min() reads every event, where the raw table's
-- index on created gives the first one. An older event arriving makes the MRR window full
-- (macros/mrr_window.sql).
coverage as (
    select min(created) as covered_from
    from {{ source('stripe_raw', 'events') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

event_states as (
    select
        stripe_event_id,
        event_object ->> 'id' as subscription_id,
        stripe_customer_id,
        event_type,
        event_object,
        event_previous_attributes,
        occurred_at as state_started_at,
        -- Two events of one second: the event id breaks the tie, so each instant has one state.
        lead(occurred_at) over (
            partition by event_object ->> 'id'
            order by occurred_at, stripe_event_id
        ) as state_ended_at,
        row_number() over (
            partition by event_object ->> 'id'
            order by occurred_at, stripe_event_id
        ) = 1 as is_first_event
    from events
),

-- Before a subscription's first stored event (unless it created the subscription), back to the
-- start of the coverage, the subscription was the event's snapshot with the previous values of
-- what the event changed: `previous_attributes` holds each changed top-level key whole.
snapshot_states as (
    select
        stripe_event_id,
        subscription_id,
        stripe_customer_id,
        event_object as state_object,
        state_started_at,
        state_ended_at
    from event_states

    union all

    select
        event_states.stripe_event_id || ':before' as stripe_event_id,
        event_states.subscription_id,
        event_states.stripe_customer_id,
        event_states.event_object
        || coalesce(event_states.event_previous_attributes, '{}'::jsonb) as state_object,
        coverage.covered_from as state_started_at,
        event_states.state_started_at as state_ended_at
    from event_states
    cross join coverage
    where
        event_states.is_first_event
        and event_states.event_type <> 'customer.subscription.created'
        and coverage.covered_from < event_states.state_started_at
),

-- What each state bills: its snapshot's items (the first 10, as events embed them; `price`, or
-- `plan` on old API versions), each normalized to a month like
-- int_subscription_items_normalized_to_month, summed beside the state in one pass. Summed apart
-- and joined back by event id, every snapshot (~1 kB of JSON) was stored to disk first.
states as (
    select
        snapshot_states.stripe_event_id,
        snapshot_states.subscription_id,
        snapshot_states.stripe_customer_id,
        snapshot_states.state_object ->> 'status' as subscription_status,
        -- Newer API versions carry the currency on the subscription; older ones only on prices.
        lower(coalesce(
            snapshot_states.state_object ->> 'currency',
            snapshot_states.state_object -> 'items' -> 'data' -> 0 -> 'price' ->> 'currency',
            snapshot_states.state_object -> 'plan' ->> 'currency'
        )) as subscription_currency,
        state_amounts.months_numerator,
        state_amounts.months_denominator,
        state_amounts.gross_monthly_amount_in_cents,
        -- Only what int_mrr_subscription_state_discounts reads of the snapshot: kept whole, the
        -- subscription (~1 kB, compressed out of line) cost that model more to read back than
        -- every other step of it (1.4 of 2.2 s at 100k customers).
        jsonb_build_object(
            'discount', snapshot_states.state_object -> 'discount',
            'discounts', snapshot_states.state_object -> 'discounts'
        ) as state_object,
        snapshot_states.state_started_at,
        snapshot_states.state_ended_at
    from snapshot_states
    cross join lateral (
        select
            sum(
                case
                    when normalized_items.is_counted_in_mrr
                        then coalesce(
                            normalized_items.plan_price_in_cents * normalized_items.quantity
                            * normalized_items.months_numerator::numeric
                            / normalized_items.months_denominator,
                            0
                        )
                    else 0
                end
            ) as gross_monthly_amount_in_cents,
            min(normalized_items.months_numerator) filter (
                where item.position = 1
            ) as months_numerator,
            min(normalized_items.months_denominator) filter (
                where item.position = 1
            ) as months_denominator
        from
            jsonb_array_elements(
                {{ json_array_or_empty("snapshot_states.state_object -> 'items' -> 'data'") }}
            ) with ordinality as item (item_data, position)
        cross join
            lateral (
                select
                    coalesce(item.item_data -> 'price', item.item_data -> 'plan') as price_data,
                    coalesce(
                        coalesce(item.item_data -> 'price', item.item_data -> 'plan')
                        -> 'recurring' ->> 'interval',
                        coalesce(item.item_data -> 'price', item.item_data -> 'plan') ->> 'interval'
                    ) as billing_interval
            ) as price
        cross join lateral (
            select
                coalesce((item.item_data ->> 'quantity')::bigint, 1) as quantity,
                coalesce(
                    price.price_data -> 'recurring' ->> 'usage_type',
                    price.price_data ->> 'usage_type',
                    'licensed'
                )
                = 'licensed' as is_counted_in_mrr,
                (price.price_data ->> 'unit_amount')::bigint as plan_price_in_cents,
                case price.billing_interval
                    when 'month' then 1
                    when 'year' then 1
                    when 'week' then 52
                    when 'day' then 365
                end as months_numerator,
                case price.billing_interval
                    when 'month' then 1
                    else 12
                end * nullif(
                    coalesce(
                        (price.price_data -> 'recurring' ->> 'interval_count')::integer,
                        (price.price_data ->> 'interval_count')::integer,
                        1
                    ),
                    0
                ) as months_denominator
        ) as normalized_items
    ) as state_amounts
),

-- A subscription without any stored event did not change while events were stored: its current
-- state (every item, as customer_fields reads it) holds from the start of the coverage.
current_states as (
    select
        'current:' || subscriptions.subscription_id as stripe_event_id,
        subscriptions.subscription_id,
        subscriptions.stripe_customer_id,
        subscriptions.subscription_status,
        subscriptions.subscription_currency,
        min(current_items.months_numerator) filter (
            where current_items.item_position = 1
        ) as months_numerator,
        min(current_items.months_denominator) filter (
            where current_items.item_position = 1
        ) as months_denominator,
        coalesce(sum(current_items.monthly_amount_in_cents), 0) as gross_monthly_amount_in_cents,
        coverage.covered_from as state_started_at,
        null::timestamptz as state_ended_at
    from subscriptions
    cross join coverage
    left join current_items
        on subscriptions.subscription_id = current_items.subscription_id
    where
        coverage.covered_from is not null
        -- Among the events already ordered: a second read of the events stored them all first.
        and not exists (
            select 1 from event_states
            where event_states.subscription_id = subscriptions.subscription_id
        )
    group by
        subscriptions.subscription_id,
        subscriptions.stripe_customer_id,
        subscriptions.subscription_status,
        subscriptions.subscription_currency,
        coverage.covered_from
),

all_states as (
    select
        stripe_event_id,
        subscription_id,
        stripe_customer_id,
        subscription_status,
        subscription_currency,
        months_numerator,
        months_denominator,
        coalesce(gross_monthly_amount_in_cents, 0) as gross_monthly_amount_in_cents,
        state_started_at,
        state_ended_at,
        state_object
    from states

    union all

    select
        stripe_event_id,
        subscription_id,
        stripe_customer_id,
        subscription_status,
        subscription_currency,
        months_numerator,
        months_denominator,
        gross_monthly_amount_in_cents,
        state_started_at,
        state_ended_at,
        null::jsonb as state_object
    from current_states
),

final as (
    select
        -- ids
        stripe_event_id,
        subscription_id,
        stripe_customer_id,

        -- attributes
        subscription_status,
        subscription_currency,
        months_numerator,
        months_denominator,
        -- The snapshot's discounts (null for a current state).
        state_object,

        -- amounts (minor units, before discounts, not rounded)
        gross_monthly_amount_in_cents,

        -- timestamps
        state_started_at,
        state_ended_at
    from all_states
)

select * from final
