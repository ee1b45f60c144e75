with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Trialing, and no activity in the 2 days before as_of() (strictly more than 2 days ago).
members as (
    select * from customer_fields
    where
        subscription_status = 'trialing'
        and last_activity_at < {{ as_of() }} - interval '2 days'
)

select * from members
