with

invoices as (
    select * from {{ source('stripe_raw', 'invoices') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

-- Lines are embedded in the invoice (data.lines.data): the first 10, as Stripe embeds them (the
-- extractor does not complete invoice lines as it does subscription items).
lines as (
    select
        invoices.id as invoice_id,
        case
            when jsonb_typeof(invoices.data -> 'customer') = 'object'
                then invoices.data -> 'customer' ->> 'id'
            else invoices.data ->> 'customer'
        end as stripe_customer_id,
        -- Until 2025-03-31.basil `invoice.subscription`; since, under parent.subscription_details.
        coalesce(
            invoices.data -> 'parent' -> 'subscription_details' ->> 'subscription',
            invoices.data ->> 'subscription'
        ) as subscription_id,
        invoices.data ->> 'status' as invoice_status,
        lower(invoices.data ->> 'currency') as invoice_currency,
        -- What the invoice's discounts took off in all (Stripe also splits it over the lines'
        -- discount_amounts; an invoice may carry only the total).
        (
            select coalesce(sum((discount_amounts.discount_amount ->> 'amount')::bigint), 0)
            from jsonb_array_elements(
                {{ json_array_or_empty("invoices.data -> 'total_discount_amounts'") }}
            ) as discount_amounts (discount_amount)
        ) as invoice_discount_in_cents,
        invoice_lines.line_number as line_position,
        invoice_lines.line_data
    from invoices
    cross join lateral jsonb_array_elements(
        {{ json_array_or_empty("invoices.data -> 'lines' -> 'data'") }}
    ) with ordinality as invoice_lines (line_data, line_number)
),

renamed as (
    select
        -- ids
        line_data ->> 'id' as invoice_line_id,
        invoice_id,
        stripe_customer_id,
        subscription_id,
        line_position::integer as line_position,
        -- The line's price: inlined before basil, an id under pricing.price_details since.
        coalesce(
            line_data -> 'price' ->> 'id',
            line_data -> 'pricing' -> 'price_details' ->> 'price',
            line_data -> 'plan' ->> 'id'
        ) as plan_id,

        -- attributes
        invoice_status,
        invoice_currency,
        -- A subscription item's line: `type` before basil, `parent.type` since.
        coalesce(
            line_data ->> 'type' = 'subscription',
            line_data -> 'parent' ->> 'type' = 'subscription_item_details',
            false
        ) as is_subscription_line,
        coalesce(
            (line_data ->> 'proration')::boolean,
            (line_data -> 'parent' -> 'subscription_item_details' ->> 'proration')::boolean,
            false
        ) as is_proration,
        (line_data ->> 'quantity')::bigint as quantity,

        -- amounts (minor units)
        (line_data ->> 'amount')::bigint as line_amount_in_cents,
        (
            select coalesce(sum((discount_amounts.discount_amount ->> 'amount')::bigint), 0)
            from jsonb_array_elements(
                {{ json_array_or_empty("lines.line_data -> 'discount_amounts'") }}
            ) as discount_amounts (discount_amount)
        ) as line_discount_in_cents,
        invoice_discount_in_cents,

        -- timestamps
        {{ from_epoch("line_data -> 'period' ->> 'start'") }} as line_period_started_at,
        {{ from_epoch("line_data -> 'period' ->> 'end'") }} as line_period_ends_at
    from lines
)

select * from renamed
