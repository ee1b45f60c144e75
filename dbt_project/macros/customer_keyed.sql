{#- Customer-keyed incremental builds (doc: incremental_builds). Every per-customer table (the
    intermediate models, customer_fields, customer_feed, the segment tables, segment_memberships)
    recomputes only the customers int_customers_touched lists, deleting and re-inserting their rows
    in one transaction per table. int_build_window decides once per build whether that is possible
    or everything must be recomputed (first build, other key mode, changed models, as_of going
    back, a table missing), and each model records the window it applied, in its own transaction,
    in stripe_staging.customer_keyed_state. -#}

{#- The state table and the raw-table indexes the incremental path looks rows up by. Each index is
    created only when missing (checked in the catalog first), so a build never waits on a sync's
    write lock for an index that exists. activity_events gets a synced_at stamp like the raw
    tables: it is the only way to tell new activity rows from old ones without reading them all.
    Each new index is followed by an analyze of its table (once), for statistics on its
    expression. -#}
{% macro ensure_customer_keyed_support() -%}
    {%- set indexes = [
        ('customers_synced_at_idx', 'customers', 'synced_at'),
        ('customers_email_lower_idx', 'customers', "lower(data ->> 'email')"),
        ('subscriptions_synced_at_idx', 'subscriptions', 'synced_at'),
        ('subscriptions_customer_ref_idx', 'subscriptions', customer_reference('data')),
        ('charges_synced_at_idx', 'charges', 'synced_at'),
        ('charges_customer_ref_idx', 'charges', customer_reference('data')),
        ('events_synced_at_idx', 'events', 'synced_at'),
        ('events_customer_ref_idx', 'events', event_customer_reference('data')),
        ('invoices_synced_at_idx', 'invoices', 'synced_at'),
        ('invoices_customer_ref_idx', 'invoices', customer_reference('data')),
        ('products_synced_at_idx', 'products', 'synced_at'),
        ('activity_events_synced_at_idx', 'activity_events', 'synced_at'),
        ('activity_events_customer_idx', 'activity_events', "nullif(trim(stripe_customer_id), '')"),
        (
            'activity_events_email_idx',
            'activity_events',
            "lower(nullif(trim(customer_email), ''))",
        ),
    ] -%}
    create schema if not exists {{ customer_keyed_state_schema() }};
    create table if not exists {{ customer_keyed_state_relation() }} (
        model text primary key,
        stamp timestamptz not null,
        as_of timestamptz not null,
        livemode boolean not null,
        logic_hash text not null,
        invocation_id text not null,
        built_at timestamptz not null default now()
    );
    do $customer_keyed$
    begin
        if to_regclass('stripe_raw.activity_events') is not null and not exists (
            select 1 from information_schema.columns
            where
                table_schema = 'stripe_raw'
                and table_name = 'activity_events'
                and column_name = 'synced_at'
        ) then
            -- now() is stable: existing rows get this instant without a table rewrite.
            alter table stripe_raw.activity_events
                add column synced_at timestamptz not null default now();
        end if;
    {%- for name, table, expression in indexes %}
        if to_regclass('stripe_raw.{{ table }}') is not null
            and to_regclass('stripe_raw.{{ name }}') is null then
            create index if not exists {{ name }} on stripe_raw.{{ table }} (({{ expression }}));
            -- Statistics on the expression: without them the planner guesses 1 row in 200 per
            -- lookup and prefers reading the whole table to a few index probes.
            analyze stripe_raw.{{ table }};
        end if;
    {%- endfor %}
    end
    $customer_keyed$
{%- endmacro %}

{#- The customer an object names: an id, or the customer object when a caller expanded it. The
    same expression as staging's, so the raw-table index on it serves staging's filters. -#}
{% macro customer_reference(data) -%}
    case
        when jsonb_typeof({{ data }} -> 'customer') = 'object' then {{ data }} -> 'customer' ->> 'id'
        else {{ data }} ->> 'customer'
    end
{%- endmacro %}

{% macro customer_keyed_state_schema() -%}
    stripe_staging
{%- endmacro %}

{% macro customer_keyed_state_identifier() -%}
    customer_keyed_state
{%- endmacro %}

{% macro customer_keyed_state_relation() -%}
    {{ customer_keyed_state_schema() }}.{{ customer_keyed_state_identifier() }}
{%- endmacro %}

{#- The models whose state the window follows: every model of this project tagged customer_keyed
    (the customer_keyed strategy's models, and int_events_mapped_to_activities, which reads new
    events by the same stamps). With `selected_only`, those this invocation runs (all of them
    when it runs none). -#}
{% macro customer_keyed_models(selected_only=false) -%}
    {%- if execute is not defined -%}
        {#- sqlfluff renders models without dbt's context: nothing to list. -#}
    {%- else -%}
        {%- set names = [] -%}
        {%- for node in (graph.nodes or {}).values() -%}
            {%- if node.resource_type == 'model' and 'customer_keyed' in node.tags -%}
                {%- do names.append(node) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if selected_only -%}
            {%- set selected = names | selectattr('unique_id', 'in', selected_resources) | list -%}
            {%- if selected -%}
                {{ return(selected | sort(attribute='name')) }}
            {%- endif -%}
        {%- endif -%}
        {{ return(names | sort(attribute='name')) }}
    {%- endif -%}
{%- endmacro %}

{#- The oldest stamp the state table holds for `models` (the window's start), as a timestamptz
    literal ('null' when there is none), read when int_build_window compiles: builds of a
    warehouse never overlap (the build lock), and no model of this build has written its state
    yet. -#}
{% macro customer_keyed_since(models) -%}
    {%- set since = none -%}
    {%- if execute is defined and execute -%}
        {%- set state = adapter.get_relation(
            database=target.database,
            schema=customer_keyed_state_schema() | trim,
            identifier=customer_keyed_state_identifier() | trim,
        ) -%}
        {%- if state is not none and models -%}
            {%- set since = run_query(
                "select min(stamp)::text from " ~ state ~ " where model in ('"
                ~ (models | map(attribute='alias') | join("', '")) ~ "')"
            ).rows[0][0] -%}
        {%- endif -%}
    {%- endif -%}
    {{ ("'" ~ since ~ "'" if since else 'null') ~ '::timestamptz' }}
{%- endmacro %}

{#- What the models compute from: a change to any model of the project changes this hash, and the
    next build recomputes every customer rather than trusting rows computed by other logic. -#}
{% macro customer_keyed_logic_hash() -%}
    {%- if execute is not defined -%}
        logic_hash
    {%- else -%}
        {%- set parts = [] -%}
        {%- for node in (graph.nodes or {}).values() -%}
            {%- if node.resource_type in ('model', 'seed') -%}
                {%- do parts.append(node.unique_id ~ ':' ~ node.checksum.checksum) -%}
            {%- endif -%}
        {%- endfor -%}
        {{ return(local_md5(parts | sort | join(','))) }}
    {%- endif -%}
{%- endmacro %}

{#- This build's window, read once from int_build_window (built first in every build): whether
    every customer is recomputed, and the stamp and as_of the touched customers are found from.
    Outside execution (parse, compile without a database) and when int_build_window was not built
    by this invocation (a partial selection), everything is recomputed. -#}
{% macro customer_window() -%}
    {%- set window = {'full': true} -%}
    {%- if execute is not defined -%}
        {#- sqlfluff: an empty string, whose .full is undefined (the incremental shape). -#}
    {%- else -%}
        {#- A unit test gives its model's inputs as rows and computes every one of them. -#}
        {%- if model.resource_type == 'unit_test' -%}
            {{ return(window) }}
        {%- endif -%}
        {%- set cached = invocation_cache().get('customer_window') -%}
        {%- if cached is not none -%}
            {{ return(cached) }}
        {%- endif -%}
        {%- set built = ref('int_build_window') -%}
        {%- set columns = 'is_full_rebuild, invocation_id, since::text, as_of::text,'
            ~ ' is_older_events_stored, customers_estimate' -%}
        {%- if execute and not flags.FULL_REFRESH -%}
            {%- set relation = adapter.get_relation(
                built.database, built.schema, built.identifier
            ) -%}
            {%- set rows = [] -%}
            {%- if relation is not none -%}
                {%- set rows = run_query('select ' ~ columns ~ ' from ' ~ relation).rows -%}
            {%- endif -%}
            {%- if rows | length == 1 and rows[0][1] == invocation_id -%}
                {%- do window.update({
                    'full': rows[0][0], 'since': rows[0][2], 'older_events_stored': rows[0][4],
                    'customers_estimate': rows[0][5]
                }) -%}
                {#- Fixed for the rest of the invocation: int_build_window is built once, first. -#}
                {%- do invocation_cache().update({'customer_window': window}) -%}
            {%- endif -%}
        {%- endif -%}
        {{ return(window) }}
    {%- endif -%}
{%- endmacro %}

{#- Whether this node recomputes every customer: the window is full, or so many customers were
    touched that looking each up costs more than recomputing them all (many_touched). -#}
{% macro recomputes_everyone() -%}
    {%- if execute is not defined -%}
        {#- sqlfluff: an empty string, false (the incremental shape). -#}
    {%- else -%}
        {{ return(customer_window().full or many_touched()) }}
    {%- endif -%}
{%- endmacro %}

{#- Too many touched customers for index lookups. The planner guesses ~10 rows for every
    `= any(array(select ...))` filter, so it joins two such lookups by a nested loop that compares
    every row of one side with every row of the other: the cost grows with the square of the
    touched customers, where a full recompute grows with the account. A deleted product touches
    all its subscribers (a renamed one none: apply_product_renames). Measured at 100k customers
    (the incremental bench's emulator account, when renames touched their subscribers):
    5,380 and 6,341 touched took 16-22 s by lookups, 24-36 s recomputing everyone; 25,978 touched
    took 388 s by lookups (customer_fields 223 s), 37 s recomputing everyone. Hence every customer
    once touched² > 500 × customers (past ~2,200 touched at 10k customers, ~7,100 at 100k,
    ~22,000 at 1M; the count of customers is customer_fields' row estimate, read by
    int_build_window). Asked only by nodes built after int_customers_touched (they ref it), so
    its count is this build's. -#}
{% macro many_touched() -%}
    {%- if execute is not defined or model.resource_type == 'unit_test' -%}
        {{ return(false) }}
    {%- endif -%}
    {%- if customer_window().full -%}
        {{ return(true) }}
    {%- endif -%}
    {%- if own_model_id('int_customers_touched') not in model.depends_on.nodes -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set cached = invocation_cache().get('many_touched') -%}
    {%- if cached is not none -%}
        {{ return(cached) }}
    {%- endif -%}
    {%- set touched = customer_keyed_relation('int_customers_touched') -%}
    {#- The environment's factor is for tests (0: any touched customer recomputes everyone). -#}
    {%- set factor = env_var('STRIPE_SYNC_MANY_TOUCHED_FACTOR', '500') | float(500) -%}
    {#- Both numbers are fixed for the build once int_customers_touched is built, so threads
        that ask at once get the same answer. -#}
    {%- set many = run_query(
        "select (select count(*) from " ~ touched ~ ")::float8 ^ 2 > "
        ~ factor * customer_window().customers_estimate
    ).rows[0][0] -%}
    {%- do invocation_cache().update({'many_touched': many}) -%}
    {{ return(many) }}
{%- endmacro %}

{#- A dict of what this dbt invocation read from the database once and every node reuses
    (customer_window, mrr_window): each was a query per call, ~180 per build. dbt hands every
    node the same `graph` dict, so a key of it outlives one node's rendering; the dict is
    replaced when another invocation (the resident builder's next build) first asks. -#}
{% macro invocation_cache() -%}
    {%- set cache = graph.get('stripe_sync_invocation_cache') -%}
    {%- if cache is none or cache.get('invocation_id') != invocation_id -%}
        {%- set cache = {'invocation_id': invocation_id} -%}
        {%- do graph.update({'stripe_sync_invocation_cache': cache}) -%}
    {%- endif -%}
    {{ return(cache) }}
{%- endmacro %}

{#- True when this model recomputes only the touched customers. -#}
{% macro is_customer_incremental() -%}
    {%- if execute is not defined -%}
        {#- sqlfluff: an empty string, false. -#}
    {%- elif model.resource_type == 'unit_test' -%}
        {{ return(false) }}
    {%- else -%}
        {{ return(is_incremental() and not recomputes_everyone()) }}
    {%- endif -%}
{%- endmacro %}

{#- A filter keeping the touched customers' rows on an incremental build, and every row on a full
    one. The ref is taken unconditionally, so dbt orders every customer-keyed model after
    int_customers_touched. `= any(array(...))` rather than `in (select ...)`: a restriction by an
    array the planner matches to the key's index (a handful of probes), where a semi-join gets a
    default selectivity and a scan of the whole table. -#}
{% macro touched_customers(column) -%}
    {%- if execute is not defined or model.resource_type != 'unit_test' -%}
        {%- set touched = ref('int_customers_touched') -%}
    {%- endif -%}
    {%- if is_customer_incremental() -%}
        {{ column }} = any(array(select touched.stripe_customer_id from {{ touched }} as touched))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The merge of a customer-keyed model, in the model's transaction: the touched customers' rows
    (every row on a full recompute) are deleted and the recomputed ones inserted, so a customer who
    left (deleted in Stripe, out of a segment) leaves the table, and a reader sees the table before
    or after the merge, never between. -#}
{% macro get_incremental_customer_keyed_sql(arg_dict) -%}
    {%- set target_relation = arg_dict['target_relation'] -%}
    {%- set temp_relation = arg_dict['temp_relation'] -%}
    {%- set key = config.get('customer_key', 'stripe_customer_id') -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- if recomputes_everyone() -%}
        delete from {{ target_relation }};
    {%- else -%}
        delete from {{ target_relation }} as target
        where target.{{ key }} = any(array(
            select touched.stripe_customer_id from {{ ref('int_customers_touched') }} as touched
        ));
    {%- endif %}
    insert into {{ target_relation }} ({{ columns }})
    select {{ columns }} from {{ temp_relation }}
{%- endmacro %}

{#- Post-hook of every customer-keyed model, inside its transaction: the window it applied becomes
    its state (committed with its rows, so a build killed between two models leaves each model's
    state true to its table), and its key is indexed for the next build's lookups. -#}
{% macro record_customer_keyed_state() -%}
    {%- set key = config.get('customer_key', 'stripe_customer_id') -%}
    {{ create_index_once(this, key) }};
    insert into {{ customer_keyed_state_relation() }} (
        model, stamp, as_of, livemode, logic_hash, invocation_id, built_at
    )
    select '{{ this.identifier }}', stamp, as_of, livemode, logic_hash, invocation_id, now()
    from {{ ref('int_build_window') }}
    on conflict (model) do update set
        stamp = excluded.stamp,
        as_of = excluded.as_of,
        livemode = excluded.livemode,
        logic_hash = excluded.logic_hash,
        invocation_id = excluded.invocation_id,
        built_at = excluded.built_at
{%- endmacro %}

{#- Pre-hook of every customer-keyed model: on an incremental build the touched customers are
    few (many_touched), and index lookups into the big tables (nested loops) are what makes the
    cost follow them; full builds keep set_planner_for_json_views' hash joins. -#}
{% macro plan_for_touched_customers() -%}
    {%- if is_customer_incremental() -%}
        {{ plan_for_index_lookups() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Intermediate tables are analyzed after a full build (their statistics drive the big joins); an
    incremental merge changes few rows, which autovacuum's analyze follows. -#}
{% macro analyze_after_full_build() -%}
    {%- if 'customer_keyed' in model.tags and is_customer_incremental() -%}
        select 1
    {%- else -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- The unique id of one of this project's models. Its package is this project's name
    (dbt_project.yml), not `project_name`: that is the root project's when this one is installed
    as a package. -#}
{% macro own_model_id(name) -%}
    {{ return('model.stripe_sync.' ~ name) }}
{%- endmacro %}

{#- The relation a customer-keyed model builds, for the models that read its previous state
    without a ref (a ref would be a cycle: its next build depends on them). -#}
{% macro customer_keyed_relation(name) -%}
    {%- if execute is not defined -%}
        {{ name }}
    {%- elif not execute -%}
        {{ return(api.Relation.create(identifier=name)) }}
    {%- else -%}
        {%- set node = graph.nodes[own_model_id(name)] -%}
        {{ return(api.Relation.create(
            database=node.database, schema=node.schema, identifier=node.alias
        )) }}
    {%- endif -%}
{%- endmacro %}

{#- For reader_guard checks: the customers this build recomputed when it was incremental, every
    customer otherwise (unchanged rows were checked by the build that wrote them). -#}
{% macro touched_customers_to_check(column) -%}
    {%- set touched = ref('int_customers_touched') -%}
    {%- if not recomputes_everyone() -%}
        {{ column }} = any(array(select touched.stripe_customer_id from {{ touched }} as touched))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- This dbt invocation's id, as a SQL literal. -#}
{% macro customer_keyed_invocation() -%}
    '{{ invocation_id if execute is defined else "" }}'::text
{%- endmacro %}

{#- `true` when this build runs with --full-refresh or a customer-keyed table is missing. -#}
{% macro customer_keyed_full_refresh(missing) -%}
    {%- if execute is defined and (flags.FULL_REFRESH or missing) -%}
        true
    {%- else -%}
        false
    {%- endif -%}
{%- endmacro %}
