{#- One row per stay of a customer in a segment, kept across builds.

    An incremental model rather than a dbt snapshot: a snapshot stamps rows with the wall clock
    (or an `updated_at` column) and records a changed row, not a stay; here every time is the
    build's as_of(), a stay must close when its customer leaves segment_memberships (whatever the
    reason), and a re-entry must open a new row. That is one comparison of the current members with
    the open stays, which an incremental model states in plain SQL.

    Never rebuilt (`full_refresh=false`): the past cannot be recomputed from the raw tables (they
    hold the present), so `--full-refresh` updates it like any build instead of dropping it.
    delete+insert rather than merge: it runs on every Postgres the project supports (13+); the
    stays it replaces are found by their customer's index (indexed_delete_insert). A column
    added later is appended (null on older rows), since the table cannot be rebuilt.

    Customer-keyed (doc: incremental_builds): only a touched customer's memberships can have
    changed since this model's last build (it records its window like the customer-keyed tables,
    so a build it missed widens the next one's), and an incremental build compares only their
    memberships, stays and events, each found by its customer index. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='indexed_delete_insert',
        unique_key=['segment', 'stripe_customer_id', 'entered_at'],
        lookup_key='stripe_customer_id',
        full_refresh=false,
        on_schema_change='append_new_columns',
        tags=['customer_keyed'],
        indexes=[
            {'columns': ['segment', 'stripe_customer_id', 'entered_at'], 'unique': true},
        ],
        pre_hook=["{{ plan_for_touched_customers() }}"],
        post_hook=["{{ record_customer_keyed_state() }}"],
    )
}}

with

memberships as (
    select * from {{ ref('segment_memberships') }}
    where {{ touched_customers('stripe_customer_id') }}
),

customer_fields as (
    select * from {{ ref('customer_fields') }}
    where {{ touched_customers('stripe_customer_id') }}
),

-- Events tell the real moment of a change; staging keeps the key's mode only.
events as (
    select * from {{ ref('stg_stripe__events') }}
    where
        stripe_customer_id is not null
        and {{ touched_customers('stripe_customer_id') }}
        and event_type in (
            'customer.created',
            'customer.deleted',
            'customer.subscription.created',
            'customer.subscription.updated',
            'customer.subscription.deleted'
        )
),

-- The stays recorded by earlier builds, in the key's mode: rows of the other mode (before a
-- switch of key) are left as they are, neither closed nor reopened.
{% if is_incremental() %}
    stays as (
        select * from {{ this }}
        where
            {{ in_key_mode() }}
            and {{ touched_customers('stripe_customer_id') }}
    ),
{% else %}
    stays as (
        select
            null::text as segment,
            null::text as stripe_customer_id,
            null::timestamptz as entered_at,
            null::timestamptz as exited_at
        where false
    ),
{% endif %}

open_stays as (
    select * from stays
    where exited_at is null
),

-- When the pair's previous stay ended: a re-entry's real moment comes after it.
last_exits as (
    select
        segment,
        stripe_customer_id,
        max(exited_at) as exited_at
    from stays
    group by segment, stripe_customer_id
),

-- Members now without an open stay: they entered. A change is recorded at as_of, unless as_of is
-- not after the pair's last recorded time (a rebuild at the same as_of after the data changed, or
-- an as_of in the past): then one microsecond after it, so a pair's stays never overlap and each
-- of its changes has a time of its own.
entries as (
    select
        memberships.segment,
        memberships.stripe_customer_id,
        'entered' as change,  -- noqa: RF04
        greatest(
            {{ as_of() }}, last_exits.exited_at + interval '1 microsecond'
        ) as entered_at,
        null::timestamptz as exited_at,
        last_exits.exited_at as known_since
    from memberships
    left join open_stays
        on
            memberships.segment = open_stays.segment
            and memberships.stripe_customer_id = open_stays.stripe_customer_id
    left join last_exits
        on
            memberships.segment = last_exits.segment
            and memberships.stripe_customer_id = last_exits.stripe_customer_id
    where open_stays.segment is null
),

-- Open stays whose customer is no longer a member: they exited (the row keeps its entered_at,
-- so delete+insert on the key closes it).
exits as (
    select
        open_stays.segment,
        open_stays.stripe_customer_id,
        'exited' as change,  -- noqa: RF04
        open_stays.entered_at,
        greatest(
            {{ as_of() }}, open_stays.entered_at + interval '1 microsecond'
        ) as exited_at,
        open_stays.entered_at as known_since
    from open_stays
    left join memberships
        on
            open_stays.segment = memberships.segment
            and open_stays.stripe_customer_id = memberships.stripe_customer_id
    where memberships.segment is null
),

changes as (
    select * from entries
    union all
    select * from exits
),

-- Subscription events that changed a status: created, deleted, or updated with `status` among
-- their previous_attributes.
status_events as (
    select
        stripe_customer_id,
        occurred_at
    from events
    where
        event_type in ('customer.subscription.created', 'customer.subscription.deleted')
        or (
            event_type = 'customer.subscription.updated'
            and event_previous_attributes ? 'status'
        )
),

-- The real moment, where Stripe tells it, between the stay's previous known time and as_of.
-- Joined and grouped rather than looked up per change, so the first build of a large account
-- reads the events once. A customer enters or leaves a segment at most once per build.
status_moments as (
    select
        changes.segment,
        changes.stripe_customer_id,
        max(status_events.occurred_at) as occurred_at
    from changes
    inner join status_events
        on
            changes.stripe_customer_id = status_events.stripe_customer_id
            and status_events.occurred_at > coalesce(changes.known_since, '-infinity'::timestamptz)
            and status_events.occurred_at <= {{ as_of() }}
    group by changes.segment, changes.stripe_customer_id
),

lifecycle_moments as (
    select
        changes.segment,
        changes.stripe_customer_id,
        max(events.occurred_at) as occurred_at
    from changes
    inner join events
        on
            changes.stripe_customer_id = events.stripe_customer_id
            and events.event_type
            = case changes.change
                when 'entered' then 'customer.created'
                else 'customer.deleted'
            end
            and events.occurred_at > coalesce(changes.known_since, '-infinity'::timestamptz)
            and events.occurred_at <= {{ as_of() }}
    where changes.segment = 'syncing_with_stripe'
    group by changes.segment, changes.stripe_customer_id
),

-- The customer's creation or deletion for syncing_with_stripe; the trial end for entering
-- expired_trials; else the latest status change.
moments as (
    select
        changes.*,
        case
            when changes.segment = 'syncing_with_stripe'
                then lifecycle_moments.occurred_at
            when changes.segment = 'expired_trials' and changes.change = 'entered'
                then trial_ends.subscription_trial_ends_at
            else status_moments.occurred_at
        end as changed_at
    from changes
    left join status_moments
        on
            changes.segment = status_moments.segment
            and changes.stripe_customer_id = status_moments.stripe_customer_id
    left join lifecycle_moments
        on
            changes.segment = lifecycle_moments.segment
            and changes.stripe_customer_id = lifecycle_moments.stripe_customer_id
    left join customer_fields as trial_ends
        on
            changes.stripe_customer_id = trial_ends.stripe_customer_id
            and trial_ends.subscription_trial_ends_at
            > coalesce(changes.known_since, '-infinity'::timestamptz)
            and trial_ends.subscription_trial_ends_at <= {{ as_of() }}
),

final as (
    select
        -- ids
        moments.segment,
        moments.stripe_customer_id,

        -- timestamps
        moments.entered_at,
        moments.exited_at,
        moments.changed_at,

        -- bookkeeping: the mode of the key that recorded the stay
        ({{ in_key_mode('true') }}) as livemode
    from moments
)

select * from final
