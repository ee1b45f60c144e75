{#- The MRR history's incremental builds (doc: mrr_incremental_builds). The MRR models follow the
    touched customers as the other customer-keyed models do (macros/customer_keyed.sql), with two
    more reasons to recompute every customer, each at most once a day or on a rare change:
    - a build whose as_of enters a new UTC day (mrr_daily and mrr_movements only): every customer
      with MRR gets a row for the new day, and the days since the last build are reconstructed;
    - events older than every stored one (a backfill of events): the coverage every
      reconstruction starts from moved, for every subscription. -#}

{#- This build's MRR window: {'full': true} when every customer is recomputed. `per_day` is true
    for the models with a row per day (mrr_daily, mrr_movements). -#}
{% macro mrr_window(per_day=false) -%}
    {%- set window = {'full': true} -%}
    {%- if execute is not defined -%}
        {#- sqlfluff: an empty string, whose .full is undefined (the incremental shape). -#}
    {%- elif model.resource_type == 'unit_test' -%}
        {{ return(window) }}
    {%- else -%}
        {%- set cache_key = 'mrr_window ' ~ this.identifier ~ ' ' ~ per_day -%}
        {%- set cached = invocation_cache().get(cache_key) -%}
        {%- if cached is not none -%}
            {{ return(cached) }}
        {%- endif -%}
        {%- if execute and not recomputes_everyone() -%}
            {#- Asked once per build, by int_build_window. -#}
            {%- set full = customer_window().older_events_stored -%}
            {#- The model's previous build was on another UTC day (or is not recorded). -#}
            {%- if per_day and not full -%}
                {%- set full = run_query(
                    "select coalesce((select (state.as_of at time zone 'UTC')::date from "
                    ~ customer_keyed_state_relation() ~ " as state where state.model = '"
                    ~ this.identifier ~ "') <> (" ~ as_of() ~ " at time zone 'UTC')::date, true)"
                ).rows[0][0] -%}
            {%- endif -%}
            {%- do window.update({'full': full}) -%}
            {%- do invocation_cache().update({cache_key: window}) -%}
        {%- endif -%}
        {{ return(window) }}
    {%- endif -%}
{%- endmacro %}

{#- A filter keeping the touched customers' rows when the MRR window is not full, every row
    otherwise (as touched_customers does for the customer window). -#}
{% macro mrr_touched_customers(column, per_day=false) -%}
    {%- if execute is not defined or model.resource_type != 'unit_test' -%}
        {%- set touched = ref('int_customers_touched') -%}
    {%- endif -%}
    {%- if execute is defined and model.resource_type != 'unit_test'
        and is_incremental() and not mrr_window(per_day).full -%}
        {{ column }} = any(array(select touched.stripe_customer_id from {{ touched }} as touched))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the MRR models: index lookups (nested loops) when few customers are recomputed,
    the hash joins of set_planner_for_json_views otherwise. -#}
{% macro plan_for_mrr_window(per_day=false) -%}
    {%- if is_incremental() and not mrr_window(per_day).full -%}
        {{ plan_for_index_lookups() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The merge of the customer-keyed MRR models (intermediate tables and mrr_movements): as the
    customer_keyed strategy, with the MRR window deciding whether every row is replaced. -#}
{% macro get_incremental_mrr_keyed_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set temp_relation = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- if mrr_window(config.get('mrr_per_day', false)).full -%}
        delete from {{ target_relation }};
    {%- else -%}
        delete from {{ target_relation }} as target
        where target.stripe_customer_id = any(array(
            select touched.stripe_customer_id from {{ ref('int_customers_touched') }} as touched
        ));
    {%- endif %}
    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ temp_relation }}
{%- endmacro %}

{#- The customer an event is about, as stg_stripe__events states it (the same expression, so the
    raw-table index on it serves the MRR models' lookups of a customer's events). -#}
{% macro event_customer_reference(data) -%}
    case
        when {{ data }} -> 'data' -> 'object' ->> 'object' = 'customer'
            then {{ data }} -> 'data' -> 'object' ->> 'id'
        when jsonb_typeof({{ data }} -> 'data' -> 'object' -> 'customer') = 'object'
            then {{ data }} -> 'data' -> 'object' -> 'customer' ->> 'id'
        else {{ data }} -> 'data' -> 'object' ->> 'customer'
    end
{%- endmacro %}

{#- The merge of mrr_daily: an upsert on (customer, day, mode), the key of its unique index. A
    written row replaces the recorded row of its key, as a delete and insert of the written keys
    would, and an unchanged row is left as it is: the first build of a day writes every customer's
    row of it, and a full refresh rewrites that day with mostly the same values. The rows go in
    the index's order: in a random order, each would land on a random leaf page of an index larger
    than Postgres's buffers. A full refresh at 1M customers (695k rows): 6.0 s as delete+insert,
    2.4-2.8 s as this upsert. -#}
{% macro get_incremental_mrr_days_sql(arg_dict) -%}
    {%- set key = ['stripe_customer_id', 'mrr_date', 'livemode'] -%}
    {%- set names = arg_dict['dest_columns'] | map(attribute='name') | list -%}
    {%- set values = [] -%}
    {%- for name in names if name not in key -%}
        {%- do values.append(adapter.quote(name)) -%}
    {%- endfor -%}
    insert into {{ arg_dict['target_relation'] }} as target ({{ get_quoted_csv(names) }})
    select {{ get_quoted_csv(names) }} from {{ arg_dict['temp_relation'] }}
    order by stripe_customer_id, mrr_date
    on conflict ({{ key | join(', ') }}) do update
    set ({{ values | join(', ') }}) = row(excluded.{{ values | join(', excluded.') }})
    where
        (target.{{ values | join(', target.') }})
        is distinct from (excluded.{{ values | join(', excluded.') }})
{%- endmacro %}
