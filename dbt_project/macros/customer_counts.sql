{#- The counts sync_health reports (customers in sync, customers whose discount can't be read),
    kept by customer_fields' merge in stripe_staging.customer_counts so that an incremental build
    does not count a table of every customer: the pre-hook counts the touched customers' rows
    before the merge, the post-hook after it, and the difference moves the totals, in the merge's
    transaction. A full recompute (or a missing row) counts the whole table. -#}
{#- Beside customer_keyed_state (customer_keyed_state_schema). -#}
{% macro customer_counts_relation() -%}
    stripe_staging.customer_counts
{%- endmacro %}

{#- Pre-hook of customer_fields: the touched customers' counts before the merge. -#}
{% macro count_customers_before_merge() -%}
    create table if not exists {{ customer_counts_relation() }} (
        model text primary key,
        customers bigint not null,
        customers_with_unreadable_discount bigint not null
    );
    {% if is_customer_incremental() -%}
        create temporary table customer_counts_before on commit drop as
        {{ customer_counts_of(this, touched_customers('stripe_customer_id')) }}
    {%- else -%}
        select 1
    {%- endif %}
{%- endmacro %}

{#- Post-hook of customer_fields: the totals after the merge. -#}
{% macro record_customer_counts() -%}
    {%- set counts = customer_counts_relation() -%}
    {%- if is_customer_incremental() -%}
        update {{ counts }} as counts
        set
            customers = counts.customers - before.customers + after.customers,
            customers_with_unreadable_discount
            = counts.customers_with_unreadable_discount
            - before.customers_with_unreadable_discount
            + after.customers_with_unreadable_discount
        from
            customer_counts_before as before,
            ({{ customer_counts_of(this, touched_customers('stripe_customer_id')) }}) as after
        where counts.model = '{{ this.identifier }}';
    {%- endif %}
    -- Every row counted when the window recomputes everything or no totals are kept yet (the
    -- one-time filter skips the count otherwise).
    insert into {{ counts }} (model, customers, customers_with_unreadable_discount)
    select '{{ this.identifier }}', totals.customers, totals.customers_with_unreadable_discount
    from ({{ customer_counts_of(this, 'true') }}) as totals
    where
    {%- if is_customer_incremental() %}
            not exists (select 1 from {{ counts }} where model = '{{ this.identifier }}')
        {%- else %}
            true
    {%- endif %}
    on conflict (model) do update set
        customers = excluded.customers,
        customers_with_unreadable_discount = excluded.customers_with_unreadable_discount
{%- endmacro %}

{% macro customer_counts_of(relation, condition) -%}
    select
        count(*) as customers,
        count(*) filter (where has_unreadable_discount) as customers_with_unreadable_discount
    from {{ relation }}
    where {{ condition }}
{%- endmacro %}
