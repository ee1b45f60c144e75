{#- Customer-keyed (doc: mrr_incremental_builds; configured by its folder, mrr_history, in
    dbt_project.yml): a build recomputes the touched customers' invoices (a written invoice
    touches its customer); every customer when the MRR window is full. -#}
with

lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
    where
        subscription_id is not null
        and is_subscription_line
        and not is_proration
        -- A void invoice was never owed; a draft is a renewal about to be finalized.
        and invoice_status in ('draft', 'open', 'paid', 'uncollectible')
        and {{ mrr_touched_customers('stripe_customer_id') }}
),

prices as (
    select * from {{ ref('stg_stripe__prices') }}
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
    where {{ mrr_touched_customers('stripe_customer_id') }}
),

-- A line's price says whether it counts (licensed) and how its period goes to a month, as in
-- int_subscription_items_normalized_to_month: year / 12, week * 52 / 12, day * 365 / 12, then
-- / interval_count.
counted_lines as (
    select
        lines.*,
        case prices.plan_interval
            when 'month' then 1
            when 'year' then 1
            when 'week' then 52
            when 'day' then 365
        end as months_numerator,
        case prices.plan_interval
            when 'month' then 1
            else 12
        end * nullif(coalesce(prices.plan_interval_count, 1), 0) as months_denominator
    from lines
    inner join prices
        on lines.plan_id = prices.plan_id
    where prices.price_usage_type = 'licensed'
),

-- One period per invoice of a subscription: what its licensed lines bill after discounts (the
-- lines' discount_amounts, else the invoice's total discount), per month.
invoice_periods as (
    select
        invoice_id,
        subscription_id,
        stripe_customer_id,
        invoice_currency,
        invoice_status,
        min(line_period_started_at) as period_started_at,
        max(line_period_ends_at) as period_ends_at,
        greatest(
            sum(line_amount_in_cents)
            - case
                when sum(line_discount_in_cents) > 0 then sum(line_discount_in_cents)
                else max(invoice_discount_in_cents)
            end,
            0
        )
        * min(months_numerator) filter (where line_position = first_position)::numeric
        / min(months_denominator) filter (where line_position = first_position)
            as monthly_amount_in_cents
    from (
        select
            *,
            min(line_position) over (partition by invoice_id) as first_position
        from counted_lines
    ) as ranked_lines
    group by invoice_id, subscription_id, stripe_customer_id, invoice_currency, invoice_status
),

-- Which periods count, by what the subscription is now (its past statuses are not known):
-- - an unpaid invoice (open, uncollectible) counts nothing when the subscription is now
--   incomplete, incomplete_expired, unpaid or paused: statuses that earn nothing, which unpaid
--   invoices lead to; otherwise it was past due, which counts;
-- - a canceled subscription earns nothing after its cancellation, even inside a paid period;
-- - the latest period of a subscription that is active or past due now lasts until now: its next
--   invoice may not exist yet (Stripe finalizes a renewal about an hour after the period ends).
ranked_periods as (
    select
        invoice_periods.*,
        subscriptions.subscription_status,
        subscriptions.subscription_canceled_at,
        row_number() over (
            partition by invoice_periods.subscription_id
            order by invoice_periods.period_started_at desc, invoice_periods.invoice_id desc
        ) = 1 as is_latest_period
    from invoice_periods
    left join subscriptions
        on invoice_periods.subscription_id = subscriptions.subscription_id
    where
        invoice_periods.period_started_at is not null
        and invoice_periods.period_ends_at is not null
        and not (
            invoice_periods.invoice_status in ('open', 'uncollectible')
            and subscriptions.subscription_status in (
                'incomplete', 'incomplete_expired', 'unpaid', 'paused'
            )
        )
),

final as (
    select
        -- ids
        invoice_id,
        subscription_id,
        stripe_customer_id,

        -- attributes
        invoice_currency as subscription_currency,

        -- amounts (minor units, not rounded)
        coalesce(monthly_amount_in_cents, 0) as monthly_amount_in_cents,

        -- timestamps
        period_started_at,
        case
            when
                subscription_status in ('canceled', 'incomplete_expired')
                and subscription_canceled_at is not null
                then least(period_ends_at, subscription_canceled_at)
            when is_latest_period and subscription_status in ('active', 'past_due')
                then 'infinity'::timestamptz
            else period_ends_at
        end as period_ends_at
    from ranked_periods
)

select * from final
