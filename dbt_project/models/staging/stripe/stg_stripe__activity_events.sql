with

-- Written by the user, not by Stripe: it has no mode, and either identifier may be missing.
activity_events as (
    select * from {{ source('stripe_raw', 'activity_events') }}
),

renamed as (
    select
        -- ids
        nullif(trim(stripe_customer_id), '') as stripe_customer_id,

        -- attributes
        lower(nullif(trim(customer_email), '')) as customer_email_lower,

        -- timestamps
        occurred_at
    from activity_events
)

select * from renamed
