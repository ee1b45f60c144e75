"""The Stripe-compatible HTTP API: routing, auth, versions, lists, expansions and errors."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router, request_response

from orchestration.emulator.account import Account, KeyInfo
from orchestration.emulator.params import ParamError, decode
from orchestration.emulator.render import OBJECT_NAMES, Shape, deleted_stub, shape_for
from orchestration.emulator.store import ListQuery, dumps

if TYPE_CHECKING:
    from orchestration.emulator.server import Emulator

EVENTS_WINDOW = 30 * 86_400  # Stripe lists events of the last 30 days only
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_TYPE = re.compile(r"^[a-z_.*]+$")
_PAGING = {"limit", "starting_after", "ending_before", "expand"}
SUBSCRIPTION_STATUSES = {
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "trialing",
    "paused",
    "all",
    "ended",
}


class ApiError(Exception):
    """An error answered in Stripe's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param


@dataclass(frozen=True)
class Resource:
    """One listable Stripe resource."""

    kind: str  # store kind
    permission: str  # restricted-key permission id for reads
    filters: frozenset[str] = frozenset()  # list parameters besides paging and created
    created: bool = True
    post_filters: dict[str, Callable[[dict[str, Any], Any], bool]] = field(default_factory=dict)


def _any_item_price(sub: dict[str, Any], price: Any) -> bool:
    return any(item[1] == price for item in sub["items"])


def _as_bool(value: Any) -> bool:
    return str(value).lower() == "true"


RESOURCES: dict[str, Resource] = {
    "customers": Resource(
        "customers",
        "rak_customer_read",
        frozenset({"email"}),
        post_filters={"email": lambda o, v: o.get("email") == v},
    ),
    "subscriptions": Resource(
        "subscriptions",
        "rak_subscription_read",
        frozenset({"status", "customer", "price"}),
        post_filters={"price": _any_item_price},
    ),
    "invoices": Resource(
        "invoices",
        "rak_invoice_read",
        frozenset({"status", "customer", "subscription"}),
        post_filters={"subscription": lambda o, v: o.get("subscription") == v},
    ),
    "charges": Resource("charges", "rak_charge_read", frozenset({"customer"})),
    "prices": Resource(
        "prices",
        "rak_price_read",
        frozenset({"active", "product", "type", "currency"}),
        post_filters={
            "active": lambda o, v: o["active"] == _as_bool(v),
            "product": lambda o, v: o["product"] == v,
            "type": lambda o, v: o["type"] == v,
            "currency": lambda o, v: o["currency"] == v,
        },
    ),
    "products": Resource(
        "products",
        "rak_price_read",
        frozenset({"active"}),
        post_filters={"active": lambda o, v: o["active"] == _as_bool(v)},
    ),
    "plans": Resource(
        "prices",
        "rak_price_read",
        frozenset({"active", "product"}),
        post_filters={
            "active": lambda o, v: o["active"] == _as_bool(v),
            "product": lambda o, v: o["product"] == v,
        },
    ),
    "coupons": Resource("coupons", "rak_coupon_read"),
    "checkout/sessions": Resource(
        "checkout_sessions",
        "rak_checkout_session_read",
        frozenset({"status", "customer", "subscription"}),
        post_filters={"subscription": lambda o, v: o.get("subscription") == v},
    ),
    "events": Resource("events", "rak_event_read", frozenset({"type", "types"})),
    "webhook_endpoints": Resource("webhook_endpoints", "rak_webhook_read", created=False),
}
STATUS_VALUES = {
    "invoices": {"draft", "open", "paid", "uncollectible", "void"},
    "checkout_sessions": {"open", "complete", "expired"},
}
# Prefix of an id → (store kind) for expansions.
ID_KINDS = {
    "cus_": "customers",
    "sub_": "subscriptions",
    "in_": "invoices",
    "ch_": "charges",
    "price_": "prices",
    "prod_": "products",
    "cs_": "checkout_sessions",
}
EXPANDABLE = {
    "customer",
    "subscription",
    "latest_invoice",
    "invoice",
    "charge",
    "price",
    "product",
    "plan",
    "default_price",
    "payment_intent",
    "balance_transaction",
    "discounts",
    "default_payment_method",
    "payment_method",
    "coupon",
}
WRITE_IMPLIES_READ = {"rak_webhook_read": "rak_webhook_write"}
PERMISSION_BY_KIND = {res.kind: res.permission for res in RESOURCES.values()}
# Stripe expands at most four levels (`data.discounts.source.coupon` is four).
MAX_EXPAND_DEPTH = 4


@dataclass
class Ctx:
    """One request's resolved key, account, mode and API shape."""

    key: KeyInfo
    account: Account
    livemode: bool
    version: str
    shape: Shape
    # Raises Stripe's 403 unless the key holds a permission: an expanded object needs the same
    # read permission as retrieving it (a coupon needs Coupons: Read).
    require: Callable[[str], None] = lambda permission: None


# A handler of the Stripe API: the request's context, its decoded parameters and the request
# (its path parameters); returns the JSON body of a 200, or raises ApiError.
Handler = Callable[["Ctx", dict[str, Any], Request], Any]


class Api:
    """ASGI application serving one Emulator: Starlette routes behind the network faults."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        stripe, control = self._stripe, self._control
        self.router = Router(
            routes=[
                Route("/_emulator/stats", control(self._stats), methods=["GET"]),
                Route("/_emulator/tick", control(self._tick), methods=["POST"]),
                Route("/_emulator/clock", control(self._clock), methods=["POST"]),
                # Any other method and path: these two catch-alls are Mounts, which (unlike a
                # Route of a function) match every method, so no request meets Starlette's 405.
                Mount("/_emulator", request_response(control(None))),
                Route("/v1/account", stripe(self._account), methods=["GET"]),
                Route("/v1/webhook_endpoints", stripe(self._create_endpoint), methods=["POST"]),
                Route(
                    "/v1/webhook_endpoints/{endpoint_id}",
                    stripe(self._delete_endpoint),
                    methods=["DELETE"],
                ),
                # Writes we do not model (an update, say) still need the write permission first.
                Route(
                    "/v1/webhook_endpoints/{rest:path}",
                    stripe(self._unmodelled_endpoint_write),
                    methods=["POST", "DELETE"],
                ),
                Route(
                    "/v1/webhook_endpoints",
                    stripe(self._unmodelled_endpoint_write),
                    methods=["DELETE"],
                ),
                Route("/v1/subscription_items", stripe(self._subscription_items), methods=["GET"]),
                Route(
                    "/v1/subscription_items/{item_id}",
                    stripe(self._subscription_item),
                    methods=["GET"],
                ),
                Route(
                    "/v1/invoices/{invoice_id}/lines", stripe(self._invoice_lines), methods=["GET"]
                ),
                Route("/v1/checkout/sessions", stripe(self._resource), methods=["GET"]),
                Route("/v1/checkout/sessions/{obj_id}", stripe(self._resource), methods=["GET"]),
                Route("/v1/{name}", stripe(self._resource), methods=["GET"]),
                Route("/v1/{name}/{obj_id}", stripe(self._resource), methods=["GET"]),
                # Anything else: authenticated, limited and validated like any request, then 404.
                Mount("", request_response(stripe(None))),
            ],
            # Stripe answers an unknown URL 404 rather than redirect it.
            redirect_slashes=False,
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Latency and network faults come before routing: a reset has no HTTP answer at all.
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator/"):
            emu = self.emu
            if emu.latency_ms:
                await asyncio.sleep(emu.latency_ms / 1000)
            fault = emu.limits.draw_fault()
            if fault in ("reset", "timeout"):
                emu.stats_counters.fault(fault)
                emu.stats_counters.record(f"{scope['method']} {_route_template(scope['path'])}", 0)
                if fault == "timeout":
                    await asyncio.sleep(emu.limits.timeout_seconds)
                await _reset(send)
                return
            scope.setdefault("state", {})["fault"] = fault
        await self.router(scope, receive, send)

    def _control(self, handler: Callable[[dict[str, Any]], Any] | None) -> Callable:
        """An endpoint of /_emulator/*, which other processes (the CLI, benchmarks) drive; None
        for the 404 of an unknown one."""

        async def endpoint(request: Request) -> Response:
            method, path = request.method, request.scope["path"]
            body = await request.body() if method in ("POST", "DELETE") else b""
            try:
                params = decode(body.decode())
            except ParamError as err:
                return _json(400, {"error": {"type": "invalid_request_error", "message": str(err)}})
            if handler is None or method == "HEAD":
                message = f"Unknown emulator endpoint {method} {path}"
                return _json(404, {"error": {"type": "invalid_request_error", "message": message}})
            return _json(200, handler(params))

        return endpoint

    def _stats(self, params: dict[str, Any]) -> Any:
        return self.emu.stats()

    def _tick(self, params: dict[str, Any]) -> Any:
        events = self.emu.tick(int(params.get("steps", 1)))
        return {"events": events, "now": self.emu.now()}

    def _clock(self, params: dict[str, Any]) -> Any:
        self.emu.advance_clock(int(params.get("seconds", 0)))
        return {"now": self.emu.now()}

    def _stripe(self, handler: Handler | None) -> Callable:
        """An endpoint of the Stripe API (None: an unknown URL). Every request, known or not, is
        checked in Stripe's order: injected fault, key, rate limit, version, parameters; an
        ApiError becomes Stripe's error body. Every answer carries a request id and a Date."""

        async def endpoint(request: Request) -> Response:
            emu = self.emu
            method, path = request.method, request.scope["path"]
            body = await request.body() if method in ("POST", "DELETE") else b""
            request_id = "req_" + secrets.token_hex(7)
            extra = {
                "request-id": request_id,
                "date": formatdate(emu.now() - emu.date_lag, usegmt=True),
            }
            try:
                fault = request.state.fault
                if fault is not None:
                    emu.stats_counters.fault(fault)
                    raise _fault_error(fault)
                ctx, params = self._context(request, body, extra)
                # Starlette serves HEAD with each GET route; Stripe knows no HEAD.
                if handler is None or method == "HEAD":
                    raise _unknown_route(method, path)
                status, payload = 200, handler(ctx, params, request)
            except ApiError as err:
                status, payload = (
                    err.status,
                    {
                        "error": {
                            **err.body,
                            "request_log_url": f"https://dashboard.stripe.com/logs/{request_id}",
                        }
                    },
                )
            emu.stats_counters.record(f"{method} {_route_template(path)}", status)
            return _json(status, payload, extra)

        return endpoint

    def _context(
        self, request: Request, body: bytes, extra: dict[str, str]
    ) -> tuple[Ctx, dict[str, Any]]:
        """The request's key, account, mode and API shape, and its decoded parameters."""
        key = self._authenticate(request.headers)
        if not self.emu.limits.allow(key.account.id, key.livemode):
            raise ApiError(
                429,
                "Request rate limit exceeded. Learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                type_="rate_limit_error",
                code="rate_limit",
            )
        version = request.headers.get("stripe-version") or key.account.default_version
        if not _VERSION.match(version):
            raise ApiError(400, f"Invalid Stripe API version: {version}", param="stripe-version")
        extra["stripe-version"] = version
        ctx = Ctx(key, key.account, key.livemode, version, shape_for(version))
        ctx.require = lambda permission: self._require(ctx, permission)
        query = request.scope["query_string"].decode()
        try:
            params = decode(query if request.method == "GET" else body.decode())
        except ParamError as err:
            raise ApiError(400, str(err), param=err.param) from err
        return ctx, params

    def _authenticate(self, headers: Mapping[str, str]) -> KeyInfo:
        auth = headers.get("authorization", "")
        key = ""
        if auth.startswith("Bearer "):
            key = auth[7:].strip()
        elif auth.startswith("Basic "):
            key = base64.b64decode(auth[6:]).decode(errors="replace").split(":")[0]
        if not key:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API "
                "key in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        info = self.emu.keys.get(key)
        if info is None:
            raise ApiError(401, f"Invalid API Key provided: {_mask(key)}")
        return info

    # --- the Stripe API's routes ------------------------------------------------------------

    def _account(self, ctx: Ctx, params: dict[str, Any], request: Request) -> dict[str, Any]:
        _only(params, {"expand"})
        return self.emu.account_object(ctx.account)

    def _create_endpoint(
        self, ctx: Ctx, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        self._require(ctx, "rak_webhook_write")
        return self.emu.create_webhook_endpoint(ctx.account, ctx.livemode, params)

    def _delete_endpoint(
        self, ctx: Ctx, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        self._require(ctx, "rak_webhook_write")
        endpoint_id = request.path_params["endpoint_id"]
        return self.emu.delete_webhook_endpoint(ctx.account, ctx.livemode, endpoint_id)

    def _unmodelled_endpoint_write(
        self, ctx: Ctx, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        self._require(ctx, "rak_webhook_write")
        raise _unknown_route(request.method, request.scope["path"])

    def _subscription_item(
        self, ctx: Ctx, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        self._require(ctx, "rak_subscription_read")
        _only(params, {"expand"})
        item_id = request.path_params["item_id"]
        item = self.emu.find_subscription_item(ctx.account, item_id, ctx.livemode, ctx.shape)
        if item is None:
            raise _no_such("subscription_item", item_id, "id")
        for path in _expand_paths(params):
            _expand(ctx, item, path.split("."), path)
        return item

    def _subscription_items(
        self, ctx: Ctx, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        self._require(ctx, "rak_subscription_read")
        _only(params, _PAGING | {"subscription"})
        if "subscription" not in params:
            raise ApiError(400, "Missing required param: subscription.", param="subscription")
        sub_id = _string(params, "subscription")
        items = ctx.account.nested_list("subscriptions", sub_id, ctx.livemode, ctx.shape)
        if items is None:
            raise _no_such("subscription", sub_id, "subscription")
        return _page_in_memory(items, params, request.scope["path"], ctx, "subscription_item")

    def _invoice_lines(self, ctx: Ctx, params: dict[str, Any], request: Request) -> dict[str, Any]:
        self._require(ctx, "rak_invoice_read")
        _only(params, _PAGING)
        invoice_id = request.path_params["invoice_id"]
        lines = ctx.account.nested_list("invoices", invoice_id, ctx.livemode, ctx.shape)
        if lines is None:
            raise _no_such("invoice", invoice_id, "invoice")
        return _page_in_memory(lines, params, request.scope["path"], ctx, "line_item")

    def _resource(self, ctx: Ctx, params: dict[str, Any], request: Request) -> dict[str, Any]:
        """A list (no id) or one object of a resource in RESOURCES."""
        path = request.scope["path"]
        name = request.path_params.get("name", "checkout/sessions")
        res = RESOURCES.get(name)
        if res is None:
            raise _unknown_route(request.method, path)
        self._require(ctx, res.permission)
        if "obj_id" in request.path_params:
            return self._retrieve(ctx, name, res, request.path_params["obj_id"], params)
        return self._list(ctx, name, res, params, path)

    def _require(self, ctx: Ctx, permission: str) -> None:
        perms = ctx.key.permissions
        if perms is None or permission in perms or WRITE_IMPLIES_READ.get(permission) in perms:
            return
        raise ApiError(
            403,
            f"The provided key '{_mask(_key_of(self.emu, ctx.key))}' does not "
            "have the required permissions for this endpoint on account "
            f"'{ctx.account.id}'. Having the '{permission}' permission would allow "
            "this request to continue.",
        )

    def _retrieve(
        self, ctx: Ctx, name: str, res: Resource, obj_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        _only(params, {"expand"})
        found = ctx.account.store.get(res.kind, obj_id)
        noun = OBJECT_NAMES[name.replace("checkout/sessions", "checkout_sessions")]
        if (
            found is None
            or bool(found[0]["livemode"]) != ctx.livemode
            or (name == "plans" and found[0]["type"] != "recurring")
        ):
            raise _no_such(noun, obj_id, "id")
        compact, deleted = found
        if name == "events" and compact["created"] < self.emu.now() - EVENTS_WINDOW:
            raise _no_such(noun, obj_id, "id")
        if deleted:
            return deleted_stub(res.kind if name != "plans" else "plans", obj_id)
        paths = _expand_paths(params)
        kind = res.kind if name != "plans" else "plans"
        obj = ctx.account.rendered(kind, compact, ctx.shape, wire=not paths)
        if name == "webhook_endpoints":
            obj.pop("secret", None)
        for path in paths:
            _expand(ctx, obj, path.split("."), path)
        return obj

    def _list(
        self, ctx: Ctx, name: str, res: Resource, params: dict[str, Any], url: str
    ) -> dict[str, Any]:
        allowed = _PAGING | res.filters | ({"created"} if res.created else set())
        _only(params, allowed)
        q = ListQuery(kind=res.kind, livemode=ctx.livemode, limit=_limit(params))
        if "created" in params:
            q.created = _created(params["created"])
        self._cursor(ctx, res.kind, params, q)
        if "customer" in params:
            q.customer = _string(params, "customer")
        if "status" in params:
            self._status_filter(res.kind, _string(params, "status"), q)
        elif res.kind == "subscriptions":
            q.exclude_status = "canceled"  # Stripe hides canceled subscriptions by default
        if name == "plans":
            q.statuses = ["recurring"]
        if name == "events":
            self._event_filters(params, q)
        post = {k: params[k] for k in res.post_filters if k in params}
        compacts, has_more = _filtered_page(ctx.account, q, res, post)
        kind = "plans" if name == "plans" else res.kind
        paths = _expand_paths(params)
        # Without expansions the page goes out as rendered: nested catalog JSON can stay serialized.
        data = ctx.account.rendered_page(kind, compacts, ctx.shape, wire=not paths)
        for path in paths:
            if not path.startswith("data."):
                raise ApiError(
                    400,
                    f"This property cannot be expanded ({path}). You may want "
                    f"to try expanding 'data.{path}' instead.",
                    param="expand",
                )
            for obj in data:
                _expand(ctx, obj, path.split(".")[1:], path)
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    def _cursor(self, ctx: Ctx, kind: str, params: dict[str, Any], q: ListQuery) -> None:
        if "starting_after" in params and "ending_before" in params:
            raise ApiError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        for param in ("starting_after", "ending_before"):
            if param in params:
                obj_id = _string(params, param)
                pos = ctx.account.store.position(kind, obj_id)
                if pos is None or bool(pos[2]) != ctx.livemode:
                    raise _no_such(OBJECT_NAMES[kind], obj_id, param)
                if param == "starting_after":
                    q.after = (pos[0], pos[1])
                else:
                    q.before = (pos[0], pos[1])

    def _status_filter(self, kind: str, status: str, q: ListQuery) -> None:
        valid = SUBSCRIPTION_STATUSES if kind == "subscriptions" else STATUS_VALUES.get(kind, set())
        if status not in valid:
            raise ApiError(
                400, f"Invalid status: must be one of {', '.join(sorted(valid))}", param="status"
            )
        if status == "all":
            return
        q.statuses = ["canceled", "incomplete_expired"] if status == "ended" else [status]

    def _event_filters(self, params: dict[str, Any], q: ListQuery) -> None:
        if "type" in params and "types" in params:
            raise ApiError(
                400, "You may only specify one of these parameters: type, types.", param="types"
            )
        types: list[str] = []
        if "type" in params:
            types = [_string(params, "type")]
        elif "types" in params:
            types = params["types"]
            if not isinstance(types, list) or not types or len(types) > 20:
                raise ApiError(400, "Invalid array", param="types")
        for t in types:
            if not isinstance(t, str) or not _TYPE.match(t):
                raise ApiError(400, f"Invalid event type: {t}", param="type")
        q.type_globs = types or None
        q.not_before = self.emu.now() - EVENTS_WINDOW


def _filtered_page(
    account: Account, q: ListQuery, res: Resource, post: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """A page with filters SQL cannot apply run in Python, fetching further until full."""
    if not post:
        return account.store.list(q)
    wanted, out = q.limit, []
    scan = ListQuery(**{**q.__dict__, "limit": 100})
    backwards = q.before is not None
    while True:
        rows, more = account.store.list(scan)
        ordered = list(reversed(rows)) if backwards else rows
        for row in ordered:
            if all(res.post_filters[k](row, v) for k, v in post.items()):
                out.append(row)
                if len(out) > wanted:
                    break
        if len(out) > wanted or not more or not rows:
            break
        edge = ordered[-1]
        n = account.store.key_of(q.kind, edge["id"])
        if n is None:  # the store numbers every row it returns
            raise RuntimeError(f"{edge['id']} came back from the store without a row number")
        if backwards:
            scan.before = (edge["created"], n)
        else:
            scan.after = (edge["created"], n)
    has_more = len(out) > wanted
    out = out[:wanted]
    if backwards:
        out.reverse()
    return out, has_more


def _page_in_memory(
    items: list[dict[str, Any]], params: dict[str, Any], url: str, ctx: Ctx, noun: str
) -> dict[str, Any]:
    """Paging over an embedded list (items, lines), in its stored order."""
    limit = _limit(params)
    ids = [i["id"] for i in items]
    start = 0
    if "starting_after" in params:
        if params["starting_after"] not in ids:
            raise _no_such(noun, params["starting_after"], "starting_after")
        start = ids.index(params["starting_after"]) + 1
    end = len(items)
    if "ending_before" in params:
        if params["ending_before"] not in ids:
            raise _no_such(noun, params["ending_before"], "ending_before")
        end = ids.index(params["ending_before"])
        start = max(0, end - limit)
    page = items[start : min(end, start + limit)]
    more = start + limit < end if "ending_before" not in params else start > 0
    for path in _expand_paths(params):
        for obj in page:
            _expand(ctx, obj, path.split(".")[1:], path)
    return {"object": "list", "data": page, "has_more": more, "url": url}


def _expand_paths(params: dict[str, Any]) -> list[str]:
    paths = params.get("expand", [])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ApiError(400, "Invalid array", param="expand")
    return paths


def _expand(ctx: Ctx, obj: dict[str, Any], parts: list[str], full: str) -> None:
    """Replaces the id at `parts` with its object, walking lists and nested objects."""
    if not parts or not isinstance(obj, dict):
        return
    if len(full.split(".")) > MAX_EXPAND_DEPTH:
        raise ApiError(
            400,
            f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. "
            f"Property: {full}",
            param="expand",
        )
    key, rest = parts[0], parts[1:]
    if key not in obj or (not rest and key not in EXPANDABLE):
        raise ApiError(400, f"This property cannot be expanded ({full}).", param="expand")
    value = obj[key]
    if key == "discounts" and isinstance(value, list):
        # Discounts have no endpoint of their own: they live in the object that lists them.
        value = obj[key] = [
            ctx.account.discount_of(obj, v, ctx.shape) if isinstance(v, str) else v for v in value
        ]
    elif isinstance(value, str) and key in EXPANDABLE:
        value = obj[key] = _resolve(ctx, value, key)
    if not rest or value is None:
        return
    if isinstance(value, dict):
        value = obj[key] = dict(value)  # rendered objects may share static sub-dicts
        _expand(ctx, value, rest, full)
    elif isinstance(value, list):
        obj[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        for v in obj[key]:
            _expand(ctx, v, rest, full)
    elif not isinstance(value, str):
        raise ApiError(400, f"This property cannot be expanded ({full}).", param="expand")


def _resolve(ctx: Ctx, obj_id: str, key: str) -> Any:
    # Coupon ids are chosen by people and carry no prefix: the field names the kind.
    kind = "coupons" if key == "coupon" else _kind_of_id(obj_id)
    if kind is None:
        return obj_id  # objects the emulator does not model stay ids
    ctx.require(PERMISSION_BY_KIND[kind])
    found = ctx.account.retrieve(kind, obj_id, ctx.shape)
    return obj_id if found is None else found


def _kind_of_id(obj_id: str) -> str | None:
    return next((kind for prefix, kind in ID_KINDS.items() if obj_id.startswith(prefix)), None)


def _only(params: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise ApiError(400, f"Received unknown parameter: {name}", param=name)


def _string(params: dict[str, Any], name: str) -> str:
    value = params[name]
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"Invalid string: {value!r}", param=name)
    return value


def _int(value: Any, param: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise ApiError(
            400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer"
        )
    return int(value)


def _limit(params: dict[str, Any]) -> int:
    if "limit" not in params:
        return 10
    limit = _int(params["limit"], "limit")
    if limit < 1:
        raise ApiError(400, "This value must be greater than or equal to 1.", param="limit")
    if limit > 100:
        raise ApiError(400, "This value must be less than or equal to 100.", param="limit")
    return limit


def _created(value: Any) -> dict[str, int]:
    if isinstance(value, str):
        return {"gte": _int(value, "created"), "lte": _int(value, "created")}
    if not isinstance(value, dict) or not value:
        raise ApiError(400, "Invalid created: must be an integer or a hash", param="created")
    out = {}
    for op, v in value.items():
        if op not in ("gt", "gte", "lt", "lte"):
            raise ApiError(
                400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]"
            )
        out[op] = _int(v, f"created[{op}]")
    return out


def _no_such(noun: str, obj_id: Any, param: str) -> ApiError:
    return ApiError(404, f"No such {noun}: '{obj_id}'", code="resource_missing", param=param)


def _unknown_route(method: str, path: str) -> ApiError:
    return ApiError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
    )


def _fault_error(fault: str) -> ApiError:
    if fault == "429":
        return ApiError(
            429,
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            type_="rate_limit_error",
            code="rate_limit",
        )
    return ApiError(
        500,
        "An unknown error occurred while processing your request. Please "
        "retry or contact us at https://support.stripe.com/.",
        type_="api_error",
    )


def _mask(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:]


def _key_of(emu: Emulator, info: KeyInfo) -> str:
    return next((k for k, v in emu.keys.items() if v is info), "")


def _route_template(path: str) -> str:
    parts = path.strip("/").split("/")
    out = [p if i < 2 or p in ("lines", "sessions") else ":id" for i, p in enumerate(parts)]
    if parts[:3] == ["v1", "checkout", "sessions"] and len(parts) > 3:
        out = ["v1", "checkout", "sessions", ":id"]
    return "/" + "/".join(out)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status, headers, media_type="application/json")


async def _reset(send: Callable) -> None:
    """Drops the connection without an answer, as a network reset would."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # lets uvicorn notice the disconnect and stay quiet
        return
    # Fallback: promise a body and close early, which clients also see as a broken connection.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]}
    )
    await send({"type": "http.response.body", "body": b"{"})
