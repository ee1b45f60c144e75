-- Every customer with subscriptions has exactly one primary subscription.
select
    stripe_customer_id,
    count(*) filter (where is_primary_subscription) as primary_subscriptions
from {{ ref('int_subscriptions_ranked_per_customer') }}
group by stripe_customer_id
having count(*) filter (where is_primary_subscription) != 1
