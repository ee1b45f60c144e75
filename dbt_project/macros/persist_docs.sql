{#- persist_docs writing only the comments that differ from the catalog's. dbt's writes the
    relation's comment and every column's on every build, with two column listings in between:
    four statements per model. An incremental model keeps its table, and its comments, from build
    to build, so one catalog read finds that nothing needs writing; a table built anew gets every
    comment, as before. -#}
{% macro postgres__persist_docs(relation, model, for_relation, for_columns) -%}
    {%- set relation_docs = for_relation and config.persist_relation_docs()
        and model.description -%}
    {%- set column_docs = for_columns and config.persist_column_docs() and model.columns -%}
    {%- if not (relation_docs or column_docs) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set current = catalog_comments(relation) -%}
    {%- set statements = [] -%}
    {%- if relation_docs and current.relation != model.description -%}
        {%- do statements.append(alter_relation_comment(relation, model.description)) -%}
    {%- endif -%}
    {%- if column_docs -%}
        {%- set changed = {} -%}
        {%- for name, column in model.columns.items() -%}
            {%- set key = name if column.quote else name | lower -%}
            {%- if key in current.columns
                and (current.columns[key] or '') != (column.description or '') -%}
                {%- do changed.update({name: column}) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do validate_doc_columns(relation, model.columns, current.columns.keys() | list) -%}
        {%- for name, column in changed.items() -%}
            {%- do statements.append(
                'comment on column ' ~ relation ~ '.'
                ~ (adapter.quote(name) if column.quote else name)
                ~ ' is ' ~ postgres_escape_comment(column.description) ~ ';'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if statements -%}
        {%- do run_query(statements | join('\n')) -%}
    {%- endif -%}
{%- endmacro %}

{#- The relation's comment and its columns' comments, as the catalog holds them now. -#}
{% macro catalog_comments(relation) -%}
    {%- set rows = run_query(
        "select a.attname, col_description(a.attrelid, a.attnum),"
        ~ " obj_description(a.attrelid, 'pg_class')"
        ~ " from pg_attribute as a"
        ~ " where a.attrelid = '" ~ relation.include(database=false) ~ "'::regclass"
        ~ " and a.attnum > 0 and not a.attisdropped"
    ) -%}
    {%- set comments = {'relation': none, 'columns': {}} -%}
    {%- for row in rows -%}
        {%- do comments.update({'relation': row[2]}) -%}
        {%- do comments['columns'].update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {{ return(comments) }}
{%- endmacro %}
