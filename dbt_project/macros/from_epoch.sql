{#- Stripe sends timestamps as Unix seconds; the warehouse keeps timestamptz. Null stays null. -#}
{% macro from_epoch(expression) -%}
    to_timestamp(({{ expression }})::bigint)
{%- endmacro %}
