{#- Money for humans in feed summaries: a symbol for common currencies, else the ISO code, then the
    amount already in major units: format_money(to_major_units(a, c), c) -> "$49.00", "KWD 12.345". -#}
{% macro format_money(major_amount, currency) -%}
    case lower({{ currency }})
        when 'usd' then '$'
        when 'eur' then '€'
        when 'gbp' then '£'
        when 'jpy' then '¥'
        else upper({{ currency }}) || ' '
    end || ({{ major_amount }})::text
{%- endmacro %}
