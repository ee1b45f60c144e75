{#- The change feed: one row per entry into or exit from a segment, appended on every build.

    Each entry and each exit segment_membership_history records becomes one row, once: a change
    is new when no row has its (segment, customer, change, detected_at) yet. change_id continues
    from the largest one issued, in a fixed order, so ids increase with every build and are never
    reused; builds of a warehouse never overlap (an advisory lock) and each build's rows commit in
    one transaction, so a reader polling "change_id > N" never sees a gap that fills later.
    Never rebuilt (`full_refresh=false`): a rebuild would renumber changes tools already read; a
    column added later is appended (null on older rows). The unique index on change_id makes a
    build that would reuse an id fail instead.

    Customer-keyed (doc: incremental_builds): new changes come from the customers whose stays
    segment_membership_history compared, the touched ones (this model records its window too, so
    the customers of a build it missed are caught up by the next), and an incremental build reads
    only their stays and feed rows, by customer index, and the last change_id, by its index. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['change_id'], 'unique': true},
            {'columns': ['segment', 'stripe_customer_id', 'detected_at']},
        ],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

history as (
    select * from {{ ref('segment_membership_history') }}
    where
        {{ in_key_mode() }}
        and {{ touched_customers('stripe_customer_id') }}
),

customer_fields as (
    select * from {{ ref('customer_fields') }}
    where {{ touched_customers('stripe_customer_id') }}
),

{% if is_incremental() %}
    recorded as (
        select * from {{ this }}
        where {{ touched_customers('stripe_customer_id') }}
    ),

    -- Read apart from `recorded`: the largest change_id of every customer, by its index.
    issued as (
        select coalesce(max(change_id), 0) as last_change_id
        from {{ this }}
    ),
{% else %}
    recorded as (
        select
            null::bigint as change_id,
            null::text as segment,
            null::text as stripe_customer_id,
            null::text as customer_email,
            null::text as change,
            null::timestamptz as detected_at
        where false
    ),

    issued as (
        select 0::bigint as last_change_id
    ),
{% endif %}

-- Every entry and exit of the history. An entry's real moment is the stay's changed_at only
-- while the stay is open (once closed, changed_at speaks of the exit).
history_changes as (
    select
        segment,
        stripe_customer_id,
        'entered' as change,  -- noqa: RF04
        case when exited_at is null then changed_at end as changed_at,
        entered_at as detected_at
    from history

    union all

    select
        segment,
        stripe_customer_id,
        'exited' as change,  -- noqa: RF04
        changed_at,
        exited_at as detected_at
    from history
    where exited_at is not null
),

-- Changes not in the feed yet (a build whose feed failed is caught up by the next).
new_changes as (
    select history_changes.*
    from history_changes
    where
        not exists (
            select 1 from recorded
            where
                recorded.segment = history_changes.segment
                and recorded.stripe_customer_id = history_changes.stripe_customer_id
                and recorded.change = history_changes.change
                and recorded.detected_at = history_changes.detected_at
        )
),

-- The email now, else the last one the feed knew (a deleted customer has left customer_fields).
known_emails as (
    select distinct on (stripe_customer_id)
        stripe_customer_id,
        customer_email
    from recorded
    where customer_email is not null
    order by stripe_customer_id asc, change_id desc
),

numbered as (
    select
        issued.last_change_id
        + row_number() over (
            order by
                new_changes.detected_at asc,
                new_changes.change desc,
                new_changes.segment asc,
                new_changes.stripe_customer_id asc
        ) as change_id,
        new_changes.segment,
        new_changes.stripe_customer_id,
        coalesce(customer_fields.customer_email, known_emails.customer_email) as customer_email,
        new_changes.change,
        new_changes.changed_at,
        new_changes.detected_at
    from new_changes
    cross join issued
    left join customer_fields
        on new_changes.stripe_customer_id = customer_fields.stripe_customer_id
    left join known_emails
        on new_changes.stripe_customer_id = known_emails.stripe_customer_id
),

final as (
    select
        -- ids
        change_id,
        segment,
        stripe_customer_id,

        -- attributes
        customer_email,
        change,

        -- timestamps
        changed_at,
        detected_at,

        -- bookkeeping: the mode of the key that detected the change
        ({{ in_key_mode('true') }}) as livemode
    from numbered
)

select * from final
