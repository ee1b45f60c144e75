with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Trialing primary subscription.
members as (
    select * from customer_fields
    where
        subscription_status = 'trialing'
)

select * from members
