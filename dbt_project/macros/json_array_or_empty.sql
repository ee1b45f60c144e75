{#- A jsonb value that should hold an array (a Stripe list's `data`, `discounts`, ...), or an empty
    array where Stripe left it out or sent something else: jsonb_array_elements fails on a
    non-array, and an object without the field has no rows to give. -#}
{% macro json_array_or_empty(expression) -%}
    case
        when jsonb_typeof({{ expression }}) = 'array'
            then {{ expression }}
        else '[]'::jsonb
    end
{%- endmacro %}
