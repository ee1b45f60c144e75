{#- Views and seeds are re-created only when they change (doc: incremental_builds). dbt
    re-creates every view and reloads every seed on every build, with their comments: about ten
    statements per relation that change nothing when neither its SQL (a seed's file) nor its docs
    changed, and every build after a sync runs them first. Each view and seed built here records a
    fingerprint (its SQL or file, and its docs) in stripe_staging.relation_fingerprints; a later
    build skips one whose fingerprint is unchanged, when it exists and reads only sources (dbt
    never drops a source, so nothing dropped a view under it). `--full-refresh` re-creates them
    all. The materializations themselves are in dbt_project/materializations/. -#}

{% macro relation_fingerprints_relation() -%}
    {{ customer_keyed_state_schema() }}.relation_fingerprints
{%- endmacro %}

{% macro ensure_relation_fingerprints() -%}
    create table if not exists {{ relation_fingerprints_relation() }} (
        relation text primary key,
        fingerprint text not null,
        relation_oid oid not null,
        built_at timestamptz not null default now()
    );
{%- endmacro %}

{#- The fingerprints stored before this build, read once per invocation: those of relations
    still the ones they were recorded for (the same oid). A relation rebuilt behind them (by a
    version of this project without them, or one whose record did not commit) has a new oid, and
    its fingerprint no longer counts. -#}
{% macro stored_fingerprints() -%}
    {%- set cache = invocation_cache() -%}
    {%- if cache.get('relation_fingerprints') is none -%}
        {%- set rows = run_query(
            'select relation, fingerprint from ' ~ relation_fingerprints_relation()
            ~ ' where relation_oid = to_regclass(relation)::oid'
        ) -%}
        {%- set stored = {} -%}
        {%- for row in rows -%}
            {%- do stored.update({row[0]: row[1]}) -%}
        {%- endfor -%}
        {%- do cache.update({'relation_fingerprints': stored}) -%}
    {%- endif -%}
    {{ return(cache['relation_fingerprints']) }}
{%- endmacro %}

{#- What the relation is built from: `content` (a view's compiled SQL, a seed's file checksum and
    column types) and the model's docs, which its comments hold. -#}
{% macro relation_fingerprint(content) -%}
    {%- set docs = {'description': model.description, 'columns': {}} -%}
    {%- for name, column in model.columns.items() -%}
        {%- do docs['columns'].update({name: column.description}) -%}
    {%- endfor -%}
    {{ return(local_md5(content ~ '\n' ~ tojson(docs, sort_keys=true))) }}
{%- endmacro %}

{#- True when this relation exists as `relation_type`, reads only sources, and was last built
    from the same fingerprint. -#}
{% macro relation_is_unchanged(fingerprint, relation_type) -%}
    {%- set models_read = [] -%}
    {%- for node in model.depends_on.nodes if not node.startswith('source.') -%}
        {%- do models_read.append(node) -%}
    {%- endfor -%}
    {%- set existing = load_cached_relation(this) -%}
    {{ return(
        models_read | length == 0
        and existing is not none
        and existing.type == relation_type
        and not should_full_refresh()
        and stored_fingerprints().get(this.include(database=false).render()) == fingerprint
    ) }}
{%- endmacro %}

{#- Records the fingerprint of the relation just built, once its build has committed. -#}
{% macro record_fingerprint(fingerprint) -%}
    {%- call statement('record_fingerprint') -%}
        {%- set relation = this.include(database=false).render() %}
        insert into {{ relation_fingerprints_relation() }} (relation, fingerprint, relation_oid)
        values ('{{ relation }}', '{{ fingerprint }}', to_regclass('{{ relation }}')::oid)
        on conflict (relation) do update
        set
            fingerprint = excluded.fingerprint,
            relation_oid = excluded.relation_oid,
            built_at = now()
    {%- endcall -%}
    {{ adapter.commit() }}
{%- endmacro %}

{#- The body of the view and seed materializations: nothing when the relation (of type `kind`)
    is unchanged (reported UNCHANGED), else dbt's own `materialize` and the fingerprint recorded
    after it. `on_unchanged` runs first in the unchanged case. -#}
{% macro materialize_unless_unchanged(fingerprint, kind, materialize, on_unchanged=none) -%}
    {%- if relation_is_unchanged(fingerprint, kind) -%}
        {%- if on_unchanged is not none -%}
            {%- do on_unchanged() -%}
        {%- endif -%}
        {#- The `main` result dbt reads a node's outcome from (noop_statement's, without a call
            block, which sqlfluff's Jinja cannot place; rows_affected given, as dbt's default for
            it is a type, not a value). -#}
        {%- do store_raw_result(
            'main', message='UNCHANGED', code='UNCHANGED', rows_affected=none
        ) -%}
        {{ return({'relations': [this.incorporate(type=kind)]}) }}
    {%- endif -%}
    {%- set result = materialize() -%}
    {%- do record_fingerprint(fingerprint) -%}
    {{ return(result) }}
{%- endmacro %}
