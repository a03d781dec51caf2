"""A stateful stand-in for a SugarCRM instance's REST API v11 and its web logic hooks.

Production adapters talk to it over real HTTP through ``SUGARCRM_URL``. Paths, payload shapes, auth,
error bodies and quirks follow Sugar's developer guide (REST API endpoints, API exceptions, web logic
hooks); where Sugar's behaviour is not documented, the choice made is noted next to the code.

What it serves, under any ``/rest/v10``, ``/rest/v11`` or ``/rest/v11_<n>`` prefix up to ``max_api_version``
(default v11_24, Sugar 14.0; 13.3 tops out at v11_23, 13.2 at v11_22). A higher version is refused BEFORE
authentication, as Sugar's RestService does, with 301 ``{"error": "incorrect_version", "error_message":
"Please change your requested API version to value between 10 and 11.23."}`` (status and label: Sugar
Developer Guide, REST API > API Exceptions; the message wording: RestService source, for 12-14 the adapter's
GUESSES["301 message names the range"]).
- ``GET /ping``: "pong" (logged in).
- ``POST /oauth2/token``: password and refresh_token grants. Sugar keeps ONE session per user and
  platform: a new login or refresh on a platform invalidates that platform's previous access and refresh
  tokens; other platforms are untouched. Unregistered platforms are refused (``disable_unknown_platform``,
  the default since Sugar 7.9). Access tokens live ``access_ttl`` seconds, refresh tokens two weeks.
- ``OAuth-Token`` on every other call: missing -> 401 ``need_login``, invalid or expired -> 401
  ``invalid_grant``. Errors are ``{"error": label, "error_message": text}`` (Sugar's API exceptions).
- ``GET/PUT/DELETE /<module>/<id>``, ``POST /<module>``, ``POST /<module>/filter`` (``$equals``,
  ``$not_equals``, ``$in``, ``$not_in``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$starts``, ``$and``, ``$or``,
  ``fields``, ``max_num``, ``offset``, ``order_by``; ``next_offset`` -1 on the last page),
  ``GET /<module>/<id>/link/<link>``, ``GET /metadata?type_filter=modules&module_filter=<M>``.
  Modules: Accounts, Contacts, Opportunities, RevenueLineItems, ProductTemplates (the Product Catalog, with
  ``active_status`` Active by default), Currencies ("-99" is the system currency), TaxRates, Contracts
  (``status`` notstarted/inprogress/signed, ``start_date``, ``end_date``, ``total_contract_value``, links
  ``opportunities``/``accounts``) and Quotes: the header (``quote_num`` auto-numbered, ``quote_stage``,
  ``date_quote_expected_closed``, ``billing_account_id``, ``opportunity_id``, ``taxrate_id``, totals) with its
  groups (``GET /Quotes/<id>/link/product_bundles``: ProductBundles) and their lines
  (``GET /ProductBundles/<id>/link/products``: Products with ``product_template_id``, ``mft_part_num``,
  ``quantity``, ``discount_price``, ``discount_amount``/``discount_select``, ``tax_class``, ``position``).
  Totals are the vardefs' enforced formulas (a write to them is ignored): a line's ``subtotal`` (price x
  quantity), ``deal_calc`` (its discount) and ``total_amount``; a group's and the quote's sums, the quote's
  ``tax`` (its taxable lines x the tax rate) and ``total`` (+ ``shipping``). A line change re-totals and saves
  its group and quote (date_modified, hooks). Int fields are JSON integers, as SugarFieldInt formats them.
- Quirks: ``PUT`` silently ignores fields the module does not have (custom Studio fields end in ``_c``);
  an opportunity's ``amount`` is the sum of its revenue line items' ``likely_case``, and setting its
  ``sales_stage`` to a closed stage cascades to its open line items (Sugar 10.3+ "cascade"); money comes
  back as strings with 6 decimals.
- Web logic hooks (module, trigger event, URL, method): a save queues one payload
  ``{"bean", "event", "isUpdate", "data", "dataChanges"}``; nothing is sent until the "Dispatch Web Logic
  Hook" job runs (``run_hook_job``, ``POST /_sandbox/hooks/run``). Each payload is tried ONCE, with only
  ``Content-Type: application/json`` and UA ``SugarCrm``, no signature; a failure is logged and lost.
- Rate limit: Sugar documents none. ``requests_per_second`` (off by default) answers 429
  ``{"error": "too_many_requests"}`` with ``Retry-After: 1`` (a sandbox choice; [3p] reports ~20 req/s on
  Sugar's cloud). Inject any other answer with a fault.

Control API (no auth, never logged in ``state.requests``)::

    POST /_sandbox/reset                      records, sessions, hooks, log
    GET  /_sandbox/requests                   the request log
    POST /_sandbox/faults                     a base.Fault as JSON (or a list of them); DELETE clears them
    GET  /_sandbox/clock                      POST {"advance": s} moves it
    POST /_sandbox/records/<module>           fields (as a user in the UI; queues hooks)
    GET  /_sandbox/records/<module>/<id>
    PUT  /_sandbox/records/<module>/<id>      fields (as a user in the UI; queues hooks)
    POST /_sandbox/quotes                     quote fields + "bundles": [{"name", "products": [line fields]}]
    POST /_sandbox/quotes/<id>/lines          line fields (+ "bundle_id"; default its first group)
    POST /_sandbox/hooks                      {"module", "url", "trigger_event"?, "request_method"?}
    POST /_sandbox/hooks/run                  run the dispatch job now
    GET  /_sandbox/hooks/deliveries           every delivery attempt
"""

from __future__ import annotations

import calendar
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, NoReturn

from werkzeug.wrappers import Request, Response

from closeloop.models import DEAL_SYNC_FIELDS, FREQUENCY_PERIODS, QUOTE_SYNC_FIELDS, CrmRef
from closeloop.sync.recurring import SCHEDULE_PROPERTIES
from closeloop_local.sandboxes import outbound
from closeloop_local.sandboxes.base import Handler, Router, SandboxApp, SandboxServer, SandboxState, json_response
from closeloop_local.sandboxes.drivers import DealLine, QuotedDeal, SentWebhook
from closeloop_local.sandboxes.limits import RollingWindow

__all__ = ["SugarCrmDriver", "SugarSandbox", "serve"]

JSON = dict[str, Any]
_PREFIX = re.compile(r"^/rest/v(1[01])(?:_(\d+))?(/.*)$")
MIN_API_VERSION = (10, 0)
SYSTEM_CURRENCY_ID = "-99"
UI_USER_ID = "1"
API_USER_ID = "seed_closeloop_id"
CLOSED_STAGES = ("Closed Won", "Closed Lost")
SALES_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", *CLOSED_STAGES)  # fmt: skip
#: Studio fields Closeloop needs, as ``closeloop setup sugarcrm`` would have an admin create them.
CLOSELOOP_FIELDS: dict[str, dict[str, str]] = {
    "Opportunities": {
        **{f"{name}_c": "varchar" for name in DEAL_SYNC_FIELDS},
        "closeloop_payment_status_c": "enum",
        "closeloop_amount_due_c": "decimal",
        "closeloop_amount_paid_c": "decimal",
        "closeloop_last_payment_date_c": "date",
        "closeloop_purchase_orders_c": "varchar",
        # The recurring flow's write-back (closeloop.sync.recurring.SCHEDULE_PROPERTIES).
        **{f"{d.name}_c": {"number": "decimal", "date": "date"}.get(d.type, "varchar") for d in SCHEDULE_PROPERTIES},
    },
    # Closeloop's quote write-back (closeloop_quote_*), Studio fields on Quotes.
    "Quotes": {f"{name}_c": "varchar" for name in QUOTE_SYNC_FIELDS},
    "Accounts": {
        "vat_number_c": "varchar",
        "closeloop_outstanding_balance_c": "decimal",
        "closeloop_overdue_balance_c": "decimal",
        "closeloop_total_invoiced_c": "decimal",
        "closeloop_total_paid_c": "decimal",
        "closeloop_sync_issue_c": "varchar",
    },
    "Contacts": {"closeloop_sync_issue_c": "varchar"},
    # The supplier of a catalogue product (GUESSES["closeloop_supplier_c on ProductTemplates"]).
    "ProductTemplates": {"closeloop_supplier_c": "varchar"},
    # How often a service line bills: a dropdown of the canonical frequencies; Sugar's API does not check enum
    # values (SugarFieldBase::apiValidate); see GUESSES["closeloop_billing_frequency_c on RevenueLineItems"].
    "RevenueLineItems": {"closeloop_billing_frequency_c": "enum"},
}

_ADDRESS = ("street", "city", "state", "postalcode", "country")
#: Stock fields per module (name -> vardef type); ``id``, ``date_entered``, ``date_modified`` etc. are common.
_COMMON = {"id": "id", "name": "name", "date_entered": "datetime", "date_modified": "datetime",
           "modified_user_id": "id", "created_by": "id", "assigned_user_id": "id", "description": "text",
           "deleted": "bool"}  # fmt: skip
_STOCK: dict[str, dict[str, str]] = {
    "Accounts": {**_COMMON, "email": "email", "email1": "varchar", "phone_office": "phone",
                 "phone_alternate": "phone", "website": "url", "account_type": "enum", "industry": "enum",
                 **{f"billing_address_{p}": "varchar" for p in _ADDRESS},
                 **{f"shipping_address_{p}": "varchar" for p in _ADDRESS}},
    "Contacts": {**_COMMON, "first_name": "varchar", "last_name": "varchar", "email": "email",
                 "email1": "varchar", "phone_work": "phone", "phone_mobile": "phone", "title": "varchar",
                 "account_id": "relate", "account_name": "relate",
                 **{f"primary_address_{p}": "varchar" for p in _ADDRESS}},
    "Opportunities": {**_COMMON, "amount": "currency", "amount_usdollar": "currency", "currency_id": "currency_id",
                      "base_rate": "decimal", "sales_stage": "enum", "date_closed": "date", "probability": "int",
                      "account_id": "relate", "account_name": "relate", "opportunity_type": "enum"},
    "RevenueLineItems": {**_COMMON, "opportunity_id": "id", "account_id": "relate", "product_template_id": "id",
                         "product_template_name": "relate", "quantity": "decimal", "discount_price": "currency",
                         "list_price": "currency", "discount_amount": "currency", "discount_select": "bool",
                         "likely_case": "currency", "currency_id": "currency_id", "sales_stage": "enum",
                         "date_closed": "date",
                         # RevenueLineItems vardefs (10.2+): a service line's term; service_end_date calculated.
                         "service": "bool", "renewable": "bool", "service_start_date": "date",
                         "service_end_date": "date", "service_duration_value": "int",
                         "service_duration_unit": "enum"},
    # ProductTemplates vardefs (12.0): active_status (Active, Inactive, Retired) says whether it is still sold;
    # status is "not used in product Catalog" (GUESSES["product archived is active_status"]).
    "ProductTemplates": {**_COMMON, "mft_part_num": "varchar", "vendor_part_num": "varchar",
                         "discount_price": "currency", "list_price": "currency", "cost_price": "currency",
                         "currency_id": "currency_id", "active_status": "enum", "status": "enum",
                         "tax_class": "enum"},
    # Quotes vardefs (12.0): the header; its lines are Products grouped in ProductBundles (product_bundle_quote,
    # product_bundle_product join tables). Totals are calculated fields Sugar enforces (_CALCULATED).
    "Quotes": {**_COMMON, "quote_num": "int", "quote_stage": "enum", "quote_type": "enum",
               "date_quote_expected_closed": "date", "date_quote_closed": "date", "original_po_date": "date",
               "purchase_order_num": "varchar", "payment_terms": "enum", "order_stage": "enum",
               "subtotal": "currency", "deal_tot": "currency", "new_sub": "currency", "taxable_subtotal": "currency",
               "tax": "currency", "shipping": "currency", "discount": "currency", "total": "currency",
               "taxrate_id": "id", "taxrate_value": "currency", "currency_id": "currency_id", "base_rate": "decimal",
               "billing_account_id": "relate", "billing_account_name": "relate", "billing_contact_id": "relate",
               "shipping_account_id": "relate", "opportunity_id": "relate", "opportunity_name": "relate",
               "show_line_nums": "bool", "renewal": "bool",
               **{f"billing_address_{p}": "varchar" for p in _ADDRESS},
               **{f"shipping_address_{p}": "varchar" for p in _ADDRESS}},
    "ProductBundles": {**_COMMON, "bundle_stage": "varchar", "subtotal": "currency", "deal_tot": "currency",
                       "new_sub": "currency", "taxable_subtotal": "currency", "tax": "currency",
                       "shipping": "currency", "total": "currency", "taxrate_id": "id",
                       "currency_id": "currency_id", "base_rate": "decimal", "default_group": "bool",
                       "position": "int"},
    # Products vardefs (12.0): a quoted line; discount_select true (the vardef default) reads discount_amount
    # as a percentage. service_* say how long a service line runs.
    "Products": {**_COMMON, "product_template_id": "id", "product_template_name": "relate", "quote_id": "id",
                 "account_id": "id", "contact_id": "id", "opportunity_id": "id", "revenuelineitem_id": "id",
                 "mft_part_num": "varchar", "vendor_part_num": "varchar", "quantity": "decimal",
                 "discount_price": "currency", "list_price": "currency", "cost_price": "currency",
                 "discount_amount": "currency", "discount_select": "bool", "subtotal": "currency",
                 "deal_calc": "currency", "total_amount": "currency", "tax_class": "enum", "status": "enum",
                 "currency_id": "currency_id", "base_rate": "decimal", "service": "bool", "renewable": "bool",
                 "service_start_date": "date", "service_end_date": "date", "service_duration_value": "int",
                 "service_duration_unit": "enum", "position": "int"},
    # Contracts vardefs (12.0): status an enum of contract_status_dom (notstarted, inprogress, signed); the
    # opportunity is the one-sided link "opportunities" (contracts_opportunities), opportunity_id its id.
    "Contracts": {**_COMMON, "reference_code": "varchar", "status": "enum", "start_date": "date",
                  "end_date": "date", "account_id": "id", "account_name": "relate", "opportunity_id": "id",
                  "opportunity_name": "relate", "total_contract_value": "currency",
                  "total_contract_value_usdollar": "currency", "currency_id": "currency_id", "base_rate": "decimal",
                  "customer_signed_date": "date", "company_signed_date": "date", "expiration_notice": "datetime",
                  "type": "enum"},
    "TaxRates": {**_COMMON, "value": "decimal", "status": "enum", "list_order": "int"},
    "Currencies": {"id": "id", "name": "varchar", "symbol": "varchar", "iso4217": "varchar",
                   "conversion_rate": "decimal", "status": "enum", "date_entered": "datetime",
                   "date_modified": "datetime", "deleted": "bool"},
}  # fmt: skip
#: The bean class a web logic hook names (``bean``) per module.
_BEANS = {"Accounts": "Account", "Contacts": "Contact", "Opportunities": "Opportunity",
          "RevenueLineItems": "RevenueLineItem", "ProductTemplates": "ProductTemplate",
          "Currencies": "Currency", "Quotes": "Quote", "ProductBundles": "ProductBundle", "Products": "Product",
          "Contracts": "Contract", "TaxRates": "TaxRate"}  # fmt: skip
#: module -> link -> (related module, field on the related record pointing back, or None for a join table).
_LINKS: dict[str, dict[str, tuple[str, str | None]]] = {
    "Accounts": {"contacts": ("Contacts", "account_id"), "opportunities": ("Opportunities", "account_id"),
                 "quotes": ("Quotes", "billing_account_id"), "contracts": ("Contracts", "account_id")},
    "Opportunities": {"revenuelineitems": ("RevenueLineItems", "opportunity_id"), "contacts": ("Contacts", None),
                      "quotes": ("Quotes", "opportunity_id"), "contracts": ("Contracts", "opportunity_id")},
    # A quote's groups and a group's lines: join tables whose index is the record's ``position``.
    "Quotes": {"product_bundles": ("ProductBundles", None)},  # see GUESSES["line order is position"]
    "ProductBundles": {"products": ("Products", None)},
}  # fmt: skip
#: module -> link -> (related module, the field on THIS record holding the related id): one-sided links.
_OWN_LINKS: dict[str, dict[str, tuple[str, str]]] = {
    "Quotes": {"billing_accounts": ("Accounts", "billing_account_id"),
               "opportunities": ("Opportunities", "opportunity_id")},
    # see GUESSES["contract opportunity_id"]
    "Contracts": {"accounts": ("Accounts", "account_id"), "opportunities": ("Opportunities", "opportunity_id")},
    "Products": {"quotes": ("Quotes", "quote_id")},
}  # fmt: skip
#: Calculated fields Sugar enforces (vardefs ``calculated``/``enforced``, or read-only): a write is ignored.
_CALCULATED: dict[str, frozenset[str]] = {
    "Quotes": frozenset({"quote_num", "subtotal", "deal_tot", "new_sub", "taxable_subtotal", "tax", "total",
                         "taxrate_value", "renewal"}),
    "ProductBundles": frozenset({"subtotal", "deal_tot", "new_sub", "taxable_subtotal", "total"}),
    "Products": frozenset({"subtotal", "deal_calc", "total_amount"}),
    "Contracts": frozenset({"total_contract_value_usdollar"}),
    "RevenueLineItems": frozenset({"service_end_date"}),
}  # fmt: skip
#: Vardef defaults Sugar fills on create (currency_id -99 everywhere, Products' discount_select and tax_class).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "Opportunities": {"currency_id": SYSTEM_CURRENCY_ID},
    "RevenueLineItems": {"currency_id": SYSTEM_CURRENCY_ID},
    "ProductTemplates": {"currency_id": SYSTEM_CURRENCY_ID, "active_status": "Active"},
    "Quotes": {"currency_id": SYSTEM_CURRENCY_ID, "shipping": "0.000000", "show_line_nums": True},
    "ProductBundles": {"currency_id": SYSTEM_CURRENCY_ID, "default_group": False},
    "Products": {"currency_id": SYSTEM_CURRENCY_ID, "discount_select": True, "tax_class": "Taxable",
                 "quantity": "1", "discount_amount": "0.000000"},
    "Contracts": {"currency_id": SYSTEM_CURRENCY_ID},
    "TaxRates": {"status": "Active"},
}  # fmt: skip
_MONEY = frozenset({"currency"})
_NUMBERS = frozenset({"currency", "decimal", "int"})
_READ_ONLY = frozenset({"id", "date_entered", "date_modified", "modified_user_id", "created_by", "deleted",
                        "account_name", "product_template_name", "email1", "amount_usdollar"})  # fmt: skip
#: The module segment of an API path (werkzeug rule syntax): the modules this instance has.
_MODULE = f"/<any({', '.join(_STOCK)}):module>"
_HOOK_EVENTS = ("after_save", "after_delete", "after_relationship_add", "after_relationship_delete")
_SEED_CURRENCIES = (("GBP", "British Pound", "£", "0.79"), ("EUR", "Euro", "€", "0.92"),
                    ("NZD", "New Zealand Dollar", "$", "1.65"), ("AUD", "Australian Dollar", "$", "1.52"))  # fmt: skip


def _version(text: str) -> tuple[int, int]:
    """``v11_24`` -> (11, 24); ``v11`` -> (11, 0)."""
    match = re.fullmatch(r"v?(\d+)(?:_(\d+))?", text)
    if match is None:
        raise ValueError(f"a SugarCRM REST version looks like v11_24, not {text!r}")
    return int(match.group(1)), int(match.group(2) or 0)


class _ApiError(Exception):
    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, label, message)


def _error(status: int, label: str, message: str) -> Response:
    return json_response({"error": label, "error_message": message}, status)


def _not_found(request: Request | None = None) -> Response:
    """The answer to a path no resource has (a handler too: it takes the request and ignores it)."""
    return _error(404, "not_found", "Your requested resource was not found.")


@dataclass
class _Session:
    access_token: str
    access_expires: float
    refresh_token: str
    refresh_expires: float


@dataclass
class _Hook:
    id: str
    module: str
    url: str
    trigger_event: str = "after_save"
    request_method: str = "POST"


@dataclass
class _Queued:
    hook: _Hook
    payload: JSON


@dataclass
class SugarSandbox(SandboxApp):
    """In-memory SugarCRM instance with one API user; see the module docstring for what it serves."""

    username: str = "closeloop-api"
    password: str = "sandbox-password"  # noqa: S105 - a sandbox credential
    platforms: tuple[str, ...] = ("base", "mobile", "portal", "closeloop")
    clients: Mapping[str, str] = field(default_factory=lambda: {"sugar": ""})
    access_ttl: float = 3600.0
    refresh_ttl: float = 14 * 24 * 3600.0
    requests_per_second: int | None = None
    custom_fields: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: CLOSELOOP_FIELDS)
    hook_timeout: float = 10.0
    #: The highest REST version this instance answers, as ``v11_<n>`` (its release: v11_24 is Sugar 14.0).
    max_api_version: str = "v11_24"

    def __post_init__(self) -> None:
        _version(self.max_api_version)  # fail fast on a malformed setting; read per request (tests lower it)
        self.state = SandboxState()
        self._reset_data()

    def _reset_data(self) -> None:
        with self.state.lock:
            self._fields: dict[str, dict[str, str]] = {m: dict(f) for m, f in _STOCK.items()}
            for module, custom in self.custom_fields.items():
                self._fields[module].update(custom)
            self._records: dict[str, dict[str, JSON]] = {m: {} for m in _STOCK}
            self._joins: dict[tuple[str, str], list[str]] = {}  # (Opportunities, id) -> contact ids
            self._sessions: dict[str, _Session] = {}
            self._hooks: list[_Hook] = []
            self._queue: list[_Queued] = []
            self.deliveries: list[JSON] = []
            self._window = RollingWindow(1.0)
            self._seq = 0
            now = self._now()
            self._records["Currencies"][SYSTEM_CURRENCY_ID] = {
                "id": SYSTEM_CURRENCY_ID, "name": "US Dollars", "symbol": "$", "iso4217": "USD",
                "conversion_rate": "1.000000", "status": "Active", "date_entered": now, "date_modified": now,
            }  # fmt: skip
            for iso, name, symbol, rate in _SEED_CURRENCIES:
                self.seed_currency(iso, name=name, symbol=symbol, rate=rate)

    def reset(self) -> None:
        with self.state.lock:
            self._reset_data()
            self.state.reset_log()

    # -- helpers tests and the driver use (a person working in Sugar's UI) ----------------------------

    def seed_currency(self, iso: str, *, name: str = "", symbol: str = "", rate: str = "1") -> str:
        """The id of the currency with ISO code ``iso``, created when absent (Admin > Currencies)."""
        with self.state.lock:
            for record in self._records["Currencies"].values():
                if record["iso4217"] == iso.upper():
                    return str(record["id"])
            now = self._now()
            record = {"id": str(uuid.uuid4()), "name": name or iso.upper(), "symbol": symbol, "iso4217": iso.upper(),
                      "conversion_rate": _money(Decimal(rate)), "status": "Active", "date_entered": now,
                      "date_modified": now}  # fmt: skip
            self._records["Currencies"][record["id"]] = record
            return str(record["id"])

    def create_record(self, module: str, values: Mapping[str, Any], *, user_id: str = UI_USER_ID) -> JSON:
        """Create a record as a user would (unknown fields ignored, hooks queued); returns it whole."""
        with self.state.lock:
            return self._render(self._create(self._module(module), values, user_id))

    def update_record(
        self, module: str, record_id: str, values: Mapping[str, Any], *, user_id: str = UI_USER_ID
    ) -> JSON:
        with self.state.lock:
            record = self._live(self._module(module), record_id)
            if record is None:
                raise KeyError(f"{module} {record_id} does not exist")
            return self._render(self._update(module, record, values, user_id))

    def delete_record(self, module: str, record_id: str) -> None:
        with self.state.lock:
            record = self._live(self._module(module), record_id)
            if record is None:
                raise KeyError(f"{module} {record_id} does not exist")
            self._delete(module, record, UI_USER_ID)

    def get_record(self, module: str, record_id: str) -> JSON | None:
        """The record with every field (None when missing or deleted)."""
        with self.state.lock:
            record = self._live(self._module(module), record_id)
            return None if record is None else self._render(record)

    def records(self, module: str) -> list[JSON]:
        with self.state.lock:
            return [self._render(r) for r in self._records[self._module(module)].values() if not r.get("deleted")]

    def create_quote(self, values: Mapping[str, Any], groups: Sequence[Mapping[str, Any]] = (),
                     *, user_id: str = UI_USER_ID) -> JSON:  # fmt: skip
        """A quote as a user builds it in Sugar's quote editor: its header ``values``, then each group
        (``{"name": ..., "products": [line values, ...]}``, a ProductBundle) with its lines (Products) in order;
        totals roll up from the lines. Returns the quote as the API renders it."""
        with self.state.lock:
            quote = self._create("Quotes", values, user_id)
            for group in groups:
                bundle = self._add_group(quote, {k: v for k, v in group.items() if k != "products"}, user_id)
                for line in group.get("products") or []:
                    self._quote_line(quote, str(bundle["id"]), line, user_id)
            return self._render(quote)

    def add_quote_line(self, quote_id: str, values: Mapping[str, Any], *, bundle_id: str | None = None,
                       user_id: str = UI_USER_ID) -> JSON:  # fmt: skip
        """A line added to a quote's group (its first one, made when it has none); returns the line."""
        with self.state.lock:
            quote = self._live("Quotes", quote_id)
            if quote is None:
                raise KeyError(f"Quotes {quote_id} does not exist")
            groups = self._joined("Quotes", quote_id)
            if bundle_id is None:
                bundle_id = str(groups[0]["id"]) if groups else str(self._add_group(quote, {}, user_id)["id"])
            elif bundle_id not in {str(g["id"]) for g in groups}:
                raise KeyError(f"ProductBundles {bundle_id} is not a group of quote {quote_id}")
            return self._render(self._quote_line(quote, bundle_id, values, user_id))

    def quote_lines(self, quote_id: str) -> list[JSON]:
        """A quote's lines in the editor's order (group by group, line by line)."""
        with self.state.lock:
            return [self._render(line) for group in self._joined("Quotes", quote_id)
                    for line in self._joined("ProductBundles", str(group["id"]))]  # fmt: skip

    def _add_group(self, quote: JSON, values: Mapping[str, Any], user_id: str) -> JSON:
        name = values.get("name") or f"Group {len(self._joins.get(('Quotes', str(quote['id'])), [])) + 1}"
        bundle = self._create(
            "ProductBundles", {"currency_id": quote.get("currency_id"), **values, "name": name}, user_id
        )
        self._attach("Quotes", str(quote["id"]), str(bundle["id"]))
        return bundle

    def link_contact_to_opportunity(self, opportunity_id: str, contact_id: str) -> None:
        with self.state.lock:
            self._joins.setdefault(("Opportunities", opportunity_id), []).append(contact_id)

    def add_field(self, module: str, name: str, vardef_type: str = "varchar") -> None:
        """A field added in Studio (custom fields end in ``_c``)."""
        with self.state.lock:
            self._fields[self._module(module)][name] = vardef_type

    def remove_field(self, module: str, name: str) -> None:
        with self.state.lock:
            self._fields[self._module(module)].pop(name, None)

    def add_hook(self, module: str, url: str, trigger_event: str = "after_save", request_method: str = "POST") -> str:
        """Admin > Web Logic Hooks > Create: fires for ``module`` on ``trigger_event``."""
        if trigger_event not in _HOOK_EVENTS:
            raise ValueError(f"trigger_event must be one of {_HOOK_EVENTS}")
        with self.state.lock:
            hook = _Hook(str(uuid.uuid4()), self._module(module), url, trigger_event, request_method.upper())
            self._hooks.append(hook)
            return hook.id

    def hooks(self) -> list[JSON]:
        """The web logic hooks as Admin > Web Logic Hooks lists them."""
        with self.state.lock:
            return [{"id": h.id, "module": h.module, "url": h.url, "trigger_event": h.trigger_event,
                     "request_method": h.request_method} for h in self._hooks]  # fmt: skip

    def pending_hooks(self) -> int:
        with self.state.lock:
            return len(self._queue)

    def lose_pending_hooks(self) -> int:
        """Every queued hook payload is lost (the job failed: Sugar never retries one); how many."""
        with self.state.lock:
            lost, self._queue = self._queue, []
            return len(lost)

    def run_hook_job(self) -> list[JSON]:
        """The "Dispatch Web Logic Hook" scheduler job: send every queued payload once; no retry ever."""
        with self.state.lock:
            queued, self._queue = self._queue, []
        results = [self._deliver(item) for item in queued]
        with self.state.lock:
            self.deliveries.extend(results)
        return results

    def login_elsewhere(self, platform: str) -> None:
        """The API user logs in on ``platform`` from somewhere else: that platform's old tokens die."""
        with self.state.lock:
            self._login(platform)

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            for session in self._sessions.values():
                session.access_expires = 0.0

    def session(self, platform: str) -> _Session | None:
        with self.state.lock:
            return self._sessions.get(platform)

    # -- the API (SandboxApp's pipeline: log, faults, then this) -------------------------------------------

    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        return self._api(request)

    def fault_error(self, status: int) -> Response:
        labels = {401: "invalid_grant", 404: "not_found", 429: "too_many_requests", 503: "service_unavail"}
        return _error(status, labels.get(status, "fatal_error"), "Injected fault")

    def internal_error(self) -> Response:
        return _error(500, "fatal_error", "Internal error")

    def _api(self, request: Request) -> Response:
        match = _PREFIX.match(request.path)
        if match is None:
            return _not_found()
        version = (int(match.group(1)), int(match.group(2) or 0))
        highest = _version(self.max_api_version)
        if not MIN_API_VERSION <= version <= highest:
            # Sugar checks the version before anything else, authentication included (RestService::execute).
            low, high = (".".join(str(n) for n in v).removesuffix(".0") for v in (MIN_API_VERSION, highest))
            return _error(
                301, "incorrect_version", f"Please change your requested API version to value between {low} and {high}."
            )
        tail = match.group(3).rstrip("/")
        path = "/" + "/".join(p for p in tail.split("/") if p)  # routes tolerate doubled slashes
        try:
            # Only the token endpoint answers without a session, and only at its exact path: with a doubled
            # slash the request needs a session like any other.
            public = self._public_routes.find(request.method, path) if path == tail else None
            if public is not None:
                handler, args = public
                answer: Response = handler(request, **args)
                return answer
            self._authenticate(request)
            limited = self._rate_limited()
            if limited is not None:
                return limited
            with self.state.lock:
                handler, args = self._handler(request.method, path)
                answer = handler(request, **args)
                return answer
        except _ApiError as exc:
            return exc.response

    # -- auth --------------------------------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        body = self._json(request) if request.is_json else dict(request.form)
        client_id, secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        if client_id not in self.clients or not hmac.compare_digest(secret, self.clients[client_id]):
            return _error(401, "invalid_client", "The client credentials are invalid")
        platform = str(body.get("platform") or "base")
        if platform not in self.platforms:
            # disable_unknown_platform: the platform must be registered (Admin > Configure API Platforms).
            return _error(400, "invalid_parameter", f"Platform '{platform}' is not registered")
        grant = body.get("grant_type")
        with self.state.lock:
            if grant == "password":
                user_ok = hmac.compare_digest(str(body.get("username") or ""), self.username)
                if not (user_ok and hmac.compare_digest(str(body.get("password") or ""), self.password)):
                    return _error(401, "need_login", "You must specify a valid username and password.")
            elif grant == "refresh_token":
                session = self._sessions.get(platform)
                token = str(body.get("refresh_token") or "")
                if not (session and token and hmac.compare_digest(token, session.refresh_token)) or (
                    session.refresh_expires <= self.state.clock.now()
                ):
                    return _error(400, "invalid_grant", "Invalid refresh token")
            else:
                return _error(400, "unsupported_grant_type", "The authorization grant type is not supported")
            session = self._login(platform)
        return json_response(
            {
                "access_token": session.access_token,
                "expires_in": int(self.access_ttl),
                "token_type": "bearer",
                "scope": None,
                "refresh_token": session.refresh_token,
                "refresh_expires_in": int(self.refresh_ttl),
                "download_token": str(uuid.uuid4()),
            }
        )

    def _login(self, platform: str) -> _Session:
        now = self.state.clock.now()
        session = _Session(str(uuid.uuid4()), now + self.access_ttl, str(uuid.uuid4()), now + self.refresh_ttl)
        self._sessions[platform] = session  # one session per user and platform: the previous one is gone
        return session

    def _authenticate(self, request: Request) -> None:
        token = request.headers.get("OAuth-Token", "")
        if not token:
            raise _ApiError(401, "need_login", "No valid authentication for user.")
        now = self.state.clock.now()
        with self.state.lock:
            for session in self._sessions.values():
                if hmac.compare_digest(token, session.access_token) and session.access_expires > now:
                    return
        raise _ApiError(401, "invalid_grant", "The access token provided is invalid.")

    def _rate_limited(self) -> Response | None:
        if not self.requests_per_second:
            return None
        now = time.monotonic()
        with self.state.lock:
            if self._window.count(now) >= self.requests_per_second:
                response = _error(429, "too_many_requests", "Too many requests, retry later")
                response.headers["Retry-After"] = "1"
                return response
            self._window.add(now)
        return None

    # -- routing -------------------------------------------------------------------------------------------

    @cached_property
    def _public_routes(self) -> Router:
        routes = Router()
        routes.add("POST", "/oauth2/token", self._token)
        return routes

    @cached_property
    def _routes(self) -> Router:
        """The API behind a session; a handler takes the request and the path's arguments."""
        routes = Router()
        routes.add("GET", "/ping", lambda request: json_response("pong"))
        routes.add("GET", "/metadata", self._metadata)
        routes.add("POST", _MODULE, self._create_api)
        routes.add("POST", f"{_MODULE}/filter", self._filter)
        routes.add("GET", f"{_MODULE}/<rid>", self._read)
        routes.add("PUT", f"{_MODULE}/<rid>", self._update_api)
        routes.add("DELETE", f"{_MODULE}/<rid>", self._delete_api)
        routes.add("GET", f"{_MODULE}/<rid>/link/<link>", self._link)
        return routes

    @cached_property
    def _unrouted(self) -> Router:
        """The answer where no route serves the method and path. It depends on the path alone (matched as GET
        whatever the method): under a module ``no_method``, on a record's path once the record is found (else
        its ``not_found``); elsewhere ``not_found``."""
        routes = Router()
        routes.add("GET", _MODULE, self._no_method)
        routes.add("GET", f"{_MODULE}/<rid>", self._found_no_method)
        routes.add("GET", f"{_MODULE}/<rid>/<path:rest>", self._no_method)
        return routes

    def _handler(self, method: str, path: str) -> tuple[Handler, dict[str, Any]]:
        # The API serves no HEAD: werkzeug would answer it with the GET rule, so it gets the unrouted answer.
        found = None if method == "HEAD" else self._routes.find(method, path)
        return found or self._unrouted.find("GET", path) or (_not_found, {})

    def _record(self, module: str, record_id: str) -> JSON:
        record = self._live(module, record_id)
        if record is None:
            raise _ApiError(404, "not_found", f"Could not find record: {record_id} in module: {module}")
        return record

    def _create_api(self, request: Request, module: str) -> Response:
        return json_response(self._render(self._create(module, self._json_object(request), API_USER_ID)))

    def _read(self, request: Request, module: str, rid: str) -> Response:
        return json_response(self._render(self._record(module, rid), _field_list(request.args.get("fields"))))

    def _update_api(self, request: Request, module: str, rid: str) -> Response:
        record = self._record(module, rid)
        return json_response(self._render(self._update(module, record, self._json_object(request), API_USER_ID)))

    def _delete_api(self, request: Request, module: str, rid: str) -> Response:
        record = self._record(module, rid)
        self._delete(module, record, API_USER_ID)
        return json_response({"id": record["id"]})

    def _found_no_method(self, request: Request, module: str, rid: str) -> NoReturn:
        self._record(module, rid)
        self._no_method(request)

    @staticmethod
    def _no_method(request: Request, **path: str) -> NoReturn:
        raise _ApiError(404, "no_method", "Could not find the HTTP method of your request for this path.")

    def _metadata(self, request: Request) -> Response:
        wanted = [m for m in (request.args.get("module_filter") or "").split(",") if m] or list(_STOCK)
        modules = {}
        for module in wanted:
            if module in self._fields:
                modules[module] = {
                    "fields": {
                        name: {
                            "name": name,
                            "type": kind,
                            **({"source": "custom_fields"} if name.endswith("_c") else {}),
                        }
                        for name, kind in self._fields[module].items()
                    }
                }
        return json_response({"modules": modules, "_hash": uuid.uuid5(uuid.NAMESPACE_URL, repr(modules)).hex})

    def _filter(self, request: Request, module: str) -> Response:
        body = self._json_object(request)
        flt = body.get("filter") or []
        if not isinstance(flt, list):
            raise _ApiError(422, "invalid_parameter", "filter must be an array")
        records = [
            r for r in self._records[module].values() if not r.get("deleted") and self._all_match(module, r, flt)
        ]
        return self._listing(module, records, body)

    def _link(self, request: Request, module: str, rid: str, link: str) -> Response:
        record = self._record(module, rid)
        own = _OWN_LINKS.get(module, {}).get(link)
        if own is not None:
            related_module, id_field = own
            found = self._live(related_module, str(record.get(id_field) or ""))
            return self._listing(related_module, [found] if found else [], dict(request.args))
        target = _LINKS.get(module, {}).get(link)
        if target is None:
            raise _ApiError(404, "not_found", f"Could not find a relationship named: {link}")
        related, back = target
        if back is None:
            ids = self._joins.get((module, rid), [])
            records = [r for i in ids if (r := self._live(related, i)) is not None]
        else:
            records = [r for r in self._records[related].values() if not r.get("deleted") and r.get(back) == rid]
        return self._listing(related, records, dict(request.args))

    def _listing(self, module: str, records: list[JSON], args: Mapping[str, Any]) -> Response:
        try:
            max_num = min(int(args.get("max_num") or 20), 1000)
            offset = int(args.get("offset") or 0)
        except (TypeError, ValueError) as exc:
            raise _ApiError(422, "invalid_parameter", "max_num and offset must be integers") from exc
        ordered = self._ordered(module, records, str(args.get("order_by") or "date_modified:DESC"))
        page = ordered[offset : offset + max_num]
        next_offset = offset + len(page) if offset + len(page) < len(ordered) else -1
        fields = _field_list(args.get("fields"))
        return json_response({"next_offset": next_offset, "records": [self._render(r, fields) for r in page]})

    def _ordered(self, module: str, records: list[JSON], order_by: str) -> list[JSON]:
        ordered = sorted(records, key=lambda r: str(r["id"]))
        for spec in reversed([s for s in order_by.split(",") if s.strip()]):
            name, _, direction = spec.strip().partition(":")
            if name not in self._fields[module]:
                raise _ApiError(422, "invalid_parameter", f"Unknown order_by field: {name}")
            present = [r for r in ordered if r.get(name) not in (None, "")]
            absent = [r for r in ordered if r.get(name) in (None, "")]
            present.sort(key=lambda r: self._comparable(module, name, r.get(name)), reverse=direction.upper() == "DESC")
            ordered = present + absent
        return ordered

    # -- filter expressions ------------------------------------------------------------------------------

    def _all_match(self, module: str, record: JSON, terms: Sequence[Any]) -> bool:
        return all(self._matches(module, record, term) for term in terms)

    def _matches(self, module: str, record: JSON, term: Any) -> bool:
        if not isinstance(term, dict):
            raise _ApiError(422, "invalid_parameter", "Invalid filter definition")
        for key, value in term.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list):
                    raise _ApiError(422, "invalid_parameter", f"{key} takes an array")
                results = [self._matches(module, record, sub) for sub in value]
                if not (all(results) if key == "$and" else any(results)):
                    return False
                continue
            if key not in self._fields[module]:
                raise _ApiError(422, "invalid_parameter", f"Unknown field: {key}")
            conditions = value if isinstance(value, dict) else {"$equals": value}
            for operator, operand in conditions.items():
                if not self._condition(module, key, record.get(key), operator, operand):
                    return False
        return True

    def _condition(self, module: str, name: str, actual: Any, operator: str, operand: Any) -> bool:  # noqa: PLR0911
        if operator in ("$in", "$not_in"):
            if not isinstance(operand, list):
                raise _ApiError(422, "invalid_parameter", f"{operator} requires an array")
            wanted = {self._comparable(module, name, v) for v in operand}
            found = actual not in (None, "") and self._comparable(module, name, actual) in wanted
            return found == (operator == "$in")
        if operator == "$starts":
            return str(actual or "").lower().startswith(str(operand).lower())
        if operator not in ("$equals", "$not_equals", "$gt", "$gte", "$lt", "$lte"):
            raise _ApiError(422, "invalid_parameter", f"Did not recognize the operand: {operator}")
        if actual in (None, ""):
            return operator == "$not_equals"
        left, right = self._comparable(module, name, actual), self._comparable(module, name, operand)
        checks: dict[str, Callable[[Any, Any], bool]] = {
            "$equals": lambda a, b: a == b,
            "$not_equals": lambda a, b: a != b,
            "$gt": lambda a, b: a > b,
            "$gte": lambda a, b: a >= b,
            "$lt": lambda a, b: a < b,
            "$lte": lambda a, b: a <= b,
        }
        try:
            return checks[operator](left, right)
        except TypeError as exc:
            raise _ApiError(422, "invalid_parameter", f"Cannot compare {name} with {operand!r}") from exc

    def _comparable(self, module: str, name: str, value: Any) -> Any:
        kind = self._fields[module].get(name, "varchar")
        text = str(value)
        try:
            if kind == "datetime":
                return _parse_datetime(text)
            if kind == "date":
                return date.fromisoformat(text[:10])
            if kind in _NUMBERS:
                return Decimal(text)
        except (ValueError, InvalidOperation) as exc:
            raise _ApiError(422, "invalid_parameter", f"Invalid value for {name}: {text[:40]}") from exc
        return text.lower()

    # -- records -------------------------------------------------------------------------------------------

    def _module(self, module: str) -> str:
        if module not in _STOCK:
            raise ValueError(f"unknown SugarCRM module {module!r}")
        return module

    def _live(self, module: str, record_id: str) -> JSON | None:
        record = self._records[module].get(record_id)
        return None if record is None or record.get("deleted") else record

    def _now(self) -> str:
        return datetime.fromtimestamp(self.state.clock.now(), UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    def _accepted(self, module: str, values: Mapping[str, Any]) -> JSON:
        """The values Sugar keeps: known, writable fields only (the rest is silently ignored), normalised."""
        kept: JSON = {}
        for name, raw in values.items():
            kind = self._fields[module].get(name)
            if kind is not None and name not in _READ_ONLY and name not in _CALCULATED.get(module, ()):
                kept[name] = self._normalised(name, kind, raw)
        return kept

    @staticmethod
    def _normalised(name: str, kind: str, value: Any) -> Any:
        if kind in _NUMBERS and value not in (None, ""):
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                number = Decimal("NaN")
            if not number.is_finite():
                raise _ApiError(422, "invalid_parameter", f"Invalid value for field {name}")
            # An int field is a JSON integer (SugarFieldInt::apiFormatField casts it), a decimal a string.
            return _money(number) if kind in _MONEY else (int(number) if kind == "int" else f"{number:f}")
        if kind == "email":
            return _email_list(value)
        if kind == "bool":
            return value is True or str(value).lower() in ("1", "true")
        return value

    def _create(self, module: str, values: Mapping[str, Any], user_id: str) -> JSON:
        now = self._now()
        record: JSON = {"id": str(values.get("id") or uuid.uuid4()), "date_entered": now, "date_modified": now,
                        "created_by": user_id, "modified_user_id": user_id, "deleted": False}  # fmt: skip
        record.update(self._accepted(module, values))
        for name, default in _DEFAULTS.get(module, {}).items():
            record.setdefault(name, default)  # the vardefs' defaults
        if module == "RevenueLineItems":
            self._derive_line(record)
        if module == "Quotes":
            # quote_num: an auto-increment, read-only int (Quotes vardefs); see GUESSES["quote_num numbering"].
            record["quote_num"] = 1 + max(
                (int(q.get("quote_num") or 0) for q in self._records["Quotes"].values()), default=0
            )
        if module in _CALCULATED:
            self._calculate(module, record)
        self._records[module][record["id"]] = record
        self._after_change(module, record, {}, is_update=False)
        return record

    def _update(self, module: str, record: JSON, values: Mapping[str, Any], user_id: str) -> JSON:
        accepted = self._accepted(module, values)
        before = dict(record)
        changed = {k: v for k, v in accepted.items() if record.get(k) != v}
        if not changed:
            return record
        record.update(changed)
        record["date_modified"], record["modified_user_id"] = self._now(), user_id
        if module == "RevenueLineItems":
            self._derive_line(record)
        if module in _CALCULATED:
            self._calculate(module, record)
        if module == "Opportunities" and changed.get("sales_stage") in CLOSED_STAGES:
            # Cascade (Sugar 10.3+): a closed opportunity stage is copied to its open line items.
            for line in list(self._records["RevenueLineItems"].values()):
                if line.get("opportunity_id") == record["id"] and line.get("sales_stage") not in CLOSED_STAGES:
                    self._update("RevenueLineItems", line, {"sales_stage": changed["sales_stage"]}, user_id)
        self._after_change(module, record, before, is_update=True)
        return record

    def _delete(self, module: str, record: JSON, user_id: str) -> None:
        record.update(deleted=True, date_modified=self._now(), modified_user_id=user_id)
        self._queue_hooks(module, record, "after_delete", {}, is_update=True)
        self._roll_up_to_parents(module, str(record["id"]))

    # -- quotes: lines, groups and totals (Products -> ProductBundles -> Quotes, as the vardefs' formulas) --

    def _calculate(self, module: str, record: JSON) -> None:
        """Fill ``record``'s calculated fields from its own values and its live children."""
        if module == "Products":
            self._derive_quoted_line(record)
            return
        if module == "Contracts":
            value = record.get("total_contract_value")
            record["total_contract_value_usdollar"] = None if value in (None, "") else _money(Decimal(str(value)))
            return
        if module not in ("ProductBundles", "Quotes"):
            return
        children = self._joined(module, str(record["id"]))

        def total(name: str, rows: Sequence[JSON] = children) -> Decimal:
            return sum((Decimal(str(r.get(name) or "0")) for r in rows), Decimal(0))

        if module == "ProductBundles":
            subtotal, discount = total("subtotal"), total("deal_calc")
            taxable = total("total_amount", [r for r in children if r.get("tax_class") == "Taxable"])
            record.update(subtotal=_money(subtotal), deal_tot=_money(discount), new_sub=_money(subtotal - discount),
                          taxable_subtotal=_money(taxable), total=_money(subtotal - discount))  # fmt: skip
            return
        rate = self._live("TaxRates", str(record.get("taxrate_id") or ""))
        rate_value = Decimal(str(rate.get("value") or "0")) if rate else Decimal(0)
        new_sub, taxable = total("new_sub"), total("taxable_subtotal")
        tax = taxable * rate_value / 100
        shipping = Decimal(str(record.get("shipping") or "0"))
        record.update(subtotal=_money(total("subtotal")), deal_tot=_money(total("deal_tot")), new_sub=_money(new_sub),
                      taxable_subtotal=_money(taxable), taxrate_value=_money(rate_value), tax=_money(tax),
                      total=_money(new_sub + tax + shipping))  # fmt: skip

    def _derive_quoted_line(self, line: JSON) -> None:
        """A quoted line takes what it leaves out from its catalogue product (see GUESSES["quoted line copies its
        product template"]); subtotal, discount (deal_calc) and total_amount as the Products vardefs compute them."""
        template = self._live("ProductTemplates", str(line.get("product_template_id") or ""))
        if template is not None:
            line["product_template_name"] = template.get("name")
            for name in ("name", "mft_part_num", "discount_price", "list_price", "cost_price", "tax_class"):
                if line.get(name) in (None, ""):
                    line[name] = template.get(name)
        quantity = Decimal(str(line.get("quantity") or "0"))
        subtotal = Decimal(str(line.get("discount_price") or "0")) * quantity
        discount = Decimal(str(line.get("discount_amount") or "0"))
        deal_calc = subtotal * discount / 100 if line.get("discount_select") else discount
        line.update(subtotal=_money(subtotal), deal_calc=_money(deal_calc), total_amount=_money(subtotal - deal_calc))

    def _joined(self, module: str, record_id: str) -> list[JSON]:
        """The live records a quote (its groups) or a group (its lines) holds, in position order."""
        related = {"Quotes": "ProductBundles", "ProductBundles": "Products"}[module]
        return [r for i in self._joins.get((module, record_id), []) if (r := self._live(related, i)) is not None]

    def _roll_up_to_parents(self, module: str, record_id: str) -> None:
        """A changed line re-totals its groups, a changed group its quotes; each parent whose totals moved is
        saved (date_modified, after_save hook), see GUESSES["a line edit saves its quote"]."""
        parent = {"Products": "ProductBundles", "ProductBundles": "Quotes"}.get(module)
        if parent is None:
            return
        for (owner_module, owner_id), ids in list(self._joins.items()):
            if owner_module == parent and record_id in ids and (owner := self._live(parent, owner_id)) is not None:
                before = dict(owner)
                self._calculate(parent, owner)
                if any(owner.get(k) != before.get(k) for k in _CALCULATED[parent]):
                    owner.update(date_modified=self._now(), modified_user_id=before.get("modified_user_id"))
                    self._after_change(parent, owner, before, is_update=True)

    def _attach(self, module: str, owner_id: str, child_id: str) -> None:
        """Link a group to a quote or a line to a group, last; its ``position`` is its index (0-based)."""
        ids = self._joins.setdefault((module, owner_id), [])
        related = {"Quotes": "ProductBundles", "ProductBundles": "Products"}[module]
        ids.append(child_id)
        self._records[related][child_id]["position"] = len(ids) - 1
        self._roll_up_to_parents(related, child_id)

    def _quote_line(self, quote: JSON, bundle_id: str, values: Mapping[str, Any], user_id: str) -> JSON:
        line_values = {"currency_id": quote.get("currency_id"), "account_id": quote.get("billing_account_id"),
                       **values, "quote_id": quote["id"]}  # fmt: skip
        line = self._create("Products", line_values, user_id)
        self._attach("ProductBundles", bundle_id, str(line["id"]))
        return line

    def _derive_line(self, line: JSON) -> None:
        template = self._live("ProductTemplates", str(line.get("product_template_id") or ""))
        if template is not None:
            line["product_template_name"] = template.get("name")
            line.setdefault("discount_price", template.get("discount_price"))
            line.setdefault("list_price", template.get("list_price"))
        quantity = Decimal(str(line.get("quantity") or "1"))
        price = Decimal(str(line.get("discount_price") or "0"))
        discount = Decimal(str(line.get("discount_amount") or "0"))
        gross = quantity * price
        total = gross - (gross * discount / 100 if line.get("discount_select") else discount)
        line["likely_case"] = _money(total)
        line.setdefault("quantity", "1")
        line["service_end_date"] = _service_end(line)

    def _after_change(self, module: str, record: JSON, before: JSON, *, is_update: bool) -> None:
        if module == "RevenueLineItems" and record.get("opportunity_id"):
            self._rollup(str(record["opportunity_id"]))
        if is_update:
            self._roll_up_to_parents(module, str(record["id"]))
        changes = {
            name: {"field_name": name, "data_type": self._fields[module].get(name, "varchar"),
                   "before": before.get(name), "after": value}
            for name, value in record.items()
            if is_update and before.get(name) != value and name not in ("date_modified", "modified_user_id")
        }  # fmt: skip
        self._queue_hooks(module, record, "after_save", changes, is_update=is_update)

    def _rollup(self, opportunity_id: str) -> None:
        """An opportunity's amount is the sum of its line items' likely case (a calculated field)."""
        opportunity = self._live("Opportunities", opportunity_id)
        if opportunity is None:
            return
        lines = [r for r in self._records["RevenueLineItems"].values()
                 if r.get("opportunity_id") == opportunity_id and not r.get("deleted")]  # fmt: skip
        amount = _money(sum((Decimal(str(r.get("likely_case") or "0")) for r in lines), Decimal(0)))
        if opportunity.get("amount") != amount:
            before = dict(opportunity)
            opportunity.update(amount=amount, date_modified=self._now())
            self._after_change("Opportunities", opportunity, before, is_update=True)

    def _render(self, record: JSON, fields: Sequence[str] | None = None) -> JSON:
        module = next(m for m, rs in self._records.items() if rs.get(str(record["id"])) is record)
        known = self._fields[module]
        full: JSON = {name: record.get(name) for name in known if name != "deleted"}
        if module in ("Accounts", "Contacts"):
            emails = record.get("email") or []
            full["email"] = emails
            full["email1"] = next((e["email_address"] for e in emails if e.get("primary_address")), "")
        if module == "Contacts":
            account = self._live("Accounts", str(record.get("account_id") or ""))
            full["account_name"] = account.get("name") if account else ""
        if fields is not None:
            full = {name: full[name] for name in fields if name in full}
        full.update(id=record["id"], date_modified=record["date_modified"], _acl={"fields": {}}, _module=module)
        return full

    # -- web logic hooks -----------------------------------------------------------------------------------

    def _queue_hooks(self, module: str, record: JSON, event: str, changes: JSON, *, is_update: bool) -> None:
        hooks = [h for h in self._hooks if h.module == module and h.trigger_event == event]
        if not hooks:
            return
        data = self._render(record)
        data["deleted"] = bool(record.get("deleted"))
        payload = {"isUpdate": is_update, "dataChanges": changes, "bean": _BEANS[module], "event": event, "data": data}
        self._queue.extend(_Queued(h, json.loads(json.dumps(payload, default=str))) for h in hooks)

    def _deliver(self, item: _Queued) -> JSON:
        body = json.dumps(item.payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "SugarCrm"}
        sent = outbound.send(
            item.hook.url,
            body,
            headers,
            self.hook_timeout,
            method=item.hook.request_method,
            connect_timeout=5.0,
            follow_redirects=True,
            max_redirects=1,
        )
        return {
            "hook_id": item.hook.id,
            "url": item.hook.url,
            "module": item.hook.module,
            "status": sent.status,
            "ok": sent.status is not None and 200 <= sent.status < 300,
            "error": sent.error,
            "duration_ms": int(sent.elapsed * 1000),
            "body": body.decode(),
            "retried": False,  # Sugar marks the job done whatever the answer: a failed delivery is lost
        }

    # -- control API ---------------------------------------------------------------------------------------

    def control_routes(self) -> Router:
        routes = super().control_routes()
        routes.add("POST", "/_sandbox/records/<module>", lambda body, module: self._created(module, body))
        routes.add(
            "PUT", "/_sandbox/records/<module>/<rid>", lambda body, module, rid: self.update_record(module, rid, body)
        )
        routes.add("GET", "/_sandbox/records/<module>/<rid>", self._control_record)
        routes.add(
            "POST",
            "/_sandbox/quotes",
            lambda body: json_response(
                self.create_quote({k: v for k, v in body.items() if k != "bundles"}, body.get("bundles") or []), 201
            ),
        )
        routes.add("POST", "/_sandbox/quotes/<rid>/lines", lambda body, rid: json_response(
            self.add_quote_line(rid, {k: v for k, v in body.items() if k != "bundle_id"},
                                bundle_id=body.get("bundle_id")), 201))  # fmt: skip
        routes.add("POST", "/_sandbox/hooks", lambda body: json_response({"id": self.add_hook(**body)}, 201))
        routes.add("POST", "/_sandbox/hooks/run", lambda body: {"deliveries": self.run_hook_job()})
        routes.add("GET", "/_sandbox/hooks/deliveries", self._control_deliveries)
        return routes

    def clock_reading(self) -> JSON:
        return {"now": self._now()}

    def _created(self, module: str, body: JSON) -> Response:
        return json_response(self.create_record(module, body), 201)

    def _control_record(self, body: JSON, module: str, rid: str) -> JSON:
        found = self.get_record(module, rid)
        if not found:
            raise KeyError("not found")
        return found

    def _control_deliveries(self, body: JSON) -> JSON:
        with self.state.lock:
            return {"deliveries": list(self.deliveries)}

    # -- request parsing -----------------------------------------------------------------------------------

    @staticmethod
    def _json(request: Request) -> Any:
        try:
            return json.loads(request.get_data(cache=True) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _ApiError(422, "invalid_parameter", "The request body is not valid JSON") from exc

    def _json_object(self, request: Request) -> JSON:
        body = self._json(request)
        if not isinstance(body, dict):
            raise _ApiError(422, "invalid_parameter", "The request body must be a JSON object")
        return body


def _field_list(raw: Any) -> list[str] | None:
    if raw in (None, ""):
        return None
    return [f.strip() for f in str(raw).split(",") if f.strip()]


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.000001')):f}"


def _parse_datetime(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _email_list(value: Any) -> list[JSON]:
    """Sugar's ``email`` field: a list of addresses; a plain string becomes the primary one."""
    if isinstance(value, str):
        value = [{"email_address": value, "primary_address": True}] if value else []
    out = []
    for entry in value or []:
        if isinstance(entry, dict) and entry.get("email_address"):
            out.append({"email_address": str(entry["email_address"]),
                        "primary_address": bool(entry.get("primary_address")),
                        "invalid_email": bool(entry.get("invalid_email")), "opt_out": bool(entry.get("opt_out")),
                        "reply_to_address": False})  # fmt: skip
    return out


class SugarCrmDriver:
    """CrmDriver for the SugarCRM sandbox: what a salesperson and an admin do in Sugar's UI."""

    name = "sugarcrm"

    def __init__(self, sandbox: SugarSandbox, webhook_token: str = "") -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        # As `closeloop setup sugarcrm` makes it: 43 URL-safe characters, new for every sandbox.
        self.webhook_token = webhook_token or secrets.token_urlsafe(32)

    def environment(self, base_url: str) -> dict[str, str]:
        return {
            "CRM_PROVIDER": "sugarcrm",
            "SUGARCRM_URL": base_url,
            "SUGARCRM_PLATFORM": "closeloop",
            "SUGARCRM_USERNAME": self.sandbox.username,
            "SUGARCRM_PASSWORD": self.sandbox.password,
            "SUGARCRM_WEBHOOK_TOKEN": self.webhook_token,
        }

    def subscribe(self, webhook_base_url: str) -> None:
        base = webhook_base_url.rstrip("/")
        # Quotes and their lines (Products) ride with deals (a quote's event is a deal-queue event).
        modules = (("Accounts", "contacts"), ("Contacts", "contacts"), ("ProductTemplates", "contacts"),
                   ("Opportunities", "deals"), ("Quotes", "deals"), ("Products", "deals"))  # fmt: skip
        for module, route in modules:
            for event in ("after_save", "after_delete"):
                self.sandbox.add_hook(module, f"{base}/webhooks/sugarcrm/{route}/{self.webhook_token}", event)

    def flush_webhooks(self) -> None:
        self.sandbox.run_hook_job()

    def lose_pending_webhooks(self) -> None:
        self.sandbox.lose_pending_hooks()

    def sent_webhooks(self) -> list[SentWebhook]:
        """Sugar's web logic hooks carry no credentials of their own: only the token in the URL."""
        with self.state.lock:
            sent = [dict(d) for d in self.sandbox.deliveries]
        headers = {"Content-Type": "application/json", "User-Agent": "SugarCrm"}
        return [SentWebhook(str(d["url"]), headers, str(d["body"]).encode(), d.get("status")) for d in sent]

    def forged_webhook(self, webhook_base_url: str) -> SentWebhook:
        """An Accounts after_save hook to the webhook route, with a guessed token in the URL."""
        url = f"{webhook_base_url.rstrip('/')}/webhooks/sugarcrm/contacts/a-guessed-token"
        payload = {"isUpdate": False, "dataChanges": {}, "bean": "Account", "event": "after_save",
                   "data": {"id": str(uuid.uuid4()), "name": "Forged Ltd", "_module": "Accounts"}}  # fmt: skip
        return SentWebhook(url, {"Content-Type": "application/json"}, json.dumps(payload).encode())

    def create_company(
        self, name: str, *, email: str = "", tax_number: str = "", country: str = "", city: str = ""
    ) -> CrmRef:
        values = {"name": name, "email": email, "vat_number_c": tax_number, "billing_address_country": country,
                  "billing_address_city": city}  # fmt: skip
        record = self.sandbox.create_record("Accounts", {k: v for k, v in values.items() if v})
        return CrmRef(crm=self.name, object_type="company", object_id=str(record["id"]))

    def update_company(self, ref: CrmRef, *, name: str | None = None, phone: str | None = None) -> None:
        values = {k: v for k, v in (("name", name), ("phone_office", phone)) if v is not None}
        self.sandbox.update_record("Accounts", ref.object_id, values)

    def create_won_deal(self, company: CrmRef, lines: Sequence[DealLine], *, currency: str) -> CrmRef:
        currency_id = self.sandbox.seed_currency(currency)
        today = datetime.fromtimestamp(self.state.clock.now(), UTC).date().isoformat()
        opportunity = self.sandbox.create_record(
            "Opportunities",
            {"name": f"Deal {len(self.sandbox.records('Opportunities')) + 1}", "account_id": company.object_id,
             "currency_id": currency_id, "sales_stage": "Proposal/Price Quote", "date_closed": today},
        )  # fmt: skip
        for line in lines:
            template = line.product.object_id if line.product is not None else self._product(line, currency_id)
            self.sandbox.create_record(
                "RevenueLineItems",
                {"name": line.name, "opportunity_id": opportunity["id"], "account_id": company.object_id,
                 "product_template_id": template, "quantity": str(line.quantity),
                 "discount_price": str(line.unit_price), "currency_id": currency_id,
                 "sales_stage": "Proposal/Price Quote", "date_closed": today, **self.service_fields(line)},
            )  # fmt: skip
        self.sandbox.update_record("Opportunities", str(opportunity["id"]), {"sales_stage": "Closed Won"})
        return CrmRef(crm=self.name, object_type="deal", object_id=str(opportunity["id"]))

    # -- recurring lines (sugar-recurring): a DealLine.recurring is a service revenue line item ---------------

    @staticmethod
    def service_fields(line: DealLine) -> dict[str, Any]:
        """The revenue line item fields of a recurring line, as a person enters them: Service ticked, its start
        and duration (the periods' months, or days for weekly frequencies), and Closeloop's billing frequency
        dropdown; the line's price is per billing period. {} for a one-off line."""
        if line.recurring is None:
            return {}
        unit, count = FREQUENCY_PERIODS[line.recurring.frequency]
        length = count * line.recurring.periods
        return {"service": True, "service_start_date": line.recurring.start.isoformat(),
                "service_duration_value": length if unit == "month" else 7 * length,
                "service_duration_unit": "month" if unit == "month" else "day",
                "closeloop_billing_frequency_c": line.recurring.frequency}  # fmt: skip

    # -- end of recurring lines --------------------------------------------------------------------------------

    def _product(self, line: DealLine, currency_id: str) -> str:
        for template in self.sandbox.records("ProductTemplates"):
            if template.get("mft_part_num") == line.sku:
                return str(template["id"])
        record = self.sandbox.create_record(
            "ProductTemplates",
            {"name": line.name, "mft_part_num": line.sku, "discount_price": str(line.unit_price),
             "list_price": str(line.unit_price), "currency_id": currency_id},
        )  # fmt: skip
        return str(record["id"])

    def create_product(self, sku: str, name: str, price: Decimal, cost: Decimal | None = None) -> CrmRef:
        """A Product Catalog entry in the system currency: the SKU is its manufacturer part number."""
        values = {"name": name, "mft_part_num": sku, "discount_price": str(price), "list_price": str(price),
                  "currency_id": SYSTEM_CURRENCY_ID}  # fmt: skip
        if cost is not None:
            values["cost_price"] = str(cost)
        record = self.sandbox.create_record("ProductTemplates", values)
        return CrmRef(crm=self.name, object_type="product", object_id=str(record["id"]))

    def update_product(self, ref: CrmRef, *, price: Decimal) -> None:
        self.sandbox.update_record("ProductTemplates", ref.object_id, {"discount_price": str(price)})

    def deal_fields(self, deal: CrmRef) -> Mapping[str, str]:
        """Closeloop's fields on the opportunity (every ``closeloop_*_c``: the invoice's, the payment summary's,
        the purchase orders'), by canonical name."""
        record = self.sandbox.get_record("Opportunities", deal.object_id) or {}
        return {
            name[: -len("_c")]: str(value)
            for name, value in record.items()
            if name.startswith("closeloop_") and name.endswith("_c") and value is not None
        }

    def customer_fields(self, ref: CrmRef) -> Mapping[str, str]:
        module = "Accounts" if ref.object_type == "company" else "Contacts"
        record = self.sandbox.get_record(module, ref.object_id) or {}
        return {
            name[: -len("_c")]: str(value)
            for name, value in record.items()
            if name.startswith("closeloop_") and name.endswith("_c") and value is not None
        }

    # -- quote to cash (issue 12): Quotes with their grouped lines; recurring terms on the revenue line items --

    def create_supplier_product(
        self, sku: str, name: str, price: Decimal, *, cost: Decimal, supplier: str, currency: str
    ) -> CrmRef:
        """A Product Catalog entry in ``currency`` with its cost price and its supplier's name in the Studio field
        ``closeloop_supplier_c``."""
        values = {"name": name, "mft_part_num": sku, "discount_price": str(price), "list_price": str(price),
                  "cost_price": str(cost), "closeloop_supplier_c": supplier,
                  "currency_id": self.sandbox.seed_currency(currency)}  # fmt: skip
        record = self.sandbox.create_record("ProductTemplates", values)
        return CrmRef(crm=self.name, object_type="product", object_id=str(record["id"]))

    def create_quoted_deal(
        self, company: CrmRef, lines: Sequence[DealLine], *, currency: str, expires: date
    ) -> QuotedDeal:
        """An open opportunity with a revenue line item per line, and a quote of the same lines (one group) made
        from it in the quote editor: Draft, then Delivered (sent to the customer: a ready stage), valid until
        ``expires``. A recurring line's terms are its revenue line item's (``service_fields``): Sugar's quoted
        line items carry no billing frequency, so the won deal's quoted line takes the opportunity's terms."""
        currency_id = self.sandbox.seed_currency(currency)
        today = datetime.fromtimestamp(self.state.clock.now(), UTC).date().isoformat()
        opportunity = self.sandbox.create_record(
            "Opportunities",
            {"name": f"Deal {len(self.sandbox.records('Opportunities')) + 1}", "account_id": company.object_id,
             "currency_id": currency_id, "sales_stage": "Proposal/Price Quote", "date_closed": today},
        )  # fmt: skip
        products: list[dict[str, Any]] = []
        for line in lines:
            template = line.product.object_id if line.product is not None else self._product(line, currency_id)
            self.sandbox.create_record(
                "RevenueLineItems",
                {"name": line.name, "opportunity_id": opportunity["id"], "account_id": company.object_id,
                 "product_template_id": template, "quantity": str(line.quantity),
                 "discount_price": str(line.unit_price), "currency_id": currency_id,
                 "sales_stage": "Proposal/Price Quote", "date_closed": today, **self.service_fields(line)},
            )  # fmt: skip
            products.append({"product_template_id": template, "name": line.name, "mft_part_num": line.sku,
                             "quantity": str(line.quantity), "discount_price": str(line.unit_price)})  # fmt: skip
        buyer = "billing_account_id" if company.object_type == "company" else "billing_contact_id"
        quote = self.sandbox.create_quote(
            {"name": f"Quote for {opportunity['name']}", "quote_stage": "Draft", "currency_id": currency_id,
             "date_quote_expected_closed": expires.isoformat(), buyer: company.object_id,
             "opportunity_id": opportunity["id"]},
            [{"name": "Quoted", "products": products}],
        )  # fmt: skip
        self.sandbox.update_record("Quotes", str(quote["id"]), {"quote_stage": "Delivered"})
        return QuotedDeal(
            deal=CrmRef(crm=self.name, object_type="deal", object_id=str(opportunity["id"])),
            quote=CrmRef(crm=self.name, object_type="quote", object_id=str(quote["id"])),
        )

    def win_deal(self, deal: CrmRef) -> None:
        self.sandbox.update_record("Opportunities", deal.object_id, {"sales_stage": "Closed Won"})

    def quote_fields(self, quote: CrmRef) -> Mapping[str, str]:
        """Closeloop's quote fields (the ``closeloop_quote_*_c`` Studio fields on the quote), by canonical name."""
        record = self.sandbox.get_record("Quotes", quote.object_id) or {}
        return {name: str(record[f"{name}_c"]) for name in QUOTE_SYNC_FIELDS if record.get(f"{name}_c") is not None}

    # -- end of quote to cash --------------------------------------------------------------------------------


def _service_end(line: Mapping[str, Any]) -> str | None:
    """A service line's ``service_end_date``: the day before its start moved on by its duration (a year from
    2027-01-01 ends 2027-12-31); None for a line that is not a service or lacks a start
    or duration (the adapter never reads it). The formula is a sandbox choice,
    see GUESSES["service_end_date is the day before start + duration"]."""
    start, value = str(line.get("service_start_date") or ""), line.get("service_duration_value")
    unit = str(line.get("service_duration_unit") or "").lower().removesuffix("s")
    if not line.get("service") or not start or value in (None, "") or unit not in ("year", "month", "day"):
        return None
    first, count = date.fromisoformat(start[:10]), int(value)
    if unit == "day":
        return (first + timedelta(days=count - 1)).isoformat()
    months = first.month - 1 + count * (12 if unit == "year" else 1)
    year, month = first.year + months // 12, months % 12 + 1
    moved = date(year, month, min(first.day, calendar.monthrange(year, month)[1]))
    return (moved - timedelta(days=1)).isoformat()


def serve(sandbox: SugarSandbox | None = None, port: int = 0) -> tuple[SugarSandbox, SandboxServer]:
    """Start a SugarCRM sandbox on 127.0.0.1 (``port=0`` picks a free port); stop the server when done."""
    sandbox = sandbox or SugarSandbox()
    server = SandboxServer(sandbox, port=port).start()
    return sandbox, server
