with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Paying (active or past due), and no activity in the 15 days before as_of()
-- (strictly more than 15 days ago).
members as (
    select * from customer_fields
    where
        subscription_status in ('active', 'past_due')
        and last_activity_at < {{ as_of() }} - interval '15 days'
)

select * from members
