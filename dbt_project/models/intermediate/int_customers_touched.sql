{#- One row per customer whose rows the customer-keyed models recompute on this build (doc:
    incremental_builds); empty when int_build_window recomputes everything.

    It reads the raw tables' stamps directly (the one model besides staging that selects from
    source()): a deleted customer, charge or subscription must be found too, and staging keeps
    only what is not deleted. Every lookup goes through an index of ensure_customer_keyed_support
    or of a customer-keyed table, so its cost follows the rows changed, not the account. -#}
{{
    config(
        materialized='table',
        tags=['customer_keyed_window'],
        pre_hook=["{{ plan_for_index_lookups() }}"],
        indexes=[{'columns': ['stripe_customer_id'], 'unique': true}],
    )
}}

{%- set window = customer_window() -%}
{#- Taken before the branch, so that dbt records them as dependencies when it parses. -#}
{%- set window_relation = ref('int_build_window') -%}
{%- set events = ref('stg_stripe__events') -%}
{%- set raw_customers = source('stripe_raw', 'customers') -%}
{%- set raw_subscriptions = source('stripe_raw', 'subscriptions') -%}
{%- set raw_charges = source('stripe_raw', 'charges') -%}
{%- set raw_invoices = source('stripe_raw', 'invoices') -%}
{%- set raw_products = source('stripe_raw', 'products') -%}
{%- set raw_activity_events = source('stripe_raw', 'activity_events') -%}
{%- set customer_fields = customer_keyed_relation('customer_fields') -%}
{%- set next_changes = customer_keyed_relation('int_customer_next_changes') %}

{% if window.full %}

    select null::text as stripe_customer_id
    where false

{% else %}

    with

    -- Customer records written since the window's stamp, deleted ones included.
    changed_customers as (
        select id as stripe_customer_id
        from {{ raw_customers }}
        where
            {{ in_key_mode() }}
            and synced_at >= '{{ window.since }}'::timestamptz
    ),

    changed_subscriptions as (
        select {{ customer_reference('data') }} as stripe_customer_id
        from {{ raw_subscriptions }}
        where
            {{ in_key_mode() }}
            and synced_at >= '{{ window.since }}'::timestamptz
    ),

    changed_charges as (
        select {{ customer_reference('data') }} as stripe_customer_id
        from {{ raw_charges }}
        where
            {{ in_key_mode() }}
            and synced_at >= '{{ window.since }}'::timestamptz
    ),

    -- An invoice reaches the customer's MRR history (its billed periods).
    changed_invoices as (
        select {{ customer_reference('data') }} as stripe_customer_id
        from {{ raw_invoices }}
        where
            {{ in_key_mode() }}
            and synced_at >= '{{ window.since }}'::timestamptz
    ),

    -- New events reach the customer's feed.
    new_events as (
        select stripe_customer_id
        from {{ events }}
        where synced_at >= '{{ window.since }}'::timestamptz
    ),

    -- New activity rows, matched to customers by id or by email ignoring case (lookups by
    -- `= any(array(...))`, which the planner matches to an index, unlike a join's guess).
    new_activity as (
        select
            nullif(trim(stripe_customer_id), '') as stripe_customer_id,
            lower(nullif(trim(customer_email), '')) as customer_email_lower
        from {{ raw_activity_events }}
        where synced_at >= '{{ window.since }}'::timestamptz
    ),

    activity_customers as (
        select new_activity.stripe_customer_id
        from new_activity
        where new_activity.stripe_customer_id is not null

        union all

        select customers.id as stripe_customer_id
        from {{ raw_customers }} as customers
        where
            customers.{{ in_key_mode() }}
            and lower(customers.data ->> 'email') = any(array(
                select new_activity.customer_email_lower from new_activity
                where new_activity.customer_email_lower is not null
            ))
    ),

    -- A deleted product (staging drops it) or one without a name: customer_fields falls back to
    -- the subscription item's expanded product name, so every customer of it is recomputed. A
    -- renamed product touches nobody: customer_fields and the segment tables take its new name in
    -- place (apply_product_renames); any other update of a product changes no customer's row.
    unnamed_products as (
        select id as product_id
        from {{ raw_products }}
        where
            {{ in_key_mode() }}
            and synced_at >= '{{ window.since }}'::timestamptz
            and (is_deleted or data ->> 'name' is null)
    ),

    product_customers as (
        select customer_fields.stripe_customer_id
        from {{ customer_fields }} as customer_fields
        where customer_fields.product_id = any(array(
            select unnamed_products.product_id from unnamed_products
        ))
    ),

    -- Time-based rules (trial ended, activity thresholds, discounts starting or ending) whose
    -- next boundary the build's as_of reached.
    flipped_customers as (
        select next_changes.stripe_customer_id
        from {{ next_changes }} as next_changes
        where next_changes.next_change_at <= {{ as_of() }}
    ),

    touched as (
        select stripe_customer_id from changed_customers
        union all
        select stripe_customer_id from changed_subscriptions
        union all
        select stripe_customer_id from changed_charges
        union all
        select stripe_customer_id from changed_invoices
        union all
        select stripe_customer_id from new_events
        union all
        select stripe_customer_id from activity_customers
        union all
        select stripe_customer_id from product_customers
        union all
        select stripe_customer_id from flipped_customers
    ),

    final as (
        select distinct stripe_customer_id
        from touched
        where stripe_customer_id is not null
    )

    select * from final

{% endif %}
