{#- Postgres views re-created only when they change (macros/unchanged_views.sql says why and
    when). A folder of its own: sqlfluff's Jinja knows no `materialization` tag, so this folder is
    not linted (.sqlfluffignore) and not among the macros sqlfluff loads. -#}
{%- materialization view, adapter='postgres' -%}
    {%- set fingerprint = view_fingerprint(sql) -%}
    {%- if view_is_unchanged(fingerprint) -%}
        {%- call noop_statement('main', 'UNCHANGED', 'UNCHANGED') -%}{%- endcall -%}
        {{ return({'relations': [this.incorporate(type='view')]}) }}
    {%- endif -%}
    {%- set result = materialization_view_default() -%}
    {%- call statement('record_fingerprint') -%}
        insert into {{ relation_fingerprints_relation() }} (relation, fingerprint)
        values ('{{ this.include(database=false).render() }}', '{{ fingerprint }}')
        on conflict (relation) do update
        set fingerprint = excluded.fingerprint, built_at = now()
    {%- endcall -%}
    {{ adapter.commit() }}
    {{ return(result) }}
{%- endmaterialization -%}
