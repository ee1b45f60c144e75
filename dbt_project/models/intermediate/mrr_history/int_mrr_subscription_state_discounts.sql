{#- Customer-keyed (doc: mrr_incremental_builds; configured by its folder, mrr_history, in
    dbt_project.yml): a build recomputes the touched customers' state discounts; every customer
    when the MRR window is full. -#}
with

states as (
    select * from {{ ref('int_mrr_subscription_states') }}
    where {{ mrr_touched_customers('stripe_customer_id') }}
),

-- A discount known now belongs to one of the customer's subscriptions: found by their ids (the
-- raw table's key) when few customers are recomputed.
subscription_discounts as (
    select * from {{ ref('stg_stripe__subscription_discounts') }}
    {%- if mrr_touched_customers('stripe_customer_id') | trim != 'true' %}
        where subscription_id = any(array(select states.subscription_id from states))
    {%- endif %}
),

customer_discounts as (
    select * from {{ ref('stg_stripe__customer_discounts') }}
    where {{ mrr_touched_customers('stripe_customer_id') }}
),

-- The snapshot's discounts, in both shapes: the legacy `discount` object and the `discounts` list
-- (discount objects, or bare ids).
listed as (
    select
        states.stripe_event_id,
        states.stripe_customer_id,
        states.state_object -> 'discount' as discount_data
    from states
    where jsonb_typeof(states.state_object -> 'discount') = 'object'

    union all

    select
        states.stripe_event_id,
        states.stripe_customer_id,
        listed_discounts.discount_data
    from states
    cross join lateral jsonb_array_elements(
        {{ json_array_or_empty("states.state_object -> 'discounts'") }}
    ) as listed_discounts (discount_data)
),

with_coupon as (
    select
        stripe_event_id,
        stripe_customer_id,
        discount_data,
        case
            when jsonb_typeof(discount_data) = 'string' then discount_data #>> '{}'
            else discount_data ->> 'id'
        end as discount_id,
        case
            when jsonb_typeof(discount_data) = 'object'
                then {{ discount_coupon('discount_data') }}
        end as coupon_ref
    from listed
),

-- The coupon's terms from the snapshot when it carries them (an expanded or inlined coupon), else
-- from the discount as the subscription or customer holds it now (same discount id).
snapshot_discounts as (
    select distinct on (with_coupon.stripe_event_id, with_coupon.discount_id)
        -- ids
        with_coupon.stripe_event_id,
        with_coupon.discount_id,

        -- attributes
        coalesce(
            jsonb_typeof(with_coupon.coupon_ref) = 'object',
            known.has_coupon_terms,
            known_on_customer.has_coupon_terms,
            false
        ) as has_coupon_terms,
        case
            when jsonb_typeof(with_coupon.coupon_ref) = 'object'
                then with_coupon.coupon_ref ->> 'duration'
            else coalesce(known.coupon_duration, known_on_customer.coupon_duration)
        end as coupon_duration,
        case
            when jsonb_typeof(with_coupon.coupon_ref) = 'object'
                then (with_coupon.coupon_ref ->> 'duration_in_months')::integer
            else coalesce(
                known.coupon_duration_in_months, known_on_customer.coupon_duration_in_months
            )
        end as coupon_duration_in_months,
        case
            when jsonb_typeof(with_coupon.coupon_ref) = 'object'
                then (with_coupon.coupon_ref ->> 'percent_off')::numeric
            else coalesce(known.coupon_percent_off, known_on_customer.coupon_percent_off)
        end as coupon_percent_off,
        case
            when jsonb_typeof(with_coupon.coupon_ref) = 'object'
                then lower(with_coupon.coupon_ref ->> 'currency')
            else coalesce(known.coupon_currency, known_on_customer.coupon_currency)
        end as coupon_currency,

        -- amounts (minor units)
        case
            when jsonb_typeof(with_coupon.coupon_ref) = 'object'
                then (with_coupon.coupon_ref ->> 'amount_off')::bigint
            else coalesce(
                known.coupon_amount_off_in_cents, known_on_customer.coupon_amount_off_in_cents
            )
        end as coupon_amount_off_in_cents,

        -- timestamps
        coalesce(
            {{ from_epoch("with_coupon.discount_data ->> 'start'") }},
            known.discount_started_at,
            known_on_customer.discount_started_at
        ) as discount_started_at,
        coalesce(
            {{ from_epoch("with_coupon.discount_data ->> 'end'") }},
            known.discount_ends_at,
            known_on_customer.discount_ends_at
        ) as discount_ends_at
    from with_coupon
    left join subscription_discounts as known
        on with_coupon.discount_id = known.discount_id
    left join customer_discounts as known_on_customer
        on with_coupon.discount_id = known_on_customer.discount_id
    where with_coupon.discount_id is not null
    order by with_coupon.stripe_event_id, with_coupon.discount_id
),

-- A state without a snapshot (the subscription's current state) has the subscription's discounts
-- as they are now.
current_discounts as (
    select
        states.stripe_event_id,
        subscription_discounts.discount_id,
        subscription_discounts.has_coupon_terms,
        subscription_discounts.coupon_duration,
        subscription_discounts.coupon_duration_in_months,
        subscription_discounts.coupon_percent_off,
        subscription_discounts.coupon_currency,
        subscription_discounts.coupon_amount_off_in_cents,
        subscription_discounts.discount_started_at,
        subscription_discounts.discount_ends_at
    from states
    inner join subscription_discounts
        on states.subscription_id = subscription_discounts.subscription_id
    where states.state_object is null
),

own_discounts as (
    select * from snapshot_discounts
    union all
    select * from current_discounts
),

-- A coupon applied to the customer discounts a subscription without a discount of its own (as in
-- int_discounts_in_effect); the customer's discount is known as it is now.
customer_level as (
    select
        states.stripe_event_id,
        customer_discounts.discount_id,
        customer_discounts.has_coupon_terms,
        customer_discounts.coupon_duration,
        customer_discounts.coupon_duration_in_months,
        customer_discounts.coupon_percent_off,
        customer_discounts.coupon_currency,
        customer_discounts.coupon_amount_off_in_cents,
        customer_discounts.discount_started_at,
        customer_discounts.discount_ends_at
    from states
    inner join customer_discounts
        on states.stripe_customer_id = customer_discounts.stripe_customer_id
    where not exists (
        select 1 from own_discounts
        where own_discounts.stripe_event_id = states.stripe_event_id
    )
),

discounts as (
    select * from own_discounts
    union all
    select * from customer_level
),

-- A `repeating` discount ends `duration_in_months` after it starts when the snapshot lacks `end`.
-- The state's customer keys the row (the customer-keyed merge).
final as (
    select
        -- ids
        discounts.stripe_event_id,
        states.stripe_customer_id,
        discounts.discount_id,

        -- attributes
        discounts.has_coupon_terms,
        discounts.coupon_duration,
        discounts.coupon_percent_off,
        discounts.coupon_currency,

        -- amounts (minor units)
        discounts.coupon_amount_off_in_cents,

        -- timestamps
        discounts.discount_started_at,
        coalesce(
            discounts.discount_ends_at,
            case
                when discounts.coupon_duration = 'repeating'
                    then
                        discounts.discount_started_at
                        + make_interval(months => discounts.coupon_duration_in_months)
            end
        ) as discount_ends_at
    from discounts
    inner join states
        on discounts.stripe_event_id = states.stripe_event_id
)

select * from final
