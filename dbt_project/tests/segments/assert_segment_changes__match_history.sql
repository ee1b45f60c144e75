-- segment_changes holds each entry and exit of segment_membership_history once, no more, no fewer.
with

history as (
    select * from {{ ref('segment_membership_history') }}
),

changes as (
    select * from {{ ref('segment_changes') }}
),

history_changes as (
    select
        segment,
        stripe_customer_id,
        'entered' as change,  -- noqa: RF04
        entered_at as detected_at
    from history

    union all

    select
        segment,
        stripe_customer_id,
        'exited' as change,  -- noqa: RF04
        exited_at as detected_at
    from history
    where exited_at is not null
),

feed_counts as (
    select
        segment,
        stripe_customer_id,
        change,
        detected_at,
        count(*) as feed_count
    from changes
    group by segment, stripe_customer_id, change, detected_at
),

differences as (
    select
        coalesce(history_changes.segment, feed_counts.segment) as segment,
        coalesce(history_changes.stripe_customer_id, feed_counts.stripe_customer_id)
            as stripe_customer_id,
        coalesce(history_changes.change, feed_counts.change) as change,  -- noqa: RF04
        coalesce(history_changes.detected_at, feed_counts.detected_at) as detected_at,
        coalesce(feed_counts.feed_count, 0) as feed_count
    from history_changes
    full outer join feed_counts
        on
            history_changes.segment = feed_counts.segment
            and history_changes.stripe_customer_id = feed_counts.stripe_customer_id
            and history_changes.change = feed_counts.change
            and history_changes.detected_at = feed_counts.detected_at
    where
        history_changes.segment is null
        or feed_counts.segment is null
        or feed_counts.feed_count > 1
)

select * from differences
