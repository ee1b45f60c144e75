with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Primary subscription canceled, incomplete_expired or unpaid.
members as (
    select * from customer_fields
    where
        subscription_status in ('canceled', 'incomplete_expired', 'unpaid')
)

select * from members
