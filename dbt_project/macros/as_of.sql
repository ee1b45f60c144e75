{#- "Now" for every time-based rule: the `as_of` var (`stripe-sync build --as-of`), else the
    start of this dbt invocation. Never now(): one build sees one instant, and a fixed as_of reproduces it. -#}
{% macro as_of() -%}
    {%- set value = var('as_of', '') -%}
    {%- if value is none or (value | string | trim) == '' -%}
        '{{ run_started_at.isoformat() }}'::timestamptz
    {%- else -%}
        '{{ value | string | trim }}'::timestamptz
    {%- endif -%}
{%- endmacro %}
