{#- A discount's coupon, whatever the API version: it sits in `coupon` (inlined) before
    2025-09-30.clover and in `source.coupon` since, an object when expanded and an id when not (the
    key lacked Coupons: Read), when only its id is known. One rule for subscription and customer
    discounts alike. -#}
{% macro discount_coupon(discount) -%}
    coalesce({{ discount }} -> 'coupon', {{ discount }} -> 'source' -> 'coupon')
{%- endmacro %}

{#- The coupon's id and terms (null when only its id is known), as staging columns. -#}
{% macro discount_coupon_terms(coupon) -%}
    coalesce({{ coupon }} ->> 'id', {{ coupon }} #>> '{}') as coupon_id,

    -- attributes
    jsonb_typeof({{ coupon }}) = 'object' as has_coupon_terms,
    {{ coupon }} ->> 'duration' as coupon_duration,
    ({{ coupon }} ->> 'duration_in_months')::integer as coupon_duration_in_months,
    ({{ coupon }} ->> 'percent_off')::numeric as coupon_percent_off,
    lower({{ coupon }} ->> 'currency') as coupon_currency,

    -- amounts
    ({{ coupon }} ->> 'amount_off')::bigint as coupon_amount_off_in_cents
{%- endmacro %}
