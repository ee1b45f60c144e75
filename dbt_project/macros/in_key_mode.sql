{#- Test and live rows share the raw tables (tagged `livemode`); only the mode of the current key,
    given by the `livemode` var, may reach the marts. Applied once, in staging. -#}
{% macro in_key_mode(column='livemode') -%}
    {%- set value = var('livemode', false) -%}
    {%- if value is string -%}
        {%- set value = value | trim | lower in ('true', '1', 'yes', 'live') -%}
    {%- endif -%}
    {{ column }} = {{ 'true' if value else 'false' }}
{%- endmacro %}
