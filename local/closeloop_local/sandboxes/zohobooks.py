"""Zoho Books sandbox: a stateful local stand-in for Zoho Accounts' token endpoint and the Books API v3.

One WSGI app serves both hosts on one port (their paths do not collide):

* ``ZOHO_ACCOUNTS_URL``  ``POST /oauth/v2/token`` (``grant_type=refresh_token``; parameters in the query
  string or a form body, as Zoho accepts both)
* ``ZOHO_BOOKS_API_URL`` ``/books/v3/...``: contacts (list, get, create, update, ``PUT /contacts`` upsert
  by a unique custom field, active/inactive), items (list, get, create, update), invoices (list, get,
  create, ``PUT /invoices`` upsert, ``status/sent``, ``status/void``, ``email``), estimates (list, get,
  create, update, ``status/sent``, ``status/accepted``, ``status/declined``) and customer payments applied
  to invoices.

Behaviour follows zoho.com/books/api/v3 and Zoho's OAuth pages, with the quirks integrations meet:
- ``Authorization: Zoho-oauthtoken <token>``; a missing, unknown or expired token is a 401
  ``{"code": 57, "message": "You are not authorized to perform this operation"}``; ``organization_id``
  is required on every call (absent or foreign: 400 ``{"code": 6041, ...}``);
- refresh tokens never rotate; the token endpoint answers HTTP 200 ``{"error": "invalid_code"}`` for an
  unknown or revoked refresh token and ``{"error": "invalid_client"}`` for bad client credentials; one
  refresh token mints at most 10 access tokens per 10 minutes (then 400 ``{"error": "Access Denied"}``)
  and keeps at most 30 live ones (the 31st evicts the oldest); a user keeps at most 20 refresh tokens
  (``issue_refresh_token``: the 21st evicts the oldest);
- 100 calls a minute per organisation and a daily cap by plan (1,000 by default, resetting at UTC
  midnight): HTTP 429 without Retry-After, ``code`` 44 for the minute and 45 for the day. Zoho documents
  the 429 but not these two codes or messages: the adapter's GUESSES["rate_limit_codes"], worded after its
  other errors;
- envelopes ``{"code": 0, "message": "...", "<entity>": {...}}``; errors carry a non-zero code: 3062 a
  contact name already used (names are unique, case-insensitively), 1001 a duplicate unique value
  (invoice number, a custom field set to "do not allow duplicates"), 1002 does not exist (HTTP 404),
  4 an invalid value; the wording of the invalid-value messages is ours;
- custom fields are configured per module (``custom_fields``); writes take ``[{"api_name", "value"}]``,
  reads render ``custom_fields`` and the flattened ``cf_…`` keys; ``X-Unique-Identifier-Key`` /
  ``-Value`` / ``X-Upsert: true`` on ``PUT /contacts`` and ``PUT /invoices`` update the record holding that
  unique value, or create one (upsert);
- lists page with ``page``/``per_page`` (≤ 200) and ``page_context.has_more_page``; list rows are
  summaries (no contact persons, addresses or line items); contacts sort by ``sort_column`` (name by
  default, or ``last_modified_time``…) but cannot be filtered on their modified time; an invoice past its
  due date with a balance reads ``overdue`` without its ``last_modified_time`` changing;
- money is Decimal inside and an exact JSON number on the wire; tax is computed per line and rounded to
  the cent (half up);
- items (zoho.com/books/api/v3/items): ``name`` (at most 100 characters) and ``rate`` required on create,
  ``description`` at most 2000, ``item_type`` sales|purchases|sales_and_purchases|inventory (default sales),
  ``account_id``/``purchase_account_id`` among the organisation's accounts, ``tax_id`` among its taxes; a
  name or a SKU another item holds (both compared case-insensitively; the page: "SKU ... should be unique")
  is 400 code 1001, an over-long or unknown value 400 code 4 (wording ours). The purchase side
  (``purchase_rate``, ``purchase_account_id``, ``purchase_description``) is dropped on a ``sales`` item
  (the adapter's GUESSES["item_type_for_cost"]). ``item_summaries=True`` answers list rows without the
  purchase and account fields (the adapter's GUESSES["item_list_rows_full"]).
- estimates (zoho.com/books/api/v3/estimates): ``customer_id`` and ``line_items`` required on create, lines
  and tax as invoices, ``expiry_date``, numbers ``EST-000001`` unless ``ignore_auto_number_generation=true``
  (a taken number: 400 code 1001 "Estimate Number already exist", an unknown id: 404 code 1002 "Estimate
  does not exist.", as Zoho's estimates pages list them); status draft -> sent -> accepted | declined, a sent
  one past its expiry_date reads ``expired`` (like ``overdue``, without its last_modified_time moving), and
  an invoice created with ``invoiced_estimate_id`` marks the estimate ``invoiced``; a move from any other
  status is 400 code 4 (wording ours). The moves, the expiry reading, the link and the list's
  ``last_modified_time`` filter are the adapter's GUESSES["estimate_status_moves"],
  GUESSES["estimate_invoiced_by_link"] and GUESSES["estimate_last_modified_filter"].

The ``/_sandbox/`` control API (no auth, never logged) resets state, reads the request log, injects faults
and moves the clock; ``ZohoBooksDriver`` drives the sandbox as finance would for the end-to-end suite.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from closeloop.vendors.zohobooks.mapping import INVOICE_STATUSES
from closeloop_local.sandboxes.base import AccountingSandbox, Router, SandboxServer, plain_json
from closeloop_local.sandboxes.drivers import (
    Line,
    SeenCustomer,
    SeenInvoice,
    SeenItem,
    SeenPurchaseOrder,
    SeenQuote,
    SeenSchedule,
)
from closeloop_local.sandboxes.limits import WindowAndDay
from closeloop_local.sandboxes.schedules import Recurrence, Unit

Row = dict[str, Any]

API_PREFIX = "/books/v3"
DEFAULT_ORGANIZATION_ID = "10234695"
DEFAULT_REFRESH_TOKEN = "1000.sandbox0refresh0token0000000000.0000000000000000000000000000000"
ACCESS_TOKEN_TTL = 3600
ACCESS_TOKENS_PER_WINDOW = 10
ACCESS_TOKEN_WINDOW = 600
LIVE_ACCESS_TOKENS = 30
REFRESH_TOKENS_PER_USER = 20
REFRESH_TOKENS_PER_MINUTE = 5
MAX_PER_PAGE = 200
CENT = Decimal("0.01")

NOT_AUTHORISED_CODE = 57
NOT_AUTHORISED_MESSAGE = "You are not authorized to perform this operation"
MINUTE_LIMIT = {
    "code": 44,
    "message": "You have exceeded the maximum number of API requests allowed per minute for this organization.",
}
DAY_LIMIT = {
    "code": 45,
    "message": "You have exceeded the maximum number of API requests allowed per day for this organization.",
}
ACCESS_DENIED = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}
#: The organisation's taxes: tax_id -> (name, percentage).
TAXES: dict[str, tuple[str, Decimal]] = {
    "982000000566009": ("Standard Rate", Decimal("20")),
    "982000000566013": ("Reduced Rate", Decimal("5")),
    "982000000566017": ("Zero Rate", Decimal("0")),
}
#: The organisation's chart of accounts an item may name: account_id -> name.
ACCOUNTS: dict[str, str] = {
    "982000000000388": "Sales",
    "982000000000391": "General Income",
    "982000000000567": "Cost of Goods Sold",
    "982000000000570": "Materials",
}
SALES_ACCOUNT = "982000000000388"
PURCHASE_ACCOUNT = "982000000000567"
ITEM_TYPES = ("sales", "purchases", "sales_and_purchases", "inventory")
PRODUCT_TYPES = ("goods", "service", "digital_service")
ITEM_NAME_MAX = 100
ITEM_DESCRIPTION_MAX = 2000
#: What a list row of an item leaves out under ``item_summaries``.
ITEM_DETAIL_KEYS: tuple[str, ...] = ("purchase_rate", "purchase_account_id", "purchase_account_name")
ITEM_DETAIL_KEYS += ("purchase_description", "account_id", "account_name")
TAX_FIELDS = ("gst_no", "vat_reg_no", "tax_reg_no")
CONTACT_TEXT = ("contact_name", "company_name", "contact_type", "customer_sub_type", "notes", *TAX_FIELDS)
ADDRESS_KEYS = ("attention", "address", "street2", "city", "state", "zip", "country", "phone", "fax")
PERSON_KEYS = ("salutation", "first_name", "last_name", "email", "phone", "mobile")
CONTACT_SORTS = (
    "contact_name",
    "first_name",
    "last_name",
    "email",
    "outstanding_receivable_amount",
    "created_time",
    "last_modified_time",
)
INVOICE_SORTS = ("date", "due_date", "last_modified_time", "created_time", "invoice_number", "total", "balance")
# Recurring invoices and purchase orders (the pages' allowed values; see the section at the end of the class)
RECURRENCE_UNITS: dict[str, Unit] = {"days": "day", "weeks": "week", "months": "month", "years": "year"}
RECURRENCE_NAME_MAX = 100
RECURRING_FILTERS = {
    "Status.All": "",
    "Status.Active": "active",
    "Status.Stopped": "stopped",
    "Status.Expired": "expired",
}
RECURRING_SORTS: tuple[str, ...] = (
    "customer_name",
    "recurrence_name",
    "total",
    "start_date",
    "end_date",
    "last_sent_date",
    "next_invoice_date",
    "created_time",
)
PO_FILTERS = {"Status.All": "", "Status.Draft": "draft", "Status.Open": "open", "Status.Billed": "billed"}
PO_FILTERS["Status.Cancelled"] = "cancelled"
PO_SORTS = (
    "vendor_name",
    "purchaseorder_number",
    "date",
    "delivery_date",
    "total",
    "created_time",
    "last_modified_time",
)
#: POST /purchaseorders/{id}/status/<move>: (the statuses it leads from, the status it leads to, the answer's message)
PO_MOVES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "open": (("draft",), "open", "The purchase order has been marked as open."),
    "billed": (("open",), "billed", "The purchase order has been marked as billed."),
    "cancelled": (("draft", "open"), "cancelled", "The purchase order has been cancelled."),
}
CONTACT_TYPES = ("customer", "vendor")
ESTIMATE_SORTS = ("date", "estimate_number", "total", "created_time", "last_modified_time")
#: An estimate's status move -> (the stored statuses it may leave, the status it sets, Zoho's answer message).
ESTIMATE_MOVES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "sent": (("draft", "sent"), "sent", "Estimate status has been changed to Sent."),
    "accepted": (("sent", "accepted"), "accepted", "Estimate status has been changed to Accepted."),
    "declined": (("sent", "declined"), "declined", "Estimate status has been changed to Declined."),
}


class ApiError(Exception):
    """A non-success answer: HTTP status and Zoho's envelope."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: Row = {"code": code, "message": message}


def _invalid(name: str) -> ApiError:
    return ApiError(400, 4, f"Invalid value passed for {name}")


def _dec(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _invalid(name)
    try:
        result = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as exc:
        raise _invalid(name) from exc
    if not result.is_finite():
        raise _invalid(name)
    return result


def _day(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise _invalid(name) from exc


def _stamp(epoch: float) -> str:
    """Zoho's timestamps: ``2024-05-01T10:00:00+0000``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def _parse_stamp(value: str, name: str) -> float:
    text = value.strip().replace(" ", "+")  # a '+' in a query string that was not percent-encoded
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            stamp = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    raise _invalid(name)


@dataclass
class RefreshToken:
    value: str
    minted: deque[float] = field(default_factory=deque)
    live: deque[str] = field(default_factory=deque)
    revoked: bool = False


@dataclass
class AccessToken:
    value: str
    refresh_token: str
    expires_at: float


class Limits(WindowAndDay):
    """Per-organisation calls: a rolling minute and a calendar (UTC) day."""

    def __init__(self, minute: int, day: int) -> None:
        super().__init__(minute, 60, day)

    def acquire(self, now: float) -> Row | None:
        """Count one call, or return the body of the 429 that refuses it."""
        return {"day": DAY_LIMIT, "window": MINUTE_LIMIT}.get(self.take(now) or "")


class ZohoBooksSandbox(AccountingSandbox):
    """A stateful Zoho Books organisation (Accounts token endpoint + Books API v3) as a WSGI app."""

    json_content_type = "application/json;charset=UTF-8"

    def __init__(
        self,
        client_id: str = "1000.SANDBOXCLIENTID",
        client_secret: str = "sandbox-client-secret",
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        minute_limit: int = 100,
        day_limit: int = 1000,
        *,
        base_currency: str = "GBP",
        custom_fields: dict[str, dict[str, bool]] | None = None,
        ignore_undocumented_filters: bool = False,
        item_summaries: bool = False,
        recurring_invoices_as_drafts: bool = False,
        contact_names_unique_across_types: bool = False,
    ) -> None:
        """``ignore_undocumented_filters``: answer lists as if Zoho ignored the ``cf_…`` and ``sku`` filters it
        does not document (every row, unfiltered), to show the adapter never trusts them blindly;
        ``item_summaries``: item list rows without the purchase and account fields (read one in full);
        ``recurring_invoices_as_drafts``: the organisation's recurring-invoice preference "Create invoices as
        drafts" (off: "Create and send", children are ``sent``); ``contact_names_unique_across_types``: a vendor
        may not take a customer's name either (GUESSES["vendor_customer_same_name"])."""
        super().__init__(client_id, client_secret, refresh_token)
        self.recurring_invoices_as_drafts = recurring_invoices_as_drafts
        self.contact_names_unique_across_types = contact_names_unique_across_types
        self.ignore_undocumented_filters = ignore_undocumented_filters
        self.item_summaries = item_summaries
        self.organization_id = organization_id
        self.base_currency = base_currency
        #: module -> api_name -> unique ("do not allow duplicate values")
        self.custom_fields = custom_fields or {
            "contacts": {"cf_closeloop_ref": True},
            "invoices": {"cf_closeloop_deal": True},
            "estimates": {"cf_closeloop_quote": True},
        }
        self._minute_limit = minute_limit
        self._day_limit = day_limit
        self._routes = self._build_routes()
        self._init_data()

    # ---- state ------------------------------------------------------------------------------------------

    def _init_data(self) -> None:
        self.contacts_by_id: dict[str, Row] = {}
        self.items_by_id: dict[str, Row] = {}
        self.invoices_by_id: dict[str, Row] = {}
        self.estimates_by_id: dict[str, Row] = {}
        self._estimate_seq = 0
        self.payments_by_id: dict[str, Row] = {}
        self.emails: list[Row] = []
        self._seq = 0
        self._invoice_seq = 0
        self._init_schedules()
        self._limits = Limits(self._minute_limit, self._day_limit)
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {self.initial_refresh_token: RefreshToken(self.initial_refresh_token)}
        self._refresh_issued: deque[float] = deque()

    def reset(self) -> None:
        """Forget all data, tokens, limits, the request log and faults (the clock keeps its offset)."""
        with self.state.lock:
            self.state.reset_log()
            self._init_data()

    def _now(self) -> float:
        return self.state.clock.now()

    def _today(self) -> date:
        return datetime.fromtimestamp(self._now(), UTC).date()

    def _new_id(self) -> str:
        self._seq += 1
        return str(460000000000000 + self._seq)

    # ---- Python API for tests and the driver -------------------------------------------------------------

    def seed_contact(self, **fields: Any) -> Row:
        """Store a contact as if made in Zoho's UI (same validation as the API); returns it in full."""
        with self.state.lock:
            return self._render_contact(self._save_contact(fields, None))

    def edit_contact(self, contact_id: str, **fields: Any) -> Row:
        """Edit a contact as if in Zoho's UI (``PUT /contacts/{id}``'s rules, ``last_modified_time`` moves);
        returns it in full."""
        with self.state.lock:
            self._contact(contact_id)
            return self._render_contact(self._save_contact(fields, contact_id))

    def seed_item(self, **fields: Any) -> Row:
        """Store an item as if made in Zoho's UI (the API's rules): ``name`` (the SKU when none), ``sku``,
        ``rate`` (0 when none) and any other item field (``purchase_rate``, ``status``...); returns it."""
        with self.state.lock:
            sent = {"rate": 0, **fields, "name": fields.get("name") or fields.get("sku") or ""}
            status = str(sent.pop("status", "active"))
            item = self._save_item(sent, None)
            item["status"] = status
            return self._render_item(item)

    def items(self) -> list[Row]:
        with self.state.lock:
            return [self._render_item(i) for i in self.items_by_id.values()]

    def edit_item(self, item_id: str, **fields: Any) -> Row:
        """Edit an item as finance would in Zoho's UI (``PUT /items/{id}``'s rules); returns it."""
        with self.state.lock:
            return self._render_item(self._save_item(fields, self._item(item_id)["item_id"]))

    def contacts(self) -> list[Row]:
        with self.state.lock:
            return [self._render_contact(c) for c in self.contacts_by_id.values()]

    def invoices(self) -> list[Row]:
        with self.state.lock:
            return [self._render_invoice(i) for i in self.invoices_by_id.values()]

    def estimates(self) -> list[Row]:
        with self.state.lock:
            return [self._render_estimate(e) for e in self.estimates_by_id.values()]

    def move_estimate(self, estimate_id: str, status: str) -> Row:
        """Mark an estimate sent, accepted or declined as finance (or the customer portal) would; returns it."""
        with self.state.lock:
            return self._render_estimate(self._move_estimate(estimate_id, status))

    def payments(self) -> list[Row]:
        with self.state.lock:
            return [dict(p) for p in self.payments_by_id.values()]

    def mark_sent(self, invoice_id: str) -> None:
        with self.state.lock:
            self._set_sent(self._invoice(invoice_id))

    def record_payment(self, invoice_id: str, amount: Decimal, on: date) -> Row:
        """A customer payment of ``amount`` applied in full to one invoice (as finance records it)."""
        with self.state.lock:
            invoice = self._invoice(invoice_id)
            body = {
                "customer_id": invoice["customer_id"],
                "payment_mode": "banktransfer",
                "amount": amount,
                "date": on.isoformat(),
                "invoices": [{"invoice_id": invoice_id, "amount_applied": amount}],
            }
            return self._save_payment(body)

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            for token in self._access.values():
                token.expires_at = self._now() - 1

    def revoke_refresh_tokens(self) -> None:
        with self.state.lock:
            for token in self._refresh.values():
                token.revoked = True

    def issue_refresh_token(self) -> str:
        """A new refresh token for the user (a reconnect): 5 a minute; the 21st evicts the oldest."""
        with self.state.lock:
            now = self._now()
            while self._refresh_issued and self._refresh_issued[0] <= now - 60:
                self._refresh_issued.popleft()
            if len(self._refresh_issued) >= REFRESH_TOKENS_PER_MINUTE:
                raise ValueError("Zoho allows 5 new refresh tokens a minute")
            self._refresh_issued.append(now)
            value = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            self._refresh[value] = RefreshToken(value)
            live = [t for t in self._refresh.values() if not t.revoked]
            if len(live) > REFRESH_TOKENS_PER_USER:
                live[0].revoked = True
            return value

    def live_access_tokens(self, refresh_token: str | None = None) -> int:
        with self.state.lock:
            token = self._refresh.get(refresh_token or self.initial_refresh_token)
            return len(token.live) if token else 0

    # ---- the API (SandboxApp's pipeline: log, faults, then ``handle``) -----------------------------------

    def fault_json(self, payload: Any, status: int) -> Response:
        return plain_json(payload, status)

    def internal_error(self) -> Response:
        return self.json({"code": 1000, "message": "Internal error"}, 500)

    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        if request.method == "POST" and request.path.rstrip("/") == "/oauth/v2/token":
            return self._token(request)
        if not request.path.startswith(API_PREFIX + "/"):
            return self.json({"code": 5, "message": "Invalid URL Passed"}, 404)
        with self.state.lock:
            try:
                self._authenticate(request)
                over = self._limits.acquire(self._now())
                if over is not None:
                    return self.json(over, 429)
                handler, ids = self._match(request)
                status, body = handler(request, *ids)
            except ApiError as error:
                return self.json(error.body, error.status)
            return self.json(body, status)

    def _authenticate(self, request: Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self._access.get(value.strip()) if scheme == "Zoho-oauthtoken" else None
        if token is None or token.expires_at <= self._now():
            raise ApiError(401, NOT_AUTHORISED_CODE, NOT_AUTHORISED_MESSAGE)
        organization = request.args.get("organization_id", "")
        if organization != self.organization_id:
            raise ApiError(
                400, 6041, f"This user is not associated with the CompanyID/CompanyName:{organization or 'null'}."
            )

    def _match(self, request: Request) -> tuple[Callable[..., Any], list[str]]:
        path = "/" + "/".join(p for p in request.path[len(API_PREFIX) :].split("/") if p)
        try:
            handler, ids = self._routes.match(request.method, path)
        except HTTPException:
            raise ApiError(404, 5, "Invalid URL Passed") from None
        return handler, list(ids.values())

    def _build_routes(self) -> Router:
        routes = Router()
        routes.add("GET", "/contacts", self._list_contacts)
        routes.add("POST", "/contacts", self._create_contact)
        routes.add("PUT", "/contacts", self._upsert_contact)
        routes.add("GET", "/contacts/<ref>", self._get_contact)
        routes.add("PUT", "/contacts/<ref>", self._update_contact)
        routes.add("POST", "/contacts/<ref>/active", lambda request, ref: self._contact_status(ref, "active"))
        routes.add("POST", "/contacts/<ref>/inactive", lambda request, ref: self._contact_status(ref, "inactive"))
        routes.add("GET", "/items", self._list_items)
        routes.add("POST", "/items", self._create_item)
        routes.add("GET", "/items/<ref>", self._get_item)
        routes.add("PUT", "/items/<ref>", self._update_item)
        routes.add("GET", "/invoices", self._list_invoices)
        routes.add("POST", "/invoices", self._create_invoice)
        routes.add("PUT", "/invoices", self._upsert_invoice)
        routes.add("GET", "/invoices/<ref>", self._get_invoice)
        routes.add("POST", "/invoices/<ref>/status/sent", self._invoice_sent)
        routes.add("POST", "/invoices/<ref>/status/void", self._invoice_void)
        routes.add("POST", "/invoices/<ref>/email", self._email_invoice)
        routes.add("GET", "/estimates", self._list_estimates)
        routes.add("POST", "/estimates", self._create_estimate)
        routes.add("GET", "/estimates/<ref>", self._get_estimate)
        routes.add("PUT", "/estimates/<ref>", self._update_estimate)
        for move in ESTIMATE_MOVES:
            routes.add(
                "POST",
                f"/estimates/<ref>/status/{move}",
                lambda request, ref, move=move: self._estimate_status(ref, move),
            )
        routes.add("POST", "/customerpayments", self._create_payment)
        self._add_schedule_routes(routes)
        return routes

    @staticmethod
    def _body(request: Request) -> Row:
        raw = request.get_data()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            raise _invalid("JSONString") from exc
        if not isinstance(body, dict):
            raise _invalid("JSONString")
        return body

    # ---- OAuth ------------------------------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        args = {**request.args.to_dict(), **request.form.to_dict()}
        with self.state.lock:
            if not self.is_client(args.get("client_id"), args.get("client_secret")):
                return self.json({"error": "invalid_client"})
            if args.get("grant_type") != "refresh_token":
                return self.json({"error": "unsupported_grant_type"})
            refresh = self._refresh.get(args.get("refresh_token", ""))
            if refresh is None or refresh.revoked:
                return self.json({"error": "invalid_code"})
            now = self._now()
            while refresh.minted and refresh.minted[0] <= now - ACCESS_TOKEN_WINDOW:
                refresh.minted.popleft()
            if len(refresh.minted) >= ACCESS_TOKENS_PER_WINDOW:
                return self.json(ACCESS_DENIED, 400)
            refresh.minted.append(now)
            value = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            self._access[value] = AccessToken(value, refresh.value, now + ACCESS_TOKEN_TTL)
            refresh.live.append(value)
            if len(refresh.live) > LIVE_ACCESS_TOKENS:
                self._access.pop(refresh.live.popleft(), None)
            return self.json(
                {
                    "access_token": value,
                    "api_domain": request.host_url.rstrip("/"),
                    "token_type": "Bearer",
                    "expires_in": ACCESS_TOKEN_TTL,
                }
            )

    # ---- paging and custom fields -----------------------------------------------------------------------

    @staticmethod
    def _page(request: Request, rows: list[Row], key: str, sort_column: str, sort_order: str) -> tuple[int, Row]:
        try:
            page = max(1, int(request.args.get("page", "1")))
            per_page = min(MAX_PER_PAGE, max(1, int(request.args.get("per_page", str(MAX_PER_PAGE)))))
        except ValueError as exc:
            raise _invalid("page") from exc
        start = (page - 1) * per_page
        context = {
            "page": page,
            "per_page": per_page,
            "has_more_page": len(rows) > start + per_page,
            "report_name": key.capitalize(),
            "applied_filter": request.args.get("filter_by", "Status.All"),
            "sort_column": sort_column,
            "sort_order": sort_order,
        }
        return 200, {"code": 0, "message": "success", key: rows[start : start + per_page], "page_context": context}

    def _apply_custom_fields(self, module: str, record: Row, sent: Any) -> None:
        if sent is None:
            return
        if not isinstance(sent, list):
            raise _invalid("custom_fields")
        known = self.custom_fields.get(module, {})
        values: Row = dict(record.get("cf") or {})
        for entry in sent:
            name = entry.get("api_name") if isinstance(entry, dict) else None
            if name not in known:
                raise _invalid("custom_fields")
            values[name] = "" if entry.get("value") is None else str(entry.get("value"))
        record["cf"] = values

    def _check_unique(self, module: str, record: Row, table: dict[str, Row], own_id: str | None) -> None:
        for name, unique in self.custom_fields.get(module, {}).items():
            value = (record.get("cf") or {}).get(name, "")
            if not unique or not value:
                continue
            for other_id, other in table.items():
                if other_id != own_id and (other.get("cf") or {}).get(name) == value:
                    raise ApiError(400, 1001, f"The value {value} already exists for the custom field {name}.")

    def _by_unique(self, module: str, request: Request, table: dict[str, Row]) -> tuple[str, str, Row | None]:
        key = request.headers.get("X-Unique-Identifier-Key", "")
        value = request.headers.get("X-Unique-Identifier-Value", "")
        if not self.custom_fields.get(module, {}).get(key):
            raise _invalid("X-Unique-Identifier-Key")
        if not value:
            raise _invalid("X-Unique-Identifier-Value")
        found = next((r for r in table.values() if (r.get("cf") or {}).get(key) == value), None)
        return key, value, found

    @staticmethod
    def _render_cf(record: Row, out: Row) -> None:
        values: Row = record.get("cf") or {}
        out["custom_fields"] = [
            {"api_name": name, "label": name[3:].replace("_", " ").title(), "value": value, "data_type": "string"}
            for name, value in values.items()
            if value
        ]
        out["custom_field_hash"] = {
            **{name: value for name, value in values.items() if value},
            **{f"{name}_unformatted": value for name, value in values.items() if value},
        }
        out.update({name: value for name, value in values.items() if value})

    # ---- contacts ---------------------------------------------------------------------------------------

    def _contact(self, contact_id: str) -> Row:
        contact = self.contacts_by_id.get(contact_id)
        if contact is None:
            raise ApiError(404, 1002, "Contact does not exist.")
        return contact

    def _save_contact(self, sent: Row, contact_id: str | None) -> Row:
        current = self.contacts_by_id.get(contact_id) if contact_id else None
        record: Row = copy.deepcopy(current) if current else {"status": "active"}
        for key in CONTACT_TEXT:
            if key in sent:
                record[key] = "" if sent[key] is None else str(sent[key])
        if "currency_code" in sent and current is None:
            record["currency_code"] = str(sent["currency_code"])
        kind = record.setdefault("contact_type", "customer")
        if kind not in CONTACT_TYPES or (current is not None and kind != current.get("contact_type", "customer")):
            raise _invalid("contact_type")  # a contact keeps its type: see GUESSES["contact_type_fixed"]
        name = str(record.get("contact_name") or "").strip()
        if not name:
            raise ApiError(400, 4, "Please enter the contact name.")
        if len(name) > 200:
            raise _invalid("contact_name")
        self._check_contact_name(name, kind, contact_id)
        for key in ("billing_address", "shipping_address"):
            if isinstance(sent.get(key), dict):
                address = dict(record.get(key) or {})
                address.update({k: str(v or "") for k, v in sent[key].items() if k in ADDRESS_KEYS})
                record[key] = address
        if "contact_persons" in sent:
            record["contact_persons"] = self._persons(sent["contact_persons"], record.get("contact_persons") or [])
        self._apply_custom_fields("contacts", record, sent.get("custom_fields"))
        self._check_unique("contacts", record, self.contacts_by_id, contact_id)
        record.setdefault("contact_type", "customer")
        record.setdefault("currency_code", self.base_currency)
        record["contact_id"] = contact_id or self._new_id()
        record.setdefault("created_time", _stamp(self._now()))
        record["last_modified_time"] = _stamp(self._now())
        self.contacts_by_id[record["contact_id"]] = record
        return record

    def _check_contact_name(self, name: str, kind: str, contact_id: str | None) -> None:
        """Display names are unique (case-insensitively) among the contacts of one type (code 3062): a customer
        and a vendor may share one unless ``contact_names_unique_across_types``
        (GUESSES["vendor_customer_same_name"])."""
        for other_id, other in self.contacts_by_id.items():
            if other_id == contact_id or str(other.get("contact_name", "")).casefold() != name.casefold():
                continue
            if self.contact_names_unique_across_types or other.get("contact_type", "customer") == kind:
                raise ApiError(400, 3062, f'The {kind} "{name}" already exists. Please specify a different name.')

    def _persons(self, sent: Any, current: list[Row]) -> list[Row]:
        """The sent persons replace the list; a sent ``contact_person_id`` keeps that person's id."""
        if not isinstance(sent, list) or not all(isinstance(p, dict) for p in sent):
            raise _invalid("contact_persons")
        known = {p["contact_person_id"]: p for p in current}
        persons: list[Row] = []
        for entry in sent:
            person_id = str(entry.get("contact_person_id") or "")
            if person_id and person_id not in known:
                raise ApiError(400, 1002, "Contact person does not exist.")
            person = dict(known.get(person_id, {}))
            person.update({k: str(entry.get(k) or "") for k in PERSON_KEYS if k in entry})
            person["contact_person_id"] = person_id or self._new_id()
            person["is_primary_contact"] = bool(entry.get("is_primary_contact"))
            persons.append(person)
        if persons and not any(p["is_primary_contact"] for p in persons):
            persons[0]["is_primary_contact"] = True
        if sum(p["is_primary_contact"] for p in persons) > 1:
            raise _invalid("is_primary_contact")
        return persons

    @staticmethod
    def _primary(contact: Row) -> Row:
        return next((p for p in contact.get("contact_persons") or [] if p.get("is_primary_contact")), {})

    def _render_contact(self, contact: Row, *, summary: bool = False) -> Row:
        primary = self._primary(contact)
        out: Row = {
            "contact_id": contact["contact_id"],
            "contact_name": contact.get("contact_name", ""),
            "company_name": contact.get("company_name", ""),
            "contact_type": contact.get("contact_type", "customer"),
            "customer_sub_type": contact.get("customer_sub_type", "business"),
            "status": contact.get("status", "active"),
            "first_name": primary.get("first_name", ""),
            "last_name": primary.get("last_name", ""),
            "email": primary.get("email", ""),
            "phone": primary.get("phone", ""),
            "currency_code": contact.get("currency_code", self.base_currency),
            "outstanding_receivable_amount": self._outstanding(contact["contact_id"]),
            "created_time": contact.get("created_time"),
            "last_modified_time": contact.get("last_modified_time"),
        }
        out.update({key: contact[key] for key in TAX_FIELDS if contact.get(key)})
        self._render_cf(contact, out)
        if not summary:
            out["contact_persons"] = [dict(p) for p in contact.get("contact_persons") or []]
            out["billing_address"] = {k: (contact.get("billing_address") or {}).get(k, "") for k in ADDRESS_KEYS}
            out["shipping_address"] = {k: (contact.get("shipping_address") or {}).get(k, "") for k in ADDRESS_KEYS}
            out["notes"] = contact.get("notes", "")
        return out

    def _outstanding(self, contact_id: str) -> Decimal:
        return sum(
            (i["balance"] for i in self.invoices_by_id.values() if i["customer_id"] == contact_id),
            Decimal("0.00"),
        )

    def _list_contacts(self, request: Request) -> tuple[int, Row]:
        args = request.args
        status = {"Status.Active": "active", "Status.Inactive": "inactive"}.get(args.get("filter_by", "Status.All"))
        rows = [c for c in self.contacts_by_id.values() if status is None or c.get("status") == status]

        def text(contact: Row, key: str) -> str:
            return str(contact.get(key) or "").casefold()

        for param, test in (
            ("contact_name", lambda c, v: text(c, "contact_name") == v),
            ("contact_name_startswith", lambda c, v: text(c, "contact_name").startswith(v)),
            ("contact_name_contains", lambda c, v: v in text(c, "contact_name")),
            ("company_name", lambda c, v: text(c, "company_name") == v),
            ("email", lambda c, v: str(self._primary(c).get("email", "")).casefold() == v),
            (
                "search_text",
                lambda c, v: v in text(c, "contact_name") or v in text(c, "company_name") or v in text(c, "notes"),
            ),
        ):
            if args.get(param):
                value = args[param].casefold()
                rows = [c for c in rows if test(c, value)]
        for name in self.custom_fields.get("contacts", {}):
            if args.get(name) and not self.ignore_undocumented_filters:
                rows = [c for c in rows if (c.get("cf") or {}).get(name) == args[name]]
        if args.get("contact_type") and not self.ignore_undocumented_filters:  # GUESSES["contact_type_filter"]
            if args["contact_type"] not in CONTACT_TYPES:
                raise _invalid("contact_type")
            rows = [c for c in rows if c.get("contact_type", "customer") == args["contact_type"]]
        column = args.get("sort_column", "contact_name")
        if column not in CONTACT_SORTS:
            raise _invalid("sort_column")
        rendered = [self._render_contact(c, summary=True) for c in rows]
        if column in ("created_time", "last_modified_time"):
            rendered.sort(key=lambda c: (_parse_stamp(c[column], column), c["contact_id"]))
        else:
            rendered.sort(key=lambda c: (str(c.get(column) or "").casefold(), c["contact_id"]))
        if args.get("sort_order") == "D":
            rendered.reverse()
        return self._page(request, rendered, "contacts", column, args.get("sort_order", "A"))

    def _get_contact(self, request: Request, contact_id: str) -> tuple[int, Row]:
        return 200, {"code": 0, "message": "success", "contact": self._render_contact(self._contact(contact_id))}

    def _create_contact(self, request: Request) -> tuple[int, Row]:
        contact = self._save_contact(self._body(request), None)
        return 201, {"code": 0, "message": "The contact has been added.", "contact": self._render_contact(contact)}

    def _update_contact(self, request: Request, contact_id: str) -> tuple[int, Row]:
        self._contact(contact_id)
        contact = self._save_contact(self._body(request), contact_id)
        return 200, {"code": 0, "message": "Contact has been updated.", "contact": self._render_contact(contact)}

    def _upsert_contact(self, request: Request) -> tuple[int, Row]:
        key, value, found = self._by_unique("contacts", request, self.contacts_by_id)
        body = self._body(request)
        if found is not None:
            contact = self._save_contact(body, found["contact_id"])
            return 200, {"code": 0, "message": "Contact has been updated.", "contact": self._render_contact(contact)}
        if request.headers.get("X-Upsert", "").lower() != "true":
            raise ApiError(404, 1002, "Contact does not exist.")
        cf = [e for e in body.get("custom_fields") or [] if isinstance(e, dict) and e.get("api_name") != key]
        contact = self._save_contact({**body, "custom_fields": [*cf, {"api_name": key, "value": value}]}, None)
        return 201, {"code": 0, "message": "The contact has been added.", "contact": self._render_contact(contact)}

    def _contact_status(self, contact_id: str, status: str) -> tuple[int, Row]:
        contact = self._contact(contact_id)
        contact["status"] = status
        contact["last_modified_time"] = _stamp(self._now())
        return 200, {"code": 0, "message": f"The contact has been marked as {status}."}

    # ---- items ------------------------------------------------------------------------------------------

    def _item(self, item_id: str) -> Row:
        item = self.items_by_id.get(item_id)
        if item is None:
            raise ApiError(404, 1002, "Item does not exist.")
        return item

    def _save_item(self, sent: Row, item_id: str | None) -> Row:
        current = self.items_by_id.get(item_id) if item_id else None
        record: Row = dict(current) if current else {"status": "active", "item_type": "sales", "tax_id": ""}
        if current is None:
            record.update(account_id=SALES_ACCOUNT, product_type="service", description="", sku="")
            record.update(purchase_rate=Decimal("0.00"), purchase_account_id="", purchase_description="")
            if sent.get("rate") is None:
                raise ApiError(400, 4, "Please enter the rate of the item.")
        self._apply_item_values(record, sent)
        if record["item_type"] == "sales":
            record.update(purchase_rate=Decimal("0.00"), purchase_account_id="", purchase_description="")
        elif not record["purchase_account_id"]:
            record["purchase_account_id"] = PURCHASE_ACCOUNT
        self._check_item(record, item_id)
        record["item_id"] = item_id or self._new_id()
        record.setdefault("created_time", _stamp(self._now()))
        record["last_modified_time"] = _stamp(self._now())
        self.items_by_id[record["item_id"]] = record
        return record

    @staticmethod
    def _apply_item_values(record: Row, sent: Row) -> None:
        for key in ("name", "sku", "description", "purchase_description"):
            if key in sent:
                record[key] = "" if sent[key] is None else str(sent[key]).strip()
        for key in ("rate", "purchase_rate"):
            if key in sent:
                record[key] = _dec(sent[key], key).quantize(CENT)
        for key, allowed in (
            ("item_type", ITEM_TYPES),
            ("product_type", PRODUCT_TYPES),
            ("tax_id", ("", *TAXES)),
            ("account_id", tuple(ACCOUNTS)),
            ("purchase_account_id", ("", *ACCOUNTS)),
        ):
            if key in sent:
                value = "" if sent[key] is None else str(sent[key])
                if value not in allowed:
                    raise _invalid(key)
                record[key] = value

    def _check_item(self, record: Row, item_id: str | None) -> None:
        """The page's lengths, and names and SKUs unique (case-insensitively) among the other items."""
        if not record.get("name"):
            raise ApiError(400, 4, "Please enter the item name.")
        if len(record["name"]) > ITEM_NAME_MAX:
            raise _invalid("name")
        if len(record["description"]) > ITEM_DESCRIPTION_MAX:
            raise _invalid("description")
        for other_id, other in self.items_by_id.items():
            if other_id == item_id:
                continue
            if other["name"].casefold() == record["name"].casefold():
                raise ApiError(400, 1001, f'The item "{record["name"]}" already exists.')
            if record["sku"] and other["sku"].casefold() == record["sku"].casefold():
                raise ApiError(400, 1001, f'The SKU "{record["sku"]}" already exists for another item.')

    def _list_items(self, request: Request) -> tuple[int, Row]:
        args = request.args
        status = {"Status.Active": "active", "Status.Inactive": "inactive"}.get(args.get("filter_by", "Status.All"))
        rows = [i for i in self.items_by_id.values() if status is None or i["status"] == status]
        if args.get("sku") and not self.ignore_undocumented_filters:
            rows = [i for i in rows if i["sku"].casefold() == args["sku"].casefold()]
        if args.get("name"):
            rows = [i for i in rows if i["name"].casefold() == args["name"].casefold()]
        if args.get("search_text"):
            text = args["search_text"].casefold()
            rows = [i for i in rows if any(text in i[k].casefold() for k in ("name", "sku", "description"))]
        rows.sort(key=lambda i: (i["name"].casefold(), i["item_id"]))
        rendered = [self._render_item(i, summary=self.item_summaries) for i in rows]
        return self._page(request, rendered, "items", "name", "A")

    def _get_item(self, request: Request, item_id: str) -> tuple[int, Row]:
        return 200, {"code": 0, "message": "success", "item": self._render_item(self._item(item_id))}

    def _create_item(self, request: Request) -> tuple[int, Row]:
        item = self._save_item(self._body(request), None)
        return 201, {"code": 0, "message": "The item has been added.", "item": self._render_item(item)}

    def _update_item(self, request: Request, item_id: str) -> tuple[int, Row]:
        self._item(item_id)
        item = self._save_item(self._body(request), item_id)
        return 200, {"code": 0, "message": "The item details have been updated.", "item": self._render_item(item)}

    @staticmethod
    def _render_item(item: Row, *, summary: bool = False) -> Row:
        out = dict(item)
        tax = TAXES.get(item["tax_id"])
        out["tax_name"], out["tax_percentage"] = (tax[0], tax[1]) if tax else ("", Decimal(0))
        out["account_name"] = ACCOUNTS.get(item["account_id"], "")
        out["purchase_account_name"] = ACCOUNTS.get(item["purchase_account_id"], "")
        if summary:
            for key in ITEM_DETAIL_KEYS:
                out.pop(key, None)
        return out

    # ---- invoices ---------------------------------------------------------------------------------------

    def _invoice(self, invoice_id: str) -> Row:
        invoice = self.invoices_by_id.get(invoice_id)
        if invoice is None:
            raise ApiError(404, 1002, "Invoice does not exist.")
        return invoice

    def _status(self, invoice: Row) -> str:
        status = str(invoice["status"])
        if status == "sent" and invoice["balance"] > 0 and invoice["due_date"] < self._today().isoformat():
            return "overdue"
        return status

    def _line(self, sent: Any, inclusive: bool) -> Row:
        if not isinstance(sent, dict):
            raise _invalid("line_items")
        item = self.items_by_id.get(str(sent.get("item_id") or ""))
        if item is None or item["status"] != "active":
            raise ApiError(400, 4, "Invalid value passed for item_id")
        quantity = _dec(sent.get("quantity", 1), "quantity")
        rate = _dec(sent.get("rate", item["rate"]), "rate")
        gross = quantity * rate
        discount_text = str(sent.get("discount") or "0").strip()
        if discount_text.endswith("%"):
            discount = (gross * _dec(discount_text[:-1], "discount") / 100).quantize(CENT, ROUND_HALF_UP)
        else:
            discount = _dec(discount_text, "discount")
        total = (gross - discount).quantize(CENT, ROUND_HALF_UP)
        tax_id = str(sent.get("tax_id") or "")
        if tax_id and tax_id not in TAXES:
            raise _invalid("tax_id")
        percent = TAXES[tax_id][1] if tax_id else Decimal(0)
        if inclusive:
            tax = (total - total / (1 + percent / 100)).quantize(CENT, ROUND_HALF_UP)
        else:
            tax = (total * percent / 100).quantize(CENT, ROUND_HALF_UP)
        return {
            "line_item_id": self._new_id(),
            "item_id": item["item_id"],
            "sku": item["sku"],
            "name": item["name"],
            "description": str(sent.get("description") or item["description"]),
            "quantity": quantity,
            "rate": rate,
            "discount": discount_text,
            "discount_amount": discount,
            "tax_id": tax_id,
            "tax_name": TAXES[tax_id][0] if tax_id else "",
            "tax_percentage": percent,
            "tax_amount": tax,
            "item_total": total,
        }

    def _save_invoice(self, sent: Row, invoice_id: str | None, request: Request) -> Row:
        current = self.invoices_by_id.get(invoice_id) if invoice_id else None
        if current is not None and current["status"] == "void":
            raise ApiError(400, 4, "Void invoices cannot be edited.")
        customer = self.contacts_by_id.get(str(sent.get("customer_id") or (current or {}).get("customer_id") or ""))
        if customer is None or customer.get("status") != "active" or customer.get("contact_type") == "vendor":
            raise _invalid("customer_id")
        raw_lines = sent.get("line_items", None if current else [])
        if current is None and not raw_lines:
            raise ApiError(400, 4, "Line items cannot be empty.")
        record: Row = dict(current) if current else {"status": "draft", "payment_made": Decimal("0.00")}
        record["customer_id"] = customer["contact_id"]
        record["currency_code"] = customer.get("currency_code", self.base_currency)
        record["is_inclusive_tax"] = bool(sent.get("is_inclusive_tax", record.get("is_inclusive_tax", False)))
        today = self._today().isoformat()
        record["date"] = _day(sent.get("date", record.get("date", today)), "date").isoformat()
        record["due_date"] = _day(sent.get("due_date", record.get("due_date", record["date"])), "due_date").isoformat()
        for key in ("reference_number", "notes", "terms"):
            if key in sent:
                record[key] = str(sent[key] or "")
        if raw_lines is not None:
            if not isinstance(raw_lines, list):
                raise _invalid("line_items")
            record["line_items"] = [self._line(line, record["is_inclusive_tax"]) for line in raw_lines]
        self._apply_custom_fields("invoices", record, sent.get("custom_fields"))
        self._check_unique("invoices", record, self.invoices_by_id, invoice_id)
        self._totals(record)
        estimate = self._estimate_to_invoice(sent, record) if current is None else None
        if current is None:
            self._number(record, sent, request)
        record["last_modified_time"] = _stamp(self._now())
        self.invoices_by_id[record["invoice_id"]] = record
        if estimate is not None:  # see GUESSES["estimate_invoiced_by_link"]
            record["invoiced_estimate_id"] = estimate["estimate_id"]
            estimate["status"] = "invoiced"
            estimate["last_modified_time"] = record["last_modified_time"]
        if request.args.get("send") == "true":
            self._email(record)
        return record

    @staticmethod
    def _totals(record: Row) -> None:
        lines: list[Row] = record["line_items"]
        tax_total = sum((line["tax_amount"] for line in lines), Decimal("0.00"))
        line_total = sum((line["item_total"] for line in lines), Decimal("0.00"))
        record["sub_total"] = line_total - tax_total if record["is_inclusive_tax"] else line_total
        record["tax_total"] = tax_total
        record["total"] = record["sub_total"] + tax_total
        if record["total"] < record["payment_made"]:
            raise ApiError(400, 4, "The invoice total cannot be less than the payments made.")
        record["balance"] = record["total"] - record["payment_made"]

    def _number(self, record: Row, sent: Row, request: Request) -> None:
        number = sent.get("invoice_number")
        if request.args.get("ignore_auto_number_generation") == "true":
            if not number:
                raise ApiError(400, 4, "Please enter the invoice number.")
        else:
            self._invoice_seq += 1
            number = f"INV-{self._invoice_seq:06d}"
        if any(i["invoice_number"] == number for i in self.invoices_by_id.values()):
            raise ApiError(400, 1001, f'Invoice "{number}" already exists.')
        record["invoice_number"] = str(number)
        record["invoice_id"] = self._new_id()
        record["created_time"] = _stamp(self._now())

    def _render_invoice(self, invoice: Row, *, summary: bool = False) -> Row:
        customer = self.contacts_by_id.get(invoice["customer_id"], {})
        out: Row = {
            "invoice_id": invoice["invoice_id"],
            "invoice_number": invoice["invoice_number"],
            "reference_number": invoice.get("reference_number", ""),
            "status": self._status(invoice),
            "customer_id": invoice["customer_id"],
            "customer_name": customer.get("contact_name", ""),
            "currency_code": invoice["currency_code"],
            "date": invoice["date"],
            "due_date": invoice["due_date"],
            "is_inclusive_tax": invoice["is_inclusive_tax"],
            "sub_total": invoice["sub_total"],
            "tax_total": invoice["tax_total"],
            "total": invoice["total"],
            "payment_made": invoice["payment_made"],
            "balance": invoice["balance"],
            "last_payment_date": invoice.get("last_payment_date", ""),
            "invoice_url": f"https://books.zoho.com/portal/sandbox/secure?CInvoiceID={invoice['invoice_id']}",
            "created_time": invoice["created_time"],
            "last_modified_time": invoice["last_modified_time"],
        }
        if invoice.get("recurring_invoice_id"):  # a recurring invoice's child (run_recurring)
            out["recurring_invoice_id"] = invoice["recurring_invoice_id"]
        if invoice.get("invoiced_estimate_id"):
            out["invoiced_estimate_id"] = invoice["invoiced_estimate_id"]
        self._render_cf(invoice, out)
        if not summary:
            out["line_items"] = [dict(line) for line in invoice["line_items"]]
            out["discount_type"] = "item_level"
        return out

    def _list_invoices(self, request: Request) -> tuple[int, Row]:
        args = request.args
        rows = list(self.invoices_by_id.values())
        if args.get("reference_number"):
            rows = [i for i in rows if i.get("reference_number") == args["reference_number"]]
        if args.get("customer_id"):
            rows = [i for i in rows if i["customer_id"] == args["customer_id"]]
        if args.get("recurring_invoice_id"):
            rows = [i for i in rows if i.get("recurring_invoice_id") == args["recurring_invoice_id"]]
        if args.get("status"):
            wanted = args["status"]
            unpaid = ("sent", "overdue", "partially_paid")
            rows = [i for i in rows if self._status(i) == wanted or (wanted == "unpaid" and self._status(i) in unpaid)]
        if args.get("date_start"):
            rows = [i for i in rows if i["date"] >= _day(args["date_start"], "date_start").isoformat()]
        if args.get("date_end"):
            rows = [i for i in rows if i["date"] <= _day(args["date_end"], "date_end").isoformat()]
        if args.get("last_modified_time"):
            since = _parse_stamp(args["last_modified_time"], "last_modified_time")
            rows = [i for i in rows if _parse_stamp(i["last_modified_time"], "last_modified_time") >= since]
        for name in self.custom_fields.get("invoices", {}):
            if args.get(name) and not self.ignore_undocumented_filters:
                rows = [i for i in rows if (i.get("cf") or {}).get(name) == args[name]]
        column = args.get("sort_column", "created_time")
        if column not in INVOICE_SORTS:
            raise _invalid("sort_column")
        order = args.get("sort_order", "D")
        rows.sort(key=lambda i: (i[column], i["created_time"], i["invoice_id"]), reverse=order == "D")
        rendered = [self._render_invoice(i, summary=True) for i in rows]
        return self._page(request, rendered, "invoices", column, order)

    def _get_invoice(self, request: Request, invoice_id: str) -> tuple[int, Row]:
        return 200, {"code": 0, "message": "success", "invoice": self._render_invoice(self._invoice(invoice_id))}

    def _create_invoice(self, request: Request) -> tuple[int, Row]:
        invoice = self._save_invoice(self._body(request), None, request)
        return 201, {"code": 0, "message": "The invoice has been created.", "invoice": self._render_invoice(invoice)}

    def _upsert_invoice(self, request: Request) -> tuple[int, Row]:
        key, value, found = self._by_unique("invoices", request, self.invoices_by_id)
        body = self._body(request)
        if found is not None:
            invoice = self._save_invoice(body, found["invoice_id"], request)
            return 200, {
                "code": 0,
                "message": "Invoice information has been updated.",
                "invoice": self._render_invoice(invoice),
            }
        if request.headers.get("X-Upsert", "").lower() != "true":
            raise ApiError(404, 1002, "Invoice does not exist.")
        cf = [e for e in body.get("custom_fields") or [] if isinstance(e, dict) and e.get("api_name") != key]
        invoice = self._save_invoice({**body, "custom_fields": [*cf, {"api_name": key, "value": value}]}, None, request)
        return 201, {"code": 0, "message": "The invoice has been created.", "invoice": self._render_invoice(invoice)}

    def _set_sent(self, invoice: Row) -> None:
        if invoice["status"] == "void":
            raise ApiError(400, 4, "Void invoices cannot be marked as sent.")
        if invoice["status"] == "draft":
            invoice["status"] = "sent"
            invoice["last_modified_time"] = _stamp(self._now())

    def _invoice_sent(self, request: Request, invoice_id: str) -> tuple[int, Row]:
        self._set_sent(self._invoice(invoice_id))
        return 200, {"code": 0, "message": "Invoice status has been changed to Sent."}

    def _invoice_void(self, request: Request, invoice_id: str) -> tuple[int, Row]:
        invoice = self._invoice(invoice_id)
        if invoice["payment_made"] > 0:
            raise ApiError(400, 4, "Invoices with payments recorded cannot be voided.")
        invoice["status"] = "void"
        invoice["balance"] = Decimal("0.00")
        invoice["last_modified_time"] = _stamp(self._now())
        return 200, {"code": 0, "message": "Invoice status has been changed to Void."}

    def _email(self, invoice: Row) -> None:
        if invoice["status"] == "void":
            raise ApiError(400, 4, "Void invoices cannot be emailed.")
        customer = self.contacts_by_id.get(invoice["customer_id"], {})
        to = [p["email"] for p in customer.get("contact_persons") or [] if p.get("email")]
        if not to:
            raise ApiError(400, 4, "Please enter a valid email address for the contact person.")
        self.emails.append({"invoice_id": invoice["invoice_id"], "to": to, "at": self._now()})
        self._set_sent(invoice)  # emailing a draft marks it sent, as Zoho does

    def _email_invoice(self, request: Request, invoice_id: str) -> tuple[int, Row]:
        self._email(self._invoice(invoice_id))
        return 200, {"code": 0, "message": "Your invoice has been sent."}

    # ---- estimates --------------------------------------------------------------------------------------

    def _estimate(self, estimate_id: str) -> Row:
        estimate = self.estimates_by_id.get(estimate_id)
        if estimate is None:
            raise ApiError(404, 1002, "Estimate does not exist.")
        return estimate

    def _estimate_status(self, estimate_id: str, move: str) -> tuple[int, Row]:
        self._move_estimate(estimate_id, move)
        return 200, {"code": 0, "message": ESTIMATE_MOVES[move][2]}

    def _move_estimate(self, estimate_id: str, move: str) -> Row:
        """A status move (GUESSES["estimate_status_moves"]): sent from draft, accepted or declined from sent
        (expired or not); the status it already has is a no-op; anything else is refused."""
        estimate = self._estimate(estimate_id)
        sources, target, _ = ESTIMATE_MOVES[move]
        if estimate["status"] not in sources:
            raise ApiError(
                400, 4, f"An estimate in the {self._estimate_status_of(estimate)} status cannot be marked {target}."
            )
        if estimate["status"] != target:
            estimate["status"] = target
            estimate["last_modified_time"] = _stamp(self._now())
        return estimate

    def _estimate_status_of(self, estimate: Row) -> str:
        """The status Zoho shows: a sent estimate past its expiry date reads expired
        (GUESSES["estimate_status_moves"])."""
        status = str(estimate["status"])
        expiry = estimate.get("expiry_date") or ""
        if status == "sent" and expiry and expiry < self._today().isoformat():
            return "expired"
        return status

    def _estimate_to_invoice(self, sent: Row, invoice: Row) -> Row | None:
        """The estimate an invoice is made from (``invoiced_estimate_id``): one of the invoice's customer."""
        estimate_id = str(sent.get("invoiced_estimate_id") or "")
        if not estimate_id:
            return None
        estimate = self.estimates_by_id.get(estimate_id)
        if estimate is None or estimate["customer_id"] != invoice["customer_id"]:
            raise _invalid("invoiced_estimate_id")
        return estimate

    def _save_estimate(self, sent: Row, estimate_id: str | None, request: Request) -> Row:
        current = self._estimate(estimate_id) if estimate_id else None
        customer = self.contacts_by_id.get(str(sent.get("customer_id") or (current or {}).get("customer_id") or ""))
        if customer is None or customer.get("status") != "active":
            raise _invalid("customer_id")
        raw_lines = sent.get("line_items", None if current else [])
        if current is None and not raw_lines:
            raise ApiError(400, 4, "Line items cannot be empty.")
        record: Row = dict(current) if current else {"status": "draft"}
        record["customer_id"] = customer["contact_id"]
        record["currency_code"] = customer.get("currency_code", self.base_currency)
        record["is_inclusive_tax"] = bool(sent.get("is_inclusive_tax", record.get("is_inclusive_tax", False)))
        record["date"] = _day(sent.get("date", record.get("date", self._today().isoformat())), "date").isoformat()
        expiry = sent.get("expiry_date", record.get("expiry_date", ""))
        record["expiry_date"] = _day(expiry, "expiry_date").isoformat() if expiry else ""
        if record["expiry_date"] and record["expiry_date"] < record["date"]:
            raise ApiError(400, 4, "Expiry date cannot be earlier than the estimate date.")
        for key in ("reference_number", "notes", "terms"):
            if key in sent:
                record[key] = str(sent[key] or "")
        if raw_lines is not None:
            if not isinstance(raw_lines, list):
                raise _invalid("line_items")
            record["line_items"] = [self._line(line, record["is_inclusive_tax"]) for line in raw_lines]
        self._apply_custom_fields("estimates", record, sent.get("custom_fields"))
        self._check_unique("estimates", record, self.estimates_by_id, estimate_id)
        lines: list[Row] = record["line_items"]
        tax_total = sum((line["tax_amount"] for line in lines), Decimal("0.00"))
        line_total = sum((line["item_total"] for line in lines), Decimal("0.00"))
        record["sub_total"] = line_total - tax_total if record["is_inclusive_tax"] else line_total
        record["tax_total"] = tax_total
        record["total"] = record["sub_total"] + tax_total
        if current is None:
            self._estimate_number(record, sent, request)
        elif sent.get("estimate_number") and sent["estimate_number"] != record["estimate_number"]:
            self._estimate_number_free(str(sent["estimate_number"]), record["estimate_id"])
            record["estimate_number"] = str(sent["estimate_number"])
        record["last_modified_time"] = _stamp(self._now())
        self.estimates_by_id[record["estimate_id"]] = record
        return record

    def _estimate_number_free(self, number: str, own_id: str | None) -> None:
        if any(e["estimate_number"] == number and e["estimate_id"] != own_id for e in self.estimates_by_id.values()):
            raise ApiError(400, 1001, "Estimate Number already exist")

    def _estimate_number(self, record: Row, sent: Row, request: Request) -> None:
        number = sent.get("estimate_number")
        if request.args.get("ignore_auto_number_generation") == "true":
            if not number:
                raise ApiError(400, 4, "Please enter the estimate number.")
        else:
            self._estimate_seq += 1
            number = f"EST-{self._estimate_seq:06d}"
        self._estimate_number_free(str(number), None)
        record["estimate_number"] = str(number)
        record["estimate_id"] = self._new_id()
        record["created_time"] = _stamp(self._now())

    def _render_estimate(self, estimate: Row, *, summary: bool = False) -> Row:
        customer = self.contacts_by_id.get(estimate["customer_id"], {})
        out: Row = {
            "estimate_id": estimate["estimate_id"],
            "estimate_number": estimate["estimate_number"],
            "reference_number": estimate.get("reference_number", ""),
            "status": self._estimate_status_of(estimate),
            "customer_id": estimate["customer_id"],
            "customer_name": customer.get("contact_name", ""),
            "currency_code": estimate["currency_code"],
            "date": estimate["date"],
            "expiry_date": estimate["expiry_date"],
            "is_inclusive_tax": estimate["is_inclusive_tax"],
            "sub_total": estimate["sub_total"],
            "tax_total": estimate["tax_total"],
            "total": estimate["total"],
            "created_time": estimate["created_time"],
            "last_modified_time": estimate["last_modified_time"],
        }
        self._render_cf(estimate, out)
        if not summary:
            out["line_items"] = [dict(line) for line in estimate["line_items"]]
            out["notes"] = estimate.get("notes", "")
            out["terms"] = estimate.get("terms", "")
            out["discount_type"] = "item_level"
        return out

    def _list_estimates(self, request: Request) -> tuple[int, Row]:
        args = request.args
        rows = list(self.estimates_by_id.values())
        for key in ("reference_number", "estimate_number", "customer_id"):
            if args.get(key):
                rows = [e for e in rows if e.get(key) == args[key]]
        if args.get("status"):
            rows = [e for e in rows if self._estimate_status_of(e) == args["status"]]
        if args.get("last_modified_time"):  # see GUESSES["estimate_last_modified_filter"]
            since = _parse_stamp(args["last_modified_time"], "last_modified_time")
            rows = [e for e in rows if _parse_stamp(e["last_modified_time"], "last_modified_time") >= since]
        column = args.get("sort_column", "created_time")
        if column not in ESTIMATE_SORTS:
            raise _invalid("sort_column")
        order = args.get("sort_order", "D")
        rows.sort(key=lambda e: (e[column], e["created_time"], e["estimate_id"]), reverse=order == "D")
        rendered = [self._render_estimate(e, summary=True) for e in rows]
        return self._page(request, rendered, "estimates", column, order)

    def _get_estimate(self, request: Request, estimate_id: str) -> tuple[int, Row]:
        return 200, {"code": 0, "message": "success", "estimate": self._render_estimate(self._estimate(estimate_id))}

    def _create_estimate(self, request: Request) -> tuple[int, Row]:
        estimate = self._save_estimate(self._body(request), None, request)
        return 201, {"code": 0, "message": "Estimate has been created.", "estimate": self._render_estimate(estimate)}

    def _update_estimate(self, request: Request, estimate_id: str) -> tuple[int, Row]:
        estimate = self._save_estimate(self._body(request), estimate_id, request)
        return 200, {
            "code": 0,
            "message": "Estimate information has been updated.",
            "estimate": self._render_estimate(estimate),
        }

    # ---- customer payments ------------------------------------------------------------------------------

    def _save_payment(self, sent: Row) -> Row:
        customer = self.contacts_by_id.get(str(sent.get("customer_id") or ""))
        if customer is None:
            raise _invalid("customer_id")
        amount = _dec(sent.get("amount"), "amount")
        if amount <= 0:
            raise ApiError(400, 4, "Payment amount should be greater than zero.")
        applied = sent.get("invoices") or []
        if not isinstance(applied, list):
            raise _invalid("invoices")
        plan: list[tuple[Row, Decimal]] = []
        for entry in applied:
            invoice = self._invoice(str(entry.get("invoice_id") or "")) if isinstance(entry, dict) else None
            if invoice is None or invoice["customer_id"] != customer["contact_id"]:
                raise _invalid("invoice_id")
            if invoice["status"] in ("draft", "void"):
                raise ApiError(400, 4, f"Payments cannot be recorded for {invoice['status']} invoices.")
            share = _dec(entry.get("amount_applied"), "amount_applied")
            if share <= 0 or share > invoice["balance"]:
                raise ApiError(400, 4, "The amount applied exceeds the balance due on the invoice.")
            plan.append((invoice, share))
        if sum((share for _, share in plan), Decimal(0)) > amount:
            raise ApiError(400, 4, "The amount applied to invoices exceeds the payment amount.")
        day = _day(sent.get("date", self._today().isoformat()), "date").isoformat()
        payment_id = self._new_id()
        for invoice, share in plan:
            invoice["payment_made"] += share
            invoice["balance"] = invoice["total"] - invoice["payment_made"]
            invoice["status"] = "paid" if invoice["balance"] <= 0 else "partially_paid"
            invoice["last_payment_date"] = max(day, str(invoice.get("last_payment_date") or ""))
            invoice["last_modified_time"] = _stamp(self._now())
        payment = {
            "payment_id": payment_id,
            "payment_number": str(len(self.payments_by_id) + 1),
            "customer_id": customer["contact_id"],
            "payment_mode": str(sent.get("payment_mode") or "cash"),
            "amount": amount,
            "date": day,
            "invoices": [{"invoice_id": i["invoice_id"], "amount_applied": s} for i, s in plan],
        }
        self.payments_by_id[payment_id] = payment
        return dict(payment)

    def _create_payment(self, request: Request) -> tuple[int, Row]:
        payment = self._save_payment(self._body(request))
        return 201, {"code": 0, "message": "The payment has been created.", "payment": payment}

    # ---- recurring invoices, purchase orders (issue 12: schedules and purchases) -------------------------
    # zoho.com/books/api/v3/recurring-invoices and /purchase-order; contacts with contact_type "vendor".

    def _init_schedules(self) -> None:
        self.recurring_by_id: dict[str, Row] = {}
        self.purchaseorders_by_id: dict[str, Row] = {}
        self._po_seq = 0

    def _add_schedule_routes(self, routes: Router) -> None:
        routes.add("GET", "/recurringinvoices", self._list_recurring)
        routes.add("POST", "/recurringinvoices", self._create_recurring)
        routes.add("GET", "/recurringinvoices/<ref>", self._get_recurring)
        routes.add("PUT", "/recurringinvoices/<ref>", self._update_recurring)
        routes.add("DELETE", "/recurringinvoices/<ref>", self._delete_recurring)
        routes.add("POST", "/recurringinvoices/<ref>/status/stop", self._stop_recurring)
        routes.add("POST", "/recurringinvoices/<ref>/status/resume", self._resume_recurring)
        routes.add("GET", "/purchaseorders", self._list_purchaseorders)
        routes.add("POST", "/purchaseorders", self._create_purchaseorder)
        routes.add("GET", "/purchaseorders/<ref>", self._get_purchaseorder)
        routes.add("PUT", "/purchaseorders/<ref>", self._update_purchaseorder)
        routes.add("DELETE", "/purchaseorders/<ref>", self._delete_purchaseorder)
        for move in PO_MOVES:
            routes.add("POST", f"/purchaseorders/<ref>/status/{move}", self._po_mover(move))

    # recurring invoices: Python API

    def recurring_invoices(self) -> list[Row]:
        with self.state.lock:
            return [self._render_recurring(r) for r in self.recurring_by_id.values()]

    def purchase_orders(self) -> list[Row]:
        with self.state.lock:
            return [self._render_purchaseorder(p) for p in self.purchaseorders_by_id.values()]

    def run_recurring(self, on: date | None = None) -> list[Row]:
        """Zoho's daily run (6 AM in the organisation's zone, its help pages say): every active recurring invoice
        whose next invoice date is ``on`` (today by default) or earlier makes its child invoices, one per due
        day up to ``on``: an ordinary invoice with ``recurring_invoice_id``, the template's lines, notes, terms
        and reference number (GUESSES["recurring_child_reference"]), dated on its day, due after the template's
        payment terms, numbered from the invoices' series, ``sent`` (``draft`` when the organisation's
        preference ``recurring_invoices_as_drafts`` is on). Returns the invoices made, as the API renders them.
        A customer made inactive since refuses the run: ValueError, that schedule's next date unmoved."""
        with self.state.lock:
            day = on or self._today()
            made: list[Row] = []
            for rec in sorted(self.recurring_by_id.values(), key=lambda r: str(r["created_time"])):
                while rec["status"] == "active" and rec["next_date"] is not None and rec["next_date"] <= day:
                    due: date = rec["next_date"]
                    try:
                        invoice = self._child_invoice(rec, due)
                    except ApiError as err:
                        raise ValueError(json.dumps(err.body)) from err
                    made.append(self._render_invoice(invoice))
                    rec["last_sent_date"] = due.isoformat()
                    rec["next_date"] = self._recurrence(rec).first_on_or_after(due + timedelta(days=1))
                    rec["last_modified_time"] = _stamp(self._now())
            return made

    def _child_invoice(self, rec: Row, day: date) -> Row:
        customer = self.contacts_by_id.get(rec["customer_id"])
        if customer is None or customer.get("status") != "active":
            raise _invalid("customer_id")
        record: Row = {
            "status": "draft" if self.recurring_invoices_as_drafts else "sent",
            "payment_made": Decimal("0.00"),
            "customer_id": rec["customer_id"],
            "currency_code": rec["currency_code"],
            "is_inclusive_tax": rec["is_inclusive_tax"],
            "date": day.isoformat(),
            "due_date": (day + timedelta(days=int(rec["payment_terms"]))).isoformat(),
            "reference_number": rec["reference_number"],  # see GUESSES["recurring_child_reference"]
            "notes": rec["notes"],
            "terms": rec["terms"],
            "line_items": [{**line, "line_item_id": self._new_id()} for line in rec["line_items"]],
            "recurring_invoice_id": rec["recurring_invoice_id"],
        }
        self._totals(record)
        number = ""
        while not number or any(i["invoice_number"] == number for i in self.invoices_by_id.values()):
            self._invoice_seq += 1
            number = f"INV-{self._invoice_seq:06d}"
        record.update(invoice_number=number, invoice_id=self._new_id(), created_time=_stamp(self._now()))
        record["last_modified_time"] = record["created_time"]
        self.invoices_by_id[record["invoice_id"]] = record
        return record

    # recurring invoices: the API

    def _recurring(self, recurring_invoice_id: str) -> Row:
        rec = self.recurring_by_id.get(recurring_invoice_id)
        if rec is None:
            raise ApiError(404, 1002, "Recurring Invoice does not exist")  # the page's error table
        return rec

    @staticmethod
    def _recurrence(rec: Row) -> Recurrence:
        end = rec["end_date"]
        return Recurrence(
            unit=RECURRENCE_UNITS[rec["recurrence_frequency"]],
            every=int(rec["repeat_every"]),
            start=date.fromisoformat(rec["start_date"]),
            end=date.fromisoformat(end) if end else None,
        )

    def _schedule_from(self, rec: Row) -> date:
        """The first day the schedule may still make an invoice on: today, or the day after its last child."""
        last = rec.get("last_sent_date")
        after_last = date.fromisoformat(last) + timedelta(days=1) if last else date.min
        return max(self._today(), after_last)

    def _save_recurring(self, sent: Row, recurring_invoice_id: str | None) -> Row:
        current = self.recurring_by_id.get(recurring_invoice_id) if recurring_invoice_id else None
        record: Row = copy.deepcopy(current) if current else {"status": "active", "last_sent_date": ""}
        if current is None:
            record.update(reference_number="", notes="", terms="", payment_terms=0, end_date="", repeat_every=1)
            record["start_date"] = self._today().isoformat()
        self._recurrence_name(record, sent, recurring_invoice_id)
        customer = self.contacts_by_id.get(str(sent.get("customer_id") or record.get("customer_id") or ""))
        if customer is None or customer.get("status") != "active" or customer.get("contact_type") != "customer":
            raise _invalid("customer_id")
        record["customer_id"] = customer["contact_id"]
        record["currency_code"] = customer.get("currency_code", self.base_currency)
        if sent.get("currency_code") not in (None, "", record["currency_code"]):
            raise _invalid("currency_code")  # a recurring invoice bills in its customer's currency
        self._recurrence_schedule(record, sent, current)
        for key in ("reference_number", "notes", "terms"):
            if key in sent:
                record[key] = str(sent[key] or "")
        record["is_inclusive_tax"] = bool(sent.get("is_inclusive_tax", record.get("is_inclusive_tax", False)))
        raw_lines = sent.get("line_items", None if current else [])
        if current is None and not raw_lines:
            raise ApiError(400, 4, "Line items cannot be empty.")
        if raw_lines is not None:
            if not isinstance(raw_lines, list) or not raw_lines:
                raise _invalid("line_items")
            record["line_items"] = [self._line(line, record["is_inclusive_tax"]) for line in raw_lines]
        record["payment_made"] = Decimal("0.00")
        self._totals(record)
        now = _stamp(self._now())
        record["recurring_invoice_id"] = recurring_invoice_id or self._new_id()
        record.setdefault("created_time", now)
        record["last_modified_time"] = now
        record["next_date"] = self._recurrence(record).first_on_or_after(self._schedule_from(record))
        self.recurring_by_id[record["recurring_invoice_id"]] = record
        return record

    def _recurrence_name(self, record: Row, sent: Row, recurring_invoice_id: str | None) -> None:
        """``recurrence_name``: required on create, at most 100 characters, unique among recurring invoices."""
        current = recurring_invoice_id is not None
        if "recurrence_name" in sent or not current:
            name = str(sent.get("recurrence_name") or "").strip()
            if not name:
                raise ApiError(400, 4031, "Please enter a name for this Recurring Invoice")  # the page's table
            if len(name) > RECURRENCE_NAME_MAX:
                raise _invalid("recurrence_name")
            for other_id, other in self.recurring_by_id.items():
                if other_id != recurring_invoice_id and other["recurrence_name"].casefold() == name.casefold():
                    # see GUESSES["recurring_duplicate_name"]
                    raise ApiError(400, 1001, f'The recurring invoice name "{name}" already exists.')
            record["recurrence_name"] = name

    def _recurrence_schedule(self, record: Row, sent: Row, current: Row | None) -> None:
        """Frequency, interval, payment terms and the start and end dates, checked."""
        frequency = str(sent.get("recurrence_frequency", record.get("recurrence_frequency", "")))
        if frequency not in RECURRENCE_UNITS:
            raise _invalid("recurrence_frequency")
        record["recurrence_frequency"] = frequency
        if "repeat_every" in sent:
            every = _dec(sent["repeat_every"], "repeat_every")
            if every != every.to_integral_value() or every < 1:
                raise _invalid("repeat_every")
            record["repeat_every"] = int(every)
        if "payment_terms" in sent:
            terms = _dec(sent["payment_terms"], "payment_terms")
            if terms != terms.to_integral_value() or terms < 0:
                raise _invalid("payment_terms")
            record["payment_terms"] = int(terms)
        if "start_date" in sent:
            start = _day(sent["start_date"], "start_date").isoformat()
            if start != (current or {}).get("start_date") and start < self._today().isoformat():
                # see GUESSES["recurring_past_start"]
                raise ApiError(400, 4, "Start date cannot be earlier than today.")
            record["start_date"] = start
        if "end_date" in sent:
            record["end_date"] = _day(sent["end_date"], "end_date").isoformat() if sent["end_date"] else ""
        if record["end_date"] and record["end_date"] < record["start_date"]:
            raise ApiError(400, 4, "End date cannot be earlier than the start date.")

    def _recurring_status(self, rec: Row) -> str:
        if rec["status"] == "stopped":
            return "stopped"
        return "expired" if rec["next_date"] is None else "active"

    def _render_recurring(self, rec: Row, *, summary: bool = False) -> Row:
        customer = self.contacts_by_id.get(rec["customer_id"], {})
        out: Row = {
            "recurring_invoice_id": rec["recurring_invoice_id"],
            "recurrence_name": rec["recurrence_name"],
            "reference_number": rec["reference_number"],
            "status": self._recurring_status(rec),
            "customer_id": rec["customer_id"],
            "customer_name": customer.get("contact_name", ""),
            "currency_code": rec["currency_code"],
            "recurrence_frequency": rec["recurrence_frequency"],
            "repeat_every": rec["repeat_every"],
            "start_date": rec["start_date"],
            "end_date": rec["end_date"],
            "next_invoice_date": rec["next_date"].isoformat() if rec["next_date"] else "",
            "last_sent_date": rec["last_sent_date"],
            "child_entity_type": "invoice",
            "total": rec["total"],
            "created_time": rec["created_time"],
            "last_modified_time": rec["last_modified_time"],
        }
        if not summary:
            out.update(
                is_inclusive_tax=rec["is_inclusive_tax"],
                payment_terms=rec["payment_terms"],
                notes=rec["notes"],
                terms=rec["terms"],
                sub_total=rec["sub_total"],
                tax_total=rec["tax_total"],
                line_items=[dict(line) for line in rec["line_items"]],
            )
        return out

    def _list_recurring(self, request: Request) -> tuple[int, Row]:
        args = request.args
        if args.get("filter_by", "Status.All") not in RECURRING_FILTERS:
            raise _invalid("filter_by")
        if args.get("status", "") not in ("", *RECURRING_FILTERS.values()):
            raise _invalid("status")
        status = args.get("status") or RECURRING_FILTERS[args.get("filter_by", "Status.All")]
        rows = [r for r in self.recurring_by_id.values() if not status or self._recurring_status(r) == status]

        def customer(rec: Row) -> str:
            return str(self.contacts_by_id.get(rec["customer_id"], {}).get("contact_name", ""))

        for param, test in (
            ("recurrence_name", lambda r, v: r["recurrence_name"].casefold() == v),
            ("recurrence_name_startswith", lambda r, v: r["recurrence_name"].casefold().startswith(v)),
            ("recurrence_name_contains", lambda r, v: v in r["recurrence_name"].casefold()),
            ("customer_name", lambda r, v: customer(r).casefold() == v),
            ("customer_name_startswith", lambda r, v: customer(r).casefold().startswith(v)),
            ("customer_name_contains", lambda r, v: v in customer(r).casefold()),
            ("customer_id", lambda r, v: r["customer_id"] == v),
            ("item_id", lambda r, v: any(line["item_id"] == v for line in r["line_items"])),
            ("search_text", lambda r, v: v in r["recurrence_name"].casefold() or v in customer(r).casefold()),
        ):
            if args.get(param):
                value = args[param].casefold() if param not in {"customer_id", "item_id"} else args[param]
                rows = [r for r in rows if test(r, value)]
        if args.get("last_modified_time") and not self.ignore_undocumented_filters:
            # see GUESSES["recurring_modified_filter"]
            since = _parse_stamp(args["last_modified_time"], "last_modified_time")
            rows = [r for r in rows if _parse_stamp(r["last_modified_time"], "last_modified_time") >= since]
        column = args.get("sort_column", "created_time")
        if column not in RECURRING_SORTS:
            raise _invalid("sort_column")
        order = args.get("sort_order", "D")
        rendered = [self._render_recurring(r, summary=True) for r in rows]
        rendered.sort(key=lambda r: (str(r[column]) if column != "total" else r[column], r["recurring_invoice_id"]))
        if order == "D":
            rendered.reverse()
        return self._page(request, rendered, "recurring_invoices", column, order)

    def _get_recurring(self, request: Request, recurring_invoice_id: str) -> tuple[int, Row]:
        rec = self._render_recurring(self._recurring(recurring_invoice_id))
        return 200, {"code": 0, "message": "success", "recurring_invoice": rec}

    def _create_recurring(self, request: Request) -> tuple[int, Row]:
        rec = self._render_recurring(self._save_recurring(self._body(request), None))
        return 201, {"code": 0, "message": "The recurring invoice has been created.", "recurring_invoice": rec}

    def _update_recurring(self, request: Request, recurring_invoice_id: str) -> tuple[int, Row]:
        self._recurring(recurring_invoice_id)
        rec = self._render_recurring(self._save_recurring(self._body(request), recurring_invoice_id))
        return 200, {"code": 0, "message": "Recurring invoice information has been updated.", "recurring_invoice": rec}

    def _delete_recurring(self, request: Request, recurring_invoice_id: str) -> tuple[int, Row]:
        # Its child invoices stay (Zoho's help: "if any child invoices have been generated ... they won't be deleted")
        del self.recurring_by_id[self._recurring(recurring_invoice_id)["recurring_invoice_id"]]
        return 200, {"code": 0, "message": "The recurring invoice has been deleted."}

    def _stop_recurring(self, request: Request, recurring_invoice_id: str) -> tuple[int, Row]:
        rec = self._recurring(recurring_invoice_id)
        if self._recurring_status(rec) != "active":  # see GUESSES["recurring_status_moves"]
            raise ApiError(400, 4, f"A {self._recurring_status(rec)} recurring invoice cannot be stopped.")
        rec["status"] = "stopped"
        rec["last_modified_time"] = _stamp(self._now())
        return 200, {"code": 0, "message": "The recurring invoice has been stopped."}

    def _resume_recurring(self, request: Request, recurring_invoice_id: str) -> tuple[int, Row]:
        rec = self._recurring(recurring_invoice_id)
        if rec["status"] != "stopped":  # see GUESSES["recurring_status_moves"]
            raise ApiError(400, 4, f"A {self._recurring_status(rec)} recurring invoice cannot be resumed.")
        rec["status"] = "active"
        # the days missed while stopped are skipped, not billed late: the schedule goes on from today
        rec["next_date"] = self._recurrence(rec).first_on_or_after(self._schedule_from(rec))
        rec["last_modified_time"] = _stamp(self._now())
        return 200, {"code": 0, "message": "The recurring invoice has been activated."}

    # purchase orders

    def _purchaseorder(self, purchaseorder_id: str) -> Row:
        order = self.purchaseorders_by_id.get(purchaseorder_id)
        if order is None:
            raise ApiError(404, 1002, "Purchase order does not exist.")
        return order

    def _po_line(self, sent: Any, inclusive: bool) -> Row:
        """A purchase line: an item (its purchase rate, description and account by default) or a free line with
        a name; an account among the organisation's."""
        if not isinstance(sent, dict):
            raise _invalid("line_items")
        item: Row | None = None
        if sent.get("item_id"):
            item = self.items_by_id.get(str(sent["item_id"]))
            if item is None or item["status"] != "active":
                raise _invalid("item_id")
        name = str(sent.get("name") or (item or {}).get("name") or "").strip()
        if not name:
            raise ApiError(400, 4, "Please select an item or enter the item name.")
        account_id = str(sent.get("account_id") or (item or {}).get("purchase_account_id") or PURCHASE_ACCOUNT)
        if account_id not in ACCOUNTS:
            raise _invalid("account_id")
        quantity = _dec(sent.get("quantity", 1), "quantity")
        rate = _dec(sent.get("rate", (item or {}).get("purchase_rate", 0)), "rate")
        if quantity <= 0 or rate < 0:
            raise _invalid("quantity" if quantity <= 0 else "rate")
        total = (quantity * rate).quantize(CENT, ROUND_HALF_UP)
        tax_id = str(sent.get("tax_id") or "")
        if tax_id and tax_id not in TAXES:
            raise _invalid("tax_id")
        percent = TAXES[tax_id][1] if tax_id else Decimal(0)
        if inclusive:
            tax = (total - total / (1 + percent / 100)).quantize(CENT, ROUND_HALF_UP)
        else:
            tax = (total * percent / 100).quantize(CENT, ROUND_HALF_UP)
        return {
            "line_item_id": self._new_id(),
            "item_id": (item or {}).get("item_id", ""),
            "sku": (item or {}).get("sku", ""),
            "name": name,
            "description": str(sent.get("description") or (item or {}).get("purchase_description") or ""),
            "account_id": account_id,
            "account_name": ACCOUNTS[account_id],
            "quantity": quantity,
            "rate": rate,
            "tax_id": tax_id,
            "tax_name": TAXES[tax_id][0] if tax_id else "",
            "tax_percentage": percent,
            "tax_amount": tax,
            "item_total": total,
        }

    def _save_purchaseorder(self, sent: Row, purchaseorder_id: str | None, request: Request) -> Row:
        current = self.purchaseorders_by_id.get(purchaseorder_id) if purchaseorder_id else None
        if current is not None and current["status"] in ("billed", "cancelled"):  # see GUESSES["po_status_moves"]
            raise ApiError(400, 4, f"A {current['status']} purchase order cannot be edited.")
        vendor = self.contacts_by_id.get(str(sent.get("vendor_id") or (current or {}).get("vendor_id") or ""))
        if vendor is None or vendor.get("status") != "active" or vendor.get("contact_type") != "vendor":
            raise _invalid("vendor_id")
        raw_lines = sent.get("line_items", None if current else [])
        if current is None and not raw_lines:
            raise ApiError(400, 4, "Line items cannot be empty.")
        record: Row = copy.deepcopy(current) if current else {"status": "draft", "payment_made": Decimal("0.00")}
        record["vendor_id"] = vendor["contact_id"]
        record["currency_code"] = vendor.get("currency_code", self.base_currency)
        record["is_inclusive_tax"] = bool(sent.get("is_inclusive_tax", record.get("is_inclusive_tax", False)))
        today = self._today().isoformat()
        record["date"] = _day(sent.get("date", record.get("date", today)), "date").isoformat()
        delivery = sent.get("delivery_date", record.get("delivery_date", ""))
        record["delivery_date"] = _day(delivery, "delivery_date").isoformat() if delivery else ""
        for key in ("reference_number", "notes", "terms"):
            if key in sent or current is None:
                record[key] = str(sent.get(key) or "")
        if raw_lines is not None:
            if not isinstance(raw_lines, list) or not raw_lines:
                raise _invalid("line_items")
            record["line_items"] = [self._po_line(line, record["is_inclusive_tax"]) for line in raw_lines]
        self._totals(record)
        if current is None:
            number = str(sent.get("purchaseorder_number") or "")
            if request.args.get("ignore_auto_number_generation") != "true":
                self._po_seq += 1
                number = f"PO-{self._po_seq:05d}"
            elif not number:
                raise ApiError(400, 4, "Please enter the purchase order number.")
            if any(p["purchaseorder_number"] == number for p in self.purchaseorders_by_id.values()):
                # see GUESSES["po_duplicate_number"]
                raise ApiError(400, 1001, f'Purchase order "{number}" already exists.')
            record.update(purchaseorder_number=number, purchaseorder_id=self._new_id())
            record["created_time"] = _stamp(self._now())
        record["last_modified_time"] = _stamp(self._now())
        self.purchaseorders_by_id[record["purchaseorder_id"]] = record
        return record

    def _render_purchaseorder(self, order: Row, *, summary: bool = False) -> Row:
        vendor = self.contacts_by_id.get(order["vendor_id"], {})
        out: Row = {
            "purchaseorder_id": order["purchaseorder_id"],
            "purchaseorder_number": order["purchaseorder_number"],
            "reference_number": order["reference_number"],
            "status": order["status"],
            "vendor_id": order["vendor_id"],
            "vendor_name": vendor.get("contact_name", ""),
            "currency_code": order["currency_code"],
            "date": order["date"],
            "delivery_date": order["delivery_date"],
            "total": order["total"],
            "created_time": order["created_time"],
            "last_modified_time": order["last_modified_time"],
        }
        if not summary:
            out.update(
                is_inclusive_tax=order["is_inclusive_tax"],
                sub_total=order["sub_total"],
                tax_total=order["tax_total"],
                notes=order["notes"],
                terms=order["terms"],
                line_items=[dict(line) for line in order["line_items"]],
            )
        return out

    def _list_purchaseorders(self, request: Request) -> tuple[int, Row]:
        args = request.args
        if args.get("filter_by", "Status.All") not in PO_FILTERS:
            raise _invalid("filter_by")
        if args.get("status", "") not in ("", *PO_FILTERS.values()):
            raise _invalid("status")
        status = args.get("status") or PO_FILTERS[args.get("filter_by", "Status.All")]
        rows = [p for p in self.purchaseorders_by_id.values() if not status or p["status"] == status]

        def vendor(order: Row) -> str:
            return str(self.contacts_by_id.get(order["vendor_id"], {}).get("contact_name", ""))

        for param, test in (
            ("purchaseorder_number", lambda p, v: p["purchaseorder_number"].casefold() == v),
            ("purchaseorder_number_startswith", lambda p, v: p["purchaseorder_number"].casefold().startswith(v)),
            ("purchaseorder_number_contains", lambda p, v: v in p["purchaseorder_number"].casefold()),
            ("reference_number", lambda p, v: p["reference_number"].casefold() == v),
            ("reference_number_startswith", lambda p, v: p["reference_number"].casefold().startswith(v)),
            ("reference_number_contains", lambda p, v: v in p["reference_number"].casefold()),
            ("vendor_name", lambda p, v: vendor(p).casefold() == v),
            ("vendor_id", lambda p, v: p["vendor_id"] == args["vendor_id"]),
            ("item_id", lambda p, v: any(line["item_id"] == args["item_id"] for line in p["line_items"])),
            ("search_text", lambda p, v: v in p["purchaseorder_number"].casefold() or v in vendor(p).casefold()),
        ):
            if args.get(param):
                rows = [p for p in rows if test(p, args[param].casefold())]
        if args.get("date_start"):
            rows = [p for p in rows if p["date"] >= _day(args["date_start"], "date_start").isoformat()]
        if args.get("date_end"):
            rows = [p for p in rows if p["date"] <= _day(args["date_end"], "date_end").isoformat()]
        if args.get("last_modified_time"):
            since = _parse_stamp(args["last_modified_time"], "last_modified_time")
            rows = [p for p in rows if _parse_stamp(p["last_modified_time"], "last_modified_time") >= since]
        column = args.get("sort_column", "created_time")
        if column not in PO_SORTS:
            raise _invalid("sort_column")
        order = args.get("sort_order", "D")
        rendered = [self._render_purchaseorder(p, summary=True) for p in rows]
        rendered.sort(key=lambda p: (str(p[column]) if column != "total" else p[column], p["purchaseorder_id"]))
        if order == "D":
            rendered.reverse()
        return self._page(request, rendered, "purchaseorders", column, order)

    def _get_purchaseorder(self, request: Request, purchaseorder_id: str) -> tuple[int, Row]:
        order = self._render_purchaseorder(self._purchaseorder(purchaseorder_id))
        return 200, {"code": 0, "message": "success", "purchaseorder": order}

    def _create_purchaseorder(self, request: Request) -> tuple[int, Row]:
        order = self._render_purchaseorder(self._save_purchaseorder(self._body(request), None, request))
        return 201, {"code": 0, "message": "The purchase order has been created.", "purchaseorder": order}

    def _update_purchaseorder(self, request: Request, purchaseorder_id: str) -> tuple[int, Row]:
        self._purchaseorder(purchaseorder_id)
        order = self._render_purchaseorder(self._save_purchaseorder(self._body(request), purchaseorder_id, request))
        return 200, {"code": 0, "message": "Purchase order has been updated.", "purchaseorder": order}

    def _delete_purchaseorder(self, request: Request, purchaseorder_id: str) -> tuple[int, Row]:
        order = self._purchaseorder(purchaseorder_id)
        if order["status"] == "billed":  # see GUESSES["po_status_moves"]
            raise ApiError(400, 4, "A billed purchase order cannot be deleted.")
        del self.purchaseorders_by_id[purchaseorder_id]
        return 200, {"code": 0, "message": "The purchase order has been deleted."}

    def _po_mover(self, move: str) -> Callable[[Request, str], tuple[int, Row]]:
        """``POST /purchaseorders/{id}/status/{open|billed|cancelled}``: Zoho's "Mark a purchase order as
        open", "Mark as billed" and "Cancel a purchase order"; a move from a status the page does not lead
        from is 400 code 4 (GUESSES["po_status_moves"])."""
        allowed_from, target, message = PO_MOVES[move]

        def handler(request: Request, purchaseorder_id: str) -> tuple[int, Row]:
            order = self._purchaseorder(purchaseorder_id)
            if order["status"] not in allowed_from:
                raise ApiError(400, 4, f"A {order['status']} purchase order cannot be marked as {target}.")
            order["status"] = target
            order["last_modified_time"] = _stamp(self._now())
            return 200, {"code": 0, "message": message}

        return handler

    # ---- control API (/_sandbox/...) ---------------------------------------------------------------------

    def control_routes(self) -> Router:
        routes = super().control_routes()
        routes.add("POST", "/_sandbox/expire-tokens", lambda body: self.expire_access_tokens())
        routes.add("GET", "/_sandbox/contacts", lambda body: {"contacts": self.contacts()})
        routes.add("GET", "/_sandbox/invoices", lambda body: {"invoices": self.invoices()})
        routes.add("GET", "/_sandbox/recurringinvoices", lambda body: {"recurring_invoices": self.recurring_invoices()})
        routes.add("POST", "/_sandbox/recurring/run", self._control_run_recurring)
        routes.add("GET", "/_sandbox/purchaseorders", lambda body: {"purchaseorders": self.purchase_orders()})
        routes.add("GET", "/_sandbox/estimates", lambda body: {"estimates": self.estimates()})
        return routes

    def _control_run_recurring(self, body: Any) -> Row:
        on = body.get("on") if isinstance(body, dict) else None
        return {"invoices": self.run_recurring(date.fromisoformat(str(on)) if on else None)}


class ZohoBooksDriver:
    """The AccountingDriver for the Zoho Books sandbox: finance's actions and reads, in canonical terms."""

    name = "zohobooks"

    def __init__(self, sandbox: ZohoBooksSandbox, tax_number_field: str = "vat_reg_no") -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        self.tax_number_field = tax_number_field

    @property
    def currency(self) -> str:
        return self.sandbox.base_currency

    def environment(self, base_url: str) -> dict[str, str]:
        return {
            "ACCOUNTING_PROVIDER": self.name,
            "ZOHO_BOOKS_API_URL": base_url,
            "ZOHO_ACCOUNTS_URL": base_url,
            "ZOHO_CLIENT_ID": self.sandbox.client_id,
            "ZOHO_CLIENT_SECRET": self.sandbox.client_secret,
            "ZOHO_REFRESH_TOKEN": self.sandbox.initial_refresh_token,
            "ZOHO_BOOKS_ORGANIZATION_ID": self.sandbox.organization_id,
        }

    def customers(self) -> list[SeenCustomer]:
        return [
            SeenCustomer(
                id=c["contact_id"],
                name=c["contact_name"],
                number=str(c.get("cf_closeloop_ref") or ""),
                email=c["email"],
                tax_number=str(c.get(self.tax_number_field) or ""),
                active=c["status"] == "active",
            )
            for c in self.sandbox.contacts()
            if c["contact_type"] == "customer"
        ]

    def invoices(self) -> list[SeenInvoice]:
        return [
            SeenInvoice(
                id=i["invoice_id"],
                reference=i["reference_number"],
                customer_id=i["customer_id"],
                currency=i["currency_code"],
                total=i["total"],
                amount_due=i["balance"],
                status=INVOICE_STATUSES.get(i["status"], "AUTHORISED"),
                lines=tuple((line["sku"], line["quantity"], line["rate"]) for line in i["line_items"]),
            )
            for i in self.sandbox.invoices()
        ]

    def items(self) -> list[SeenItem]:
        """Every item, its SKU as the code; a purchase rate of 0 is Zoho's "no cost" (none given)."""
        return [
            SeenItem(
                id=str(i["item_id"]),
                code=str(i.get("sku") or ""),
                name=str(i.get("name") or ""),
                unit_price=None if i.get("rate") in (None, "") else Decimal(str(i["rate"])),
                unit_cost=Decimal(str(i["purchase_rate"])) if i.get("purchase_rate") not in (None, "", 0) else None,
            )
            for i in self.sandbox.items()
        ]

    def seed_item(self, code: str, name: str, unit_price: Decimal) -> None:
        """An item with SKU ``code``; SKUs are unique in Zoho, so seeding one twice is a no-op (as for the
        other drivers)."""
        if any(item["sku"].casefold() == code.casefold() for item in self.sandbox.items()):
            return
        self.sandbox.seed_item(sku=code, name=name, rate=unit_price)

    def seed_customer(self, name: str, *, email: str = "", tax_number: str = "") -> str:
        fields: Row = {"contact_name": name, "company_name": name}
        if email:
            fields["contact_persons"] = [{"email": email, "is_primary_contact": True}]
        if tax_number:
            fields[self.tax_number_field] = tax_number
        return str(self.sandbox.seed_contact(**fields)["contact_id"])

    def edit_customer(
        self, customer_id: str, *, name: str | None = None, email: str | None = None, phone: str | None = None
    ) -> None:
        """Finance's edit in Zoho's UI: ``contact_name``, and the email and phone of the primary contact person
        (made if there is none); the other persons are kept as they are."""
        fields: Row = {}
        if name is not None:
            fields["contact_name"] = name
        person = {k: v for k, v in (("email", email), ("phone", phone)) if v is not None}
        if person:
            current = next((c for c in self.sandbox.contacts() if c["contact_id"] == customer_id), {})
            persons: list[Row] = [
                {"contact_person_id": p["contact_person_id"], "is_primary_contact": bool(p["is_primary_contact"])}
                for p in current.get("contact_persons") or []
            ]
            primary = next((p for p in persons if p["is_primary_contact"]), None)
            if primary is None:
                primary = {"is_primary_contact": True}
                persons.insert(0, primary)
            primary.update(person)
            fields["contact_persons"] = persons
        self.sandbox.edit_contact(customer_id, **fields)

    def approve_and_pay(self, invoice_id: str, amount: Decimal, on: date) -> None:
        """Mark the invoice sent if it is a draft, then record a customer payment of ``amount`` against it."""
        self.sandbox.mark_sent(invoice_id)
        self.sandbox.record_payment(invoice_id, amount, on)

    def run_recurring(self, on: date | None = None) -> list[str]:
        """Zoho's daily run of the recurring invoices up to ``on``: the ids of the invoices it made."""
        return [str(row["invoice_id"]) for row in self.sandbox.run_recurring(on)]

    def vendors(self) -> list[SeenCustomer]:
        """The vendor contacts (suppliers), as ``customers`` shows the customers."""
        return [
            SeenCustomer(
                id=c["contact_id"],
                name=c["contact_name"],
                number=str(c.get("cf_closeloop_ref") or ""),
                email=c["email"],
                tax_number=str(c.get(self.tax_number_field) or ""),
                active=c["status"] == "active",
            )
            for c in self.sandbox.contacts()
            if c["contact_type"] == "vendor"
        ]

    # -- quote to cash (issue 12): estimates, recurring invoices, purchase orders ----------------------------

    def quotes(self) -> list[SeenQuote]:
        """Every estimate; its status is Zoho's in capitals (draft, sent, accepted, declined, expired, invoiced
        are the canonical ones)."""
        return [
            SeenQuote(
                id=str(e["estimate_id"]),
                number=str(e.get("estimate_number") or ""),
                reference=str(e.get("reference_number") or ""),
                status=str(e.get("status") or "").upper(),
                total=Decimal(str(e.get("total") or 0)),
                lines=_seen_lines(e),
            )
            for e in self.sandbox.estimates()
        ]

    def accept_quote(self, quote_id: str) -> None:
        """The customer accepted: finance marks the estimate accepted."""
        self.sandbox.move_estimate(quote_id, "accepted")

    def schedules(self) -> list[SeenSchedule]:
        """Every recurring invoice; stopped or expired ones are not active."""
        return [
            SeenSchedule(
                id=str(r["recurring_invoice_id"]),
                reference=str(r.get("reference_number") or ""),
                every=f"{r.get('repeat_every', '')} {r.get('recurrence_frequency', '')}",
                active=r.get("status") == "active",
                lines=_seen_lines(r),
            )
            for r in self.sandbox.recurring_invoices()
        ]

    def purchase_orders(self) -> list[SeenPurchaseOrder]:
        return [
            SeenPurchaseOrder(
                id=str(po["purchaseorder_id"]),
                number=str(po.get("purchaseorder_number") or ""),
                reference=str(po.get("reference_number") or ""),
                supplier=str(po.get("vendor_name") or ""),
                status=str(po.get("status") or "").upper(),
                total=Decimal(str(po.get("total") or 0)),
                lines=_seen_lines(po),
            )
            for po in self.sandbox.purchase_orders()
        ]


def _seen_lines(row: Row) -> tuple[Line, ...]:
    return tuple(
        (str(li.get("sku") or ""), Decimal(str(li.get("quantity") or 0)), Decimal(str(li.get("rate") or 0)))
        for li in row.get("line_items") or []
    )


# -- end of quote to cash --------------------------------------------------------------------------------


def serve(sandbox: ZohoBooksSandbox | None = None, port: int = 0) -> tuple[ZohoBooksSandbox, SandboxServer]:
    """Start a sandbox on 127.0.0.1 (``port=0`` picks a free port); stop it with ``server.stop()``."""
    app = sandbox if sandbox is not None else ZohoBooksSandbox()
    server = SandboxServer(app, port=port).start()
    return app, server
