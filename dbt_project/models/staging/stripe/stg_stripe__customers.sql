with

customers as (
    select * from {{ source('stripe_raw', 'customers') }}
    where
        {{ in_key_mode() }}
        -- A deleted customer arrives as {"id", "object", "deleted": true} with is_deleted set;
        -- docs/contract.md keeps only customers that are not deleted, so they stop here.
        and not is_deleted
        and coalesce((data ->> 'deleted')::boolean, false) = false
),

renamed as (
    select
        -- ids
        id as stripe_customer_id,

        -- attributes
        data ->> 'email' as customer_email,
        data ->> 'name' as customer_name,
        data ->> 'description' as customer_description,
        data ->> 'phone' as customer_phone,
        coalesce((data ->> 'delinquent')::boolean, false) as is_customer_delinquent,
        lower(data ->> 'currency') as customer_currency,

        -- billing address
        data -> 'address' ->> 'line1' as customer_address_line1,
        data -> 'address' ->> 'line2' as customer_address_line2,
        data -> 'address' ->> 'city' as customer_city,
        data -> 'address' ->> 'state' as customer_region,
        data -> 'address' ->> 'country' as customer_country,
        data -> 'address' ->> 'postal_code' as customer_postal_code,

        -- timestamps
        created as customer_created_at,

        -- bookkeeping
        synced_at as customer_last_sync_at
    from customers
)

select * from renamed
