{#- Custom schemas are used verbatim (not prefixed with the target schema), so tables land exactly
    in `stripe`, `stripe_segments` and `stripe_staging`, the names docs/contract.md promises. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
