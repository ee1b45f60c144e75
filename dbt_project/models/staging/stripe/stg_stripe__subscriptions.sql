with

subscriptions as (
    select * from {{ source('stripe_raw', 'subscriptions') }}
    where
        {{ in_key_mode() }}
        -- Stripe's customer.subscription.deleted means canceled, and the object it carries is the
        -- canceled subscription, which churn rules need: keep it unless only a stub is left.
        and (not is_deleted or data ? 'status')
),

renamed as (
    select
        -- ids
        id as subscription_id,
        -- `customer` is an id, or the customer object when a caller expanded it.
        case
            when jsonb_typeof(data -> 'customer') = 'object' then data -> 'customer' ->> 'id'
            else data ->> 'customer'
        end as stripe_customer_id,

        -- attributes
        data ->> 'status' as subscription_status,
        coalesce((data ->> 'cancel_at_period_end')::boolean, false)
            as subscription_cancel_at_period_end,
        -- Newer API versions carry the currency on the subscription; older ones only on prices.
        lower(coalesce(
            data ->> 'currency',
            data -> 'items' -> 'data' -> 0 -> 'price' ->> 'currency',
            data -> 'plan' ->> 'currency'
        )) as subscription_currency,

        -- timestamps
        coalesce({{ from_epoch("data ->> 'created'") }}, created) as subscription_created_at,
        {{ from_epoch("data ->> 'canceled_at'") }} as subscription_canceled_at,
        {{ from_epoch("data ->> 'trial_start'") }} as subscription_trial_started_at,
        {{ from_epoch("data ->> 'trial_end'") }} as subscription_trial_ends_at,
        -- API versions before 2025-03-31.basil have current_period_start on the subscription;
        -- later ones only on items (see stg_stripe__subscription_items).
        {{ from_epoch("data ->> 'current_period_start'") }} as subscription_current_period_start,

        -- bookkeeping
        synced_at
    from subscriptions
)

select * from renamed
