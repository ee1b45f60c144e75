-- The month's MRR bridge per currency, in the key's mode: MRR at the end of the day before the
-- month, the month's movements, and MRR at the end of its last day written so far (the month's
-- last day, or the latest build's). start_mrr + the five movements = end_mrr, exactly.
-- A view: it costs nothing on a build, and the mrr_movements asset's page and `stripe-sync demo`
-- read it. `dbt compile --select int_mrr_bridge --vars '{bridge_month: "2026-11-01"}'` gives the
-- SQL of another month; without the var, the month of as_of.
{{ config(materialized='view', post_hook=[]) }}

with

bounds as (
    select
        month_start as first_date,
        least(
            (month_start + interval '1 month' - interval '1 day')::date,
            (
                select max(daily.mrr_date) from {{ ref('mrr_daily') }} as daily
                where {{ in_key_mode() }}
            )
        ) as last_date
    from (
        select
            {%- if var('bridge_month', '') %}
                date_trunc('month', '{{ var("bridge_month") }}'::date)::date
            {%- else %}
                date_trunc('month', {{ as_of() }} at time zone 'UTC')::date
            {%- endif %} as month_start
    ) as months
),

totals as (
    select
        mrr_currency,
        mrr_date,
        sum(customer_mrr) as total_mrr
    from {{ ref('mrr_daily') }}
    where {{ in_key_mode() }}
    group by mrr_currency, mrr_date
),

moved as (
    select
        movements.mrr_currency,
        sum(movements.new) as new,  -- noqa: RF04
        sum(movements.expansion) as expansion,
        sum(movements.contraction) as contraction,
        sum(movements.churn) as churn,
        sum(movements.reactivation) as reactivation
    from {{ ref('mrr_movements') }} as movements
    cross join bounds
    where movements.mrr_date between bounds.first_date and bounds.last_date
    group by movements.mrr_currency
),

bridge as (
    select
        currencies.mrr_currency,
        coalesce(start_totals.total_mrr, 0) as start_mrr,
        coalesce(month_moves.new, 0) as new,  -- noqa: RF04
        coalesce(month_moves.expansion, 0) as expansion,
        coalesce(month_moves.contraction, 0) as contraction,
        coalesce(month_moves.churn, 0) as churn,
        coalesce(month_moves.reactivation, 0) as reactivation,
        coalesce(end_totals.total_mrr, 0) as end_mrr
    from (
        select mrr_currency from totals
        union
        select mrr_currency from moved
    ) as currencies
    cross join bounds
    left join totals as start_totals
        on
            currencies.mrr_currency = start_totals.mrr_currency
            and bounds.first_date - 1 = start_totals.mrr_date
    left join moved as month_moves
        on currencies.mrr_currency = month_moves.mrr_currency
    left join totals as end_totals
        on
            currencies.mrr_currency = end_totals.mrr_currency
            and bounds.last_date = end_totals.mrr_date
)

select * from bridge
where start_mrr <> 0 or end_mrr <> 0 or new <> 0 or churn <> 0 or reactivation <> 0
order by mrr_currency
