with

sync_state as (
    select * from {{ source('stripe_raw', 'sync_state') }}
    where {{ in_key_mode() }}
),

renamed as (
    select
        -- ids
        object,
        account_id,

        -- attributes
        lower(status) as sync_status,
        cursor,
        backfill_done as is_backfill_done,
        last_error,
        rows,

        -- timestamps
        cursor_at,
        last_success_at,
        updated_at
    from sync_state
)

select * from renamed
