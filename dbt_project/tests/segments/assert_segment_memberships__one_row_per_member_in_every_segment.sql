-- Each segment table has one row per member, and segment_memberships one per (segment, member).
-- A reader_guard check: an incremental build checks the customers it recomputed; the unique
-- indexes on the same keys make a merge that would break it fail instead of commit.
{{
    config(
        meta={'dagster': {'ref': {'name': 'segment_memberships'}}},
        tags=['reader_guard'],
    )
}}
-- The incremental form's lookup, which dbt does not see while parsing the full form:
-- depends_on: {{ ref('int_customers_touched') }}
{% set segments = [
    'syncing_with_stripe', 'current_trials', 'slipping_trials', 'slipping_customers',
    'expired_trials', 'customers', 'churned_customers', 'past_due_subscriptions',
] %}

{% if recomputes_everyone() %}
    {#- Every customer recomputed: counting every key of nine whole tables (7.8 s at 1M
        customers) would check what their unique indexes enforce. Checked instead: each table
        has a valid unique index on (part of) its key, and no key with a null repeats, as a
        unique index lets it (the index finds those rows). -#}
    with

    key_tables as (
        {% for segment in segments %}
            select
                '{{ segment }}' as source_table,
                '{{ ref(segment) }}'::regclass as relation,
                array['stripe_customer_id'] as key_columns

            union all
        {% endfor %}

        select
            'segment_memberships' as source_table,
            '{{ ref('segment_memberships') }}'::regclass as relation,
            array['segment', 'stripe_customer_id'] as key_columns
    ),

    unindexed as (
        select
            key_tables.source_table,
            null::text as segment,
            null::text as stripe_customer_id,
            'no valid unique index on the key' as problem
        from key_tables
        where
            not exists (
                select 1 from pg_index as indexes
                where
                    indexes.indrelid = key_tables.relation
                    and indexes.indisunique
                    and indexes.indisvalid
                    and indexes.indpred is null
                    and indexes.indexprs is null
                    and array(
                        select attributes.attname::text from pg_attribute as attributes
                        where
                            attributes.attrelid = indexes.indrelid
                            and attributes.attnum = any(indexes.indkey::int2 [])
                    ) <@ key_tables.key_columns
            )
    ),

    repeated_null_keys as (
        {% for segment in segments %}
            select
                '{{ segment }}' as source_table,
                '{{ segment }}' as segment,
                null::text as stripe_customer_id,
                'null key, ' || count(*) || ' rows' as problem
            from {{ ref(segment) }}
            where stripe_customer_id is null
            having count(*) > 1

            union all
        {% endfor %}

        select
            'segment_memberships' as source_table,
            segment,
            stripe_customer_id,
            'null key, ' || count(*) || ' rows' as problem
        from {{ ref('segment_memberships') }}
        where segment is null or stripe_customer_id is null
        group by segment, stripe_customer_id
        having count(*) > 1
    )

    select * from unindexed
    union all
    select * from repeated_null_keys
{% else %}
    with

    segment_rows as (
        {% for segment in segments %}
            select
                '{{ segment }}' as source_table,
                '{{ segment }}' as segment,
                stripe_customer_id
            from {{ ref(segment) }}
            where {{ touched_customers_to_check('stripe_customer_id') }}

            union all
        {% endfor %}

        select
            'segment_memberships' as source_table,
            segment,
            stripe_customer_id
        from {{ ref('segment_memberships') }}
        where {{ touched_customers_to_check('stripe_customer_id') }}
    ),

    duplicates as (
        select
            source_table,
            segment,
            stripe_customer_id,
            count(*) || ' rows' as problem
        from segment_rows
        group by source_table, segment, stripe_customer_id
        having count(*) > 1
    )

    select * from duplicates
{% endif %}
