{#- Views are re-created only when they change (doc: incremental_builds). dbt's view
    materialization re-creates every view on every build, with its comments: about ten statements
    per view that change nothing when neither the view's SQL nor its docs changed, and every
    build after a sync runs the staging views first. Each view built here records a fingerprint
    (its compiled SQL and docs) in stripe_staging.relation_fingerprints; a later build skips a view
    whose fingerprint is unchanged, when the view exists and reads only sources (dbt never drops a
    source, so nothing dropped the view under it). `--full-refresh` re-creates every view. The
    materialization itself is dbt_project/materializations/view.sql. -#}

{% macro relation_fingerprints_relation() -%}
    {{ customer_keyed_state_schema() }}.relation_fingerprints
{%- endmacro %}

{% macro ensure_relation_fingerprints() -%}
    create table if not exists {{ relation_fingerprints_relation() }} (
        relation text primary key,
        fingerprint text not null,
        built_at timestamptz not null default now()
    );
{%- endmacro %}

{#- The fingerprints stored before this build, read once per invocation. -#}
{% macro stored_fingerprints() -%}
    {%- set cache = invocation_cache() -%}
    {%- if cache.get('relation_fingerprints') is none -%}
        {%- set rows = run_query(
            'select relation, fingerprint from ' ~ relation_fingerprints_relation()
        ) -%}
        {%- set stored = {} -%}
        {%- for row in rows -%}
            {%- do stored.update({row[0]: row[1]}) -%}
        {%- endfor -%}
        {%- do cache.update({'relation_fingerprints': stored}) -%}
    {%- endif -%}
    {{ return(cache['relation_fingerprints']) }}
{%- endmacro %}

{% macro view_fingerprint(compiled_sql) -%}
    {%- set docs = {'description': model.description, 'columns': {}} -%}
    {%- for name, column in model.columns.items() -%}
        {%- do docs['columns'].update({name: column.description}) -%}
    {%- endfor -%}
    {{ return(local_md5(compiled_sql ~ '\n' ~ tojson(docs, sort_keys=true))) }}
{%- endmacro %}

{% macro view_is_unchanged(fingerprint) -%}
    {%- set models_read = [] -%}
    {%- for node in model.depends_on.nodes if not node.startswith('source.') -%}
        {%- do models_read.append(node) -%}
    {%- endfor -%}
    {%- set reads_only_sources = models_read | length == 0 -%}
    {%- set existing = load_cached_relation(this) -%}
    {{ return(
        reads_only_sources
        and existing is not none
        and existing.is_view
        and not should_full_refresh()
        and stored_fingerprints().get(this.include(database=false).render()) == fingerprint
    ) }}
{%- endmacro %}
