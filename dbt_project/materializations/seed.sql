{#- Postgres seeds reloaded only when their file, column types or docs change
    (macros/unchanged_relations.sql says why and when). -#}
{%- materialization seed, adapter='postgres' -%}
    {{ return(materialize_unless_unchanged(
        relation_fingerprint(
            model.checksum.checksum ~ tojson(config.get('column_types', {}), sort_keys=true)
        ),
        'table',
        materialization_seed_default,
        on_unchanged=store_seed_rows,
    )) }}
{%- endmaterialization -%}

{#- dbt's seed runner reads the file's rows back from this result (`dbt seed --show`). -#}
{% macro store_seed_rows() -%}
    {%- do store_result('agate_table', response='OK', agate_table=load_agate_table()) -%}
{%- endmacro %}
