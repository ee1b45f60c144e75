with

discounts as (
    select * from {{ ref('stg_stripe__subscription_discounts') }}
),

-- A `repeating` discount ends `duration_in_months` after it starts; Stripe sets `end`, and the
-- start + months fallback covers snapshots that lack it.
with_end as (
    select
        *,
        coalesce(
            discount_ends_at,
            case
                when coupon_duration = 'repeating'
                    then discount_started_at + make_interval(months => coupon_duration_in_months)
            end
        ) as discount_effective_ends_at
    from discounts
),

-- In effect at as_of() and recurring (doc: mrr): `forever`, or `repeating` before its end (the end
-- instant itself is no longer covered). `once` applies to a single invoice, so it never lowers MRR.
in_effect as (
    select * from with_end
    where
        (discount_started_at is null or discount_started_at <= {{ as_of() }})
        and (
            coupon_duration = 'forever'
            or (
                coupon_duration = 'repeating'
                and (
                    discount_effective_ends_at is null
                    or discount_effective_ends_at > {{ as_of() }}
                )
            )
        )
),

final as (
    select
        -- ids
        discount_id,
        subscription_id,
        stripe_customer_id,
        coupon_id,

        -- attributes
        coupon_duration,
        coupon_percent_off,
        coupon_currency,

        -- amounts (minor units)
        coupon_amount_off_in_cents,

        -- timestamps
        discount_started_at,
        discount_effective_ends_at as discount_ends_at
    from in_effect
)

select * from final
