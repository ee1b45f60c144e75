{#- Customer-keyed incremental (doc: incremental_builds): the touched customers' rows are
    recomputed and swapped in one transaction. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}", "{{ apply_product_renames() }}"],
    )
}}

with

customer_fields as (
    select * from {{ ref('customer_fields') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- Primary subscription past due.
members as (
    select * from customer_fields
    where
        subscription_status = 'past_due'
)

select * from members
