{#- Postgres views re-created only when they change (macros/unchanged_relations.sql says why and
    when). A folder of its own: sqlfluff's Jinja knows no `materialization` tag, so this folder is
    not linted (.sqlfluffignore) and not among the macros sqlfluff loads. -#}
{%- materialization view, adapter='postgres' -%}
    {%- set fingerprint = relation_fingerprint(sql) -%}
    {%- if relation_is_unchanged(fingerprint, 'view') -%}
        {%- call noop_statement('main', 'UNCHANGED', 'UNCHANGED') -%}{%- endcall -%}
        {{ return({'relations': [this.incorporate(type='view')]}) }}
    {%- endif -%}
    {%- set result = materialization_view_default() -%}
    {%- do record_fingerprint(fingerprint) -%}
    {{ return(result) }}
{%- endmaterialization -%}
