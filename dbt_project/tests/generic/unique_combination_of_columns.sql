{#- Fails for each combination of the given columns that occurs more than once: the key of a model
    whose grain is a pair, e.g. segment_memberships (segment, stripe_customer_id). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
