with

customer_fields as (
    select * from {{ ref('customer_fields') }}
),

-- Every customer in customer_fields.
members as (
    select * from customer_fields
)

select * from members
