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

-- Each (customer, currency) day with its neighbours, in one sort: the day before's row (when it is
-- the calendar day before, else MRR was 0 that day) and whether the day after has a row.
sequenced as (
    select
        stripe_customer_id,
        mrr_currency,
        mrr_date,
        coalesce(customer_mrr, 0) as customer_mrr,
        coalesce(is_reconstructed, false) as is_reconstructed,
        lag(mrr_date) over by_day as previous_date,
        case
            when lag(mrr_date) over by_day = mrr_date - 1
                then coalesce(lag(customer_mrr) over by_day, 0)
            else 0
        end as previous_mrr,
        coalesce(lag(is_reconstructed) over by_day, false) as is_previous_row_reconstructed,
        lead(mrr_date) over by_day as next_date
    from daily
    window by_day as (partition by stripe_customer_id, mrr_currency order by mrr_date)
),

-- The days where MRR may move: a row whose MRR differs from the day before's, or with no row the
-- day after. Most of the history is unchanged days: kept apart from them, the two reads below
-- do not store every day of every customer (2 GB at 1M customers). The customer's first day with
-- MRR above 0 in any currency (its `new` day) is among these rows (the day before had none), so
-- its window reads them only.
moving as (
    select
        *,
        min(mrr_date) filter (where customer_mrr > 0) over (
            partition by stripe_customer_id
        ) as first_positive_date
    from sequenced
    where
        customer_mrr <> previous_mrr
        or next_date is null
        or next_date > mrr_date + 1
),

-- Every (customer, currency, day) whose MRR may differ from the day before: a day with a row,
-- and the day after one with none (its MRR fell to 0 without a row saying so). Per currency: a
-- customer whose MRR changes currency leaves one (churn) and re-enters the other
-- (reactivation), with no exchange rate involved.
compared as (
    select
        stripe_customer_id,
        mrr_date,
        mrr_currency,
        previous_mrr,
        customer_mrr,
        is_reconstructed
        or (coalesce(previous_date = mrr_date - 1, false) and is_previous_row_reconstructed)
            as is_reconstructed,
        mrr_date = first_positive_date as is_first_positive_day
    from moving
    -- A day without a currency has no MRR to compare (mrr_daily's tests forbid it).
    where mrr_currency is not null

    union all

    select
        moving.stripe_customer_id,
        moving.mrr_date + 1 as mrr_date,
        moving.mrr_currency,
        moving.customer_mrr as previous_mrr,
        0 as customer_mrr,
        moving.is_reconstructed,
        false as is_first_positive_day
    from moving
    cross join last_day
    where
        moving.mrr_currency is not null
        and moving.mrr_date < last_day.mrr_date
        and (moving.next_date is null or moving.next_date > moving.mrr_date + 1)
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
