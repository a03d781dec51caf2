"""A stateful stand-in for the Pipedrive API (v2 entities and fields, v1 recents, users/me and webhooks).

Production adapters talk to it over real HTTP through ``PIPEDRIVE_API_URL``. What it copies from Pipedrive
(see /work/shared/vendors/crm.md section 2 and Pipedrive's API reference):

- Auth: the API token in the ``x-api-token`` header (or the ``api_token`` query parameter). A missing or
  wrong token gets 401 ``{"success": false, "error": "unauthorized access", "errorCode": 401, ...}``; every
  error body has that shape (404 "Deal not found", 400 with the reason).
- API v2: ``/api/v2/{organizations,persons,deals,products}`` (GET one / list, POST, PATCH, DELETE), deal
  products (``/api/v2/deals/{id}/products``) and custom-field definitions (``/api/v2/{deal,organization,
  person,product}Fields``). Lists page by cursor (``limit`` <= 500, ``additional_data.next_cursor``) and filter
  by ``ids`` (<= 100), ``org_id``, ``person_id``, ``status``, ``updated_since``/``updated_until``.
- Products: ``code`` is the SKU; ``prices`` holds one entry per currency (``currency``, ``price``, ``cost``,
  ``direct_cost``, ``notes``; client-nodejs v2 prices-array.ts), a second entry in one currency is a 400, and a
  product made without prices gets a price of 0 in the user's default currency (product-request.ts). A deleted
  product is gone from lists and single reads (404).
- API v1 where v2 has none: ``/v1/recents`` (``since_timestamp`` ``YYYY-MM-DD HH:MM:SS`` UTC, start/limit
  pagination), ``/v1/users/me``, ``/v1/webhooks`` and the v1 field lists (``key``/``name``).
- Custom fields are keyed by a random 40-character hex hash; values travel under ``custom_fields``; ``enum``
  values are option ids, ``double`` values numbers; an unknown hash or a wrong value is a 400; ``null`` clears.
- Deal products (``GET``/``POST /api/v2/deals/{id}/products``, ``PATCH``/``DELETE .../products/{attachment_id}``):
  ``sum`` is recomputed on every change; billing as client-nodejs v2 publishes it: ``billing_frequency``
  one-time (default) / weekly / monthly / quarterly / semi-annually / annually, ``billing_frequency_cycles``
  (1-208; null = indefinitely, never with weekly, always with one-time), ``billing_start_date`` (YYYY-MM-DD
  within 10 years of today), at most 20 recurring rows per deal; a refused value is a 400 and nothing changes.
- Deals: ``status`` open/won/lost sets ``won_time``/``lost_time``/``close_time``; with products attached the
  deal ``value`` is the sum of the products' ``sum`` (quantity x price, less the discount, plus exclusive tax).
- Rate limits: a daily token budget (each endpoint has a token cost, v2 cheaper than v1) and a rolling
  2-second burst window per token. Every authenticated answer carries ``x-ratelimit-limit``,
  ``x-ratelimit-remaining``, ``x-ratelimit-reset`` and ``x-daily-ratelimit-token-remaining``; a burst 429
  adds ``Retry-After``; an exhausted budget answers 429 until the sandbox clock's next UTC day.
- Webhooks v2: every create/change/delete of an organization, person, deal or product (through the API or
  the helpers) becomes one POST per matching webhook, ``{"meta", "data", "previous"}`` with ``previous``
  holding only the changed fields, sent with the webhook's HTTP Basic credentials. A delivery fails unless
  it gets a 2xx within 10 s; it is retried 3 times, 3, 30 and 150 s later (sandbox clock, ``meta.attempt``
  1-4). Each failed first attempt adds 1 to the webhook's ban counter; at 10 the webhook is banned for
  30 minutes and the events of that time are lost (recorded as such). Deliveries happen on
  ``flush_webhooks()``: due ones only, or every pending one with ``force=True``.

Control API (no auth, never logged in ``state.requests``)::

    POST /_sandbox/reset                 everything back to a fresh company
    GET  /_sandbox/requests              the request log
    POST /_sandbox/faults                a base.Fault as JSON (or a list of them); DELETE clears them
    GET  /_sandbox/clock                 POST {"advance": s} moves it
    POST /_sandbox/webhooks/flush        {"force": bool}: deliver what is pending
    GET  /_sandbox/webhooks/deliveries   every delivery attempt (and lost event)
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, NoReturn
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from closeloop.models import CrmRef
from closeloop_local.sandboxes import outbound
from closeloop_local.sandboxes.base import Router, SandboxApp, SandboxServer, SandboxState
from closeloop_local.sandboxes.drivers import DealLine, QuotedDeal, SentWebhook
from closeloop_local.sandboxes.limits import WindowAndDay

__all__ = ["PipedriveDriver", "PipedriveSandbox", "serve"]

JSON = dict[str, Any]

ENTITIES = ("organization", "person", "deal", "product")
COLLECTIONS = {"organizations": "organization", "persons": "person", "deals": "deal", "products": "product"}
FIELD_COLLECTIONS = {
    "dealFields": "deal",
    "organizationFields": "organization",
    "personFields": "person",
    "productFields": "product",
}
FIELD_TYPES = ("varchar", "varchar_auto", "text", "double", "monetary", "date", "set", "enum", "user", "org",
               "people", "phone", "time", "timerange", "daterange", "address")  # fmt: skip
#: Fields every company has (not custom, no hash key).
SYSTEM_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "deal": (("title", "Title", "varchar"), ("value", "Value", "monetary"), ("status", "Status", "status")),
    "organization": (("name", "Name", "varchar"), ("address", "Address", "address")),
    "person": (("name", "Name", "varchar"), ("emails", "Email", "varchar"), ("phones", "Phone", "phone")),
    "product": (("name", "Name", "varchar"), ("code", "Product code", "varchar"), ("prices", "Price", "price_list")),
}
#: System field types that only Pipedrive's own fields have (a custom field cannot be made with them).
SYSTEM_FIELD_TYPES = ("status", "price_list")
#: The keys of a product's price entry (client-nodejs v2 prices-array.ts, product-request.ts).
PRICE_KEYS = frozenset({"product_id", "currency", "price", "cost", "direct_cost", "notes"})
DEFAULT_CURRENCY = "USD"
#: A deal product's billing (client-nodejs v2 get-deals-products-response-data-inner-all-of1..3.ts): how often,
#: how many times (a positive integer up to 208; null is "indefinitely", never with weekly, always with one-time),
#: from when (within 10 years of today); at most 20 products of a deal bill other than one-time.
BILLING_FREQUENCIES = ("one-time", "annually", "semi-annually", "quarterly", "monthly", "weekly")
BILLING_KEYS = ("billing_frequency", "billing_frequency_cycles", "billing_start_date")
MAX_BILLING_CYCLES = 208
#: The driver's canonical recurring frequency -> a deal product's billing_frequency.
DRIVER_BILLING_FREQUENCIES = {"weekly": "weekly", "monthly": "monthly", "quarterly": "quarterly",
                              "semi_annual": "semi-annually", "annual": "annually"}  # fmt: skip
#: The stage id of "Proposal made" in a new company's default pipeline (Qualified 1, Contact made 2, Demo
#: scheduled 3, Proposal made 4, Negotiations started 5): the drivers' quote stage.
PROPOSAL_STAGE = 4
MAX_RECURRING_PRODUCTS = 20
BILLING_START_SPAN_YEARS = 10
TAX_METHODS = ("exclusive", "inclusive", "none")
#: What a deal-product POST/PATCH may carry (deal-product-request-body{,1}.ts and the billing models).
DEAL_PRODUCT_KEYS = frozenset({"product_id", "item_price", "quantity", "tax", "comments", "discount",
                               "is_enabled", "tax_method", "discount_type", "product_variation_id", "name",
                               *BILLING_KEYS})  # fmt: skip
#: Token cost of one call: (method, API version, one record or a list).
TOKEN_COSTS: dict[tuple[str, str, str], int] = {
    ("GET", "v2", "one"): 1,
    ("GET", "v2", "list"): 10,
    ("POST", "v2", "one"): 5,
    ("PATCH", "v2", "one"): 5,
    ("DELETE", "v2", "one"): 3,
    ("GET", "v1", "one"): 2,
    ("GET", "v1", "list"): 20,
    ("POST", "v1", "one"): 10,
    ("DELETE", "v1", "one"): 6,
}
WEBHOOK_USER_AGENT = "Pipedrive Webhooks"
MAX_PAGE = 500
MAX_IDS = 100


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _encode(value: Any) -> str:
    """JSON with Decimals as exact number literals (the sandbox's money never passes through float)."""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value, default=str)


def _response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        _encode(payload), status=status, headers=dict(headers or {}), content_type="application/json; charset=utf-8"
    )


def _error(status: int, message: str) -> Response:
    body = {
        "success": False,
        "error": message,
        "errorCode": status,
        "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
        "data": None,
        "additional_data": None,
    }
    return _response(body, status)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _v1_time(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_moment(text: str) -> float:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _person_names(out: JSON, record: _Record | None) -> None:
    """Pipedrive keeps ``name`` and ``first_name``/``last_name`` together: a name alone is split at its first space."""
    if out.get("name") and "first_name" not in out and "last_name" not in out:
        first, _, last = str(out["name"]).strip().partition(" ")
        out["first_name"], out["last_name"] = first, last or None
    elif ("first_name" in out or "last_name" in out) and "name" not in out:
        current = record.values if record is not None else {}
        parts = (out.get("first_name", current.get("first_name")), out.get("last_name", current.get("last_name")))
        out["name"] = " ".join(str(p) for p in parts if p).strip()


#: The writable sub-fields of a v2 organization ``address`` (OrganizationItemAddress in Pipedrive's v2
#: OpenAPI, as generated into pipedrive/client-nodejs src/versions/v2/models/organization-item-address.ts):
#: all strings; no ``formatted_address``.
ORG_ADDRESS_KEYS = frozenset({"value", "country", "admin_area_level_1", "admin_area_level_2", "locality",
                              "sublocality", "route", "street_number", "subpremise", "postal_code"})  # fmt: skip


def _structured(entity: str, values: JSON) -> JSON:
    """Normalise the structured fields of a write: contact entries, an organization's address."""
    for key in ("emails", "phones"):
        if key in values:
            values[key] = _contact_entries(key, values[key])
    if entity == "organization" and "address" in values:
        values["address"] = _org_address(values["address"])
    return values


def _org_address(value: Any) -> JSON | None:
    """A v2 organization address as written: null clears it (the schema makes ``address`` nullable).

    Keys outside the schema and non-string sub-fields are refused (400), and a written address replaces
    the whole stored one (sub-fields left out are cleared): the adapter's GUESSES["address validation"] and
    GUESSES["address write replaces the address"] (closeloop.vendors.pipedrive.guesses).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _ApiError(400, "address must be an object")
    unknown = sorted(set(value) - ORG_ADDRESS_KEYS)
    if unknown:
        raise _ApiError(400, f"Unknown address field(s): {', '.join(unknown)}")
    wrong = sorted(k for k, v in value.items() if not isinstance(v, str))
    if wrong:
        raise _ApiError(400, f"address.{wrong[0]} must be a string")
    return dict(value)


def _prices(entries: Any, product_id: int | None) -> list[JSON]:
    """A product's ``prices`` as written: one entry per currency, each with a currency and a numeric price.

    Keys outside the documented entry and a second entry in one currency are refused (400); see the
    adapter's GUESSES["product prices validation"] (closeloop.vendors.pipedrive.guesses).
    """
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _ApiError(400, "prices must be an array of objects")
    out: list[JSON] = []
    for entry in entries:
        unknown = sorted(set(entry) - PRICE_KEYS)
        if unknown:
            raise _ApiError(400, f"Unknown price field(s): {', '.join(unknown)}")
        currency = entry.get("currency")
        if not isinstance(currency, str) or len(currency.strip()) != 3:
            raise _ApiError(400, "prices[].currency must be a 3-letter currency code")
        if any(p["currency"] == currency.strip().upper() for p in out):
            raise _ApiError(400, f"There can only be one price per product per currency ({currency})")
        direct = entry.get("direct_cost")
        out.append(
            {
                "product_id": product_id,
                "currency": currency.strip().upper(),
                "price": _number(entry.get("price"), "prices[].price"),
                "cost": _number(entry.get("cost", 0), "prices[].cost"),
                "direct_cost": None if direct is None else _number(direct, "prices[].direct_cost"),
                "notes": str(entry.get("notes") or ""),
            }
        )
    return out


def _contact_entries(key: str, entries: Any) -> list[JSON]:
    """A person's ``emails``/``phones`` as stored: value, primary flag, label."""
    entries = entries or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "value" in e for e in entries):
        raise _ApiError(400, f"{key} must be an array of objects with a value")
    return [
        {"value": str(e["value"]), "primary": bool(e.get("primary")), "label": e.get("label", "work")} for e in entries
    ]


def _number(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _ApiError(400, f"{what} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _ApiError(400, f"{what} must be a number") from None
    if not number.is_finite():
        raise _ApiError(400, f"{what} must be a number")
    return number


def _years_later(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


def _sort_value(record: _Record, sort_by: str) -> Any:
    """What a v2 list sorts ``record`` by (ties by id): a time, a product's name, or nothing for ``id``."""
    if sort_by == "name":
        return str(record.values.get("name") or "")
    return getattr(record, sort_by) if sort_by != "id" else 0


@dataclass
class _Record:
    """One entity as stored: the v2 rendering's fields, custom values by hash, and timestamps (seconds)."""

    entity: str
    id: int
    values: JSON
    custom: JSON = field(default_factory=dict)
    add_time: float = 0.0
    update_time: float = 0.0
    deleted: bool = False


@dataclass
class _Webhook:
    id: int
    subscription_url: str
    event_action: str
    event_object: str
    http_auth_user: str | None
    http_auth_password: str | None
    version: str = "2.0"
    name: str = ""
    user_id: int = 0
    add_time: float = 0.0
    ban_counter: int = 0
    banned_until: float = 0.0


@dataclass
class _Delivery:
    webhook_id: int
    payload: JSON
    attempt: int = 1
    due: float = 0.0


class _Limiter(WindowAndDay):
    """A rolling 2-second request window per token and a daily token budget (UTC day of the sandbox clock)."""

    WINDOW = 2.0

    def __init__(self, burst_limit: int, daily_budget: int) -> None:
        super().__init__(burst_limit, self.WINDOW, daily_budget)

    def take_call(self, now: float, cost: int) -> tuple[str | None, dict[str, str]]:
        refused = {"day": "daily", "window": "burst"}.get(self.take(now, cost) or "")
        oldest = self.window.oldest()
        reset = max(1, int(-(-(oldest + self.WINDOW - now) // 1))) if oldest is not None else int(self.WINDOW)
        headers = {
            "x-ratelimit-limit": str(self.window_limit),
            "x-ratelimit-remaining": str(self.window_remaining(now)),
            "x-ratelimit-reset": str(reset),
            "x-daily-ratelimit-token-remaining": str(self.day_remaining(now)),
        }
        if refused == "burst":
            headers["Retry-After"] = str(reset)
        elif refused == "daily":
            today = datetime.fromtimestamp(now, UTC).date()
            midnight = datetime.combine(today, datetime.min.time(), UTC).timestamp() + 86400
            headers["Retry-After"] = str(max(1, int(midnight - now)))
        return refused, headers


class PipedriveSandbox(SandboxApp):
    """One Pipedrive company with one admin user and its API token (a WSGI app; see the module docstring)."""

    correlation_header = "x-correlation-id"

    def __init__(
        self,
        api_token: str = "sandbox-pipedrive-api-token",
        company_id: int = 12882925,
        company_domain: str = "closeloop-sandbox",
        user_id: int = 18487521,
        burst_limit: int = 80,
        daily_token_budget: int = 60_000,
        retry_delays: Sequence[float] = (3.0, 30.0, 150.0),
        delivery_timeout: float = 10.0,
    ) -> None:
        self.api_token = api_token
        self.company_id = company_id
        self.company_domain = company_domain
        self.user_id = user_id
        self.retry_delays = tuple(retry_delays)
        self.delivery_timeout = delivery_timeout
        self.state = SandboxState()
        self._limiter = _Limiter(burst_limit, daily_token_budget)
        self._routes = self._api_routes()
        self._reset_data()

    # -- lifecycle ----------------------------------------------------------------------------------
    def _reset_data(self) -> None:
        with self.state.lock:
            self._records: dict[str, dict[int, _Record]] = {e: {} for e in ENTITIES}
            self._deal_products: dict[int, JSON] = {}
            self._next_id = {"organization": 1, "person": 1, "deal": 1, "product": 1, "deal_product": 1}
            self._fields: dict[str, list[JSON]] = {}
            self._next_field_id = 12000
            for entity, seeded in SYSTEM_FIELDS.items():
                self._fields[entity] = []
                for code, name, ftype in seeded:
                    self._add_field_locked(entity, name, ftype, (), code=code, custom=False)
            self._webhooks: dict[int, _Webhook] = {}
            self._next_webhook = 100
            self._pending: list[_Delivery] = []
            self.deliveries: list[JSON] = []
            self._limiter.reset()

    def reset(self) -> None:
        with self.state.lock:
            self._reset_data()
            self.state.reset_log()

    def close(self) -> None:
        """Nothing runs in the background: deliveries happen on ``flush_webhooks``."""

    def now(self) -> float:
        return self.state.clock.now()

    # -- helpers (a person working in the Pipedrive UI) ------------------------------------------------
    def create(self, entity: str, values: Mapping[str, Any]) -> JSON:
        """Create an organization/person/deal/product from v2-style fields (custom ones by hash under
        ``custom_fields``); fires webhooks. Raises ValueError with Pipedrive's message when refused."""
        with self.state.lock:
            record = self._guard(lambda: self._create_locked(entity, values))
            return self._render(record)

    def update(self, entity: str, object_id: int | str, values: Mapping[str, Any]) -> JSON:
        """Change fields as a user would (one ``change`` webhook per edit)."""
        with self.state.lock:
            record = self._guard(lambda: self._update_locked(self._live(entity, object_id), values))
            return self._render(record)

    def delete(self, entity: str, object_id: int | str) -> None:
        with self.state.lock:
            self._guard(lambda: self._delete_locked(self._live(entity, object_id)))

    def get(self, entity: str, object_id: int | str) -> JSON | None:
        with self.state.lock:
            record = self._records[entity].get(int(object_id))
            return None if record is None or record.deleted else self._render(record)

    def find(self, entity: str, **equal: Any) -> list[int]:
        """Ids of the live records whose fields equal ``equal`` (e.g. ``org_id=3``, ``code="SKU-1"``), ascending."""
        with self.state.lock:
            return sorted(
                r.id
                for r in self._records[entity].values()
                if not r.deleted and all(r.values.get(k) == v for k, v in equal.items())
            )

    def add_deal_product(self, deal_id: int | str, values: Mapping[str, Any]) -> JSON:
        with self.state.lock:
            return self._guard(lambda: self._add_deal_product_locked(self._live("deal", deal_id), values))

    def update_deal_product(self, deal_id: int | str, attachment_id: int | str, values: Mapping[str, Any]) -> JSON:
        """A salesperson edits a product on a deal (its billing fields too); ValueError as the API's 400/404."""
        with self.state.lock:
            return self._guard(
                lambda: self._update_deal_product_locked(self._live("deal", deal_id), str(attachment_id), values)
            )

    def deal_products(self, deal_id: int | str) -> list[JSON]:
        with self.state.lock:
            return self._products_of(int(deal_id))

    def add_field(self, entity: str, name: str, field_type: str = "varchar", options: Sequence[str] = ()) -> str:
        """Create a custom field; returns its 40-character hash key."""
        with self.state.lock:
            return str(self._guard(lambda: self._add_field_locked(entity, name, field_type, options))["field_code"])

    def field_key(self, entity: str, name: str) -> str | None:
        with self.state.lock:
            return next((f["field_code"] for f in self._fields[entity] if f["field_name"] == name), None)

    def custom_values(self, entity: str, object_id: int | str) -> dict[str, str]:
        """A record's custom fields by field *name*, as text (enum option labels, numbers as written)."""
        with self.state.lock:
            record = self._records[entity].get(int(object_id))
            if record is None:
                return {}
            out: dict[str, str] = {}
            for definition in self._fields[entity]:
                value = record.custom.get(definition["field_code"])
                if value is None:
                    continue
                if definition["field_type"] == "enum":
                    value = next((o["label"] for o in definition["options"] if o["id"] == value), value)
                out[definition["field_name"]] = _encode(value) if isinstance(value, Decimal) else str(value)
            return out

    def add_webhook(self, values: Mapping[str, Any]) -> JSON:
        """Same as ``POST /v1/webhooks``."""
        with self.state.lock:
            return self._render_webhook(self._guard(lambda: self._add_webhook_locked(values)))

    def webhooks(self) -> list[JSON]:
        with self.state.lock:
            return [self._render_webhook(w) for w in self._webhooks.values()]

    def pending_webhooks(self) -> int:
        with self.state.lock:
            return len(self._pending)

    def lose_pending_webhooks(self) -> int:
        """Every pending delivery is lost (as after Pipedrive's last retry), recorded as lost; how many."""
        with self.state.lock:
            lost, self._pending = self._pending, []
            for delivery in lost:
                self.deliveries.append({"webhook_id": delivery.webhook_id, "event": delivery.payload["meta"]["id"],
                                        "lost": True})  # fmt: skip
            return len(lost)

    @staticmethod
    def _guard(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except _ApiError as exc:
            raise ValueError(exc.message) from None

    # -- the API (SandboxApp's pipeline: log, faults, then ``handle``) -----------------------------------
    def json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return _response(payload, status, headers)

    def fault_error(self, status: int) -> Response:
        return _error(status, {429: "Request over limit", 401: "unauthorized access"}.get(status, "Internal error"))

    def internal_error(self) -> Response:
        return _error(500, "Internal error")

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("x-api-token") or request.args.get("api_token") or ""
        return hmac.compare_digest(token.strip().encode(), self.api_token.encode())

    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        if not self._authorized(request):
            return _error(401, "unauthorized access")
        parts = [p for p in request.path.split("/") if p]
        version = "v2" if parts[:2] == ["api", "v2"] else "v1"
        rest = len(parts) - (2 if version == "v2" else 1)  # /api/v2/deals and /v1/recents are lists
        kind = "list" if request.method == "GET" and rest % 2 == 1 else "one"
        cost = TOKEN_COSTS.get((request.method, version, kind), 5)
        with self.state.lock:
            refused, limit_headers = self._limiter.take_call(self.now(), cost)
            if refused == "burst":
                response = _error(429, "Request over limit")
            elif refused == "daily":
                response = _error(429, "Daily token budget exceeded")
            else:
                try:
                    response = self._route(request, parts)
                except _ApiError as exc:
                    response = _error(exc.status, exc.message)
        response.headers.update(limit_headers)
        return response

    def _api_routes(self) -> Router:
        """The API this sandbox serves; a handler takes the request and the path's arguments."""
        routes = Router()
        for collection, entity in COLLECTIONS.items():
            routes.add("GET", f"/api/v2/{collection}", partial(self._list, entity))
            routes.add("POST", f"/api/v2/{collection}", partial(self._create_one, entity))
            routes.add("GET", f"/api/v2/{collection}/<object_id>", partial(self._get_one, entity))
            routes.add("PATCH", f"/api/v2/{collection}/<object_id>", partial(self._update_one, entity))
            routes.add("DELETE", f"/api/v2/{collection}/<object_id>", partial(self._delete_one, entity))
        routes.add("GET", "/api/v2/deals/<deal_id>/products", self._list_deal_products)
        routes.add("POST", "/api/v2/deals/<deal_id>/products", self._post_deal_product)
        routes.add("PATCH", "/api/v2/deals/<deal_id>/products/<attachment_id>", self._patch_deal_product)
        routes.add("DELETE", "/api/v2/deals/<deal_id>/products/<attachment_id>", self._delete_deal_product)
        for collection, entity in FIELD_COLLECTIONS.items():
            routes.add("GET", f"/api/v2/{collection}", partial(self._list_fields, entity))
            routes.add("POST", f"/api/v2/{collection}", partial(self._post_field, entity))
            routes.add("GET", f"/v1/{collection}", partial(self._list_v1_fields, entity))
            routes.add("POST", f"/v1/{collection}", partial(self._post_v1_field, entity))
        routes.add("GET", "/v1/recents", self._recents)
        routes.add("GET", "/v1/users/me", lambda request: self._ok(self._me()))
        routes.add("GET", "/v1/webhooks", self._list_webhooks)
        routes.add("POST", "/v1/webhooks", self._post_webhook)
        routes.add("DELETE", "/v1/webhooks/<webhook_id>", self._delete_webhook)
        return routes

    def _route(self, request: Request, parts: list[str]) -> Response:
        """Answer with the route of ``parts`` (the path's non-empty segments: extra slashes do not matter)."""
        if request.method == "HEAD":  # werkzeug matches HEAD to a GET rule; the sandbox serves no HEAD
            self._unknown(request, parts)
        try:
            handler, args = self._routes.match(request.method, "/" + "/".join(parts))
        except HTTPException:  # NotFound, MethodNotAllowed: Pipedrive answers both the same way
            self._unknown(request, parts)
        response: Response = handler(request, **args)
        return response

    def _unknown(self, request: Request, parts: list[str]) -> NoReturn:
        # A deal's products path looks the deal up before the method: a missing deal answers "Deal not found".
        if len(parts) == 5 and parts[:3] == ["api", "v2", "deals"] and parts[4] == "products":
            self._live("deal", parts[3])
        raise _ApiError(404, f"Unknown method {request.method} {request.path}")

    def _create_one(self, entity: str, request: Request) -> Response:
        return self._ok(self._render(self._create_locked(entity, self._body(request))))

    def _get_one(self, entity: str, request: Request, object_id: str) -> Response:
        return self._ok(self._render(self._live(entity, object_id)))

    def _update_one(self, entity: str, request: Request, object_id: str) -> Response:
        record = self._live(entity, object_id)
        return self._ok(self._render(self._update_locked(record, self._body(request))))

    def _delete_one(self, entity: str, request: Request, object_id: str) -> Response:
        record = self._live(entity, object_id)
        self._delete_locked(record)
        return self._ok({"id": record.id})

    def _list_deal_products(self, request: Request, deal_id: str) -> Response:
        return self._page(self._products_of(self._live("deal", deal_id).id), request)

    def _post_deal_product(self, request: Request, deal_id: str) -> Response:
        deal = self._live("deal", deal_id)
        return self._ok(self._add_deal_product_locked(deal, self._body(request)), 201)

    def _patch_deal_product(self, request: Request, deal_id: str, attachment_id: str) -> Response:
        deal = self._live("deal", deal_id)
        return self._ok(self._update_deal_product_locked(deal, attachment_id, self._body(request)))

    def _delete_deal_product(self, request: Request, deal_id: str, attachment_id: str) -> Response:
        return self._ok(self._delete_deal_product_locked(self._live("deal", deal_id), attachment_id))

    def _list_fields(self, entity: str, request: Request) -> Response:
        return self._page(self._fields[entity], request)

    def _post_field(self, entity: str, request: Request) -> Response:
        return self._ok(self._create_field(entity, self._body(request), v1=False))

    def _list_v1_fields(self, entity: str, request: Request) -> Response:
        return self._v1_page([self._v1_field(f) for f in self._fields[entity]], request)

    def _post_v1_field(self, entity: str, request: Request) -> Response:
        return self._ok(self._v1_field(self._create_field(entity, self._body(request), v1=True)))

    # -- request parsing ----------------------------------------------------------------------------
    @staticmethod
    def _body(request: Request) -> JSON:
        raw = request.get_data(cache=True)
        try:
            body = json.loads(raw, parse_float=Decimal) if raw else {}
        except ValueError:
            raise _ApiError(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "Request body must be a JSON object")
        return body

    @staticmethod
    def _ok(data: Any, status: int = 200) -> Response:
        return _response({"success": True, "data": data}, status)

    @staticmethod
    def _limit(request: Request) -> int:
        raw = request.args.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise _ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}")
        return int(raw)

    def _page(self, items: Sequence[JSON], request: Request) -> Response:
        """A v2 list page: ``cursor`` (opaque) in, ``additional_data.next_cursor`` out."""
        limit = self._limit(request)
        cursor = request.args.get("cursor")
        offset = 0
        if cursor:
            try:
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("offset:"))
            except (ValueError, UnicodeDecodeError):
                raise _ApiError(400, "Invalid cursor") from None
        chunk = list(items[offset : offset + limit])
        more = offset + limit < len(items)
        next_cursor = base64.urlsafe_b64encode(f"offset:{offset + limit}".encode()).decode() if more else None
        return _response({"success": True, "data": chunk, "additional_data": {"next_cursor": next_cursor}})

    def _v1_page(self, items: Sequence[JSON], request: Request) -> Response:
        """A v1 list page: ``start``/``limit`` in, ``additional_data.pagination`` out."""
        limit = self._limit(request)
        raw = request.args.get("start", "0")
        if not raw.isdigit():
            raise _ApiError(400, "start must be a non-negative integer")
        start = int(raw)
        chunk = list(items[start : start + limit])
        more = start + limit < len(items)
        pagination: JSON = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return _response({"success": True, "data": chunk or None, "additional_data": {"pagination": pagination}})

    # -- entities -----------------------------------------------------------------------------------
    def _live(self, entity: str, object_id: int | str) -> _Record:
        text = str(object_id)
        record = self._records[entity].get(int(text)) if text.isdigit() else None
        if record is None or record.deleted:
            raise _ApiError(404, f"{entity.capitalize()} not found")
        return record

    def _render(self, record: _Record) -> JSON:
        out: JSON = {"id": record.id, **copy.deepcopy(record.values)}
        out["add_time"] = _iso(record.add_time)
        out["update_time"] = _iso(record.update_time)
        out["is_deleted"] = record.deleted
        out["custom_fields"] = {f["field_code"]: record.custom.get(f["field_code"]) for f in self._custom(record)}
        return out

    def _custom(self, record: _Record) -> list[JSON]:
        return [f for f in self._fields.get(record.entity, []) if f["is_custom_field"]]

    def _list(self, entity: str, request: Request) -> Response:
        records = [r for r in self._records[entity].values() if not r.deleted]
        ids = request.args.get("ids")
        if ids:
            wanted = [i.strip() for i in ids.split(",") if i.strip()]
            if len(wanted) > MAX_IDS or not all(i.isdigit() for i in wanted):
                raise _ApiError(400, f"ids must be at most {MAX_IDS} comma-separated integers")
            records = [r for r in records if str(r.id) in wanted]
        for name in ("org_id", "person_id", "stage_id", "pipeline_id", "owner_id"):
            value = request.args.get(name)
            if value is not None:
                records = [r for r in records if str(r.values.get(name)) == value]
        status = request.args.get("status")
        if status is not None and entity == "deal":
            allowed = {s.strip() for s in status.split(",")}
            if not allowed <= {"open", "won", "lost", "deleted"}:
                raise _ApiError(400, f"Invalid status {status}")
            records = [r for r in records if r.values.get("status") in allowed]
        for name, keep in (("updated_since", lambda t, b: t >= b), ("updated_until", lambda t, b: t < b)):
            bound = request.args.get(name)
            if bound:
                try:
                    moment = _parse_moment(bound)
                except ValueError:
                    raise _ApiError(400, f"{name} must be an RFC 3339 timestamp") from None
                records = [r for r in records if keep(int(r.update_time), int(moment))]
        sort_by = request.args.get("sort_by", "id")
        if sort_by not in ("id", "update_time", "add_time", *(("name",) if entity == "product" else ())):
            raise _ApiError(400, f"Invalid sort_by {sort_by}")
        records.sort(key=lambda r: (_sort_value(r, sort_by), r.id))
        if request.args.get("sort_direction", "asc") == "desc":
            records.reverse()
        return self._page([self._render(r) for r in records], request)

    def _check_values(self, entity: str, values: Mapping[str, Any], record: _Record | None) -> JSON:
        """Validate and normalise written fields (custom ones by hash); raises _ApiError(400)."""
        allowed = {
            "organization": {"name", "owner_id", "address", "visible_to", "label_ids"},
            "person": {"name", "first_name", "last_name", "owner_id", "org_id", "emails", "phones", "visible_to"},
            "deal": {"title", "owner_id", "person_id", "org_id", "pipeline_id", "stage_id", "value", "currency",
                     "status", "expected_close_date", "probability", "lost_reason", "visible_to", "won_time"},
            "product": {"name", "code", "description", "unit", "tax", "prices", "owner_id", "visible_to",
                        "is_linkable", "category"},
        }[entity]  # fmt: skip
        out: JSON = {}
        for key, value in values.items():
            if key == "custom_fields":
                continue
            if key not in allowed:
                raise _ApiError(400, f"Unknown field '{key}' for {entity}")
            out[key] = value
        title_key = "title" if entity == "deal" else "name"
        if entity == "person":
            _person_names(out, record)
        if (record is None or title_key in out) and not str(out.get(title_key) or "").strip():
            raise _ApiError(400, f"{title_key} is required")
        if "value" in out:
            out["value"] = _number(out["value"], "value")
        if entity == "product" and "prices" in out:
            out["prices"] = _prices(out["prices"], record.id if record is not None else None)
        if "status" in out and out["status"] not in ("open", "won", "lost"):
            raise _ApiError(400, "status must be one of open, won, lost")
        for ref_key, ref_entity in (("org_id", "organization"), ("person_id", "person")):
            if out.get(ref_key) is not None:
                self._live(ref_entity, out[ref_key])
                out[ref_key] = int(out[ref_key])
        return _structured(entity, out)

    def _check_custom(self, entity: str, raw: Any) -> JSON:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise _ApiError(400, "custom_fields must be an object")
        by_key = {f["field_code"]: f for f in self._fields.get(entity, []) if f["is_custom_field"]}
        out: JSON = {}
        for key, value in raw.items():
            definition = by_key.get(key)
            if definition is None:
                raise _ApiError(400, f"Unknown custom field key '{key}'")
            out[key] = None if value is None else self._custom_value(definition, value)
        return out

    @staticmethod
    def _custom_value(definition: JSON, value: Any) -> Any:
        ftype, name = definition["field_type"], definition["field_name"]
        if ftype == "double":
            return _number(value, f"Value of field '{name}'")
        if ftype == "monetary":
            amount = value.get("value") if isinstance(value, dict) else value
            currency = value.get("currency") if isinstance(value, dict) else None
            return {"value": _number(amount, f"Value of field '{name}'"), "currency": currency}
        if ftype == "enum":
            ids = [o["id"] for o in definition["options"] or []]
            if isinstance(value, bool) or value not in ids:
                raise _ApiError(400, f"Value of field '{name}' must be one of the option ids {ids}")
            return value
        if ftype == "set":
            ids = [o["id"] for o in definition["options"] or []]
            if not isinstance(value, list) or any(v not in ids for v in value):
                raise _ApiError(400, f"Value of field '{name}' must be an array of option ids {ids}")
            return value
        if ftype == "date":
            try:
                date.fromisoformat(str(value))
            except ValueError:
                raise _ApiError(400, f"Value of field '{name}' must be a date (YYYY-MM-DD)") from None
            return str(value)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise _ApiError(400, f"Value of field '{name}' must be a string")
        if len(str(value)) > (65_000 if ftype == "text" else 255):
            raise _ApiError(400, f"Value of field '{name}' is too long")
        return str(value)

    def _create_locked(self, entity: str, values: Mapping[str, Any]) -> _Record:
        checked = self._check_values(entity, values, None)
        custom = self._check_custom(entity, values.get("custom_fields"))
        now = self.now()
        record = _Record(entity, self._next_id[entity], self._defaults(entity), add_time=now, update_time=now)
        self._next_id[entity] += 1
        record.values.update(checked)
        record.custom.update(custom)
        if entity == "deal":
            self._status_times(record, None, now)
        if entity == "product":
            # Without prices Pipedrive gives a price of 0 in the user's default currency (product-request.ts).
            given = checked.get("prices") or _prices([{"currency": DEFAULT_CURRENCY, "price": 0}], None)
            record.values["prices"] = [{**p, "product_id": record.id} for p in given]
        self._records[entity][record.id] = record
        self._announce(record, "create", None)
        return record

    def _defaults(self, entity: str) -> JSON:
        common: JSON = {"owner_id": self.user_id, "visible_to": 3}
        return {
            "organization": {**common, "name": "", "address": None, "label_ids": []},
            "person": {**common, "name": "", "first_name": None, "last_name": None, "org_id": None,
                       "emails": [], "phones": []},
            "deal": {**common, "title": "", "creator_user_id": self.user_id, "person_id": None, "org_id": None,
                     "pipeline_id": 1, "stage_id": 1, "value": Decimal(0), "currency": "USD", "status": "open",
                     "probability": None, "lost_reason": None, "expected_close_date": None, "won_time": None,
                     "lost_time": None, "close_time": None, "stage_change_time": None, "label_ids": []},
            "product": {**common, "name": "", "code": None, "description": None, "unit": None, "tax": Decimal(0),
                        "is_linkable": True, "category": None, "prices": []},
        }[entity]  # fmt: skip

    def _update_locked(self, record: _Record, values: Mapping[str, Any]) -> _Record:
        checked = self._check_values(record.entity, values, record)
        custom = self._check_custom(record.entity, values.get("custom_fields"))
        before = self._render(record)
        old_status = record.values.get("status")
        record.values.update(checked)
        record.custom.update(custom)
        now = self.now()
        if record.entity == "deal":
            self._status_times(record, old_status, now)
        after = self._render(record)
        changed = {k: v for k, v in before.items() if k not in ("update_time", "custom_fields") and after.get(k) != v}
        changed_custom = {
            k: v for k, v in (before.get("custom_fields") or {}).items() if after["custom_fields"].get(k) != v
        }
        if changed or changed_custom:
            record.update_time = now
            previous = {**changed, "update_time": before["update_time"]}
            if changed_custom:
                previous["custom_fields"] = changed_custom
            self._announce(record, "change", previous)
        return record

    @staticmethod
    def _status_times(record: _Record, old: Any, now: float) -> None:
        status = record.values.get("status")
        if status == old:
            return
        stamp = _iso(now)
        record.values["won_time"] = stamp if status == "won" else None
        record.values["lost_time"] = stamp if status == "lost" else None
        record.values["close_time"] = stamp if status in ("won", "lost") else None

    def _delete_locked(self, record: _Record) -> None:
        before = self._render(record)
        record.deleted = True
        record.update_time = self.now()
        self._announce(record, "delete", before)

    # -- deal products ------------------------------------------------------------------------------
    def _products_of(self, deal_id: int) -> list[JSON]:
        return [copy.deepcopy(p) for p in self._deal_products.values() if p["deal_id"] == deal_id]

    def _add_deal_product_locked(self, deal: _Record, values: Mapping[str, Any]) -> JSON:
        missing = [k for k in ("product_id", "item_price", "quantity") if values.get(k) is None]
        if missing:
            # DealProductRequestBody (client-nodejs v2) requires product_id, item_price and quantity.
            raise _ApiError(400, f"{', '.join(missing)} is required")
        now = self.now()
        row: JSON = {
            "id": self._next_id["deal_product"],
            "deal_id": deal.id,
            "product_id": None,
            "product_variation_id": None,
            "name": None,
            "item_price": Decimal(0),
            "quantity": Decimal(1),
            "discount": Decimal(0),
            "discount_type": "percentage",
            "tax": Decimal(0),
            "tax_method": "exclusive",
            "sum": Decimal(0),
            "is_enabled": True,
            "comments": None,
            "billing_frequency": "one-time",
            "billing_frequency_cycles": None,
            "billing_start_date": None,
            "add_time": _iso(now),
            "update_time": _iso(now),
        }
        row = self._deal_product_values(deal, row, values)
        self._next_id["deal_product"] += 1
        self._deal_products[row["id"]] = row
        self._deal_value(deal)
        return copy.deepcopy(row)

    def _update_deal_product_locked(self, deal: _Record, attachment_id: str, values: Mapping[str, Any]) -> JSON:
        current = self._deal_product(deal, attachment_id)
        row = self._deal_product_values(deal, current, values)
        row["update_time"] = _iso(self.now())
        self._deal_products[row["id"]] = row
        self._deal_value(deal)
        return copy.deepcopy(row)

    def _delete_deal_product_locked(self, deal: _Record, attachment_id: str) -> JSON:
        row = self._deal_product(deal, attachment_id)
        del self._deal_products[row["id"]]
        self._deal_value(deal)
        return {"id": row["id"]}

    def _deal_product(self, deal: _Record, attachment_id: str) -> JSON:
        row = self._deal_products.get(int(attachment_id)) if attachment_id.isdigit() else None
        if row is None or row["deal_id"] != deal.id:
            raise _ApiError(404, "Deal product not found")  # wording: see GUESSES["deal product errors"]
        return row

    def _deal_product_values(self, deal: _Record, current: JSON, values: Mapping[str, Any]) -> JSON:
        """``current`` with ``values`` applied and checked as a whole (a new dict: nothing is stored on a 400)."""
        unknown = set(values) - DEAL_PRODUCT_KEYS
        if unknown:
            raise _ApiError(400, f"Unknown deal product fields: {', '.join(sorted(unknown))}")
        row = dict(current)
        self._apply_line_fields(row, values)
        self._check_billing(deal, row)
        gross = row["item_price"] * row["quantity"]
        net = gross - (gross * row["discount"] / 100 if row["discount_type"] == "percentage" else row["discount"])
        total = net + (net * row["tax"] / 100 if row["tax_method"] == "exclusive" else Decimal(0))
        row["sum"] = total.quantize(Decimal("0.01"))
        return row

    def _apply_line_fields(self, row: JSON, values: Mapping[str, Any]) -> None:
        if "product_id" in values:
            product = self._live("product", str(values["product_id"]))
            row["product_id"] = product.id
            row["name"] = str(product.values.get("name"))
        if values.get("name"):
            row["name"] = str(values["name"])  # the sandbox's helpers name a line; the API takes the product's
        for key in ("item_price", "quantity", "discount", "tax"):
            if key in values:
                row[key] = _number(values[key], key)
        for key, allowed in (("discount_type", ("percentage", "amount")), ("tax_method", TAX_METHODS)):
            if key in values:
                if values[key] not in allowed:
                    raise _ApiError(400, f"{key} must be one of {', '.join(allowed)}")
                row[key] = values[key]
        if "is_enabled" in values and not isinstance(values["is_enabled"], bool):
            raise _ApiError(400, "is_enabled must be a boolean")
        row.update(
            {k: values[k] for k in ("comments", "product_variation_id", "is_enabled", *BILLING_KEYS) if k in values}
        )

    def _check_billing(self, deal: _Record, row: JSON) -> None:
        """The billing rules client-nodejs v2 documents (get-deals-products-response-data-inner-all-of1..3.ts),
        checked on the row as it would be stored (see GUESSES["deal product billing rules"])."""
        frequency, cycles, start = row["billing_frequency"], row["billing_frequency_cycles"], row["billing_start_date"]
        if frequency not in BILLING_FREQUENCIES:
            raise _ApiError(400, f"billing_frequency must be one of {', '.join(BILLING_FREQUENCIES)}")
        if cycles is not None and (
            isinstance(cycles, bool) or not isinstance(cycles, int) or not 1 <= cycles <= MAX_BILLING_CYCLES
        ):
            raise _ApiError(400, f"billing_frequency_cycles must be a positive integer up to {MAX_BILLING_CYCLES}")
        if frequency == "one-time" and cycles is not None:
            raise _ApiError(400, "billing_frequency_cycles must be null when billing_frequency is one-time")
        if frequency == "weekly" and cycles is None:
            raise _ApiError(400, "billing_frequency_cycles cannot be null when billing_frequency is weekly")
        if start is not None:
            try:
                day = date.fromisoformat(str(start)) if len(str(start)) == len("2026-01-31") else None
            except ValueError:
                day = None
            if day is None:
                raise _ApiError(400, "billing_start_date must be a date YYYY-MM-DD")
            today = datetime.fromtimestamp(self.now(), UTC).date()
            span = BILLING_START_SPAN_YEARS
            if not _years_later(today, -span) <= day <= _years_later(today, span):
                raise _ApiError(400, f"billing_start_date must be between {span} years in the past and in the future")
        recurring = [
            p for p in self._deal_products.values()
            if p["deal_id"] == deal.id and p["id"] != row["id"] and p["billing_frequency"] != "one-time"
        ]  # fmt: skip
        if frequency != "one-time" and len(recurring) >= MAX_RECURRING_PRODUCTS:
            raise _ApiError(
                400,
                f"A deal can have up to {MAX_RECURRING_PRODUCTS} products with a billing frequency other than one-time",
            )

    def _deal_value(self, deal: _Record) -> None:
        """With products attached, the deal's value is the sum of their sums (as Pipedrive shows it)."""
        value = sum((p["sum"] for p in self._products_of(deal.id) if p["is_enabled"]), Decimal(0))
        self._update_locked(deal, {"value": value})

    # -- fields -------------------------------------------------------------------------------------
    def _add_field_locked(
        self, entity: str, name: str, field_type: str, options: Iterable[str], *, code: str = "", custom: bool = True
    ) -> JSON:
        if field_type not in FIELD_TYPES and (custom or field_type not in SYSTEM_FIELD_TYPES):
            raise _ApiError(400, f"field_type must be one of {', '.join(FIELD_TYPES)}")
        if not name.strip():
            raise _ApiError(400, "field_name is required")
        labels = list(options)
        if field_type in ("enum", "set") and not labels:
            raise _ApiError(400, "options are required for enum and set fields")
        definition: JSON = {
            "id": self._next_field_id,
            "field_code": code or secrets.token_hex(20),  # a random 40-character hash, as Pipedrive's
            "field_name": name,
            "field_type": field_type,
            "options": [{"id": index + 1, "label": label} for index, label in enumerate(labels)] or None,
            "is_custom_field": custom,
            # required in v2 GetDealFields200ResponseDataInner: true only for fields shown when asked for
            "is_optional_response_field": False,
            "description": None,
        }
        self._next_field_id += 1
        self._fields[entity].append(definition)
        return definition

    def _create_field(self, entity: str, body: JSON, *, v1: bool) -> JSON:
        name = str(body.get("name" if v1 else "field_name") or "")
        options = body.get("options") or []
        if isinstance(options, str):  # v1 also takes a JSON-encoded array
            try:
                options = json.loads(options)
            except ValueError:
                raise _ApiError(400, "options must be a JSON array") from None
        if not isinstance(options, list) or not all(isinstance(o, dict) and o.get("label") for o in options):
            raise _ApiError(400, "options must be an array of objects with a label")
        definition = self._add_field_locked(
            entity, name, str(body.get("field_type") or ""), [o["label"] for o in options]
        )
        if body.get("description"):
            definition["description"] = str(body["description"])
        return copy.deepcopy(definition)

    @staticmethod
    def _v1_field(definition: JSON) -> JSON:
        return {
            "id": definition["id"],
            "key": definition["field_code"],
            "name": definition["field_name"],
            "field_type": definition["field_type"],
            "options": definition["options"],
            "edit_flag": definition["is_custom_field"],
            "active_flag": True,
        }

    # -- v1: recents, users/me ----------------------------------------------------------------------
    def _recents(self, request: Request) -> Response:
        since = request.args.get("since_timestamp")
        if not since:
            raise _ApiError(400, "since_timestamp is required (YYYY-MM-DD HH:MM:SS)")
        try:
            moment = datetime.strptime(since, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise _ApiError(400, "since_timestamp must be YYYY-MM-DD HH:MM:SS") from None
        items = [i.strip() for i in (request.args.get("items") or ",".join(ENTITIES)).split(",") if i.strip()]
        if any(i not in ENTITIES for i in items):
            raise _ApiError(400, f"items must be among {', '.join(ENTITIES)}")
        changed = [r for i in items for r in self._records[i].values() if int(r.update_time) >= int(moment)]
        changed.sort(key=lambda r: (int(r.update_time), r.entity, r.id))
        rows = [{"item": r.entity, "id": r.id, "data": self._v1_record(r)} for r in changed]
        return self._v1_page(rows, request)

    def _v1_record(self, record: _Record) -> JSON:
        out: JSON = {
            "id": record.id,
            "add_time": _v1_time(record.add_time),
            "update_time": _v1_time(record.update_time),
        }
        if record.entity == "deal":
            out.update(
                {
                    k: record.values.get(k)
                    for k in ("title", "value", "currency", "status", "org_id", "person_id", "stage_id", "pipeline_id")
                }
            )
            won = record.values.get("won_time")
            out["won_time"] = _v1_time(_parse_moment(won)) if won else None
            out["active"], out["deleted"] = not record.deleted, record.deleted
        else:
            out["name"] = record.values.get("name")
            out["active_flag"] = not record.deleted
        out.update({k: v for k, v in record.custom.items() if v is not None})  # v1 flattens custom fields
        return out

    def _me(self) -> JSON:
        return {
            "id": self.user_id,
            "name": "Sandbox Admin",
            "is_admin": 1,
            "company_id": self.company_id,
            "company_name": "Closeloop Sandbox",
            "company_domain": self.company_domain,
            "timezone_name": "UTC",
            "default_currency": DEFAULT_CURRENCY,
        }

    # -- webhooks -----------------------------------------------------------------------------------
    def _list_webhooks(self, request: Request) -> Response:
        return _response({"status": "ok", "success": True, "data": self.webhooks_locked()})

    def _post_webhook(self, request: Request) -> Response:
        webhook = self._add_webhook_locked(self._body(request))
        return _response({"status": "ok", "success": True, "data": self._render_webhook(webhook)}, 201)

    def _delete_webhook(self, request: Request, webhook_id: str) -> Response:
        if self._webhooks.pop(int(webhook_id) if webhook_id.isdigit() else -1, None) is None:
            raise _ApiError(404, "Webhook not found")
        return _response({"status": "ok", "success": True})

    def webhooks_locked(self) -> list[JSON]:
        return [self._render_webhook(w) for w in self._webhooks.values()]

    def _add_webhook_locked(self, body: Mapping[str, Any]) -> _Webhook:
        url = str(body.get("subscription_url") or "")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise _ApiError(400, "subscription_url must be a valid URL")
        action, obj = str(body.get("event_action") or ""), str(body.get("event_object") or "")
        if action not in ("create", "change", "delete", "*", "added", "updated", "deleted"):
            raise _ApiError(400, "event_action must be one of create, change, delete, *")
        if obj not in (*ENTITIES, "activity", "lead", "note", "pipeline", "stage", "user", "*"):
            raise _ApiError(400, f"Invalid event_object {obj}")
        if len(self._webhooks) >= 40:
            raise _ApiError(400, "A user can have at most 40 webhooks")
        webhook = _Webhook(
            self._next_webhook,
            url,
            {"added": "create", "updated": "change", "deleted": "delete"}.get(action, action),
            obj,
            body.get("http_auth_user"),
            body.get("http_auth_password"),
            str(body.get("version") or "2.0"),
            str(body.get("name") or ""),
            int(body.get("user_id") or self.user_id),
            self.now(),
        )
        self._next_webhook += 1
        self._webhooks[webhook.id] = webhook
        return webhook

    @staticmethod
    def _render_webhook(webhook: _Webhook) -> JSON:
        return {
            "id": webhook.id,
            "subscription_url": webhook.subscription_url,
            "event_action": webhook.event_action,
            "event_object": webhook.event_object,
            "http_auth_user": webhook.http_auth_user,
            "http_auth_password": "******" if webhook.http_auth_password else None,
            "version": webhook.version,
            "name": webhook.name,
            "user_id": webhook.user_id,
            "add_time": _iso(webhook.add_time),
            "is_active": 1,
            "last_http_status": None,
            "ban_counter": webhook.ban_counter,
        }

    def _announce(self, record: _Record, action: str, previous: JSON | None) -> None:
        """Queue one v2 event per matching webhook (events of a banned webhook are lost)."""
        now = self.now()
        for webhook in self._webhooks.values():
            if webhook.event_object not in (record.entity, "*") or webhook.event_action not in (action, "*"):
                continue
            payload: JSON = {
                "meta": {
                    "action": action,
                    "entity": record.entity,
                    "version": "2.0",
                    "company_id": str(self.company_id),
                    "user_id": str(self.user_id),
                    "id": str(uuid.uuid4()),
                    "entity_id": str(record.id),
                    "correlation_id": str(uuid.uuid4()),
                    "webhook_id": str(webhook.id),
                    "webhook_owner_id": str(webhook.user_id),
                    "type": "general",
                    "is_bulk_edit": False,
                    "attempt": 1,
                    "host": f"{self.company_domain}.pipedrive.com",
                    "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                    "change_source": "api",
                    "permitted_user_ids": [str(self.user_id)],
                },
                "data": None if action == "delete" else self._render(record),
                "previous": previous,
            }
            if now < webhook.banned_until:
                self.deliveries.append({"webhook_id": webhook.id, "event": payload["meta"]["id"], "lost": True})
                continue
            self._pending.append(_Delivery(webhook.id, payload, 1, now))

    def flush_webhooks(self, *, force: bool = False) -> JSON:
        """POST every delivery that is due (``force``: every pending one, retries included, until none is left).

        Returns counts of attempts, successes and failures.
        """
        attempts = ok = 0
        while True:
            with self.state.lock:
                now = self.now()
                due = [d for d in self._pending if force or d.due <= now]
                for delivery in due:
                    self._pending.remove(delivery)
            if not due:
                break
            for delivery in due:
                attempts += 1
                ok += self._attempt(delivery)
            if not force:
                break
        return {"attempts": attempts, "succeeded": ok, "failed": attempts - ok}

    def _attempt(self, delivery: _Delivery) -> bool:
        with self.state.lock:
            webhook = self._webhooks.get(delivery.webhook_id)
        if webhook is None:
            return False
        payload = copy.deepcopy(delivery.payload)
        payload["meta"]["attempt"] = delivery.attempt
        body = _encode(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT}
        if webhook.http_auth_user is not None:
            pair = f"{webhook.http_auth_user}:{webhook.http_auth_password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        sent = outbound.send(webhook.subscription_url, body, headers, self.delivery_timeout)
        success = sent.ok
        with self.state.lock:
            now = self.now()
            self.deliveries.append(
                {
                    "webhook_id": webhook.id,
                    "url": webhook.subscription_url,
                    "event": payload["meta"]["id"],
                    "attempt": delivery.attempt,
                    "status": sent.status,
                    "ok": success,
                    "error": sent.error or None,
                    "at": _iso(now),
                    "headers": headers,
                    "body": body.decode(),
                }
            )
            if success:
                if delivery.attempt == 1:
                    webhook.ban_counter = 0
                return True
            if delivery.attempt == 1:
                webhook.ban_counter += 1
                if webhook.ban_counter >= 10:
                    webhook.banned_until, webhook.ban_counter = now + 30 * 60, 0
            if delivery.attempt <= len(self.retry_delays):
                delay = self.retry_delays[delivery.attempt - 1]
                self._pending.append(
                    _Delivery(delivery.webhook_id, delivery.payload, delivery.attempt + 1, now + delay)
                )
        return False

    # -- control API --------------------------------------------------------------------------------
    def control_routes(self) -> Router:
        routes = super().control_routes()
        routes.add("POST", "/_sandbox/webhooks/flush", lambda body: self.flush_webhooks(force=bool(body.get("force"))))
        routes.add("GET", "/_sandbox/webhooks/deliveries", self._control_deliveries)
        return routes

    def clock_reading(self) -> JSON:
        return {"now": _iso(self.now())}

    def _control_deliveries(self, body: JSON) -> JSON:
        with self.state.lock:
            return {"deliveries": list(self.deliveries), "pending": len(self._pending)}


class PipedriveDriver:
    """CrmDriver for the Pipedrive sandbox: what a salesperson and an admin do in Pipedrive."""

    name = "pipedrive"
    webhook_user = "closeloop"
    webhook_password = "sandbox-basic-password"  # noqa: S105 - a sandbox credential, not a secret

    def __init__(self, sandbox: PipedriveSandbox) -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        # As `closeloop setup pipedrive` makes it: 43 URL-safe characters, new for every sandbox.
        self.path_secret = secrets.token_urlsafe(32)

    def environment(self, base_url: str) -> dict[str, str]:
        return {
            "CRM_PROVIDER": self.name,
            "PIPEDRIVE_API_URL": base_url,
            "PIPEDRIVE_API_TOKEN": self.sandbox.api_token,
            "PIPEDRIVE_WEBHOOK_USER": self.webhook_user,
            "PIPEDRIVE_WEBHOOK_PASSWORD": self.webhook_password,
            "PIPEDRIVE_WEBHOOK_PATH_SECRET": self.path_secret,
            # A deal open in "Proposal made" is quoted (`closeloop setup` asks the admin which stages quote).
            "PIPEDRIVE_QUOTE_STAGES": str(PROPOSAL_STAGE),
        }

    def subscribe(self, webhook_base_url: str) -> None:
        """Register the two webhooks per pipeline the way ``closeloop setup`` should: list first, then create."""
        base = webhook_base_url.rstrip("/")
        wanted = [
            (f"{base}/webhooks/pipedrive/contacts/{self.path_secret}", "organization"),
            (f"{base}/webhooks/pipedrive/contacts/{self.path_secret}", "person"),
            # Product events ride the contacts pipeline (the catalogue sync; ignored when it is off).
            (f"{base}/webhooks/pipedrive/contacts/{self.path_secret}", "product"),
            (f"{base}/webhooks/pipedrive/deals/{self.path_secret}", "deal"),
        ]
        existing = {(w["subscription_url"], w["event_object"]) for w in self.sandbox.webhooks()}
        for url, entity in wanted:
            if (url, entity) in existing:
                continue  # re-running setup must not double every delivery
            self.sandbox.add_webhook(
                {
                    "subscription_url": url,
                    "event_action": "*",
                    "event_object": entity,
                    "name": f"Closeloop {entity}",
                    "http_auth_user": self.webhook_user,
                    "http_auth_password": self.webhook_password,
                    "version": "2.0",
                }
            )

    def flush_webhooks(self) -> None:
        self.sandbox.flush_webhooks(force=True)

    def lose_pending_webhooks(self) -> None:
        self.sandbox.lose_pending_webhooks()

    def sent_webhooks(self) -> list[SentWebhook]:
        with self.state.lock:
            sent = [dict(d) for d in self.sandbox.deliveries if "body" in d]
        return [SentWebhook(str(d["url"]), dict(d["headers"]), str(d["body"]).encode(), d.get("status")) for d in sent]

    def forged_webhook(self, webhook_base_url: str) -> SentWebhook:
        """An organization event to the real webhook URL, with the right user and a guessed basic-auth password."""
        url = f"{webhook_base_url.rstrip('/')}/webhooks/pipedrive/contacts/{self.path_secret}"
        meta = {"action": "create", "entity": "organization", "version": "2.0", "entity_id": "1", "id": "forged-1"}
        payload = {"meta": meta, "data": {"id": 1, "name": "Forged Ltd"}, "previous": None}
        credentials = base64.b64encode(f"{self.webhook_user}:a-guessed-password".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
        return SentWebhook(url, headers, json.dumps(payload).encode())

    def _ensure_field(self, entity: str, name: str) -> str:
        return self.sandbox.field_key(entity, name) or self.sandbox.add_field(entity, name)

    def create_company(
        self, name: str, *, email: str = "", tax_number: str = "", country: str = "", city: str = ""
    ) -> CrmRef:
        values: JSON = {"name": name}
        if country or city:
            formatted = ", ".join(p for p in (city, country) if p)
            parts = {"value": formatted, "locality": city, "country": country}
            values["address"] = {key: part for key, part in parts.items() if part}
        if tax_number:
            values["custom_fields"] = {self._ensure_field("organization", "vat_number"): tax_number}
        org = self.sandbox.create("organization", values)
        if email:
            self.sandbox.create(
                "person",
                {"name": f"Accounts {name}", "org_id": org["id"], "emails": [{"value": email, "primary": True}]},
            )
        return CrmRef(crm=self.name, object_type="company", object_id=str(org["id"]))

    def update_company(self, ref: CrmRef, *, name: str | None = None, phone: str | None = None) -> None:
        if name is not None:
            self.sandbox.update("organization", ref.object_id, {"name": name})
        if phone is not None:
            # Organizations have no phone of their own in Pipedrive: it belongs to the first person.
            people = self.sandbox.find("person", org_id=int(ref.object_id))
            phones = [{"value": phone, "primary": True}]
            if people:
                self.sandbox.update("person", people[0], {"phones": phones})
            else:
                self.sandbox.create("person", {"name": "Accounts", "org_id": int(ref.object_id), "phones": phones})

    def create_won_deal(self, company: CrmRef, lines: Sequence[DealLine], *, currency: str) -> CrmRef:
        org_id = int(company.object_id) if company.object_type == "company" else None
        person_id = int(company.object_id) if company.object_type == "contact" else None
        deal = self.sandbox.create(
            "deal",
            {"title": f"Deal {len(lines)} lines", "org_id": org_id, "person_id": person_id, "currency": currency},
        )
        for line in lines:
            product = int(line.product.object_id) if line.product is not None else self._product(line, currency)
            self.sandbox.add_deal_product(
                deal["id"],
                {"product_id": product, "item_price": line.unit_price, "quantity": line.quantity, "name": line.name},
            )
        self.sandbox.update("deal", deal["id"], {"status": "won"})
        return CrmRef(crm=self.name, object_type="deal", object_id=str(deal["id"]))

    def _product(self, line: DealLine, currency: str) -> int:
        found = self.sandbox.find("product", code=line.sku)
        if found:
            return found[0]
        prices = [{"price": line.unit_price, "currency": currency, "cost": 0}]
        return int(self.sandbox.create("product", {"name": line.name, "code": line.sku, "prices": prices})["id"])

    def create_product(self, sku: str, name: str, price: Decimal, cost: Decimal | None = None) -> CrmRef:
        """A product with one price, in the user's default currency (a cost of 0 is Pipedrive's "none")."""
        prices = [{"price": price, "currency": DEFAULT_CURRENCY, "cost": cost if cost is not None else 0}]
        product = self.sandbox.create("product", {"name": name, "code": sku, "prices": prices})
        return CrmRef(crm=self.name, object_type="product", object_id=str(product["id"]))

    def update_product(self, ref: CrmRef, *, price: Decimal) -> None:
        """The price edited in place: the product's other price keys (currency, cost) stay as they are."""
        current = self.sandbox.get("product", ref.object_id) or {}
        prices = [{k: v for k, v in entry.items() if k != "product_id"} for entry in current.get("prices") or []]
        prices = [{**entry, "price": price} for entry in prices] or [{"price": price, "currency": DEFAULT_CURRENCY}]
        self.sandbox.update("product", ref.object_id, {"prices": prices})

    def deal_fields(self, deal: CrmRef) -> Mapping[str, str]:
        values = self.sandbox.custom_values("deal", deal.object_id)
        return {k: v for k, v in values.items() if k.startswith("closeloop_")}

    def customer_fields(self, ref: CrmRef) -> Mapping[str, str]:
        entity = "organization" if ref.object_type == "company" else "person"
        values = self.sandbox.custom_values(entity, ref.object_id)
        return {k: v for k, v in values.items() if k.startswith("closeloop_")}

    # -- quote to cash (issue 12): the deal stands in for its quote (Pipedrive has no quote object) ----------

    def create_supplier_product(
        self, sku: str, name: str, price: Decimal, *, cost: Decimal, supplier: str, currency: str
    ) -> CrmRef:
        """A product with one price (and its unit cost) in ``currency``, its supplier's name in the
        ``closeloop_supplier`` product field (made as ``closeloop setup`` makes it when absent)."""
        prices = [{"price": price, "currency": currency, "cost": cost}]
        custom = {self._ensure_field("product", "closeloop_supplier"): supplier}
        product = self.sandbox.create("product", {"name": name, "code": sku, "prices": prices, "custom_fields": custom})
        return CrmRef(crm=self.name, object_type="product", object_id=str(product["id"]))

    def create_quoted_deal(
        self, company: CrmRef, lines: Sequence[DealLine], *, currency: str, expires: date
    ) -> QuotedDeal:
        """An open deal moved to the quote stage (``PROPOSAL_STAGE``, named in PIPEDRIVE_QUOTE_STAGES) with its
        products, a recurring line's billing terms on its deal product. The quote is the deal itself; a deal
        has no expiry (``expected_close_date`` is the salesperson's hope, not the offer's end), so ``expires``
        is not kept."""
        org_id = int(company.object_id) if company.object_type == "company" else None
        person_id = int(company.object_id) if company.object_type == "contact" else None
        deal = self.sandbox.create(
            "deal",
            {"title": f"Quote {len(lines)} lines", "org_id": org_id, "person_id": person_id, "currency": currency},
        )
        for line in lines:
            product = int(line.product.object_id) if line.product is not None else self._product(line, currency)
            values: JSON = {"product_id": product, "item_price": line.unit_price, "quantity": line.quantity}
            if line.recurring is not None:
                values |= {
                    "billing_frequency": DRIVER_BILLING_FREQUENCIES[line.recurring.frequency],
                    "billing_frequency_cycles": line.recurring.periods,
                    "billing_start_date": line.recurring.start.isoformat(),
                }
            self.sandbox.add_deal_product(deal["id"], {**values, "name": line.name})
        # The salesperson moves the deal to "Proposal made" once its products are in: that is the quote sent.
        self.sandbox.update("deal", deal["id"], {"stage_id": PROPOSAL_STAGE})
        ref = CrmRef(crm=self.name, object_type="deal", object_id=str(deal["id"]))
        return QuotedDeal(deal=ref, quote=CrmRef(crm=self.name, object_type="quote", object_id=str(deal["id"])))

    def win_deal(self, deal: CrmRef) -> None:
        self.sandbox.update("deal", deal.object_id, {"status": "won"})

    def quote_fields(self, quote: CrmRef) -> Mapping[str, str]:
        """Closeloop's quote fields, on the deal standing in for the quote."""
        values = self.sandbox.custom_values("deal", quote.object_id)
        return {k: v for k, v in values.items() if k.startswith("closeloop_quote_")}

    # -- end of quote to cash --------------------------------------------------------------------------------


def serve(sandbox: PipedriveSandbox | None = None, port: int = 0) -> tuple[PipedriveSandbox, SandboxServer]:
    """Start a Pipedrive sandbox on 127.0.0.1 (``port=0`` picks a free port); stop the server when done."""
    app = sandbox if sandbox is not None else PipedriveSandbox()
    server = SandboxServer(app, port=port).start()
    return app, server
