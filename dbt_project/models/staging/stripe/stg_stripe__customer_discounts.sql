with

customers as (
    select * from {{ source('stripe_raw', 'customers') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
        and jsonb_typeof(data -> 'discount') = 'object'
),

-- A coupon applied to the customer: `customer.discount`, its coupon read as for subscriptions.
with_coupon as (
    select
        id as stripe_customer_id,
        data -> 'discount' as discount_data,
        {{ discount_coupon("data -> 'discount'") }} as coupon_ref
    from customers
),

renamed as (
    select
        -- ids
        discount_data ->> 'id' as discount_id,
        stripe_customer_id,
        {{ discount_coupon_terms('coupon_ref') }},

        -- timestamps
        {{ from_epoch("discount_data ->> 'start'") }} as discount_started_at,
        {{ from_epoch("discount_data ->> 'end'") }} as discount_ends_at
    from with_coupon
    where jsonb_typeof(coupon_ref) in ('object', 'string')
)

select * from renamed
