-- One subscription's complete items (items.py), written over the snapshot they were read for and
-- only while it still embeds part of them, so a newer snapshot written meanwhile stays. A
-- subscription Stripe no longer knows (items null) keeps its data and is flagged deleted.
update stripe_raw.subscriptions
set
    data = coalesce(jsonb_set(data, '{items}', %(items)s::jsonb), data),
    is_deleted = is_deleted or %(gone)s,
    synced_at = now()
where
    id = %(id)s
    and snapshot_at = %(snapshot_at)s
    and (data -> 'items' ->> 'has_more') = 'true'
