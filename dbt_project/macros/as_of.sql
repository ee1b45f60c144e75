{#- "Now" for every time-based rule: the `as_of` var (dbt's --vars, or a unit test's override),
    else the build's as_of that `stripe-sync build` and the Dagster asset pass in the environment
    (STRIPE_SYNC_BUILD_AS_OF; runner.AS_OF_ENV), else the start of this dbt invocation. Never
    now(): one build sees one instant, and a fixed as_of reproduces it. The environment is read
    only while executing: an env_var() called while parsing would be recorded, and a new value
    per build would then re-parse every model using it. -#}
{% macro as_of() -%}
    {%- set value = var('as_of', '') -%}
    {%- if execute and (value is none or (value | string | trim) == '') -%}
        {%- set value = env_var('STRIPE_SYNC_BUILD_AS_OF', '') -%}
    {%- endif -%}
    {%- if value is none or (value | string | trim) == '' -%}
        '{{ run_started_at.isoformat() }}'::timestamptz
    {%- else -%}
        '{{ value | string | trim }}'::timestamptz
    {%- endif -%}
{%- endmacro %}
