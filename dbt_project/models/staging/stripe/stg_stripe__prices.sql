with

prices as (
    select * from {{ source('stripe_raw', 'prices') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as plan_id,
        case
            when jsonb_typeof(data -> 'product') = 'object' then data -> 'product' ->> 'id'
            else data ->> 'product'
        end as product_id,

        -- attributes
        data ->> 'nickname' as plan_nickname,
        lower(data ->> 'currency') as plan_currency,
        data -> 'recurring' ->> 'interval' as plan_interval,
        (data -> 'recurring' ->> 'interval_count')::integer as plan_interval_count,
        coalesce(data -> 'recurring' ->> 'usage_type', 'licensed') as price_usage_type,
        coalesce((data ->> 'active')::boolean, true) as is_price_active,

        -- amounts (minor units)
        (data ->> 'unit_amount')::bigint as plan_price_in_cents,

        -- timestamps
        created as price_created_at,

        -- bookkeeping
        synced_at
    from prices
)

select * from renamed
