{#- Staging views compute their columns from jsonb, so Postgres has no statistics on them and
    estimates a handful of rows where there are thousands; it then picks nested loops (10k x 10k
    comparisons per join at 10k customers) and JIT-compiles plans whose inflated costs it misjudges.
    Marts and intermediate models join whole relations, where hash joins are always right. `set local` ends with the model's
    transaction, so nothing leaks to other models or tests. -#}
{% macro set_planner_for_json_views() -%}
    set local enable_nestloop = off;
    set local jit = off
{%- endmacro %}
