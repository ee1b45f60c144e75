with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Still trialing although the trial end is before as_of(); at the end instant itself,
-- not yet expired.
members as (
    select * from customer_fields
    where
        subscription_status = 'trialing'
        and subscription_trial_ends_at < {{ as_of() }}
)

select * from members
