{#- The one staleness threshold as an interval: var stale_after_hours
    (STRIPE_SYNC_STALE_AFTER_HOURS), which `stripe-sync build` and the Dagster asset pass on every
    build. -#}
{% macro stale_after() -%}
    make_interval(hours => {{ var('stale_after_hours') | int }})
{%- endmacro %}
