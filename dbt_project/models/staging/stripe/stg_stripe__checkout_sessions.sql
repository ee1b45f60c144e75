with

checkout_sessions as (
    select * from {{ source('stripe_raw', 'checkout_sessions') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as checkout_session_id,
        case
            when jsonb_typeof(data -> 'customer') = 'object' then data -> 'customer' ->> 'id'
            else data ->> 'customer'
        end as stripe_customer_id,
        case
            when jsonb_typeof(data -> 'subscription') = 'object'
                then data -> 'subscription' ->> 'id'
            else data ->> 'subscription'
        end as subscription_id,

        -- attributes
        data ->> 'mode' as checkout_session_mode,
        data ->> 'status' as checkout_session_status,
        data ->> 'payment_status' as checkout_session_payment_status,
        coalesce(data -> 'customer_details' ->> 'email', data ->> 'customer_email')
            as customer_email,
        lower(data ->> 'currency') as checkout_session_currency,

        -- amounts (minor units)
        (data ->> 'amount_total')::bigint as checkout_session_amount_total_in_cents,

        -- timestamps
        created as checkout_session_created_at,

        -- bookkeeping
        synced_at
    from checkout_sessions
)

select * from renamed
