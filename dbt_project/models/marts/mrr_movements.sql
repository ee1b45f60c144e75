{#- How each customer's MRR moved each day (doc: mrr_movements), from mrr_daily in the key's mode.
    Customer-keyed (doc: mrr_incremental_builds): a build recomputes the touched customers'
    movements from their days of mrr_daily; every customer's on the first build of a new day. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='mrr_keyed',
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        mrr_per_day=true,
        indexes=[
            {'columns': ['stripe_customer_id', 'mrr_date', 'mrr_currency'], 'unique': true},
            {'columns': ['mrr_date']},
        ],
        pre_hook=["{{ plan_for_mrr_window(per_day=true) }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

daily as (
    select * from {{ ref('mrr_daily') }}
    where
        {{ in_key_mode() }}
        and {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

-- A customer without a row on a day had MRR 0 that day; the last day known is the last written,
-- over every customer (an index finds it).
last_day as (
    select max(mrr_date) as mrr_date from {{ ref('mrr_daily') }}
    where {{ in_key_mode() }}
),

-- The first day the customer had MRR above 0 in any currency: its `new` day.
first_positive_days as (
    select
        stripe_customer_id,
        min(mrr_date) as mrr_date
    from daily
    where customer_mrr > 0
    group by stripe_customer_id
),

-- Every (customer, currency, day) whose MRR may differ from the day before: a day with a row,
-- and the day after one (its MRR may have fallen to 0 without a row saying so).
candidate_days as (
    select
        stripe_customer_id,
        mrr_currency,
        mrr_date
    from daily

    union

    select
        daily.stripe_customer_id,
        daily.mrr_currency,
        daily.mrr_date + 1 as mrr_date
    from daily
    cross join last_day
    where daily.mrr_date < last_day.mrr_date
),

-- Per currency: a customer whose MRR changes currency leaves one (churn) and re-enters the other
-- (reactivation), with no exchange rate involved.
compared as (
    select
        candidate_days.stripe_customer_id,
        candidate_days.mrr_date,
        candidate_days.mrr_currency,
        coalesce(yesterday.customer_mrr, 0) as previous_mrr,
        coalesce(today.customer_mrr, 0) as customer_mrr,
        coalesce(today.is_reconstructed, false)
        or coalesce(yesterday.is_reconstructed, false) as is_reconstructed,
        candidate_days.mrr_date = first_positive_days.mrr_date as is_first_positive_day
    from candidate_days
    left join daily as today
        on
            candidate_days.stripe_customer_id = today.stripe_customer_id
            and candidate_days.mrr_currency = today.mrr_currency
            and candidate_days.mrr_date = today.mrr_date
    left join daily as yesterday
        on
            candidate_days.stripe_customer_id = yesterday.stripe_customer_id
            and candidate_days.mrr_currency = yesterday.mrr_currency
            and candidate_days.mrr_date - 1 = yesterday.mrr_date
    left join first_positive_days
        on candidate_days.stripe_customer_id = first_positive_days.stripe_customer_id
),

-- Exactly one movement is non-zero, and it is the change: the five sum to MRR's change.
classified as (
    select
        *,
        case
            when previous_mrr = 0 and customer_mrr > 0 and is_first_positive_day
                then customer_mrr
            else 0
        end as new,  -- noqa: RF04
        case
            when previous_mrr > 0 and customer_mrr > previous_mrr
                then customer_mrr - previous_mrr
            else 0
        end as expansion,
        case
            when previous_mrr > 0 and customer_mrr > 0 and customer_mrr < previous_mrr
                then customer_mrr - previous_mrr
            else 0
        end as contraction,
        case
            when previous_mrr > 0 and customer_mrr = 0
                then -previous_mrr
            else 0
        end as churn,
        case
            when previous_mrr = 0 and customer_mrr > 0 and not is_first_positive_day
                then customer_mrr
            else 0
        end as reactivation
    from compared
    where customer_mrr <> previous_mrr
),

final as (
    select
        -- ids
        stripe_customer_id,
        mrr_date,

        -- attributes
        mrr_currency,
        is_reconstructed,

        -- amounts (major units of mrr_currency)
        previous_mrr,
        customer_mrr,
        new,
        expansion,
        contraction,
        churn,
        reactivation,

        -- bookkeeping
        ({{ in_key_mode('true') }}) as livemode
    from classified
)

select * from final
