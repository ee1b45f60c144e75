with

customers as (
    select * from {{ source('stripe_raw', 'customers') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
        and jsonb_typeof(data -> 'discount') = 'object'
),

-- A coupon applied to the customer: `customer.discount`, with its coupon in `coupon` before
-- 2025-09-30.clover and in `source.coupon` since (an id unless the extractor could expand it).
with_coupon as (
    select
        id as stripe_customer_id,
        data -> 'discount' as discount_data,
        coalesce(data -> 'discount' -> 'coupon', data -> 'discount' -> 'source' -> 'coupon')
            as coupon_ref
    from customers
),

renamed as (
    select
        -- ids
        discount_data ->> 'id' as discount_id,
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
)

select * from renamed
