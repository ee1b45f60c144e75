-- customer_fields has exactly the customers of the key's mode that are not deleted, and MRR is
-- never negative.
-- The model this test checks, so Dagster shows it as that model's asset check (set here, not
-- in a yml: dbt's partial parsing drops a singular test's yml config).
{{ config(meta={'dagster': {'ref': {'name': 'customer_fields'}}}) }}
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
