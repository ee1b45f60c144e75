"""Object ids from event payloads go into request paths as one quoted segment: an id like
`../account` re-fetches nothing but that (missing) object."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import psycopg
import pytest

from orchestration.extract import loader
from orchestration.extract.client import StripeApi
from orchestration.extract.events import apply_events
from tests.extract.races import OTHER_VERSION
from tests.extract.stripe_proxy import StripeProxy


@pytest.mark.parametrize("object_id", ["../account", "cus_1/../../account", "cus_1?limit=1"])
def test_an_event_objects_id_never_reaches_another_resource(
    emulator, database_url: str, object_id: str
) -> None:
    event = {
        "id": "evt_1PathSegment",
        "object": "event",
        "api_version": OTHER_VERSION,  # re-fetched by id
        "created": emulator.now(),
        "livemode": False,
        "type": "customer.updated",
        "data": {"object": {"id": object_id, "object": "customer", "livemode": False}},
    }
    requested: list[str] = []
    proxy = StripeProxy(emulator)
    proxy.hook = requested.append
    with proxy.running(), psycopg.connect(database_url, autocommit=True) as conn:
        loader.ensure_raw_tables(conn)
        apply_events(conn, StripeApi(emulator.test_key, proxy.url, max_rps=1000), [event])
        stored = conn.execute("select id, data ->> 'object' from stripe_raw.customers").fetchall()
    paths = [urlsplit(path).path for path in requested]
    assert [p for p in paths if p.startswith("/v1/customers")] == [
        f"/v1/customers/{quote(object_id, safe='')}"
    ]
    assert "/v1/account" not in paths
    # Stripe does not know the id: the event's copy is kept, flagged deleted; nothing else.
    assert stored == [(object_id, "customer")]
