with

charges as (
    select * from {{ source('stripe_raw', 'charges') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as charge_id,
        case
            when jsonb_typeof(data -> 'customer') = 'object' then data -> 'customer' ->> 'id'
            else data ->> 'customer'
        end as stripe_customer_id,
        data ->> 'invoice' as invoice_id,

        -- attributes
        data ->> 'status' as charge_status,
        lower(data ->> 'currency') as payment_currency,
        data ->> 'description' as payment_description,
        data ->> 'failure_code' as charge_failure_code,
        data ->> 'failure_message' as charge_failure_message,
        coalesce((data ->> 'refunded')::boolean, false) as is_charge_refunded,

        -- amounts (minor units)
        (data ->> 'amount')::bigint as charge_amount_in_cents,
        coalesce((data ->> 'amount_refunded')::bigint, 0) as charge_amount_refunded_in_cents,

        -- timestamps
        created as charge_created_at,

        -- bookkeeping
        synced_at
    from charges
)

select * from renamed
