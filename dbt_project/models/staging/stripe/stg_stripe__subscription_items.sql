with

subscriptions as (
    select * from {{ source('stripe_raw', 'subscriptions') }}
    where
        {{ in_key_mode() }}
        -- Stripe's customer.subscription.deleted means canceled, and the object it carries is the
        -- canceled subscription, which churn rules need: keep it unless only a stub is left.
        and (not is_deleted or data ? 'status')
),

-- Items are embedded in the subscription (data.items.data), each with its price expanded inline;
-- all of them, as the extractor completes the 10 Stripe embeds (extract/items.py).
-- Position 1 is "the first item" of docs/contract.md (Stripe keeps items in creation order).
items as (
    select
        subscriptions.id as subscription_id,
        case
            when jsonb_typeof(subscriptions.data -> 'customer') = 'object'
                then subscriptions.data -> 'customer' ->> 'id'
            else subscriptions.data ->> 'customer'
        end as stripe_customer_id,
        item.position as item_position,
        item.item_data
    from subscriptions
    cross join lateral jsonb_array_elements(
        {{ json_array_or_empty("subscriptions.data -> 'items' -> 'data'") }}
    ) with ordinality as item (item_data, position)
),

renamed as (
    select
        -- ids
        item_data ->> 'id' as subscription_item_id,
        subscription_id,
        stripe_customer_id,
        item_position::integer as item_position,
        coalesce(item_data -> 'price' ->> 'id', item_data -> 'plan' ->> 'id') as plan_id,
        -- price.product is a product id, or the product object when expanded.
        case
            when jsonb_typeof(item_data -> 'price' -> 'product') = 'object'
                then item_data -> 'price' -> 'product' ->> 'id'
            else item_data -> 'price' ->> 'product'
        end as product_id,

        -- attributes
        item_data -> 'price' -> 'product' ->> 'name' as expanded_product_name,
        item_data -> 'price' ->> 'nickname' as plan_nickname,
        lower(item_data -> 'price' ->> 'currency') as plan_currency,
        item_data -> 'price' -> 'recurring' ->> 'interval' as plan_interval,
        coalesce((item_data -> 'price' -> 'recurring' ->> 'interval_count')::integer, 1)
            as plan_interval_count,
        -- Stripe's default usage type is licensed; metered prices bill reported usage instead.
        coalesce(item_data -> 'price' -> 'recurring' ->> 'usage_type', 'licensed')
            as price_usage_type,
        coalesce((item_data ->> 'quantity')::bigint, 1) as quantity,

        -- amounts (minor units)
        (item_data -> 'price' ->> 'unit_amount')::bigint as plan_price_in_cents,

        -- timestamps
        {{ from_epoch("item_data ->> 'current_period_start'") }} as item_current_period_start
    from items
)

select * from renamed
