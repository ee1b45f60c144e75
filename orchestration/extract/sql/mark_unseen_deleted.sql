-- After a complete re-list: rows that the list did not return (snapshot older than the list's
-- start) and that no event touched since are gone from Stripe, e.g. deleted while events were
-- out of retention. Only objects created before the list's upper bound can be judged.
update stripe_raw.{table}
set is_deleted = true, synced_at = now()
where
    livemode = %(livemode)s
    and not is_deleted
    and snapshot_at < %(started_at)s
    and created < %(upper)s
