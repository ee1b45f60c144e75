with

events as (
    select * from {{ source('stripe_raw', 'events') }}
    where
        {{ in_key_mode() }}
        and not is_deleted
),

renamed as (
    select
        -- ids
        id as stripe_event_id,
        coalesce(object_id, data -> 'data' -> 'object' ->> 'id') as event_object_id,
        -- The customer an event is about: the object itself for customer.* events, else the
        -- object's `customer` (an id, or the customer object when expanded).
        case
            when data -> 'data' -> 'object' ->> 'object' = 'customer'
                then data -> 'data' -> 'object' ->> 'id'
            when jsonb_typeof(data -> 'data' -> 'object' -> 'customer') = 'object'
                then data -> 'data' -> 'object' -> 'customer' ->> 'id'
            else data -> 'data' -> 'object' ->> 'customer'
        end as stripe_customer_id,

        -- attributes
        coalesce(type, data ->> 'type') as event_type,
        coalesce(api_version, data ->> 'api_version') as event_api_version,
        -- Events are polymorphic: the object and its changed fields stay JSON here and are read
        -- per event type in int_events_mapped_to_activities.
        data -> 'data' -> 'object' as event_object,
        data -> 'data' -> 'previous_attributes' as event_previous_attributes,

        -- timestamps
        created as occurred_at,

        -- bookkeeping
        synced_at
    from events
)

select * from renamed
