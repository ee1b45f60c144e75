-- The events cursor of one mode, committed in the same transaction as the rows it covers.
update stripe_raw.sync_state
set
    cursor = %(cursor)s,
    cursor_at = greatest(cursor_at, %(cursor_at)s),
    updated_at = now()
where livemode = %(livemode)s
