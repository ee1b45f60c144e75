-- For each currency and every day from mrr_daily's first to its last (key's mode), the movements up
-- to that day sum exactly to that day's total MRR: so over any period they sum to the change in
-- total MRR. Also: each row's movements sum to its change, and exactly one of them is not 0.
{{ config(meta={'dagster': {'ref': {'name': 'mrr_movements'}}}) }}

with

daily as (
    select * from {{ ref('mrr_daily') }}
    where {{ in_key_mode() }}
),

movements as (
    select * from {{ ref('mrr_movements') }}
),

calendar as (
    select series.day_start::date as mrr_date
    from (
        select
            min(mrr_date) as first_date,
            max(mrr_date) as last_date
        from daily
    ) as bounds
    cross join lateral generate_series(
        bounds.first_date::timestamp, bounds.last_date::timestamp, interval '1 day'
    ) as series (day_start)
),

currencies as (
    select distinct mrr_currency from daily
    union
    select distinct mrr_currency from movements
),

daily_totals as (
    select
        mrr_currency,
        mrr_date,
        sum(customer_mrr) as total_mrr
    from daily
    group by mrr_currency, mrr_date
),

daily_movements as (
    select
        mrr_currency,
        mrr_date,
        sum(new + expansion + contraction + churn + reactivation) as moved
    from movements
    group by mrr_currency, mrr_date
),

running as (
    select
        currencies.mrr_currency,
        calendar.mrr_date,
        coalesce(daily_totals.total_mrr, 0) as total_mrr,
        sum(coalesce(daily_movements.moved, 0)) over (
            partition by currencies.mrr_currency
            order by calendar.mrr_date
        ) as moved_so_far
    from currencies
    cross join calendar
    left join daily_totals
        on
            currencies.mrr_currency = daily_totals.mrr_currency
            and calendar.mrr_date = daily_totals.mrr_date
    left join daily_movements
        on
            currencies.mrr_currency = daily_movements.mrr_currency
            and calendar.mrr_date = daily_movements.mrr_date
),

-- Movements outside mrr_daily's days would escape the running sums above.
stray_movements as (
    select
        'movement outside mrr_daily''s days' as problem,
        movements.mrr_currency,
        movements.mrr_date,
        null::numeric as total_mrr,
        null::numeric as moved_so_far
    from movements
    left join calendar
        on movements.mrr_date = calendar.mrr_date
    where calendar.mrr_date is null
),

bad_rows as (
    select
        'a row whose movements are not its change, or not exactly one' as problem,
        mrr_currency,
        mrr_date,
        customer_mrr as total_mrr,
        previous_mrr as moved_so_far
    from movements
    where
        new + expansion + contraction + churn + reactivation <> customer_mrr - previous_mrr
        or (
            (new <> 0)::int + (expansion <> 0)::int + (contraction <> 0)::int
            + (churn <> 0)::int + (reactivation <> 0)::int
        )
        <> 1
),

failures as (
    select
        'movements up to the day do not sum to its total MRR' as problem,
        mrr_currency,
        mrr_date,
        total_mrr,
        moved_so_far
    from running
    where total_mrr <> moved_so_far

    union all

    select * from stray_movements

    union all

    select * from bad_rows
)

select * from failures
