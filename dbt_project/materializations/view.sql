{#- Postgres views re-created only when they change (macros/unchanged_relations.sql says why and
    when). A folder of its own: sqlfluff's Jinja knows no `materialization` tag, so this folder is
    not linted (.sqlfluffignore) and not among the macros sqlfluff loads. -#}
{%- materialization view, adapter='postgres' -%}
    {{ return(materialize_unless_unchanged(
        relation_fingerprint(sql), 'view', materialization_view_default
    )) }}
{%- endmaterialization -%}
