{#- An index on a model's column, created when no index of the relation starts with that column.
    Not `create index if not exists <name>`: a full refresh swaps the table in while the table it
    replaces (dropped after the commit) still holds the index's name, so the new table would be
    left without one and the next incremental build would read it whole. Postgres names the
    index, avoiding names in use. -#}
{% macro create_index_once(relation, column) -%}
    do $create_index_once$
    begin
        if not exists (
            select 1
            from pg_index as indexes
            inner join pg_attribute as columns
                on
                    indexes.indrelid = columns.attrelid
                    and indexes.indkey[0] = columns.attnum
            where
                indexes.indrelid = '{{ relation }}'::regclass
                and columns.attname = '{{ column }}'
        ) then
            create index on {{ relation }} ({{ column }});
        end if;
    end
    $create_index_once$
{%- endmacro %}
