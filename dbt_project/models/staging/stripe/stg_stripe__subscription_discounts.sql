with

subscriptions as (
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
            case
                when jsonb_typeof(subscriptions.data -> 'discounts') = 'array'
                    then subscriptions.data -> 'discounts'
                else '[]'::jsonb
            end
        ) as listed (discount_data)
    where jsonb_typeof(listed.discount_data) = 'object'
),

-- The coupon sits in `coupon` (inlined) before 2025-09-30.clover and in `source.coupon` since,
-- an object when expanded and an id when not (the key lacked Coupons: Read): only its id is known.
with_coupon as (
    select
        subscription_id,
        stripe_customer_id,
        discount_data,
        coalesce(discount_data -> 'coupon', discount_data -> 'source' -> 'coupon') as coupon_ref
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
        coalesce(coupon_ref ->> 'id', coupon_ref #>> '{}') as coupon_id,

        -- attributes
        jsonb_typeof(coupon_ref) = 'object' as has_coupon_terms,
        coupon_ref ->> 'duration' as coupon_duration,
        (coupon_ref ->> 'duration_in_months')::integer as coupon_duration_in_months,
        (coupon_ref ->> 'percent_off')::numeric as coupon_percent_off,
        lower(coupon_ref ->> 'currency') as coupon_currency,

        -- amounts
        (coupon_ref ->> 'amount_off')::bigint as coupon_amount_off_in_cents,

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
