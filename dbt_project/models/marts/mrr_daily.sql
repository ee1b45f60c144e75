{#- MRR per customer per day (doc: mrr_daily), kept across builds.

    Each build writes its as_of day from customer_fields (a snapshot: the day's last build wins)
    and reconstructs the days no build recorded: every day before the first build, within
    `mrr_history_days` (default 400), and the days between two builds. Reconstructed days are
    never rewritten: what a later build could recompute would only be less (Stripe forgets events
    after 30 days).

    Never rebuilt (`full_refresh=false`), like segment_membership_history: the snapshots cannot
    be recomputed. Cost follows the change (doc: mrr_incremental_builds): a later build on the
    same UTC day rewrites only the touched customers' rows of the day (the others' rows, written
    from the same customer_fields values, stay); the first build of a new day writes every
    customer's new rows. The merge (mrr_days) upserts on (customer, day, mode):
    every customer that had a row on a day written gets one again (of 0 when its MRR is gone), so
    no stale row is left behind. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='mrr_days',
        full_refresh=false,
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['stripe_customer_id', 'mrr_date', 'livemode'], 'unique': true},
            {'columns': ['mrr_date']},
        ],
        pre_hook=["{{ plan_for_mrr_window(per_day=true) }}"],
        post_hook=[
            "{{ record_customer_keyed_state() }}",
            "create index if not exists mrr_daily__livemode_mrr_date_idx"
            ~ " on {{ this }} (livemode, mrr_date)",
        ],
    )
}}

with

customer_fields as (
    select * from {{ ref('customer_fields') }}
    where {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

-- The currency each customer's MRR is stated in (doc: mrr), as customer_fields' MRR uses it.
customer_currencies as (
    select * from {{ ref('int_mrr_summed_per_customer') }}
    where {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

states as (
    select * from {{ ref('int_mrr_subscription_states') }}
    where {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

state_discounts as (
    select * from {{ ref('int_mrr_subscription_state_discounts') }}
    where
        has_coupon_terms
        and {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

invoice_periods as (
    select * from {{ ref('int_mrr_invoice_periods') }}
    where {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
),

{% if is_incremental() %}
    -- The last day recorded in the key's mode, over every customer (an index finds it).
    recorded_until as (
        select max(mrr_date) as mrr_date from {{ this }}
        where {{ in_key_mode() }}
    ),
{% else %}
    recorded_until as (
        select null::date as mrr_date
    ),
{% endif %}

-- The snapshot day (as_of's UTC date) and the first day this build writes: the day after the
-- last recorded one, else the start of the reconstructed history. Days before the snapshot day
-- are reconstructed from the states and invoices; a later build of the same UTC day (a full
-- rebuild's usual case) writes none, and then reads neither (`reconstructed`'s one-time filter).
bounds as (
    select
        snapshot_date,
        first_date,
        first_date < snapshot_date as reconstructs_days
    from (
        select
            snapshot_date,
            case
                when recorded_until is null
                    then snapshot_date - {{ var('mrr_history_days', 400) }}
                when recorded_until >= snapshot_date then snapshot_date
                else recorded_until + 1
            end as first_date
        from (
            select
                ({{ as_of() }} at time zone 'UTC')::date as snapshot_date,
                (select recorded_until.mrr_date from recorded_until) as recorded_until
        ) as dates
    ) as day_bounds
),

-- The rows recorded on the days this build reads back: the day before the first one it writes and
-- the snapshot day (an index on the day finds them; the other days are never read).
{% if is_incremental() %}
    recorded as (
        select * from {{ this }}
        where
            {{ in_key_mode() }}
            and {{ mrr_touched_customers('stripe_customer_id', per_day=true) }}
            and mrr_date between (select bounds.first_date - 1 from bounds)
            and (select bounds.snapshot_date from bounds)
    ),
{% else %}
    recorded as (
        select
            null::text as stripe_customer_id,
            null::date as mrr_date,
            null::text as mrr_currency,
            null::numeric as customer_mrr
        where false
    ),
{% endif %}

-- A day's MRR is the rule applied at the day's end: the midnight (UTC) that starts the next day.
-- A state valid from `started` to `ended` holds at the end of the days from
-- ceil(started) - 1 to ceil(ended) - 2, ceil() being the first midnight at or after the instant.
event_days as (
    select
        states.stripe_event_id,
        states.subscription_id,
        states.stripe_customer_id,
        states.subscription_currency,
        states.gross_monthly_amount_in_cents,
        states.months_numerator,
        states.months_denominator,
        series.day_start::date as mrr_date,
        (series.day_start + interval '1 day') at time zone 'UTC' as day_ends_at
    from states
    cross join bounds
    cross join
        lateral generate_series(
            greatest(
                (
                    (states.state_started_at at time zone 'UTC')
                    + interval '1 day' - interval '1 microsecond'
                )::date - 1,
                bounds.first_date
            )::timestamp,
            least(
                coalesce(
                    ((states.state_ended_at at time zone 'UTC') - interval '1 microsecond')::date
                    - 1,
                    bounds.snapshot_date - 1
                ),
                bounds.snapshot_date - 1
            )::timestamp,
            interval '1 day'
        ) as series (day_start)
    where states.subscription_status in ('active', 'past_due')
),

-- Discounts in effect at the day's end that recur (doc: mrr): percent-offs multiply, amount-offs
-- in the subscription's currency add up.
event_day_discounts as (
    select
        event_days.stripe_event_id,
        event_days.mrr_date,
        coalesce(
            case
                when bool_or(state_discounts.coupon_percent_off >= 100) then 0
                else exp(sum(ln(1 - coalesce(state_discounts.coupon_percent_off, 0) / 100.0)))
            end,
            1
        ) as percent_factor,
        coalesce(
            sum(state_discounts.coupon_amount_off_in_cents) filter (
                where coalesce(state_discounts.coupon_currency, event_days.subscription_currency)
                = event_days.subscription_currency
            ),
            0
        ) as amount_off_per_period_in_cents
    from event_days
    inner join state_discounts
        on
            event_days.stripe_event_id = state_discounts.stripe_event_id
            and (
                state_discounts.discount_started_at is null
                or event_days.day_ends_at >= state_discounts.discount_started_at
            )
            and (
                state_discounts.coupon_duration = 'forever'
                or (
                    state_discounts.coupon_duration = 'repeating'
                    and (
                        state_discounts.discount_ends_at is null
                        or event_days.day_ends_at < state_discounts.discount_ends_at
                    )
                )
            )
    group by event_days.stripe_event_id, event_days.mrr_date
),

event_subscription_days as (
    select
        event_days.subscription_id,
        event_days.stripe_customer_id,
        event_days.subscription_currency,
        event_days.mrr_date,
        greatest(
            event_days.gross_monthly_amount_in_cents
            * coalesce(event_day_discounts.percent_factor, 1)
            - coalesce(
                event_day_discounts.amount_off_per_period_in_cents
                * event_days.months_numerator::numeric
                / event_days.months_denominator,
                0
            ),
            0
        ) as monthly_amount_in_cents
    from event_days
    left join event_day_discounts
        on
            event_days.stripe_event_id = event_day_discounts.stripe_event_id
            and event_days.mrr_date = event_day_discounts.mrr_date
),

-- Before a subscription's first event (Stripe keeps 30 days of them), its invoices tell what it
-- billed for each period.
first_events as (
    select
        subscription_id,
        min(state_started_at) as first_event_at
    from states
    group by subscription_id
),

invoice_days as (
    select distinct on (invoice_periods.subscription_id, series.day_start)
        invoice_periods.subscription_id,
        invoice_periods.stripe_customer_id,
        invoice_periods.subscription_currency,
        series.day_start::date as mrr_date,
        invoice_periods.monthly_amount_in_cents
    from invoice_periods
    cross join bounds
    left join first_events
        on invoice_periods.subscription_id = first_events.subscription_id
    cross join
        lateral generate_series(
            greatest(
                (
                    (invoice_periods.period_started_at at time zone 'UTC')
                    + interval '1 day' - interval '1 microsecond'
                )::date - 1,
                bounds.first_date
            )::timestamp,
            least(
                (
                    (
                        least(invoice_periods.period_ends_at, first_events.first_event_at)
                        at time zone 'UTC'
                    )
                    - interval '1 microsecond'
                )::date - 1,
                bounds.snapshot_date - 1
            )::timestamp,
            interval '1 day'
        ) as series (day_start)
    -- Overlapping invoices of one subscription: the latest period wins.
    order by
        invoice_periods.subscription_id asc,
        series.day_start asc,
        invoice_periods.period_started_at desc,
        invoice_periods.invoice_id desc
),

subscription_days as (
    select
        subscription_id,
        stripe_customer_id,
        subscription_currency,
        mrr_date,
        monthly_amount_in_cents
    from event_subscription_days

    union all

    select
        subscription_id,
        stripe_customer_id,
        subscription_currency,
        mrr_date,
        monthly_amount_in_cents
    from invoice_days
),

-- Per customer and day, in the customer's currency (subscriptions in another count nothing),
-- rounded once to a whole minor unit, as customer_fields does.
reconstructed as (
    select
        subscription_days.stripe_customer_id,
        subscription_days.mrr_date,
        customer_currencies.mrr_currency,
        round(sum(subscription_days.monthly_amount_in_cents))::bigint as customer_mrr_in_cents
    from subscription_days
    inner join customer_currencies
        on
            subscription_days.stripe_customer_id = customer_currencies.stripe_customer_id
            and subscription_days.subscription_currency = customer_currencies.mrr_currency
    where (select bounds.reconstructs_days from bounds)
    group by
        subscription_days.stripe_customer_id,
        subscription_days.mrr_date,
        customer_currencies.mrr_currency
),

reconstructed_rows as (
    select
        stripe_customer_id,
        mrr_date,
        mrr_currency,
        {{ to_major_units('customer_mrr_in_cents', 'mrr_currency') }} as customer_mrr,
        true as is_reconstructed
    from reconstructed
    where customer_mrr_in_cents > 0
),

snapshot_rows as (
    select
        customer_fields.stripe_customer_id,
        bounds.snapshot_date as mrr_date,
        customer_currencies.mrr_currency,
        customer_fields.customer_mrr,
        false as is_reconstructed
    from customer_fields
    cross join bounds
    inner join customer_currencies
        on customer_fields.stripe_customer_id = customer_currencies.stripe_customer_id
    where customer_fields.customer_mrr > 0
),

positive_rows as (
    select * from reconstructed_rows
    union all
    select * from snapshot_rows
),

-- Days written now whose customer had MRR the day before and has none now get a row of 0 in the
-- previous day's currency: the day it fell to 0. So does a customer whose row for the snapshot day
-- an earlier build wrote no longer has MRR (the day is replaced as a whole).
previous_days as (
    select
        positive_rows.stripe_customer_id,
        positive_rows.mrr_date + 1 as mrr_date,
        positive_rows.mrr_currency
    from positive_rows

    union all

    select
        recorded.stripe_customer_id,
        recorded.mrr_date + 1 as mrr_date,
        recorded.mrr_currency
    from recorded
    cross join bounds
    where
        recorded.mrr_date = bounds.first_date - 1
        and recorded.customer_mrr > 0

    union all

    select
        recorded.stripe_customer_id,
        recorded.mrr_date,
        recorded.mrr_currency
    from recorded
    cross join bounds
    where recorded.mrr_date = bounds.snapshot_date
),

zero_rows as (
    select distinct on (previous_days.stripe_customer_id, previous_days.mrr_date)
        previous_days.stripe_customer_id,
        previous_days.mrr_date,
        previous_days.mrr_currency,
        0::numeric as customer_mrr,
        previous_days.mrr_date < bounds.snapshot_date as is_reconstructed
    from previous_days
    cross join bounds
    where
        previous_days.mrr_date between bounds.first_date and bounds.snapshot_date
        and not exists (
            select 1 from positive_rows
            where
                positive_rows.stripe_customer_id = previous_days.stripe_customer_id
                and positive_rows.mrr_date = previous_days.mrr_date
        )
    order by previous_days.stripe_customer_id, previous_days.mrr_date, previous_days.mrr_currency
),

rows_written as (
    select * from positive_rows
    union all
    select * from zero_rows
),

final as (
    select
        -- ids
        stripe_customer_id,
        mrr_date,

        -- attributes
        mrr_currency,
        is_reconstructed,

        -- amounts (major units)
        customer_mrr,

        -- bookkeeping: the mode of the key that wrote the row
        ({{ in_key_mode('true') }}) as livemode
    from rows_written
)

select * from final
