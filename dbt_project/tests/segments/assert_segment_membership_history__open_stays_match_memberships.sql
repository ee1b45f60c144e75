-- The open stays of segment_membership_history in the key's mode are exactly segment_memberships:
-- one open stay per member, none for anyone else.
with

memberships as (
    select
        segment,
        stripe_customer_id
    from {{ ref('segment_memberships') }}
),

open_stays as (
    select
        segment,
        stripe_customer_id,
        count(*) as open_stay_count
    from {{ ref('segment_membership_history') }}
    where
        exited_at is null
        and {{ in_key_mode() }}
    group by segment, stripe_customer_id
),

differences as (
    select
        case
            when open_stays.segment is null then 'member without an open stay'
            when memberships.segment is null then 'open stay of a non-member'
            else 'several open stays'
        end as problem,
        coalesce(memberships.segment, open_stays.segment) as segment,
        coalesce(memberships.stripe_customer_id, open_stays.stripe_customer_id)
            as stripe_customer_id
    from memberships
    full outer join open_stays
        on
            memberships.segment = open_stays.segment
            and memberships.stripe_customer_id = open_stays.stripe_customer_id
    where
        open_stays.segment is null
        or memberships.segment is null
        or open_stays.open_stay_count > 1
)

select * from differences
