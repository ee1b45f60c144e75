{#- delete+insert that finds the rows it replaces by an index: dbt's delete+insert matches the
    unique key with a semi-join, which the planner, guessing the new rows' count, runs as a scan of
    the whole table. Here the rows are first narrowed by `lookup_key` (an indexed column of the
    unique key) with `= any(array(...))`, which the planner matches to the index. -#}
{% macro get_incremental_indexed_delete_insert_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set temp_relation = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set lookup_key = config.get('lookup_key', keys[0]) -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target_relation }} as target
    where
        target.{{ lookup_key }} = any(array(
            select distinct written.{{ lookup_key }} from {{ temp_relation }} as written
        ))
        and ({% for key in keys %}target.{{ key }}{{ ', ' if not loop.last }}{% endfor %}) in (
            select {% for key in keys %}written.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
            from {{ temp_relation }} as written
        );
    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ temp_relation }}
{%- endmacro %}
