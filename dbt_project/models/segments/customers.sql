with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Paying: primary subscription active or past due.
members as (
    select * from customer_fields
    where
        subscription_status in ('active', 'past_due')
)

select * from members
