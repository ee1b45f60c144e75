{#- Stripe amounts are integers in the currency's minor unit; marketers read major units
    (4900 usd -> 49.00, 500 jpy -> 500, 12345 kwd -> 12.345). The exponent is 2 unless the
    currency_exponents seed says otherwise (zero- and three-decimal currencies). The seed is read
    as one uncorrelated subquery (a jsonb map Postgres evaluates once per query), not a lookup per
    row: per-row subqueries cost seconds at 100k customers. -#}
{% macro to_major_units(amount, currency) -%}
    {%- set exponent -%}
        coalesce(
            (
                (
                    select
                        jsonb_object_agg(
                            currency_exponents.currency, currency_exponents.exponent
                        )
                    from {{ ref('currency_exponents') }} as currency_exponents
                )
                ->> lower({{ currency }})
            )::integer,
            2
        )
    {%- endset -%}
    round(({{ amount }})::numeric / power(10::numeric, {{ exponent }}), {{ exponent }})
{%- endmacro %}
