with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Primary subscription past due.
members as (
    select * from customer_fields
    where
        subscription_status = 'past_due'
)

select * from members
