-- segment_memberships holds each segment table's members, no more and no fewer.
-- The model this test checks, so Dagster shows it as that model's asset check (set here, not
-- in a yml: dbt's partial parsing drops a singular test's yml config). A reader_guard check: it
-- runs on every build, and an incremental build checks the customers it recomputed (the others'
-- rows did not change).
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

segment_members as (
    {% for segment in segments %}
        select
            '{{ segment }}' as segment,
            stripe_customer_id
        from {{ ref(segment) }}
        where {{ touched_customers_to_check('stripe_customer_id') }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

memberships as (
    select
        segment,
        stripe_customer_id
    from {{ ref('segment_memberships') }}
    where {{ touched_customers_to_check('stripe_customer_id') }}
),

missing as (
    select
        segment,
        stripe_customer_id
    from segment_members

    except

    select
        segment,
        stripe_customer_id
    from memberships
),

extra as (
    select
        segment,
        stripe_customer_id
    from memberships

    except

    select
        segment,
        stripe_customer_id
    from segment_members
),

differences as (
    select
        'missing' as problem,
        segment,
        stripe_customer_id
    from missing

    union all

    select
        'extra' as problem,
        segment,
        stripe_customer_id
    from extra
)

select * from differences
