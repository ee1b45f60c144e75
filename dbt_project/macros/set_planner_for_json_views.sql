{#- Staging views compute their columns from jsonb, so Postgres has no statistics on them and
    estimates a handful of rows where there are thousands; it then picks nested loops (10k x 10k
    comparisons per join at 10k customers) and JIT-compiles plans whose inflated costs it misjudges.
    Marts and intermediate models join whole relations, where hash joins are always right: a merge
    join sorts both sides first, and where the planner picked one (the anti-joins of the segment
    history and the change feed on a full build) they took 10.6 and 8.4 s at 1M customers, 3.9
    and 3.6 s hashed. `set local` ends with the model's transaction, so nothing leaks to other
    models or tests. -#}
{% macro set_planner_for_json_views() -%}
    set local enable_nestloop = off;
    set local enable_mergejoin = off;
    set local jit = off
{%- endmacro %}

{#- Where a model reads few rows through indexes (the touched customers of an incremental build),
    the planner's own choice again: nested loops of index lookups, and merge joins. -#}
{% macro plan_for_index_lookups() -%}
    set local enable_nestloop = on;
    set local enable_mergejoin = on
{%- endmacro %}
