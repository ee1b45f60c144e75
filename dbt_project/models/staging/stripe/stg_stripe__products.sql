with

products as (
    select * from {{ source('stripe_raw', 'products') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as product_id,

        -- attributes
        data ->> 'name' as product_name,
        coalesce((data ->> 'active')::boolean, true) as is_product_active,

        -- timestamps
        created as product_created_at,

        -- bookkeeping
        synced_at
    from products
)

select * from renamed
