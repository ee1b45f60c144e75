{#- Post-hook of customer_fields and of the segment tables that copy its rows: on an incremental
    build, the current name of every product written since the window's start, set in place on
    the rows of it that still hold another one. A renamed product changes nothing but
    product_name, and only these tables carry it, so its subscribers are not touched customers:
    recomputing them was a recompute of every customer-keyed model for ~6 % of the account (the
    emulator's catalog), past the many-touched threshold a recompute of everyone (21 s at 100k
    customers, minutes at 1M). The names are staging's, as customer_fields reads them; a deleted
    product (gone from staging) or one without a name leaves customer_fields the subscription's
    expanded name instead, and int_customers_touched touches its subscribers.
    Runs only when such a product exists (one query per build, cached): the update reads the
    whole table (a product's rows are a large share of it, too many for its index to pay). -#}
{% macro apply_product_renames() -%}
    {%- set products = ref('stg_stripe__products') -%}
    {%- set raw_products = source('stripe_raw', 'products') -%}
    {%- if not is_customer_incremental() or not products_changed_since_window(raw_products) -%}
        select 1
    {%- else -%}
        update {{ this }} as target
        set product_name = products.product_name
        from {{ products }} as products
        where
            target.product_id = products.product_id
            and products.product_id = any(array({{ changed_product_ids(raw_products) }}))
            and products.product_name is not null
            and target.product_name is distinct from products.product_name
    {%- endif -%}
{%- endmacro %}

{#- The ids of the key mode's products written since the window's start (the raw table's index
    on synced_at), deleted ones included. -#}
{% macro changed_product_ids(raw_products) -%}
    select raw.id from {{ raw_products }} as raw
    where
        raw.{{ in_key_mode() }}
        and raw.synced_at >= '{{ customer_window().since }}'::timestamptz
{%- endmacro %}

{#- Whether this build's window holds a written product: asked once per build, by the first model
    whose post-hook asks. -#}
{% macro products_changed_since_window(raw_products) -%}
    {%- set cached = invocation_cache().get('products_changed') -%}
    {%- if cached is none -%}
        {%- set cached = run_query(
            'select exists (' ~ changed_product_ids(raw_products) ~ ')'
        ).rows[0][0] -%}
        {%- do invocation_cache().update({'products_changed': cached}) -%}
    {%- endif -%}
    {{ return(cached) }}
{%- endmacro %}
