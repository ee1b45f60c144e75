with

-- Not materialized although read twice: a filter on subscription_id (incremental builds) then
-- reaches the raw table's primary key instead of every subscription being read.
subscriptions as not materialized (
    select * from {{ source('stripe_raw', 'subscriptions') }}
    where
        {{ in_key_mode() }}
        -- Stripe's customer.subscription.deleted means canceled, and the object it carries is the
        -- canceled subscription, which churn rules need: keep it unless only a stub is left.
        and (not is_deleted or data ? 'status')
),

-- A subscription's discounts come in two shapes: the legacy single `discount` object, and the
-- `discounts` list (ids, or discount objects when the extractor expands data.discounts). A bare
-- id carries no coupon terms, so only objects are kept; the same discount often appears in both.
discount_objects as (
    select
        subscriptions.id as subscription_id,
        subscriptions.data ->> 'customer' as stripe_customer_id,
        subscriptions.data -> 'discount' as discount_data
    from subscriptions
    where jsonb_typeof(subscriptions.data -> 'discount') = 'object'

    union all

    select
        subscriptions.id as subscription_id,
        subscriptions.data ->> 'customer' as stripe_customer_id,
        listed.discount_data
    from subscriptions
    cross join
        lateral jsonb_array_elements(
            {{ json_array_or_empty("subscriptions.data -> 'discounts'") }}
        ) as listed (discount_data)
    where jsonb_typeof(listed.discount_data) = 'object'
),

-- The coupon of each discount, whatever the API version (see the macro).
with_coupon as (
    select
        subscription_id,
        stripe_customer_id,
        discount_data,
        {{ discount_coupon('discount_data') }} as coupon_ref
    from discount_objects
),

renamed as (
    select distinct on (
        subscription_id,
        coalesce(discount_data ->> 'id', coupon_ref ->> 'id', coupon_ref #>> '{}')
    )
        -- ids
        coalesce(discount_data ->> 'id', coupon_ref ->> 'id', coupon_ref #>> '{}') as discount_id,
        subscription_id,
        stripe_customer_id,
        {{ discount_coupon_terms('coupon_ref') }},

        -- timestamps
        {{ from_epoch("discount_data ->> 'start'") }} as discount_started_at,
        {{ from_epoch("discount_data ->> 'end'") }} as discount_ends_at
    from with_coupon
    where jsonb_typeof(coupon_ref) in ('object', 'string')
    order by
        subscription_id,
        coalesce(discount_data ->> 'id', coupon_ref ->> 'id', coupon_ref #>> '{}'),
        discount_data ->> 'start'
)

select * from renamed
