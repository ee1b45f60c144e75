-- customer_fields has exactly the customers of the key's mode that are not deleted, and MRR is
-- never negative.
select
    coalesce(staged.stripe_customer_id, customer_fields.stripe_customer_id) as stripe_customer_id,
    customer_fields.customer_mrr
from {{ ref('stg_stripe__customers') }} as staged
full outer join {{ ref('customer_fields') }} as customer_fields
    on staged.stripe_customer_id = customer_fields.stripe_customer_id
where
    staged.stripe_customer_id is null
    or customer_fields.stripe_customer_id is null
    or customer_fields.customer_mrr < 0
