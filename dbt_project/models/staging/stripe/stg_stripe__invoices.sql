with

invoices as (
    select * from {{ source('stripe_raw', 'invoices') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as invoice_id,
        case
            when jsonb_typeof(data -> 'customer') = 'object' then data -> 'customer' ->> 'id'
            else data ->> 'customer'
        end as stripe_customer_id,
        -- Until 2025-03-31.basil `invoice.subscription`; since, under parent.subscription_details.
        coalesce(
            data -> 'parent' -> 'subscription_details' ->> 'subscription',
            data ->> 'subscription'
        ) as subscription_id,

        -- attributes
        data ->> 'number' as invoice_number,
        data ->> 'status' as invoice_status,
        lower(data ->> 'currency') as invoice_currency,

        -- amounts (minor units)
        (data ->> 'amount_due')::bigint as invoice_amount_due_in_cents,
        (data ->> 'amount_paid')::bigint as invoice_amount_paid_in_cents,
        (data ->> 'total')::bigint as invoice_total_in_cents,

        -- timestamps
        created as invoice_created_at,

        -- bookkeeping
        synced_at
    from invoices
)

select * from renamed
