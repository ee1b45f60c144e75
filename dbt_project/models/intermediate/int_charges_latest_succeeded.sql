{{
    config(
        materialized='incremental',
        incremental_strategy='customer_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

charges as (
    select * from {{ ref('stg_stripe__charges') }}
    where
        charge_status = 'succeeded'
        and stripe_customer_id is not null
        and {{ touched_customers('stripe_customer_id') }}
),

-- "Last amount paid" is the newest succeeded charge; equal seconds fall back to the greater id.
latest as (
    select distinct on (stripe_customer_id) *
    from charges
    order by stripe_customer_id asc, charge_created_at desc, charge_id desc
),

final as (
    select
        -- ids
        stripe_customer_id,
        charge_id,

        -- attributes
        payment_currency,
        payment_description,

        -- amounts
        charge_amount_in_cents as last_amount_paid_in_cents,
        {{ to_major_units('charge_amount_in_cents', 'payment_currency') }} as last_amount_paid,

        -- timestamps
        charge_created_at
    from latest
)

select * from final
