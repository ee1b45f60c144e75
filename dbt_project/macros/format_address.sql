{#- The contract's one-line billing address: line1, then ", line2" when line2 is present. -#}
{% macro format_address(line1, line2) -%}
    case
        when nullif(trim({{ line2 }}), '') is null then {{ line1 }}
        else {{ line1 }} || ', ' || {{ line2 }}
    end
{%- endmacro %}
