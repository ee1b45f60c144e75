-- Each segment table has one row per member, and segment_memberships one per (segment, member).
-- A reader_guard check: an incremental build checks the customers it recomputed; the unique
-- indexes on the same keys make a merge that would break it fail instead of commit.
{{
    config(
        meta={'dagster': {'ref': {'name': 'segment_memberships'}}},
        tags=['reader_guard'],
    )
}}
{% set segments = [
    'syncing_with_stripe', 'current_trials', 'slipping_trials', 'slipping_customers',
    'expired_trials', 'customers', 'churned_customers', 'past_due_subscriptions',
] %}

with

segment_rows as (
    {% for segment in segments %}
        select
            '{{ segment }}' as source_table,
            '{{ segment }}' as segment,
            stripe_customer_id
        from {{ ref(segment) }}
        where {{ touched_customers_to_check('stripe_customer_id') }}

        union all
    {% endfor %}

    select
        'segment_memberships' as source_table,
        segment,
        stripe_customer_id
    from {{ ref('segment_memberships') }}
    where {{ touched_customers_to_check('stripe_customer_id') }}
),

duplicates as (
    select
        source_table,
        segment,
        stripe_customer_id,
        count(*) as row_count
    from segment_rows
    group by source_table, segment, stripe_customer_id
    having count(*) > 1
)

select * from duplicates
