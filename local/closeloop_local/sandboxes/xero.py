"""Xero sandbox: a stateful local stand-in for Xero's identity service and Accounting API.

One WSGI app serves the three Xero hosts on one port (their paths do not collide):

* ``XERO_LOGIN_URL``    ``GET /identity/connect/authorize`` (auto-consents, 302 back with a code)
* ``XERO_IDENTITY_URL`` ``POST /connect/token`` (authorization_code, refresh_token), ``POST /connect/revocation``
* ``XERO_API_URL``      ``GET /connections``, ``DELETE /connections/{id}`` and ``/api.xro/2.0/...``:
  Contacts, Invoices (with ``POST /Invoices/{id}/Email`` and ``GET /Invoices/{id}/OnlineInvoice``), Items,
  Payments, TaxRates, Accounts, Organisation.

Shapes follow XeroAPI/Xero-OpenAPI (``xero_accounting.yaml``, ``xero-identity.yaml``) and the quirks observed
on the real API: rotating single-use refresh tokens with a 30-minute grace replay, problem-details bodies
on 401/403, a plain-text 404, ``ValidationException`` 400s (or per-element errors with
``summarizeErrors=false``), .NET JSON dates (``/Date(1573755038314+0000)/``), per-tenant rate limits with
``X-*Limit-Remaining`` headers, ``Idempotency-Key`` replays, per-line tax rounding and the Dynamic-LINQ
``where`` syntax. Money is ``Decimal`` inside and on the wire a JSON number written with its exact scale
(``100.00``, ``0.3333``) as Xero's JSON has it, never passed through float (``WireEncoder``). Emailed
invoices are not sent anywhere: they are recorded (``XeroSandbox.emails()``).

The ``/_sandbox/`` control API (no auth, never logged) resets state, seeds contacts, reads the request
log and the emails sent, injects faults and moves the clock. Injected faults apply to every real path
before any other handling; a fault with ``status`` 0 only adds its ``delay`` and then lets the request
through (a slow API, which also holds a concurrency slot on the accounting API).
"""

from __future__ import annotations

import base64
import calendar
import copy
import hashlib
import json
import math
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from closeloop.wire import dumps_exact
from closeloop_local.sandboxes import outbound
from closeloop_local.sandboxes.base import (
    AccountingSandbox,
    Fault,
    Router,
    SandboxServer,
    json_response,
    plain_json,
)
from closeloop_local.sandboxes.drivers import (
    Line,
    SeenCustomer,
    SeenInvoice,
    SeenItem,
    SeenPurchaseOrder,
    SeenQuote,
    SeenSchedule,
    SentWebhook,
)
from closeloop_local.sandboxes.limits import InFlight, RollingWindow
from closeloop_local.sandboxes.replays import IdempotencyCache

Row = dict[str, Any]

# ---------------------------------------------------------------------------------------------------------
# Constants and Xero's fixed data
# ---------------------------------------------------------------------------------------------------------

DEFAULT_TENANT_ID = "4f1c7b2e-9a3d-4c8e-b6f0-2d5a8e1c3b79"
DEFAULT_REFRESH_TOKEN = "sandbox-refresh-token-0000000000000000000000000000000000000000000"
DEFAULT_SCOPE = (
    "openid profile email offline_access accounting.contacts accounting.invoices accounting.payments "
    "accounting.settings"
)
API_PREFIX = "/api.xro/2.0"
ACCESS_TOKEN_TTL = 1800  # 30 min
ID_TOKEN_TTL = 300
AUTH_CODE_TTL = 300  # codes are single-use and live 5 min
REFRESH_TOKEN_TTL = 60 * 24 * 3600  # unused refresh tokens die after 60 days
IDEMPOTENCY_TTL = 360  # responses are replayed for 6 min: the adapter's GUESSES["idempotency_replay"]
IDEMPOTENCY_KEY_MAX = 128
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_CONTACT_PERSONS = 5
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
BASE_CURRENCY = "NZD"
SANDBOX_USER_ID = "b7e0f5a2-3c19-4d6e-8a41-6f2c9d0e1b58"
SANDBOX_USER_EMAIL = "sandbox.user@example.com"

# Xero rounds tax per line to the cent. Xero does not document the tie-break; half-up matches its examples.
XERO_ROUNDING = ROUND_HALF_UP
CENT = Decimal("0.01")
QTY = Decimal("0.0001")
UNIT_PLACES = {2: CENT, 4: QTY}

NOT_FOUND_TEXT = "The resource you're looking for cannot be found"
UNKNOWN_ERROR = (
    "An error occurred in Xero. Check the API Status page http://status.developer.xero.com for current "
    "service status. Contact the Xero API team if problems persist."
)

# A NZ demo organisation's tax rates (the spec's GET /TaxRates example): TaxType -> (Name, rate %, ReportTaxType).
TAX_RATES: dict[str, tuple[str, Decimal, str]] = {
    "INPUT2": ("15% GST on Expenses", Decimal("15"), "INPUT"),
    "OUTPUT2": ("15% GST on Income", Decimal("15"), "OUTPUT"),
    "GSTONIMPORTS": ("GST on Imports", Decimal("0"), "GSTONIMPORTS"),
    "NONE": ("No GST", Decimal("0"), "NONE"),
    "ZERORATED": ("Zero Rated", Decimal("0"), "OUTPUT"),
}

# Chart of accounts: Code -> (Name, Type, default TaxType).
ACCOUNTS: dict[str, tuple[str, str, str]] = {
    "090": ("Business Bank Account", "BANK", "NONE"),
    "091": ("Business Savings Account", "BANK", "NONE"),
    "200": ("Sales", "REVENUE", "OUTPUT2"),
    "260": ("Other Revenue", "REVENUE", "OUTPUT2"),
    "310": ("Cost of Goods Sold", "DIRECTCOSTS", "INPUT2"),
    "400": ("Advertising", "EXPENSE", "INPUT2"),
    "429": ("General Expenses", "EXPENSE", "INPUT2"),
    "610": ("Accounts Receivable", "CURRENT", "NONE"),
    "800": ("Accounts Payable", "CURRLIAB", "NONE"),
}


def _account_id(code: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-sandbox/account/{code}"))


# Who may call what: resource -> (scopes that allow writes and reads, scopes that allow reads only).
SCOPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "contacts": (frozenset({"accounting.contacts"}), frozenset({"accounting.contacts.read"})),
    "invoices": (
        frozenset({"accounting.transactions", "accounting.invoices"}),
        frozenset({"accounting.transactions.read", "accounting.invoices.read"}),
    ),
    "items": (
        frozenset({"accounting.settings", "accounting.invoices", "accounting.transactions"}),
        frozenset({"accounting.settings.read", "accounting.invoices.read", "accounting.transactions.read"}),
    ),
    "payments": (
        frozenset({"accounting.transactions", "accounting.payments"}),
        frozenset({"accounting.transactions.read", "accounting.payments.read"}),
    ),
    "settings": (frozenset({"accounting.settings"}), frozenset({"accounting.settings.read"})),
    # XS RepeatingInvoices: accounting.transactions(.read); accounting.invoices(.read) as for invoices.
    "repeating": (
        frozenset({"accounting.transactions", "accounting.invoices"}),
        frozenset({"accounting.transactions.read", "accounting.invoices.read"}),
    ),
}

# Validation messages. The first three are verbatim from Xero (spec example, docs, SDK issues); the rest
# follow Xero's wording where it is known and are best guesses otherwise.
MSG = {
    "name_taken": (
        "The contact name {name} is already assigned to another contact. "
        "The contact name must be unique across all active contacts."
    ),
    "email": "Email address must be valid.",
    "invoice_number_taken": "Invoice # must be unique.",
    "name_empty": "Contact Name cannot be empty.",
    # The adapter's GUESSES["duplicate_contact_number_message"].
    "number_taken": "The contact number {number} is already assigned to another contact.",
    "too_long": "{field} must not be more than {limit} characters long.",
    "persons": "A contact can have a maximum of 5 contact persons.",
    "contact_status": "ContactStatus must be ACTIVE or ARCHIVED.",
    "contact_missing": "The contact with ID {id} could not be found.",
    "invoice_contact": "A Contact must be specified for this type of transaction",
    "invoice_contact_missing": "The contact specified for this invoice could not be found.",
    "invoice_type": "Invoice Type must be ACCREC or ACCPAY.",
    "invoice_status": "Invoice Status '{status}' is not valid for this operation.",
    "not_modifiable": "Invoice not of valid status for modification",
    "has_payments": "This document cannot be edited as it has a payment or credit note allocated to it.",
    "line_amount_types": "LineAmountTypes must be Exclusive, Inclusive or NoTax.",
    "currency": "Organisation is not subscribed to currency {code}",
    "date": "The date '{value}' is not a valid date.",
    "number": "{field} must be a valid number.",
    "account": "Account code '{code}' is not a valid code for this document.",
    "account_required": "Account code must be specified.",
    "tax_type": "The TaxType code '{code}' does not exist or cannot be used for this type of transaction.",
    "item_code": "Item code '{code}' is not valid.",
    "item_code_required": "Item Code must be specified.",
    # Verbatim from the spec (createItems' answer example), its doubled quotes included.
    "item_code_taken": "Price List Item with Code ''{code}'' already exists",
    "invoice_missing": "Invoice could not be found.",
    "payment_invoice": "Invoice could not be found.",
    "payment_status": "Payments can only be made against Authorised documents",
    "payment_exceeds": "Payment amount exceeds the amount outstanding on this document",
    "payment_amount": "Payment amount must be greater than zero.",
    "payment_account": "Account could not be found.",
    "payment_bank": "Account type is invalid for making a payment to/from.",
    # Emailing an invoice and its online URL. Xero documents the rules (an ACCREC invoice with a status of
    # SUBMITTED, AUTHORISED or PAID; no online invoice URL for a DRAFT) but not its messages for breaking
    # them: these five are guesses, worded after its other validation messages.
    "email_type": "Only sales invoices (ACCREC) can be emailed.",
    "email_status": "Invoice Status '{status}' is not valid for sending. It must be SUBMITTED, AUTHORISED or PAID.",
    "email_address": "The contact for this invoice does not have an email address.",
    "online_type": "Online invoices are only available for sales invoices (ACCREC).",
    "online_status": "An online invoice is not available for an invoice with status '{status}'.",
    # Purchase orders: Xero documents the rules (a contact and at least one line item; a status among
    # DRAFT, SUBMITTED, AUTHORISED) but not these messages: see GUESSES["purchase_order_messages"].
    "po_contact": "A Contact must be specified for this type of transaction",
    "po_contact_missing": "The contact specified for this purchase order could not be found.",
    "po_lines": "A Purchase Order must have at least one line item.",
    "po_status": "Purchase Order Status '{status}' is not valid for this operation.",
    "po_number_taken": "Purchase Order Number must be unique.",
}

CONTACT_LIMITS = {
    "Name": 255,
    "ContactNumber": 50,
    "AccountNumber": 50,
    "FirstName": 255,
    "LastName": 255,
    "EmailAddress": 255,
    "TaxNumber": 50,
    "CompanyNumber": 50,
}
CONTACT_STATUSES = ("ACTIVE", "ARCHIVED", "GDPRREQUEST")
# Fields a client can set, in the order Xero renders them (Addresses/Phones are merged by type instead).
CONTACT_WRITABLE = (
    "ContactNumber",
    "AccountNumber",
    "ContactStatus",
    "Name",
    "FirstName",
    "LastName",
    "CompanyNumber",
    "EmailAddress",
    "BankAccountDetails",
    "TaxNumber",
    "TaxNumberType",
    "AccountsReceivableTaxType",
    "AccountsPayableTaxType",
    "DefaultCurrency",
    "XeroNetworkKey",
    "SalesDefaultAccountCode",
    "PurchasesDefaultAccountCode",
    "PaymentTerms",
    "ContactPersons",
)
# Sub-lists Xero keeps one entry per type of, always rendering every type (blank when unset).
TYPED_LISTS: dict[str, tuple[str, tuple[str, ...], Row]] = {
    "Addresses": ("AddressType", ("STREET", "POBOX"), {"City": "", "Region": "", "PostalCode": "", "Country": ""}),
    "Phones": (
        "PhoneType",
        ("DEFAULT", "DDI", "FAX", "MOBILE"),
        {"PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
    ),
}
# summaryOnly=true drops the heavy parts of a contact.
CONTACT_SUMMARY_DROPS = ("Addresses", "Phones", "ContactPersons", "ContactGroups", "PaymentTerms", "Balances")

INVOICE_TYPES = ("ACCREC", "ACCPAY")
INVOICE_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
INVOICE_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
    "PAID": set(),
    "VOIDED": set(),
    "DELETED": set(),
}
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
# POST /Invoices/{id}/Email: "The invoice must be of Type ACCREC and a valid Status for sending (SUBMITTED,
# AUTHORISED or PAID)" (Xero's Invoices docs). GET /Invoices/{id}/OnlineInvoice: "you cannot retrieve an online
# invoice url for DRAFT invoices"; refusing a DELETED one too (a deleted draft) is our guess.
EMAILABLE_STATUSES = ("SUBMITTED", "AUTHORISED", "PAID")
NO_ONLINE_INVOICE_STATUSES = ("DRAFT", "DELETED")
ONLINE_INVOICE_URL = "https://in.xero.com/"
ONLINE_INVOICE_TOKEN_CHARS = string.ascii_letters + string.digits
INVOICE_COPIED = (
    "Reference",
    "Url",
    "BrandingThemeID",
    "SentToContact",
    "ExpectedPaymentDate",
    "PlannedPaymentDate",
)
LINE_INPUTS = (
    "LineItemID",
    "Description",
    "Quantity",
    "UnitAmount",
    "ItemCode",
    "AccountCode",
    "TaxType",
    "TaxAmount",
    "LineAmount",
    "DiscountRate",
    "DiscountAmount",
    "Tracking",
)

# Top-level properties of the spec's schemas: the fields a `where` clause or `order` may name.
CONTACT_FIELDS = frozenset(
    {"ContactID", "MergedToContactID", "Addresses", "Phones", "UpdatedDateUTC", "ContactGroups", "IsSupplier"}
    | {"IsCustomer", "SalesDefaultLineAmountType", "PurchasesDefaultLineAmountType", "Website", "BrandingTheme"}
    | {"BatchPayments", "Discount", "Balances", "Attachments", "HasAttachments", "HasValidationErrors"}
    | {"SalesTrackingCategories", "PurchasesTrackingCategories", "TrackingCategoryName"}
    | set(CONTACT_WRITABLE)
)
#: What a purchase order create copies as sent; the rest is computed (lines, totals) or checked (contact).
PURCHASE_ORDER_COPIED = (
    "Reference",
    "DeliveryAddress",
    "AttentionTo",
    "Telephone",
    "DeliveryInstructions",
    "BrandingThemeID",
)
PURCHASE_ORDER_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
PURCHASE_ORDER_STATUSES = frozenset({"DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED"})
PURCHASE_ORDER_FIELDS = frozenset(
    {"PurchaseOrderID", "PurchaseOrderNumber", "Reference", "Date", "DeliveryDate", "Status", "Contact"}
    | {"CurrencyCode", "SubTotal", "TotalTax", "Total", "UpdatedDateUTC"}
)
INVOICE_FIELDS = frozenset(
    {"Type", "Contact", "LineItems", "Date", "DueDate", "LineAmountTypes", "InvoiceNumber", "Reference"}
    | {"BrandingThemeID", "Url", "CurrencyCode", "CurrencyRate", "Status", "SentToContact", "SubTotal"}
    | {"ExpectedPaymentDate", "PlannedPaymentDate", "TotalTax", "Total", "TotalDiscount", "InvoiceID"}
    | {"HasAttachments", "IsDiscounted", "Payments", "AmountDue", "AmountPaid", "FullyPaidOnDate"}
    | {"AmountCredited", "UpdatedDateUTC", "CreditNotes", "Prepayments", "Overpayments", "HasErrors"}
)
ITEM_FIELDS = frozenset(
    {"Code", "InventoryAssetAccountCode", "Name", "IsSold", "IsPurchased", "Description", "ItemID"}
    | {"PurchaseDescription", "PurchaseDetails", "SalesDetails", "IsTrackedAsInventory", "UpdatedDateUTC"}
    | {"TotalCostPool", "QuantityOnHand"}
)
# XS Item: "max length" of Code, Name, Description and PurchaseDescription.
ITEM_LIMITS = {"Code": 30, "Name": 50, "Description": 4000, "PurchaseDescription": 4000}
ITEM_PURCHASE_PARTS = ("PurchaseDescription", "PurchaseDetails")
PAYMENT_FIELDS = frozenset(
    {"Invoice", "Account", "Date", "CurrencyRate", "Amount", "BankAmount", "Reference", "IsReconciled"}
    | {"Status", "PaymentType", "UpdatedDateUTC", "PaymentID", "HasAccount", "HasValidationErrors"}
)
TAX_RATE_FIELDS = frozenset(
    {"Name", "TaxType", "TaxComponents", "Status", "ReportTaxType", "DisplayTaxRate", "EffectiveRate"}
)
ACCOUNT_FIELDS = frozenset({"AccountID", "Code", "Name", "Type", "TaxType", "Status", "Class"})

# Repeating invoices (XS RepeatingInvoice and Schedule). The messages are guesses worded after Xero's others:
# XS documents the fields and enums, not the refusals.
REPEATING_UNITS = ("WEEKLY", "MONTHLY")
REPEATING_DUE_DATE_TYPES = (
    "DAYSAFTERBILLDATE",
    "DAYSAFTERBILLMONTH",
    "DAYSAFTERINVOICEDATE",
    "DAYSAFTERINVOICEMONTH",
    "OFCURRENTMONTH",
    "OFFOLLOWINGMONTH",
)
REPEATING_CREATE_STATUSES = ("DRAFT", "AUTHORISED")
REPEATING_FIELDS = frozenset(
    {"Type", "Contact", "Schedule", "LineItems", "LineAmountTypes", "Reference", "BrandingThemeID"}
    | {"CurrencyCode", "Status", "SubTotal", "TotalTax", "Total", "RepeatingInvoiceID", "ID", "HasAttachments"}
    | {"Attachments", "ApprovedForSending", "SendCopy", "MarkAsSent", "IncludePDF"}
)
REPEATING_MSG = {
    "schedule": "A Schedule must be specified for a repeating invoice.",
    "period": "Schedule Period must be a whole number of at least 1.",
    "unit": "Schedule Unit must be WEEKLY or MONTHLY.",
    "duedate": "Schedule DueDate must be a whole number of at least 0.",
    "duedatetype": "Schedule DueDateType is not valid.",
    "start_date": "Schedule StartDate must be specified.",
    "end_before_start": "Schedule EndDate must not be before its StartDate.",
    "status": "Repeating invoice Status '{status}' is not valid for this operation. It must be DRAFT or AUTHORISED.",
    "reference_accpay": "Reference can only be set on a sales (ACCREC) repeating invoice.",
    "lines": "A repeating invoice must have at least one line item.",
    "only_delete": "A repeating invoice template can only be deleted (Status DELETED).",
    "missing": "Repeating invoice could not be found.",
}


def _repeating_after(day: date, unit: str, period: int) -> date:
    """The next scheduled date: ``period`` weeks or months on (a month end clamps, 31 Jan -> 28/29 Feb)."""
    if unit == "WEEKLY":
        return date.fromordinal(day.toordinal() + 7 * period)
    months = day.month - 1 + period
    year, month = day.year + months // 12, months % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _repeating_due(day: date, due: int, kind: str) -> date:
    """A generated invoice's DueDate from its date and the template's DueDate/DueDateType."""
    if kind in ("DAYSAFTERBILLDATE", "DAYSAFTERINVOICEDATE"):
        return date.fromordinal(day.toordinal() + due)
    month_end = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
    if kind in ("DAYSAFTERBILLMONTH", "DAYSAFTERINVOICEMONTH"):
        return date.fromordinal(month_end.toordinal() + due)
    if kind == "OFCURRENTMONTH":
        return date(day.year, day.month, min(max(due, 1), month_end.day))
    following = _repeating_after(date(day.year, day.month, 1), "MONTHLY", 1)  # OFFOLLOWINGMONTH
    last_day = calendar.monthrange(following.year, following.month)[1]
    return date(following.year, following.month, min(max(due, 1), last_day))


# ---------------------------------------------------------------------------------------------------------
# Small helpers: dates, money, JSON, request arguments
# ---------------------------------------------------------------------------------------------------------

_NET_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def net_date(ms: int, *, offset: bool = True) -> str:
    """Xero's .NET JSON date, e.g. ``/Date(1573755038314+0000)/``."""
    return f"/Date({ms}+0000)/" if offset else f"/Date({ms})/"


def _epoch_ms(epoch: float) -> int:
    return int(epoch * 1000)


def _date_ms(day: date) -> int:
    return calendar.timegm(day.timetuple()) * 1000


def _net_ms(value: Any) -> int | None:
    match = _NET_DATE.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_7(epoch: float) -> str:
    """Identity timestamps: ``2019-12-07T18:46:19.5165400``."""
    stamp = datetime.fromtimestamp(epoch, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}0"


def _parse_date(value: Any) -> date:
    """A request date: ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SS`` or ``/Date(ms+0000)/``."""
    ms = _net_ms(value)
    if ms is not None:
        return datetime.fromtimestamp(ms / 1000, UTC).date()
    return date.fromisoformat(str(value).strip()[:10])


def _parse_http_time(value: str | None) -> float | None:
    """If-Modified-Since: ISO 8601 (naive = UTC) or an RFC 1123 HTTP date; unparseable values are ignored."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            stamp = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _dec(value: Any) -> Decimal:
    """Decimal from JSON input; raises ValueError for anything that is not a number."""
    if isinstance(value, bool) or value is None:
        raise ValueError(value)
    if isinstance(value, float):
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(value) from exc
    if not result.is_finite():
        raise ValueError(value)
    return result


def _money(value: Decimal, places: Decimal = CENT) -> Decimal:
    return value.quantize(places, rounding=XERO_ROUNDING)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: Row) -> str:
    """A JWT-shaped token (header.payload.signature) like Xero's; the signature is random bytes."""
    header = {"alg": "RS256", "kid": "1CAF8E66772D6DC028D6726FD0261581570EFC19", "typ": "JWT"}
    parts = [json.dumps(part, separators=(",", ":")).encode() for part in (header, claims)]
    return ".".join([*(_b64url(part) for part in parts), _b64url(secrets.token_bytes(256))])


def _arg(request: Request, name: str) -> str | None:
    """Query argument by name, case-insensitively (Xero's query names are not case-sensitive)."""
    wanted = name.lower()
    for key, value in request.args.items(multi=True):
        if key.lower() == wanted:
            return str(value)
    return None


def _flag(request: Request, name: str, default: bool = False) -> bool:
    value = _arg(request, name)
    return default if value is None else value.strip().lower() == "true"


def _csv(request: Request, name: str) -> list[str] | None:
    value = _arg(request, name)
    if value is None or not value.strip():
        return None
    return [part.strip().strip('"') for part in value.split(",") if part.strip()]


def _unitdp(request: Request) -> int:
    return 4 if (_arg(request, "unitdp") or "").strip() == "4" else 2


def _new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A non-200 answer: status, body (JSON-able, or str for text) and extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class ElementError(Exception):
    """One element of a PUT/POST batch failed validation; ``element`` is what Xero echoes back."""

    def __init__(self, messages: list[str], element: Row) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.element = element


def problem(status: int, title: str, detail: str) -> Row:
    """The problem-details body Xero's gateway returns on 401/403/429."""
    return {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": _new_id(),
        "Extensions": {},
    }


def validation_exception(elements: list[Row]) -> Row:
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": elements,
    }


def _not_found() -> ApiError:
    return ApiError(404, NOT_FOUND_TEXT)


def _query_error(message: str) -> ApiError:
    return ApiError(400, {"ErrorNumber": 16, "Type": "QueryParseException", "Message": message})


def _post_data_error(message: str) -> ApiError:
    return ApiError(400, {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message})


def _with_errors(element: Row, messages: list[str], flag: str) -> Row:
    out = dict(element)
    out[flag] = True
    out["ValidationErrors"] = [{"Message": message} for message in messages]
    return out


# ---------------------------------------------------------------------------------------------------------
# `where` and `order`: the subset of Dynamic LINQ that Xero accepts
# ---------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"]|"")*")|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<op>==|!=|<>|>=|<=|&&|\|\||[=<>!().,])|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARISONS = ("==", "=", "!=", "<>", ">=", "<=", ">", "<")
Getter = Callable[[Row], Any]
Predicate = Callable[[Row], bool]


def _tokenize(expr: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    text = expr.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise _query_error(f"Syntax error (at index {pos})")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace('""', '"')  # Dynamic LINQ escapes a quote by doubling it
        tokens.append((kind, value, match.start(kind)))
        pos = match.end()
    return tokens


def _norm(value: Any) -> Any:
    """Comparable form: .NET dates -> epoch ms, numbers -> Decimal, strings -> casefolded."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return _dec(value)
    if isinstance(value, str):
        ms = _net_ms(value)
        return ms if ms is not None else value.casefold()
    return value


def _compare(left: Any, op: str, right: Any) -> bool:
    a, b = _norm(left), _norm(right)
    if op in ("==", "="):
        return bool(a == b)
    if op in ("!=", "<>"):
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        return bool({">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op])
    except TypeError:
        return False


def _path(row: Any, names: list[str]) -> Any:
    for name in names:
        row = row.get(name) if isinstance(row, dict) else None
    return row


_STRING_METHODS: dict[str, Callable[[str, list[Any]], Any]] = {
    "contains": lambda s, args: str(args[0]).casefold() in s.casefold(),
    "startswith": lambda s, args: s.casefold().startswith(str(args[0]).casefold()),
    "endswith": lambda s, args: s.casefold().endswith(str(args[0]).casefold()),
    "tolower": lambda s, args: s.lower(),
    "toupper": lambda s, args: s.upper(),
    "trim": lambda s, args: s.strip(),
}


class WhereParser:
    """Recursive descent over ``a == "x" && (b != null || C.Contains("y"))`` into a row predicate."""

    def __init__(self, expr: str, fields: frozenset[str], type_name: str) -> None:
        self._tokens = _tokenize(expr)
        self._pos = 0
        self._fields = fields
        self._type = type_name

    def parse(self) -> Predicate:
        predicate = self._or()
        if self._pos != len(self._tokens):
            raise self._syntax()
        return predicate

    def _peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _syntax(self) -> ApiError:
        token = self._peek()
        return _query_error(f"Syntax error (at index {token[2] if token else 'end'})")

    def _accept(self, *values: str) -> str | None:
        token = self._peek()
        if token and token[0] in ("op", "ident") and token[1].lower() in values:
            self._pos += 1
            return token[1]
        return None

    def _expect(self, value: str) -> None:
        if self._accept(value) is None:
            raise self._syntax()

    def _or(self) -> Predicate:
        terms = [self._and()]
        while self._accept("||", "or"):
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else (lambda row: any(term(row) for term in terms))

    def _and(self) -> Predicate:
        terms = [self._unary()]
        while self._accept("&&", "and"):
            terms.append(self._unary())
        return terms[0] if len(terms) == 1 else (lambda row: all(term(row) for term in terms))

    def _unary(self) -> Predicate:
        if self._accept("!", "not"):
            inner = self._unary()
            return lambda row: not inner(row)
        if self._accept("("):
            inner = self._or()
            self._expect(")")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        left = self._operand()
        op = self._accept(*_COMPARISONS)
        if op is None:
            return lambda row: bool(left(row))
        right = self._operand()
        return lambda row: _compare(left(row), op, right(row))

    def _operand(self) -> Getter:
        token = self._peek()
        if token is None:
            raise self._syntax()
        kind, value, _ = token
        self._pos += 1
        if kind == "str":
            return lambda row: value
        if kind == "num":
            number = Decimal(value)
            return lambda row: number
        if kind != "ident":
            raise self._syntax()
        return self._literal_or_member(value)

    def _literal_or_member(self, name: str) -> Getter:
        constants = {"true": True, "false": False, "null": None}
        if name.lower() in constants:
            constant = constants[name.lower()]
            return lambda row: constant
        if name.lower() == "datetime" and self._accept("("):  # DateTime(2024, 1, 31[, 13, 5, 0]) in UTC
            parts = [int(_dec(arg({}))) for arg in self._arguments()]
            if not 3 <= len(parts) <= 6:
                raise self._syntax()
            year, month, day, hour, minute, second = (parts + [0, 0, 0])[:6]
            stamp = calendar.timegm((year, month, day, hour, minute, second)) * 1000
            return lambda row: stamp
        if name.lower() == "guid" and self._accept("("):
            args = self._arguments()
            return lambda row: str(args[0](row)) if args else None
        return self._member(name)

    def _arguments(self) -> list[Getter]:
        args: list[Getter] = []
        if self._accept(")"):
            return args
        args.append(self._operand())
        while self._accept(","):
            args.append(self._operand())
        self._expect(")")
        return args

    def _member(self, name: str) -> Getter:
        if name not in self._fields:
            raise _query_error(f"No property or field '{name}' exists in type '{self._type}'")
        names = [name]

        def read_field(row: Row) -> Any:
            return _path(row, names)

        getter: Getter = read_field
        while self._accept("."):
            token = self._peek()
            if token is None or token[0] != "ident":
                raise self._syntax()
            self._pos += 1
            if self._accept("("):
                getter = self._method(getter, token[1], self._arguments())
            else:
                names.append(token[1])
        return getter

    def _method(self, target: Getter, name: str, args: list[Getter]) -> Getter:
        method = _STRING_METHODS.get(name.lower())
        if method is None:
            raise _query_error(f"No applicable method '{name}' exists in type 'String'")

        def call(row: Row) -> Any:
            value = target(row)
            return None if value is None else method(str(value), [arg(row) for arg in args])

        return call


def compile_where(expr: str, fields: frozenset[str], type_name: str) -> Predicate:
    return WhereParser(expr, fields, type_name).parse()


def _sort_key(value: Any) -> tuple[int, Any]:
    normed = _norm(value)
    return (0, 0) if normed is None else (1, normed)


def order_rows(rows: list[Row], order: str, fields: frozenset[str], type_name: str) -> list[Row]:
    """Apply ``order=Name ASC, UpdatedDateUTC DESC``."""
    terms = []
    for part in order.split(","):
        words = part.split()
        if not words:
            continue
        if words[0].split(".")[0] not in fields:
            raise _query_error(f"No property or field '{words[0]}' exists in type '{type_name}'")
        terms.append((words[0].split("."), len(words) > 1 and words[1].upper() == "DESC"))
    for names, descending in reversed(terms):
        try:
            rows = sorted(rows, key=lambda row: _sort_key(_path(row, names)), reverse=descending)
        except TypeError:
            continue
    return rows


# ---------------------------------------------------------------------------------------------------------
# Identity: tokens, codes, connections
# ---------------------------------------------------------------------------------------------------------


@dataclass
class AccessToken:
    value: str
    expires_at: float
    scope: tuple[str, ...]
    auth_event_id: str


@dataclass
class RefreshToken:
    value: str
    scope: tuple[str, ...]
    auth_event_id: str
    issued_at: float
    seq: int
    rotated_at: float | None = None
    successor: str | None = None
    replay: Row | None = None
    revoked: bool = False


@dataclass
class AuthCode:
    value: str
    redirect_uri: str
    scope: tuple[str, ...]
    auth_event_id: str
    expires_at: float
    used: bool = False


@dataclass
class Record:
    """One stored entity: Xero fields plus when it last changed (epoch ms) and its creation order."""

    data: Row
    updated_ms: int
    seq: int


@dataclass
class RateLimiter:
    """Xero's per-tenant minute/day/concurrent limits and the app-wide minute limit (rolling windows).

    ``time_scale`` runs Xero's time faster than real time (20: a minute's window lasts 3 s); Retry-After
    stays in Xero's seconds, so a client on the same scale reads it right.
    """

    minute: int
    day: int
    concurrent: int
    app_minute: int
    time_scale: float = 1.0
    _minute: dict[str, RollingWindow] = field(default_factory=dict)
    _day: dict[str, RollingWindow] = field(default_factory=dict)
    _app: RollingWindow = field(init=False)
    _in_flight: InFlight = field(default_factory=InFlight)

    def __post_init__(self) -> None:
        self._app = RollingWindow(self._span(60))

    def _span(self, seconds: float) -> float:
        return seconds / self.time_scale

    def _windows(self, tenant: str) -> tuple[RollingWindow, RollingWindow, RollingWindow]:
        minute = self._minute.setdefault(tenant, RollingWindow(self._span(60)))
        return minute, self._day.setdefault(tenant, RollingWindow(self._span(86400))), self._app

    def acquire(self, tenant: str, now: float) -> tuple[str, int] | None:
        """Count one call, or return (X-Rate-Limit-Problem, Retry-After seconds) when over a limit.

        The header's values are the adapter's GUESSES["rate_limit_problem_values"].
        """
        minute, day, app = self._windows(tenant)
        for problem_name, window, limit in (("day", day, self.day), ("appminute", app, self.app_minute),
                                            ("minute", minute, self.minute)):  # fmt: skip
            if window.count(now) >= limit:
                oldest = window.oldest()
                wait = oldest + window.span - now if oldest is not None else window.span
                return problem_name, max(1, math.ceil(wait * self.time_scale))
        if self._in_flight.count(tenant) >= self.concurrent:
            return "concurrent", 1
        for window in (minute, day, app):
            window.add(now)
        self._in_flight.enter(tenant)
        return None

    def release(self, tenant: str) -> None:
        self._in_flight.leave(tenant)

    def headers(self, tenant: str, now: float) -> dict[str, str]:
        minute, day, app = self._windows(tenant)
        return {
            "X-DayLimit-Remaining": str(max(0, self.day - day.count(now))),
            "X-MinLimit-Remaining": str(max(0, self.minute - minute.count(now))),
            "X-AppMinLimit-Remaining": str(max(0, self.app_minute - app.count(now))),
        }

    def reset(self) -> None:
        self._minute.clear()
        self._day.clear()
        self._app.clear()


@dataclass(frozen=True)
class Endpoint:
    """What a route serves: its handler, the SCOPES resource a token needs ("" for identity/connections), and
    where its path arguments sit (segment index, name), to read them from the path as sent."""

    handler: Callable[..., Any]
    resource: str
    arguments: tuple[tuple[int, str], ...]

    @classmethod
    def of(cls, path: str, handler: Callable[..., Any], resource: str) -> tuple[str, Endpoint]:
        """The lower-case werkzeug rule for ``path`` (``/Contacts/<ref>``: an argument is a whole segment) and
        its endpoint."""
        segments = path.split("/")
        arguments = tuple((index, segment[1:-1]) for index, segment in enumerate(segments) if segment.startswith("<"))
        rule = "/".join(segment if segment.startswith("<") else segment.lower() for segment in segments)
        return rule, cls(handler, resource, arguments)

    def arguments_in(self, path: str) -> dict[str, str]:
        """The path's arguments as sent: the rules match the lower-cased path, an id or number keeps its case."""
        segments = path.split("/")  # lower() keeps every "/" where it was, so the segments line up
        return {name: segments[index] for index, name in self.arguments}


# ---------------------------------------------------------------------------------------------------------
# Webhooks (the app's webhook in Xero's developer portal)
# ---------------------------------------------------------------------------------------------------------

#: The sandbox app's webhook key: a sandbox credential (Xero shows a 88-character base64 key like it).
DEFAULT_WEBHOOK_KEY = "c2FuZGJveC14ZXJvLXdlYmhvb2sta2V5LW5vdC1hLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ=="  # noqa: S105
WEBHOOK_CATEGORIES = ("CONTACT", "INVOICE")
#: Xero's resource URL prefix per category (events point at the public API, wherever the sandbox runs).
WEBHOOK_RESOURCE_URLS = {
    "CONTACT": "https://api.xero.com/api.xro/2.0/Contacts/",
    "INVOICE": "https://api.xero.com/api.xro/2.0/Invoices/",
}
WEBHOOK_STATUS_OK = "OK"
WEBHOOK_STATUS_ITR = "INTENT_TO_RECEIVE_REQUIRED"


def xero_signature(key: str, body: bytes) -> str:
    """``x-xero-signature``: base64(HMAC-SHA256(webhook key, raw body))."""
    return outbound.hmac_sha256_base64(key, body)


def _entropy() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


@dataclass
class _XeroBatch:
    body: bytes
    events: int
    attempt: int = 1


class XeroWebhooks:
    """The app's webhook as Xero's developer portal holds it: a signing key, a delivery URL, categories.

    ``subscribe(url)`` saves the URL and runs *intent to receive*, as saving in the portal does: a correctly
    signed and a wrongly signed POST of ``{"events": [], ...}``; the endpoint must answer 200 and 401, both
    with an empty body, within ``timeout`` seconds, or the webhook stays INTENT_TO_RECEIVE_REQUIRED and
    sends nothing (``intent_to_receive()`` runs the check again, like the portal's button). Once OK,
    every CREATE/UPDATE of a contact or invoice (a payment shows as an invoice UPDATE; Xero has no payment
    webhooks) queues one event; ``flush()`` POSTs everything queued as one signed batch per ``batch_size``
    events, with ``firstEventSequence``/``lastEventSequence`` and a random ``entropy``, and retries the
    batches whose earlier attempt failed (any answer but 200), the same bytes each time, up to
    ``max_attempts`` (Xero retries for 24 hours, then disables the webhook: here the batch is dropped and
    recorded as lost). Nothing runs in the background.
    """

    def __init__(
        self, sandbox: XeroSandbox, key: str, *, timeout: float = 5.0, max_attempts: int = 5, batch_size: int = 100
    ) -> None:
        self._sandbox = sandbox
        self.key = key
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        self.url: str | None = None
        self.categories: tuple[str, ...] = WEBHOOK_CATEGORIES
        self.status = WEBHOOK_STATUS_ITR
        self._queue: list[Row] = []
        self._retries: list[_XeroBatch] = []
        self._sequence = 0
        self.deliveries: list[Row] = []

    def subscribe(self, url: str, categories: Iterable[str] = WEBHOOK_CATEGORIES) -> str:
        """Save the delivery URL and categories, then run intent to receive; returns the webhook's status."""
        wanted = tuple(dict.fromkeys(c.upper() for c in categories))
        unknown = [c for c in wanted if c not in WEBHOOK_CATEGORIES]
        if not url.strip() or unknown or not wanted:
            raise ValueError(f"a delivery URL and categories among {', '.join(WEBHOOK_CATEGORIES)} are required")
        with self._sandbox.state.lock:
            self.url, self.categories, self.status = url.strip(), wanted, WEBHOOK_STATUS_ITR
            self._queue.clear()
            self._retries.clear()
        self.intent_to_receive()
        return self.status

    def intent_to_receive(self) -> bool:
        """Send the check (right signature, then a wrong one); OK only if both answers are right."""
        url = self.url
        if url is None:
            raise ValueError("no delivery URL: subscribe first")
        passed = True
        for signed_right in (True, False):
            payload = {"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": _entropy()}
            body = json.dumps(payload, separators=(",", ":")).encode()
            key = self.key if signed_right else secrets.token_urlsafe(48)
            status, answer, error = self._post(url, body, key)
            expected = 200 if signed_right else 401
            ok = status == expected and not answer and not error
            if not ok and not error:
                error = f"expected {expected} with an empty body, got {status} with {len(answer)} bytes"
            self._log(url, body, key, status, ok, error, kind="intent_to_receive", attempt=1, events=0)
            passed = passed and ok
        with self._sandbox.state.lock:
            self.status = WEBHOOK_STATUS_OK if passed else WEBHOOK_STATUS_ITR
        return passed

    def record(self, category: str, resource_id: str, event_type: str) -> None:
        """Queue one event (sandbox lock held by the caller, or taken here)."""
        with self._sandbox.state.lock:
            if self.status != WEBHOOK_STATUS_OK or category not in self.categories:
                return
            now = self._sandbox.state.clock.now()
            self._queue.append(
                {
                    "resourceUrl": WEBHOOK_RESOURCE_URLS[category] + resource_id,
                    "resourceId": resource_id,
                    "eventDateUtc": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                    "eventType": event_type,
                    "eventCategory": category,
                    "tenantId": self._sandbox.tenant_id,
                    "tenantType": "ORGANISATION",
                }
            )

    def pending(self) -> int:
        with self._sandbox.state.lock:
            return len(self._queue) + sum(batch.events for batch in self._retries)

    def flush(self) -> Row:
        """One attempt for every queued event (in batches) and every batch awaiting a retry."""
        with self._sandbox.state.lock:
            url = self.url
            batches, self._retries = self._retries, []
            while self._queue:
                events, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
                first = self._sequence + 1
                self._sequence += len(events)
                payload = {
                    "events": events,
                    "firstEventSequence": first,
                    "lastEventSequence": self._sequence,
                    "entropy": _entropy(),
                }
                batches.append(_XeroBatch(json.dumps(payload, separators=(",", ":")).encode(), len(events)))
        attempts = ok = 0
        for batch in batches:
            if url is None:
                break
            status, _, error = self._post(url, batch.body, self.key)
            success = status == 200 and not error
            self._log(url, batch.body, self.key, status, success, error, "events", batch.attempt, batch.events)
            attempts += 1
            ok += success
            if not success:
                with self._sandbox.state.lock:
                    if batch.attempt < self.max_attempts:
                        self._retries.append(_XeroBatch(batch.body, batch.events, batch.attempt + 1))
                    else:
                        self.deliveries.append({"kind": "lost", "events": batch.events, "body": batch.body.decode()})
        return {"attempts": attempts, "succeeded": ok, "failed": attempts - ok}

    def _post(self, url: str, body: bytes, key: str) -> tuple[int | None, bytes, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "x-xero-signature": xero_signature(key, body)}
        sent = outbound.send(url, body, headers, self.timeout)
        return sent.status, sent.content, sent.error or ("" if sent.in_time else "timed out")

    def _log(  # noqa: PLR0913 - one delivery record
        self,
        url: str,
        body: bytes,
        key: str,
        status: int | None,
        ok: bool,
        error: str,
        kind: str,
        attempt: int,
        events: int,
    ) -> None:
        with self._sandbox.state.lock:
            self.deliveries.append(
                {
                    "kind": kind,
                    "url": url,
                    "attempt": attempt,
                    "events": events,
                    "status": status,
                    "ok": ok,
                    "error": error,
                    "at": self._sandbox.state.clock.now(),
                    "headers": {
                        "Content-Type": "application/json; charset=utf-8",
                        "x-xero-signature": xero_signature(key, body),
                    },
                    "body": body.decode(),
                }
            )


# ---------------------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------------------


class XeroSandbox(AccountingSandbox):
    """A stateful Xero (identity + Accounting API) for one organisation, as a WSGI app."""

    def __init__(
        self,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        tenant_id: str = DEFAULT_TENANT_ID,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        minute_limit: int = 60,
        day_limit: int = 5000,
        concurrent_limit: int = 5,
        app_minute_limit: int = 10000,
        refresh_grace_seconds: float = 1800,
        *,
        time_scale: float = 1.0,
        tenant_name: str = "Demo Company (NZ)",
        app_name: str = "Closeloop",
        webhook_key: str = DEFAULT_WEBHOOK_KEY,
        webhook_timeout: float = 5.0,
    ) -> None:
        super().__init__(client_id, client_secret, refresh_token)
        self.tenant_id = tenant_id.lower()
        self.tenant_name = tenant_name
        self.app_name = app_name
        self.refresh_grace_seconds = refresh_grace_seconds
        self.webhooks = XeroWebhooks(self, webhook_key, timeout=webhook_timeout)
        self._limits = RateLimiter(minute_limit, day_limit, concurrent_limit, app_minute_limit, time_scale)
        self._routes = self._build_routes()
        self._init_data()

    # ---- state ------------------------------------------------------------------------------------------

    def _init_data(self) -> None:
        now = self.state.clock.now()
        self.contacts_by_id: dict[str, Record] = {}
        self.invoices_by_id: dict[str, Record] = {}
        self.items_by_id: dict[str, Record] = {}
        self.payments_by_id: dict[str, Record] = {}
        self.purchase_orders_by_id: dict[str, Record] = {}
        self.quotes_by_id: dict[str, Record] = {}
        self.repeating_by_id: dict[str, Record] = {}
        self._seq = 0
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthCode] = {}
        self._idempotency = IdempotencyCache(IDEMPOTENCY_TTL)
        self._emails: list[Row] = []
        self._online_urls: dict[str, str] = {}
        self._limits.reset()
        auth_event_id = _new_id()
        self._connection: Row = {
            "id": _new_id(),
            "authEventId": auth_event_id,
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
            "tenantName": self.tenant_name,
            "createdDateUtc": _iso_7(now),
            "updatedDateUtc": _iso_7(now),
        }
        self._connected = True
        self._refresh[self.initial_refresh_token] = RefreshToken(
            self.initial_refresh_token, tuple(DEFAULT_SCOPE.split()), auth_event_id, now, self._next_seq()
        )

    def reset(self) -> None:
        """Forget all data, tokens, limits, webhooks, the request log and faults (the clock keeps its offset)."""
        with self.state.lock:
            self.state.reset_log()
            self._init_data()
            self.webhooks.reset()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _now(self) -> float:
        return self.state.clock.now()

    def _now_ms(self) -> int:
        return _epoch_ms(self._now())

    def _today(self) -> date:
        return datetime.fromtimestamp(self._now(), UTC).date()

    # ---- helpers for tests ------------------------------------------------------------------------------

    def contacts(self) -> list[Row]:
        """Every stored contact (archived too) as the API renders it, oldest first."""
        with self.state.lock:
            return [self._render_contact(rec) for rec in self._sorted(self.contacts_by_id)]

    def invoices(self) -> list[Row]:
        """Every stored invoice with its line items; money stays Decimal."""
        with self.state.lock:
            return [self._render_invoice(rec, full_contact=False) for rec in self._sorted(self.invoices_by_id)]

    def items(self) -> list[Row]:
        with self.state.lock:
            return [self._render_item(rec, 4) for rec in self._sorted(self.items_by_id)]

    def payments(self) -> list[Row]:
        with self.state.lock:
            return [self._render_payment(rec) for rec in self._sorted(self.payments_by_id)]

    def emails(self) -> list[Row]:
        """Every invoice email sent, oldest first: ``{"InvoiceID", "To": [addresses], "at": epoch seconds}``
        (``at`` is the sandbox clock's time of sending)."""
        with self.state.lock:
            return [{**email, "To": list(email["To"])} for email in self._emails]

    def seed_contact(self, **fields: Any) -> Row:
        """Create a contact directly (same rules as PUT /Contacts); raises ValueError when Xero would refuse."""
        with self.state.lock:
            try:
                return self._render_contact(self._save_contact(fields, "create"))
            except ElementError as err:
                raise ValueError("; ".join(err.messages)) from err

    def seed_item(self, **fields: Any) -> Row:
        """Create an item directly (same rules as PUT /Items, unitdp=4)."""
        with self.state.lock:
            try:
                return self._render_item(self._save_item(fields, "create", None, 4), 4)
            except ElementError as err:
                raise ValueError("; ".join(err.messages)) from err

    @property
    def current_refresh_token(self) -> str | None:
        """The newest refresh token that a refresh would still accept (None after revocation)."""
        with self.state.lock:
            now = self._now()
            live = [rt for rt in self._refresh.values() if self._refresh_usable(rt, now)]
            return max(live, key=lambda rt: rt.seq).value if live else None

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired (API calls get 401 TokenExpired)."""
        with self.state.lock:
            now = self._now()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now - 1)

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token: refreshing answers invalid_grant (live access tokens keep working)."""
        with self.state.lock:
            for token in self._refresh.values():
                token.revoked = True

    def _sorted(self, table: dict[str, Record]) -> list[Record]:
        return sorted(table.values(), key=lambda rec: rec.seq)

    # ---- WSGI -------------------------------------------------------------------------------------------

    # ---- the API (SandboxApp's pipeline: log, faults, then ``handle``) -----------------------------------

    def handle(self, request: Request, delay: float) -> Response:
        serve = self._match(request)
        if serve is None:
            return self._text(NOT_FOUND_TEXT, 404)
        response: Response = serve(request, delay)
        return response

    def _serve(self, endpoint: Endpoint, request: Request, delay: float) -> Response:
        arguments = endpoint.arguments_in(request.path)
        if endpoint.resource:
            return self._accounting(request, endpoint, arguments, delay)  # slow inside the concurrency limit
        time.sleep(delay)
        response: Response = endpoint.handler(request, **arguments)
        return response

    def fault_json(self, payload: Any, status: int) -> Response:
        return plain_json(payload, status)

    def fault_response(self, fault: Fault) -> Response:
        response = super().fault_response(fault)
        if fault.status == 429:
            response.headers.setdefault("Retry-After", "60")
            response.headers.setdefault("X-Rate-Limit-Problem", "minute")
        return response

    def internal_error(self) -> Response:
        return self.json({"ErrorNumber": 500, "Type": "UnknownErrorException", "Message": UNKNOWN_ERROR}, 500)

    def _match(self, request: Request) -> Callable[..., Response] | None:
        """The route's server for ``request`` (called with the request and the delay), or None: Xero answers
        an unknown path and a method the path does not take with the same plain-text 404."""
        if request.method == "HEAD":  # werkzeug would answer HEAD with a GET rule; the sandbox serves no HEAD
            return None
        try:  # Xero's paths are case-insensitive: the rules are lower-case, the path is matched lower-cased
            serve, _ = self._routes.match(request.method, request.path.lower())
        except HTTPException:  # NotFound, MethodNotAllowed
            return None
        return serve

    def _build_routes(self) -> Router:
        routes = Router(merge_slashes=False)  # no redirect for "//": it is simply no path of Xero's

        def add(method: str, path: str, handler: Callable[..., Any], resource: str = "") -> None:
            rule, endpoint = Endpoint.of(path, handler, resource)
            routes.add(method, rule, partial(self._serve, endpoint))

        add("POST", "/connect/token", self._token)
        add("POST", "/connect/revocation", self._revocation)
        add("GET", "/identity/connect/authorize", self._authorize)
        add("GET", "/connections", self._connections)
        add("DELETE", "/connections/<ref>", self._delete_connection)
        add("GET", f"{API_PREFIX}/Contacts", self._get_contacts, "contacts")
        add("PUT", f"{API_PREFIX}/Contacts", self._put_contacts, "contacts")
        add("POST", f"{API_PREFIX}/Contacts", self._post_contacts, "contacts")
        add("GET", f"{API_PREFIX}/Contacts/<ref>", self._get_contact, "contacts")
        add("POST", f"{API_PREFIX}/Contacts/<ref>", self._post_contact, "contacts")
        add("GET", f"{API_PREFIX}/Invoices", self._get_invoices, "invoices")
        add("PUT", f"{API_PREFIX}/Invoices", self._put_invoices, "invoices")
        add("POST", f"{API_PREFIX}/Invoices", self._post_invoices, "invoices")
        add("GET", f"{API_PREFIX}/Invoices/<ref>", self._get_invoice, "invoices")
        add("POST", f"{API_PREFIX}/Invoices/<ref>", self._post_invoice, "invoices")
        add("POST", f"{API_PREFIX}/Invoices/<ref>/Email", self._email_invoice, "invoices")
        add("GET", f"{API_PREFIX}/Invoices/<ref>/OnlineInvoice", self._get_online_invoice, "invoices")
        add("GET", f"{API_PREFIX}/Items", self._get_items, "items")
        add("PUT", f"{API_PREFIX}/Items", self._put_items, "items")
        add("POST", f"{API_PREFIX}/Items", self._post_items, "items")
        add("GET", f"{API_PREFIX}/Items/<ref>", self._get_item, "items")
        add("POST", f"{API_PREFIX}/Items/<ref>", self._post_item, "items")
        add("GET", f"{API_PREFIX}/PurchaseOrders", self._get_purchase_orders, "invoices")
        add("PUT", f"{API_PREFIX}/PurchaseOrders", self._put_purchase_orders, "invoices")
        add("GET", f"{API_PREFIX}/PurchaseOrders/<ref>", self._get_purchase_order, "invoices")
        add("GET", f"{API_PREFIX}/Payments", self._get_payments, "payments")
        add("PUT", f"{API_PREFIX}/Payments", self._put_payments, "payments")
        add("GET", f"{API_PREFIX}/Payments/<ref>", self._get_payment, "payments")
        add("POST", f"{API_PREFIX}/Payments/<ref>", self._post_payment, "payments")
        self._add_repeating_routes(add)
        add("GET", f"{API_PREFIX}/TaxRates", self._get_tax_rates, "settings")
        add("GET", f"{API_PREFIX}/Accounts", self._get_accounts, "settings")
        add("GET", f"{API_PREFIX}/Organisation", self._get_organisation, "settings")
        self._add_quote_routes(add)
        return routes

    # ---- responses --------------------------------------------------------------------------------------

    @staticmethod
    def _text(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
        return Response(text, status=status, headers=headers or {}, content_type="text/html; charset=utf-8")

    def _error_response(self, error: ApiError) -> Response:
        if isinstance(error.body, str):
            return self._text(error.body, error.status, error.headers)
        return self.json(error.body, error.status, error.headers)

    def _envelope(self, collection: str, rows: list[Row], pagination: Row | None = None) -> Row:
        out: Row = {
            "Id": _new_id(),
            "Status": "OK",
            "ProviderName": self.app_name,
            "DateTimeUTC": net_date(self._now_ms(), offset=False),
        }
        if pagination is not None:
            out["pagination"] = pagination
        out[collection] = rows
        return out

    # ---- accounting API pipeline: auth -> tenant -> scope -> rate limit -> idempotency -> handler ----------

    def _accounting(self, request: Request, endpoint: Endpoint, arguments: dict[str, str], slow: float) -> Response:
        correlation = {"Xero-Correlation-Id": _new_id()}
        try:
            token = self._authenticate(request)
            tenant = self._tenant(request)
            self._check_scope(token, endpoint.resource, request.method)
        except ApiError as error:
            error.headers.update(correlation)
            return self._error_response(error)
        with self.state.lock:
            over = self._limits.acquire(tenant, self._now())
        if over is not None:
            return self._too_many(tenant, over, correlation)
        try:
            if slow:
                time.sleep(slow)
            response = self._idempotent(request, endpoint, arguments)
        finally:
            with self.state.lock:
                self._limits.release(tenant)
                response_headers = self._limits.headers(tenant, self._now())
        response.headers.update({**response_headers, **correlation})
        return response

    def _too_many(self, tenant: str, over: tuple[str, int], correlation: dict[str, str]) -> Response:
        problem_name, retry_after = over
        with self.state.lock:
            headers = self._limits.headers(tenant, self._now())
        headers.update({"Retry-After": str(retry_after), "X-Rate-Limit-Problem": problem_name, **correlation})
        return self.json(problem(429, "Too Many Requests", "Too Many Requests"), 429, headers)

    def _authenticate(self, request: Request) -> AccessToken:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        unauthorized = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        with self.state.lock:
            token = self._access.get(value.strip()) if scheme.lower() == "bearer" else None
            now = self._now()
        if token is None:
            headers = unauthorized if header else {"WWW-Authenticate": "Bearer"}
            raise ApiError(401, problem(401, "Unauthorized", "AuthenticationUnsuccessful"), headers)
        if token.expires_at <= now:
            expired = datetime.fromtimestamp(token.expires_at, UTC).strftime("%m/%d/%Y %H:%M:%S")
            raise ApiError(401, problem(401, "Unauthorized", f"TokenExpired: token expired at {expired}"), unauthorized)
        return token

    def _tenant(self, request: Request) -> str:
        tenant = request.headers.get("xero-tenant-id", "").strip().lower()
        if tenant != self.tenant_id or not self._connected:
            raise ApiError(403, problem(403, "Forbidden", "AuthenticationUnsuccessful"))
        return tenant

    @staticmethod
    def _check_scope(token: AccessToken, resource: str, method: str) -> None:
        write_scopes, read_scopes = SCOPES[resource]
        allowed = write_scopes | read_scopes if method == "GET" else write_scopes
        if not allowed & set(token.scope):
            raise ApiError(401, problem(401, "Unauthorized", "AuthorizationUnsuccessful"))

    def _idempotent(self, request: Request, endpoint: Endpoint, arguments: dict[str, str]) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None or request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return self._invoke(request, endpoint, arguments)
        if len(key) > IDEMPOTENCY_KEY_MAX:
            detail = f"Idempotency key must be {IDEMPOTENCY_KEY_MAX} characters or less"
            return self.json(problem(400, "Bad Request", detail), 400)
        fingerprint = hashlib.sha256(
            b"\n".join(
                [
                    request.method.encode(),
                    request.path.lower().encode(),
                    request.query_string,
                    request.headers.get("xero-tenant-id", "").lower().encode(),
                    request.get_data(),
                ]
            )
        ).hexdigest()
        with self.state.lock:
            now = self._now()
            cached = self._idempotency.get(key, now)
            if cached is not None:
                if cached.fingerprint != fingerprint:
                    detail = f"Idempotency key {key} is used with a different request"
                    return self.json(problem(400, "Bad Request", detail), 400)
                return cached.response()
            response = self._invoke(request, endpoint, arguments)
            self._idempotency.remember(key, response, now, fingerprint)
            return response

    def _invoke(self, request: Request, endpoint: Endpoint, arguments: dict[str, str]) -> Response:
        """Run an accounting handler: it returns a JSON-able body, or a ready Response (e.g. a 204)."""
        with self.state.lock:
            try:
                result = endpoint.handler(request, **arguments)
            except ApiError as error:
                return self._error_response(error)
            return result if isinstance(result, Response) else self.json(result)

    # ---- identity ---------------------------------------------------------------------------------------

    def _client_credentials(self, request: Request) -> tuple[str | None, str | None]:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            return auth.username, auth.password
        return request.form.get("client_id"), request.form.get("client_secret")

    @staticmethod
    def _oauth_error(error: str, status: int = 400) -> Response:
        response: Response = json_response({"error": error}, status, {"Cache-Control": "no-store"})
        return response

    def _token(self, request: Request) -> Response:
        if (request.mimetype or "") != "application/x-www-form-urlencoded":
            return self._oauth_error("invalid_request")
        if not self.is_client(*self._client_credentials(request)):
            return self._oauth_error("invalid_client")
        grants: dict[str, Callable[[Any, float], Row | str]] = {
            "refresh_token": self._grant_refresh,
            "authorization_code": self._grant_code,
        }
        grant = grants.get(request.form.get("grant_type", ""))
        if grant is None:
            return self._oauth_error("unsupported_grant_type")
        with self.state.lock:
            result = grant(request.form, self._now())
        if isinstance(result, str):
            return self._oauth_error(result)
        response: Response = json_response(result, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})
        return response

    def _refresh_usable(self, token: RefreshToken, now: float) -> bool:
        return not token.revoked and token.rotated_at is None and token.issued_at + REFRESH_TOKEN_TTL > now

    def _grant_refresh(self, form: Any, now: float) -> Row | str:
        value = form.get("refresh_token")
        if not value:
            return "invalid_request"
        token = self._refresh.get(value)
        if token is None or token.revoked or token.issued_at + REFRESH_TOKEN_TTL <= now:
            return "invalid_grant"
        if token.rotated_at is None:
            issued = self._issue(token.scope, token.auth_event_id, now)
            token.rotated_at, token.successor, token.replay = now, issued.get("refresh_token"), issued
            return issued
        # Already rotated: Xero lets the previous token be replayed for a grace period (a lost response),
        # answering with the same new token set, as long as that new set has not been used in turn.
        successor = self._refresh.get(token.successor or "")
        in_grace = now - token.rotated_at <= self.refresh_grace_seconds
        if in_grace and successor is not None and self._refresh_usable(successor, now) and token.replay:
            return token.replay
        return "invalid_grant"

    def _grant_code(self, form: Any, now: float) -> Row | str:
        code = self._codes.get(form.get("code") or "")
        if code is None or code.used or code.expires_at <= now or code.redirect_uri != form.get("redirect_uri"):
            return "invalid_grant"
        code.used = True
        self._connected = True
        self._connection.update(authEventId=code.auth_event_id, updatedDateUtc=_iso_7(now))
        return self._issue(code.scope, code.auth_event_id, now)

    def _issue(self, scope: tuple[str, ...], auth_event_id: str, now: float) -> Row:
        claims: Row = {
            "nbf": int(now),
            "exp": int(now + ACCESS_TOKEN_TTL),
            "iss": "https://identity.xero.com",
            "aud": "https://identity.xero.com/resources",
            "client_id": self.client_id,
            "sub": SANDBOX_USER_ID.replace("-", ""),
            "auth_time": int(now),
            "xero_userid": SANDBOX_USER_ID,
            "global_session_id": auth_event_id.replace("-", ""),
            "jti": secrets.token_hex(16).upper(),
            "authentication_event_id": auth_event_id,
            "scope": list(scope),
        }
        access = AccessToken(_jwt(claims), now + ACCESS_TOKEN_TTL, scope, auth_event_id)
        self._access[access.value] = access
        out: Row = {}
        if "openid" in scope:
            out["id_token"] = self._id_token(now)
        out.update(access_token=access.value, expires_in=ACCESS_TOKEN_TTL, token_type="Bearer")
        if "offline_access" in scope:
            refresh = RefreshToken(secrets.token_hex(32), scope, auth_event_id, now, self._next_seq())
            self._refresh[refresh.value] = refresh
            out["refresh_token"] = refresh.value
        out["scope"] = " ".join(scope)
        return out

    def _id_token(self, now: float) -> str:
        return _jwt(
            {
                "nbf": int(now),
                "exp": int(now + ID_TOKEN_TTL),
                "iss": "https://identity.xero.com",
                "aud": self.client_id,
                "iat": int(now),
                "sub": SANDBOX_USER_ID.replace("-", ""),
                "auth_time": int(now),
                "xero_userid": SANDBOX_USER_ID,
                "preferred_username": SANDBOX_USER_EMAIL,
                "email": SANDBOX_USER_EMAIL,
                "given_name": "Sandbox",
                "family_name": "User",
            }
        )

    def _revocation(self, request: Request) -> Response:
        if not self.is_client(*self._client_credentials(request)):
            return self._oauth_error("invalid_client")
        with self.state.lock:  # revoking a refresh token removes the user's connections and all their tokens
            if request.form.get("token", "") in self._refresh:
                for token in self._refresh.values():
                    token.revoked = True
                self._connected = False
        return Response(b"", status=200)

    def _authorize(self, request: Request) -> Response:
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != self.client_id:
            return self._text("Error: unauthorized_client", 400)
        if args.get("response_type") != "code" or not redirect_uri or not args.get("scope"):
            return self._text("Error: invalid_request", 400)
        with self.state.lock:
            code = AuthCode(
                secrets.token_hex(32),
                redirect_uri,
                tuple(args["scope"].split()),
                _new_id(),
                self._now() + AUTH_CODE_TTL,
            )
            self._codes[code.value] = code
        params = {"code": code.value, "scope": args["scope"]}
        if args.get("state") is not None:
            params["state"] = args["state"]
        params["session_state"] = secrets.token_urlsafe(32)
        separator = "&" if "?" in redirect_uri else "?"
        return Response(b"", status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(params)}"})

    def _connections(self, request: Request) -> Response:
        try:
            self._authenticate(request)
        except ApiError as error:
            return self._error_response(error)
        with self.state.lock:
            rows = [dict(self._connection)] if self._connected else []
        event = request.args.get("authEventId")
        rows = [row for row in rows if event is None or row["authEventId"] == event]
        response: Response = json_response(rows)
        return response

    def _delete_connection(self, request: Request, ref: str) -> Response:
        try:
            self._authenticate(request)
        except ApiError as error:
            return self._error_response(error)
        with self.state.lock:
            if not self._connected or ref.lower() != self._connection["id"]:
                return self._text(NOT_FOUND_TEXT, 404)
            self._connected = False
        return Response(b"", status=204)

    # ---- request bodies and list queries -----------------------------------------------------------------

    @staticmethod
    def _elements(request: Request, collection: str) -> list[Row]:
        """The elements of a PUT/POST body: ``{"Contacts": [...]}``, or one bare object as Xero allows."""
        raw = request.get_data()
        try:
            body = json.loads(raw, parse_float=Decimal) if raw.strip() else None
        except ValueError as exc:
            raise _post_data_error("Invalid Json data") from exc
        if isinstance(body, dict) and collection in body:
            body = body[collection]
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not body or not all(isinstance(el, dict) for el in body):
            entity = collection[:-1]
            raise ApiError(
                400,
                {
                    "ErrorNumber": 17,
                    "Type": "NoDataProcessedException",
                    "Message": f"No data has been processed for this endpoint. This endpoint is expecting "
                    f"{entity} data to be specifed in the request body.",
                },
            )
        return body

    def _select(
        self,
        request: Request,
        rows: list[Row],
        listing: tuple[frozenset[str], str, str],
        force_paging: bool = False,
        *,
        paged: bool = True,
    ) -> tuple[list[Row], Row | None]:
        """IDs, If-Modified-Since, where, order and (where the endpoint pages: ``paged``) paging, as Xero's
        list endpoints apply them."""
        fields, type_name, id_field = listing
        ids = _csv(request, "IDs")
        if ids:
            wanted = {value.lower() for value in ids}
            rows = [row for row in rows if str(row.get(id_field, "")).lower() in wanted]
        since = _parse_http_time(request.headers.get("If-Modified-Since"))
        if since is not None:
            since_ms = _epoch_ms(since)
            rows = [row for row in rows if (_net_ms(row.get("UpdatedDateUTC")) or since_ms) >= since_ms]
        where = _arg(request, "where")
        if where and where.strip():
            predicate = compile_where(where, fields, type_name)
            rows = [row for row in rows if predicate(row)]
        order = _arg(request, "order")
        if order and order.strip():
            rows = order_rows(rows, order, fields, type_name)
        return self._page(request, rows, force_paging) if paged else (rows, None)

    @staticmethod
    def _page(request: Request, rows: list[Row], force: bool) -> tuple[list[Row], Row | None]:
        raw_page = _arg(request, "page")
        if raw_page is None and not force:
            return rows, None
        try:
            page = max(1, int(raw_page or "1"))
        except ValueError:
            page = 1
        try:
            size = min(MAX_PAGE_SIZE, max(1, int(_arg(request, "pageSize") or DEFAULT_PAGE_SIZE)))
        except ValueError:
            size = DEFAULT_PAGE_SIZE
        pagination = {"page": page, "pageSize": size, "pageCount": math.ceil(len(rows) / size), "itemCount": len(rows)}
        return rows[(page - 1) * size : page * size], pagination

    def _write_batch(self, request: Request, collection: str, save: Callable[[Row], Row], error_flag: str) -> Row:
        """Run each element through ``save``. Xero saves the valid elements; by default any invalid one turns
        the answer into a 400 ValidationException listing the failures, with summarizeErrors=false it is a
        200 with every element and its StatusAttributeString."""
        summarize = _flag(request, "summarizeErrors", default=True)
        results: list[tuple[bool, Row]] = []
        for element in self._elements(request, collection):
            try:
                results.append((True, save(element)))
            except ElementError as err:
                results.append((False, _with_errors(err.element, err.messages, error_flag)))
        if summarize:
            failed = [row for ok, row in results if not ok]
            if failed:
                raise ApiError(400, validation_exception(failed))
            return self._envelope(collection, [row for _, row in results])
        return self._envelope(
            collection, [{**row, "StatusAttributeString": "OK" if ok else "ERROR"} for ok, row in results]
        )

    # ---- contacts ---------------------------------------------------------------------------------------

    def _contact_by_number(self, number: str) -> Record | None:
        wanted = number.strip().casefold()
        for rec in self.contacts_by_id.values():
            if str(rec.data.get("ContactNumber") or "").strip().casefold() == wanted:
                return rec
        return None

    def _active_contact_by_name(self, name: str, exclude: str | None = None) -> Record | None:
        wanted = name.strip().casefold()
        return next(
            (
                rec
                for rec in self.contacts_by_id.values()
                if rec.data["ContactID"] != exclude
                and rec.data.get("ContactStatus") == "ACTIVE"
                and str(rec.data.get("Name") or "").strip().casefold() == wanted
            ),
            None,
        )

    def _find_contact(self, ref: str) -> Record | None:
        return self.contacts_by_id.get(ref.lower()) or self._contact_by_number(ref)

    def _match_contact(self, sent: Row, mode: str, contact_id: str | None) -> Record | None:
        """Which stored contact an element updates: the path id, or (POST /Contacts) ContactID, then
        ContactNumber, then an active contact with the same Name; None means create."""
        if mode == "update":
            rec = self.contacts_by_id.get((contact_id or "").lower())
            if rec is None:
                raise _not_found()
            return rec
        if mode == "create":
            return None
        if sent.get("ContactID"):
            rec = self.contacts_by_id.get(str(sent["ContactID"]).lower())
            if rec is None:
                preview = self._contact_view(sent, str(sent["ContactID"]))
                raise ElementError([MSG["contact_missing"].format(id=sent["ContactID"])], preview)
            return rec
        if sent.get("ContactNumber"):
            rec = self._contact_by_number(str(sent["ContactNumber"]))
            if rec is not None:
                return rec
        return self._active_contact_by_name(str(sent["Name"])) if sent.get("Name") else None

    @staticmethod
    def _merge_typed(current: list[Row], sent: Any, type_key: str) -> list[Row]:
        by_type = {str(entry.get(type_key)): entry for entry in current}
        for entry in sent if isinstance(sent, list) else []:
            if isinstance(entry, dict) and entry.get(type_key):
                by_type[str(entry[type_key]).upper()] = {**copy.deepcopy(entry), type_key: str(entry[type_key]).upper()}
        return list(by_type.values())

    def _merge_contact(self, current: Row, sent: Row) -> Row:
        merged = copy.deepcopy(current)
        for name in CONTACT_WRITABLE:
            if name in sent:
                merged[name] = copy.deepcopy(sent[name])
        for name, (type_key, _, _) in TYPED_LISTS.items():
            if name in sent:
                merged[name] = self._merge_typed(current.get(name, []), sent[name], type_key)
        merged.setdefault("ContactStatus", "ACTIVE")
        return merged

    def _contact_errors(self, merged: Row, contact_id: str | None) -> list[str]:
        errors: list[str] = []
        name = str(merged.get("Name") or "").strip()
        if not name:
            errors.append(MSG["name_empty"])
        for field_name, limit in CONTACT_LIMITS.items():
            if len(str(merged.get(field_name) or "")) > limit:
                errors.append(MSG["too_long"].format(field=field_name, limit=limit))
        email = merged.get("EmailAddress")
        if email and not _EMAIL.match(str(email)):
            errors.append(MSG["email"])
        if len(merged.get("ContactPersons") or []) > MAX_CONTACT_PERSONS:
            errors.append(MSG["persons"])
        if merged.get("ContactStatus") not in CONTACT_STATUSES:
            errors.append(MSG["contact_status"])
        if name and merged.get("ContactStatus") == "ACTIVE" and self._active_contact_by_name(name, contact_id):
            errors.append(MSG["name_taken"].format(name=merged["Name"]))
        number = merged.get("ContactNumber")
        other = self._contact_by_number(str(number)) if number else None
        if other is not None and other.data["ContactID"] != contact_id:
            errors.append(MSG["number_taken"].format(number=number))
        return errors

    def _save_contact(self, sent: Row, mode: str, contact_id: str | None = None) -> Record:
        existing = self._match_contact(sent, mode, contact_id)
        current = existing.data if existing else {"IsSupplier": False, "IsCustomer": False}
        merged = self._merge_contact(current, sent)
        own_id = existing.data["ContactID"] if existing else None
        errors = self._contact_errors(merged, own_id)
        if errors:
            raise ElementError(errors, self._contact_view(merged, own_id or ZERO_GUID))
        if existing is not None:
            existing.data = merged
            existing.updated_ms = self._now_ms()
            self.webhooks.record("CONTACT", merged["ContactID"], "UPDATE")
            return existing
        merged["ContactID"] = _new_id()
        rec = Record(merged, self._now_ms(), self._next_seq())
        self.contacts_by_id[merged["ContactID"]] = rec
        self.webhooks.record("CONTACT", merged["ContactID"], "CREATE")
        return rec

    def _contact_view(self, data: Row, contact_id: str, updated_ms: int | None = None) -> Row:
        """A contact as Xero renders it: every address and phone type present, read-only flags filled in."""
        out: Row = {"ContactID": contact_id}
        for name in CONTACT_WRITABLE:
            if name in data and name != "ContactPersons":
                out[name] = copy.deepcopy(data[name])
        out.setdefault("ContactStatus", "ACTIVE")
        for name, (type_key, types, blank) in TYPED_LISTS.items():
            stored = {entry[type_key]: entry for entry in data.get(name, [])}
            out[name] = [copy.deepcopy(stored.get(kind, {type_key: kind, **blank})) for kind in types]
        if updated_ms is not None:
            out["UpdatedDateUTC"] = net_date(updated_ms)
        out["ContactGroups"] = []
        out["IsSupplier"] = bool(data.get("IsSupplier"))
        out["IsCustomer"] = bool(data.get("IsCustomer"))
        out["ContactPersons"] = copy.deepcopy(data.get("ContactPersons") or [])
        out["HasAttachments"] = False
        out["HasValidationErrors"] = False
        return out

    def _render_contact(self, rec: Record) -> Row:
        return self._contact_view(rec.data, rec.data["ContactID"], rec.updated_ms)

    def _balances(self, contact_id: str) -> Row:
        today = _date_ms(self._today())
        sums = {"ACCREC": [Decimal("0.00"), Decimal("0.00")], "ACCPAY": [Decimal("0.00"), Decimal("0.00")]}
        for rec in self.invoices_by_id.values():
            data = rec.data
            if data["ContactID"] != contact_id or data["Status"] != "AUTHORISED":
                continue
            due = self._amount_due(rec)
            sums[data["Type"]][0] += due
            if data.get("DueDate") and _date_ms(date.fromisoformat(data["DueDate"])) < today:
                sums[data["Type"]][1] += due
        return {
            side: {"Outstanding": sums[kind][0], "Overdue": sums[kind][1]}
            for side, kind in (("AccountsReceivable", "ACCREC"), ("AccountsPayable", "ACCPAY"))
        }

    def _get_contacts(self, request: Request) -> Row:
        records = self._sorted(self.contacts_by_id)
        if not _flag(request, "includeArchived"):
            records = [rec for rec in records if rec.data.get("ContactStatus") != "ARCHIVED"]
        rows = [self._render_contact(rec) for rec in records]
        term = (_arg(request, "searchTerm") or "").strip().casefold()
        if term:
            searched = ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress")
            rows = [row for row in rows if any(term in str(row.get(f) or "").casefold() for f in searched)]
        rows = sorted(rows, key=lambda row: str(row.get("Name") or "").casefold())
        summary = _flag(request, "summaryOnly")
        rows, pagination = self._select(request, rows, (CONTACT_FIELDS, "Contact", "ContactID"), summary)
        if summary:
            rows = [{k: v for k, v in row.items() if k not in CONTACT_SUMMARY_DROPS} for row in rows]
        return self._envelope("Contacts", rows, pagination)

    def _get_contact(self, request: Request, ref: str) -> Row:
        rec = self._find_contact(ref)
        if rec is None:
            raise _not_found()
        row = self._render_contact(rec)
        row["Balances"] = self._balances(rec.data["ContactID"])
        return self._envelope("Contacts", [row])

    def _contact_writer(self, request: Request, mode: str, ref: str | None = None) -> Row:
        def save(element: Row) -> Row:
            return self._render_contact(self._save_contact(element, mode, ref))

        return self._write_batch(request, "Contacts", save, "HasValidationErrors")

    def _put_contacts(self, request: Request) -> Row:
        return self._contact_writer(request, "create")

    def _post_contacts(self, request: Request) -> Row:
        return self._contact_writer(request, "upsert")

    def _post_contact(self, request: Request, ref: str) -> Row:
        if ref.lower() not in self.contacts_by_id:
            raise _not_found()
        return self._contact_writer(request, "update", ref)

    # ---- items ------------------------------------------------------------------------------------------

    def _item_by_code(self, code: str) -> Record | None:
        wanted = code.strip().casefold()
        return next(
            (rec for rec in self.items_by_id.values() if str(rec.data.get("Code", "")).casefold() == wanted), None
        )

    def _match_item(self, sent: Row, mode: str, item_id: str | None) -> Record | None:
        if mode == "update":
            return self.items_by_id.get((item_id or "").lower())
        if mode == "upsert" and sent.get("ItemID"):
            return self.items_by_id.get(str(sent["ItemID"]).lower())
        if mode == "upsert" and sent.get("Code"):
            return self._item_by_code(str(sent["Code"]))
        return None

    def _item_errors(self, merged: Row, item_id: str | None) -> list[str]:
        errors: list[str] = []
        code = str(merged.get("Code") or "").strip()
        if not code:
            errors.append(MSG["item_code_required"])
        for field_name, limit in ITEM_LIMITS.items():
            if len(str(merged.get(field_name) or "")) > limit:
                errors.append(MSG["too_long"].format(field=field_name, limit=limit))
        other = self._item_by_code(code) if code else None
        if other is not None and other.data["ItemID"] != item_id:
            errors.append(MSG["item_code_taken"].format(code=code))
        for details in ("SalesDetails", "PurchaseDetails"):
            price = (merged.get(details) or {}).get("UnitPrice")
            try:
                if price is not None:
                    _dec(price)
            except ValueError:
                errors.append(MSG["number"].format(field="UnitPrice"))
            section = merged.get(details) or {}
            for key in ("AccountCode", "COGSAccountCode"):
                if section.get(key) and str(section[key]) not in ACCOUNTS:
                    errors.append(MSG["account"].format(code=section[key]))
            if section.get("TaxType") and str(section["TaxType"]) not in TAX_RATES:
                errors.append(MSG["tax_type"].format(code=section["TaxType"]))
        return errors

    def _save_item(self, sent: Row, mode: str, item_id: str | None, unitdp: int) -> Record:
        existing = self._match_item(sent, mode, item_id)
        if mode == "update" and existing is None:
            raise _not_found()
        merged: Row = copy.deepcopy(existing.data) if existing else {"IsSold": True, "IsPurchased": True}
        writable = ("Code", "Name", "Description", "PurchaseDescription", "IsSold", "IsPurchased")
        merged.update({key: copy.deepcopy(sent[key]) for key in writable if key in sent})
        for details in ("SalesDetails", "PurchaseDetails"):
            if isinstance(sent.get(details), dict):
                merged[details] = {**merged.get(details, {}), **copy.deepcopy(sent[details])}
        # XS Item: "If IsSold is updated to false then Description and SalesDetails values will be nulled",
        # and IsPurchased likewise for PurchaseDescription and PurchaseDetails.
        for flag, nulled in (("IsSold", ("Description", "SalesDetails")), ("IsPurchased", ITEM_PURCHASE_PARTS)):
            if merged.get(flag) is False:
                for key in nulled:
                    merged.pop(key, None)
        own_id = existing.data["ItemID"] if existing else None
        errors = self._item_errors(merged, own_id)
        if errors:
            raise ElementError(errors, self._item_view(merged, own_id or ZERO_GUID, None, unitdp))
        for details in ("SalesDetails", "PurchaseDetails"):
            price = merged.get(details, {}).get("UnitPrice")
            if price is not None:
                merged[details]["UnitPrice"] = _money(_dec(price), UNIT_PLACES[unitdp])
        if existing is not None:
            existing.data, existing.updated_ms = merged, self._now_ms()
            return existing
        merged["ItemID"] = _new_id()
        rec = Record(merged, self._now_ms(), self._next_seq())
        self.items_by_id[merged["ItemID"]] = rec
        return rec

    @staticmethod
    def _item_view(data: Row, item_id: str, updated_ms: int | None, unitdp: int) -> Row:
        out: Row = {"ItemID": item_id}
        for key in ("Code", "Description", "PurchaseDescription", "Name"):
            if key in data:
                out[key] = data[key]
        for details in ("PurchaseDetails", "SalesDetails"):
            section = copy.deepcopy(data.get(details) or {})
            if isinstance(section.get("UnitPrice"), Decimal):
                section["UnitPrice"] = _money(section["UnitPrice"], UNIT_PLACES[unitdp])
            out[details] = section
        out.update(
            IsTrackedAsInventory=False, IsSold=bool(data.get("IsSold")), IsPurchased=bool(data.get("IsPurchased"))
        )
        if updated_ms is not None:
            out["UpdatedDateUTC"] = net_date(updated_ms)
        return out

    def _render_item(self, rec: Record, unitdp: int) -> Row:
        return self._item_view(rec.data, rec.data["ItemID"], rec.updated_ms, unitdp)

    def _get_items(self, request: Request) -> Row:
        """Every item matching IDs/If-Modified-Since/where/order, in one answer: XS getItems publishes no
        paging (no page or pageSize, no pagination in Items), so a ``page`` is ignored as Xero ignores an
        unknown parameter (the adapter's GUESSES["items_unpaged"])."""
        unitdp = _unitdp(request)
        rows = [self._render_item(rec, unitdp) for rec in self._sorted(self.items_by_id)]
        rows = sorted(rows, key=lambda row: str(row.get("Code") or "").casefold())
        rows, _ = self._select(request, rows, (ITEM_FIELDS, "Item", "ItemID"), paged=False)
        return self._envelope("Items", rows)

    def _get_item(self, request: Request, ref: str) -> Row:
        rec = self.items_by_id.get(ref.lower()) or self._item_by_code(ref)
        if rec is None:
            raise _not_found()
        return self._envelope("Items", [self._render_item(rec, _unitdp(request))])

    def _item_writer(self, request: Request, mode: str, ref: str | None = None) -> Row:
        unitdp = _unitdp(request)

        def save(element: Row) -> Row:
            return self._render_item(self._save_item(element, mode, ref, unitdp), unitdp)

        return self._write_batch(request, "Items", save, "HasValidationErrors")

    def _put_items(self, request: Request) -> Row:
        return self._item_writer(request, "create")

    def _post_items(self, request: Request) -> Row:
        return self._item_writer(request, "upsert")

    def _post_item(self, request: Request, ref: str) -> Row:
        if ref.lower() not in self.items_by_id:
            raise _not_found()
        return self._item_writer(request, "update", ref)

    # ---- invoices: line maths -----------------------------------------------------------------------------

    def _line(
        self, raw: Row, line_types: str, unitdp: int, errors: list[str], details: str = "SalesDetails"
    ) -> tuple[Row, Row]:
        """One line item -> (stored inputs, computed line). Xero fills blanks from the item (its ``details``:
        SalesDetails on a sale, PurchaseDetails on a purchase), rounds the unit price to 2 dp unless
        unitdp=4, rounds LineAmount and then the line's tax to the cent."""
        inputs = {key: copy.deepcopy(raw[key]) for key in LINE_INPUTS if key in raw}
        inputs["LineItemID"] = str(inputs.get("LineItemID") or _new_id()).lower()
        self._fill_from_item(inputs, errors, details)
        numbers = self._line_numbers(inputs, unitdp, errors)
        quantity, unit, line_amount = self._line_amounts(inputs, numbers, unitdp)
        account = inputs.get("AccountCode")
        if account is not None and str(account) not in ACCOUNTS:
            errors.append(MSG["account"].format(code=account))
        tax_type = self._line_tax_type(inputs, line_types, errors)
        rate = TAX_RATES.get(tax_type, ("", Decimal(0), ""))[1]
        if "TaxAmount" in numbers:
            tax = _money(numbers["TaxAmount"])
        elif line_types == "Exclusive":
            tax = _money(line_amount * rate / 100)
        elif line_types == "Inclusive":
            tax = _money(line_amount * rate / (100 + rate))
        else:
            tax = Decimal("0.00")
        line: Row = {"LineItemID": inputs["LineItemID"]}
        for key in ("Description", "ItemCode", "AccountCode"):
            if key in inputs:
                line[key] = inputs[key]
        line.update(Quantity=quantity, UnitAmount=unit, TaxType=tax_type, TaxAmount=tax, LineAmount=line_amount)
        if "DiscountRate" in numbers:
            line["DiscountRate"] = numbers["DiscountRate"]
        if "DiscountAmount" in numbers:
            line["DiscountAmount"] = numbers["DiscountAmount"]
        line["Tracking"] = copy.deepcopy(inputs.get("Tracking") or [])
        return inputs, line

    def _fill_from_item(self, inputs: Row, errors: list[str], details: str = "SalesDetails") -> None:
        code = inputs.get("ItemCode")
        if not code:
            return
        item = self._item_by_code(str(code))
        if item is None:
            errors.append(MSG["item_code"].format(code=code))
            return
        sales = item.data.get(details) or {}
        defaults = {
            "Description": item.data.get("Description"),
            "UnitAmount": sales.get("UnitPrice"),
            "AccountCode": sales.get("AccountCode"),
            "TaxType": sales.get("TaxType"),
        }
        for key, value in defaults.items():
            if key not in inputs and value is not None:
                inputs[key] = value
        inputs["ItemCode"] = item.data["Code"]

    @staticmethod
    def _line_numbers(inputs: Row, unitdp: int, errors: list[str]) -> dict[str, Decimal]:
        numbers: dict[str, Decimal] = {}
        for key in ("Quantity", "UnitAmount", "LineAmount", "TaxAmount", "DiscountRate", "DiscountAmount"):
            if inputs.get(key) is None:
                continue
            try:
                numbers[key] = _dec(inputs[key])
            except ValueError:
                errors.append(MSG["number"].format(field=key))
        if "UnitAmount" in numbers:
            numbers["UnitAmount"] = _money(numbers["UnitAmount"], UNIT_PLACES[unitdp])
            inputs["UnitAmount"] = numbers["UnitAmount"]
        return numbers

    @staticmethod
    def _line_amounts(inputs: Row, numbers: dict[str, Decimal], unitdp: int) -> tuple[Decimal, Decimal, Decimal]:
        quantity = _money(numbers.get("Quantity", Decimal(1)), QTY)
        if "UnitAmount" in numbers:
            unit = numbers["UnitAmount"]
            gross = quantity * unit
            if "DiscountRate" in numbers:
                gross = gross * (100 - numbers["DiscountRate"]) / 100
            gross -= numbers.get("DiscountAmount", Decimal(0))
            return quantity, unit, _money(gross)
        if "LineAmount" in numbers:  # Xero derives the missing unit price from LineAmount
            line_amount = _money(numbers["LineAmount"])
            unit = _money(line_amount / quantity, UNIT_PLACES[unitdp]) if quantity else Decimal(0)
            inputs["UnitAmount"] = unit
            return quantity, unit, line_amount
        return quantity, Decimal("0.00"), Decimal("0.00")

    @staticmethod
    def _line_tax_type(inputs: Row, line_types: str, errors: list[str]) -> str:
        if line_types == "NoTax":
            return "NONE"
        account = ACCOUNTS.get(str(inputs.get("AccountCode")))
        tax_type = str(inputs.get("TaxType") or (account[2] if account else "NONE"))
        if tax_type not in TAX_RATES:
            errors.append(MSG["tax_type"].format(code=tax_type))
        return tax_type

    @staticmethod
    def _totals(lines: list[Row], line_types: str) -> Row:
        line_sum = sum((line["LineAmount"] for line in lines), Decimal("0.00"))
        tax = sum((line["TaxAmount"] for line in lines), Decimal("0.00"))
        subtotal = line_sum - tax if line_types == "Inclusive" else line_sum
        discount = Decimal("0.00")
        for line in lines:
            gross = _money(line["Quantity"] * line["UnitAmount"])
            if "DiscountRate" in line or "DiscountAmount" in line:
                discount += gross - line["LineAmount"]
        return {"SubTotal": subtotal, "TotalTax": tax, "Total": subtotal + tax, "TotalDiscount": discount}

    # ---- invoices: save -------------------------------------------------------------------------------------

    def _invoice_by_number(self, number: str, exclude: str | None = None) -> Record | None:
        wanted = number.strip().casefold()
        return next(
            (
                rec
                for rec in self.invoices_by_id.values()
                if rec.data["Type"] == "ACCREC"
                and rec.data["InvoiceID"] != exclude
                and rec.data["Status"] != "DELETED"
                and str(rec.data.get("InvoiceNumber") or "").strip().casefold() == wanted
            ),
            None,
        )

    def _find_invoice(self, ref: str) -> Record | None:
        return self.invoices_by_id.get(ref.lower()) or self._invoice_by_number(ref)

    def _match_invoice(self, sent: Row, mode: str, invoice_id: str | None) -> Record | None:
        if mode == "update":
            rec = self.invoices_by_id.get((invoice_id or "").lower())
            if rec is None:
                raise _not_found()
            return rec
        if mode == "upsert" and sent.get("InvoiceID"):
            rec = self.invoices_by_id.get(str(sent["InvoiceID"]).lower())
            if rec is None:
                raise ElementError([MSG["invoice_missing"]], {"InvoiceID": sent["InvoiceID"]})
            return rec
        if mode == "upsert" and sent.get("InvoiceNumber"):
            return self._invoice_by_number(str(sent["InvoiceNumber"]))
        return None

    def _invoice_contact(self, sent: Row, current: str | None, errors: list[str]) -> tuple[str | None, str | None]:
        """(ContactID, name of a contact to create). Xero matches Contact by ContactID, ContactNumber or
        Name, and creates a new contact when only an unknown Name is given."""
        contact = sent.get("Contact")
        if not isinstance(contact, dict):
            if current is None:
                errors.append(MSG["invoice_contact"])
            return current, None
        rec: Record | None = None
        if contact.get("ContactID"):
            rec = self.contacts_by_id.get(str(contact["ContactID"]).lower())
        elif contact.get("ContactNumber"):
            rec = self._contact_by_number(str(contact["ContactNumber"]))
        elif contact.get("Name"):
            rec = self._active_contact_by_name(str(contact["Name"]))
            if rec is None:
                return None, str(contact["Name"])
        else:
            errors.append(MSG["invoice_contact"])
            return current, None
        if rec is None:
            errors.append(MSG["invoice_contact_missing"])
            return current, None
        return rec.data["ContactID"], None

    @staticmethod
    def _invoice_fields(merged: Row, sent: Row, errors: list[str]) -> None:
        if merged.get("Type") not in INVOICE_TYPES:
            errors.append(MSG["invoice_type"])
        if merged.get("LineAmountTypes") not in LINE_AMOUNT_TYPES:
            errors.append(MSG["line_amount_types"])
        if merged.get("CurrencyCode") != BASE_CURRENCY:
            errors.append(MSG["currency"].format(code=merged.get("CurrencyCode")))
        for key in ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate"):
            if sent.get(key) is not None:
                try:
                    merged[key] = _parse_date(sent[key]).isoformat()
                except ValueError:
                    errors.append(MSG["date"].format(value=sent[key]))

    def _invoice_status(self, merged: Row, existing: Record | None) -> str | None:
        """Why this create/update may not happen given the invoice's status, or None."""
        status = merged.get("Status")
        if existing is None:
            return None if status in INVOICE_CREATE_STATUSES else MSG["invoice_status"].format(status=status)
        old = existing.data["Status"]
        if old in ("PAID", "VOIDED", "DELETED"):
            return MSG["not_modifiable"]
        if self._amount_paid(existing) > 0:
            return MSG["has_payments"]
        if status not in INVOICE_TRANSITIONS[old]:
            return MSG["invoice_status"].format(status=status)
        return None

    def _invoice_number(self, merged: Row, own_id: str | None, errors: list[str]) -> None:
        if merged.get("Type") != "ACCREC":
            return
        number = merged.get("InvoiceNumber")
        if number and len(str(number)) > 255:
            errors.append(MSG["too_long"].format(field="InvoiceNumber", limit=255))
        if number and self._invoice_by_number(str(number), own_id) is not None:
            errors.append(MSG["invoice_number_taken"])

    def _next_invoice_number(self) -> str:
        highest = 0
        for rec in self.invoices_by_id.values():
            match = re.fullmatch(r"INV-(\d+)", str(rec.data.get("InvoiceNumber") or ""))
            if rec.data["Type"] == "ACCREC" and match:
                highest = max(highest, int(match.group(1)))
        return f"INV-{highest + 1:04d}"

    def _compute_lines(self, merged: Row, sent: Row, unitdp: int, errors: list[str]) -> None:
        if "LineItems" in sent:
            raw_lines = sent["LineItems"] if isinstance(sent["LineItems"], list) else []
        else:  # lines not re-sent: recompute the stored ones at the precision they were stored with
            raw_lines, unitdp = merged.get("LineInputs", []), 4
        computed = [
            self._line(raw, merged["LineAmountTypes"], unitdp, errors) for raw in raw_lines if isinstance(raw, dict)
        ]
        merged["LineInputs"] = [inputs for inputs, _ in computed]
        merged["LineItems"] = [line for _, line in computed]
        approving = merged.get("Status") in ("SUBMITTED", "AUTHORISED")
        if approving and any("AccountCode" not in line and line["LineAmount"] for line in merged["LineItems"]):
            errors.append(MSG["account_required"])
        merged.update(self._totals(merged["LineItems"], merged["LineAmountTypes"]))

    def _save_invoice(self, sent: Row, mode: str, invoice_id: str | None, unitdp: int) -> Record:
        existing = self._match_invoice(sent, mode, invoice_id)
        if existing is not None:
            merged = copy.deepcopy(existing.data)
        else:
            merged = {"Status": "DRAFT", "LineAmountTypes": "Exclusive", "PaymentIDs": []}
            merged.update(CurrencyCode=BASE_CURRENCY, Date=self._today().isoformat())
        for key in ("Type", "Status", "LineAmountTypes", "CurrencyCode", "InvoiceNumber", *INVOICE_COPIED):
            if key in sent:
                merged[key] = copy.deepcopy(sent[key])
        errors: list[str] = []
        contact_id, new_contact = self._invoice_contact(sent, merged.get("ContactID"), errors)
        self._invoice_fields(merged, sent, errors)
        status_error = self._invoice_status(merged, existing)
        if status_error:
            errors.append(status_error)
        own_id = existing.data["InvoiceID"] if existing else None
        self._invoice_number(merged, own_id, errors)
        if merged.get("LineAmountTypes") in LINE_AMOUNT_TYPES:
            self._compute_lines(merged, sent, unitdp, errors)
        if errors:
            merged["ContactID"] = contact_id
            preview = self._invoice_view(merged, own_id or ZERO_GUID, None, full_contact=False, unitdp=unitdp)
            raise ElementError(errors, preview)
        if new_contact is not None:
            contact_id = self._save_contact({"Name": new_contact}, "create").data["ContactID"]
        merged["ContactID"] = contact_id
        if merged["Type"] == "ACCREC" and not merged.get("InvoiceNumber"):
            merged["InvoiceNumber"] = self._next_invoice_number()
        self._mark_contact_role(merged)
        if existing is not None:
            existing.data, existing.updated_ms = merged, self._now_ms()
            self.webhooks.record("INVOICE", merged["InvoiceID"], "UPDATE")
            return existing
        merged["InvoiceID"] = _new_id()
        rec = Record(merged, self._now_ms(), self._next_seq())
        self.invoices_by_id[merged["InvoiceID"]] = rec
        self.webhooks.record("INVOICE", merged["InvoiceID"], "CREATE")
        return rec

    def _mark_contact_role(self, invoice: Row) -> None:
        """IsCustomer/IsSupplier follow AR/AP invoices (and, as in Xero, do not bump UpdatedDateUTC)."""
        contact = self.contacts_by_id.get(invoice["ContactID"])
        if contact is not None and invoice["Status"] != "DELETED":
            contact.data["IsCustomer" if invoice["Type"] == "ACCREC" else "IsSupplier"] = True

    # ---- invoices: render and endpoints -----------------------------------------------------------------

    def _live_payments(self, invoice: Record) -> list[Record]:
        found = (self.payments_by_id.get(pid) for pid in invoice.data.get("PaymentIDs", []))
        return [rec for rec in found if rec is not None and rec.data["Status"] != "DELETED"]

    def _amount_paid(self, invoice: Record) -> Decimal:
        return sum((rec.data["Amount"] for rec in self._live_payments(invoice)), Decimal("0.00"))

    def _amount_due(self, invoice: Record) -> Decimal:
        return Decimal(invoice.data["Total"]) - self._amount_paid(invoice)

    def _contact_summary(self, contact_id: str | None, full: bool) -> Row:
        rec = self.contacts_by_id.get(contact_id or "")
        if rec is None:
            return {"ContactID": contact_id or ZERO_GUID}
        if full:
            return self._render_contact(rec)
        return {
            "ContactID": rec.data["ContactID"],
            "Name": rec.data.get("Name"),
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "HasValidationErrors": False,
        }

    def _invoice_view(self, data: Row, invoice_id: str, rec: Record | None, *, full_contact: bool, unitdp: int) -> Row:
        paid = self._amount_paid(rec) if rec else Decimal("0.00")
        total = data.get("Total", Decimal("0.00"))
        out: Row = {"Type": data.get("Type"), "InvoiceID": invoice_id}
        for key in ("InvoiceNumber", "Reference"):
            if data.get(key) is not None:
                out[key] = data[key]
        out["Payments"] = [self._payment_summary(payment) for payment in self._live_payments(rec)] if rec else []
        out.update(CreditNotes=[], Prepayments=[], Overpayments=[], AmountDue=total - paid, AmountPaid=paid)
        out.update(AmountCredited=Decimal("0.00"), CurrencyRate=Decimal("1.000000"), HasErrors=False)
        if data.get("SentToContact") is not None:
            out["SentToContact"] = bool(data["SentToContact"])
        out["IsDiscounted"] = bool(data.get("TotalDiscount"))
        out["HasAttachments"] = False
        out["Contact"] = self._contact_summary(data.get("ContactID"), full_contact)
        for key in ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate"):
            if data.get(key):
                day = date.fromisoformat(data[key])
                out[f"{key}String"] = f"{day.isoformat()}T00:00:00"
                out[key] = net_date(_date_ms(day))
        out.update(Status=data.get("Status"), LineAmountTypes=data.get("LineAmountTypes"))
        out["LineItems"] = [self._line_view(line, unitdp) for line in data.get("LineItems", [])]
        for key in ("SubTotal", "TotalTax", "Total", "TotalDiscount"):
            out[key] = data.get(key, Decimal("0.00"))
        if rec is not None:
            out.update(UpdatedDateUTC=net_date(rec.updated_ms), UpdatedDateUTCString=_iso_seconds(rec.updated_ms))
        out["CurrencyCode"] = data.get("CurrencyCode")
        for key in ("Url", "BrandingThemeID", "RepeatingInvoiceID"):
            if data.get(key):
                out[key] = data[key]
        if data.get("FullyPaidOnDate") and data.get("Status") == "PAID":
            out["FullyPaidOnDate"] = net_date(_date_ms(date.fromisoformat(data["FullyPaidOnDate"])))
        return out

    @staticmethod
    def _line_view(line: Row, unitdp: int) -> Row:
        out = dict(line)
        out["UnitAmount"] = _money(line["UnitAmount"], UNIT_PLACES[unitdp])
        return out

    def _render_invoice(self, rec: Record, *, full_contact: bool = True, unitdp: int = 4) -> Row:
        return self._invoice_view(rec.data, rec.data["InvoiceID"], rec, full_contact=full_contact, unitdp=unitdp)

    def _get_invoices(self, request: Request) -> Row:
        unitdp = _unitdp(request)
        rows = [
            self._render_invoice(rec, full_contact=False, unitdp=unitdp) for rec in self._sorted(self.invoices_by_id)
        ]
        rows = self._invoice_filters(request, rows)
        summary = _flag(request, "summaryOnly")
        rows, pagination = self._select(request, rows, (INVOICE_FIELDS, "Invoice", "InvoiceID"), summary)
        if pagination is None or summary:  # line items only come back when paging or for a single invoice
            rows = [{k: v for k, v in row.items() if k != "LineItems"} for row in rows]
        return self._envelope("Invoices", rows, pagination)

    @staticmethod
    def _invoice_filters(request: Request, rows: list[Row]) -> list[Row]:
        filters: list[tuple[str, Callable[[Row], str]]] = [
            ("Statuses", lambda row: str(row.get("Status"))),
            ("ContactIDs", lambda row: str(row["Contact"].get("ContactID"))),
            ("InvoiceNumbers", lambda row: str(row.get("InvoiceNumber"))),
        ]
        for name, value_of in filters:
            wanted = _csv(request, name)
            if wanted:
                allowed = {value.casefold() for value in wanted}
                rows = [row for row in rows if value_of(row).casefold() in allowed]
        term = (_arg(request, "searchTerm") or "").strip().casefold()
        if term:
            rows = [
                row
                for row in rows
                if any(term in str(row.get(key) or "").casefold() for key in ("InvoiceNumber", "Reference"))
            ]
        return rows

    def _get_invoice(self, request: Request, ref: str) -> Row:
        rec = self._find_invoice(ref)
        if rec is None:
            raise _not_found()
        return self._envelope("Invoices", [self._render_invoice(rec, unitdp=_unitdp(request))])

    def _invoice_writer(self, request: Request, mode: str, ref: str | None = None) -> Row:
        unitdp = _unitdp(request)

        def save(element: Row) -> Row:
            rec = self._save_invoice(element, mode, ref, unitdp)
            return {**self._render_invoice(rec, unitdp=unitdp), "StatusAttributeString": "OK"}

        return self._write_batch(request, "Invoices", save, "HasErrors")

    def _put_invoices(self, request: Request) -> Row:
        return self._invoice_writer(request, "create")

    def _post_invoices(self, request: Request) -> Row:
        return self._invoice_writer(request, "upsert")

    def _post_invoice(self, request: Request, ref: str) -> Row:
        rec = self._find_invoice(ref)
        if rec is None:
            raise _not_found()
        return self._invoice_writer(request, "update", rec.data["InvoiceID"])

    # ---- invoices: email and online invoice ---------------------------------------------------------------

    def _invoice_refused(self, rec: Record, messages: list[str]) -> ApiError:
        """A 400 ValidationException whose element is the invoice with its validation errors."""
        element = _with_errors(self._render_invoice(rec, full_contact=False), messages, "HasErrors")
        return ApiError(400, validation_exception([element]))

    def _email_recipients(self, rec: Record) -> list[str]:
        """Xero emails the contact's primary address and every contact person with IncludeInEmails=true."""
        contact = self.contacts_by_id.get(rec.data.get("ContactID") or "")
        if contact is None:
            return []
        people = [p for p in contact.data.get("ContactPersons") or [] if isinstance(p, dict)]
        addresses = [contact.data.get("EmailAddress")]
        addresses += [p.get("EmailAddress") for p in people if p.get("IncludeInEmails") is True]
        return [str(address).strip() for address in addresses if address and str(address).strip()]

    def _email_invoice(self, request: Request, ref: str) -> Response:
        """POST /Invoices/{InvoiceID}/Email (emailInvoice): 204 No Content once "sent"; the invoice is marked
        SentToContact and the email recorded for ``emails()``. The body is the spec's RequestEmpty (ignored)."""
        rec = self.invoices_by_id.get(ref.lower())  # by InvoiceID only, as the spec's path says
        if rec is None:
            raise _not_found()
        recipients = self._email_recipients(rec)
        errors: list[str] = []
        if rec.data["Type"] != "ACCREC":
            errors.append(MSG["email_type"])
        elif rec.data["Status"] not in EMAILABLE_STATUSES:
            errors.append(MSG["email_status"].format(status=rec.data["Status"]))
        if not recipients:
            # The primary address is what Xero needs; a contact person included in emails also receives it,
            # so (a guess) the sandbox refuses only when nobody at all would get the email.
            errors.append(MSG["email_address"])
        if errors:
            raise self._invoice_refused(rec, errors)
        rec.data["SentToContact"] = True
        rec.updated_ms = self._now_ms()  # a guess: Xero records the sending in the invoice's history
        self.webhooks.record("INVOICE", rec.data["InvoiceID"], "UPDATE")
        self._emails.append({"InvoiceID": rec.data["InvoiceID"], "To": recipients, "at": self._now()})
        return Response(b"", status=204)

    def _get_online_invoice(self, request: Request, ref: str) -> Row:
        """GET /Invoices/{InvoiceID}/OnlineInvoice: the invoice's public in.xero.com link (stable per invoice)."""
        rec = self.invoices_by_id.get(ref.lower())
        if rec is None:
            raise _not_found()
        if rec.data["Type"] != "ACCREC":
            raise self._invoice_refused(rec, [MSG["online_type"]])
        if rec.data["Status"] in NO_ONLINE_INVOICE_STATUSES:
            raise self._invoice_refused(rec, [MSG["online_status"].format(status=rec.data["Status"])])
        invoice_id = rec.data["InvoiceID"]
        if invoice_id not in self._online_urls:
            token = "".join(secrets.choice(ONLINE_INVOICE_TOKEN_CHARS) for _ in range(40))
            self._online_urls[invoice_id] = ONLINE_INVOICE_URL + token
        return self._envelope("OnlineInvoices", [{"OnlineInvoiceUrl": self._online_urls[invoice_id]}])

    # ---- payments -----------------------------------------------------------------------------------------

    # ---- purchase orders (getPurchaseOrders, createPurchaseOrders, getPurchaseOrder) -------------------------

    def _purchase_order_by_number(self, number: str) -> Record | None:
        wanted = number.strip().casefold()
        return next(
            (
                rec
                for rec in self.purchase_orders_by_id.values()
                if rec.data["Status"] != "DELETED"
                and str(rec.data.get("PurchaseOrderNumber") or "").strip().casefold() == wanted
            ),
            None,
        )

    def _next_purchase_order_number(self) -> str:
        highest = 0
        for rec in self.purchase_orders_by_id.values():
            match = re.fullmatch(r"PO-(\d+)", str(rec.data.get("PurchaseOrderNumber") or ""))
            if match:
                highest = max(highest, int(match.group(1)))
        return f"PO-{highest + 1:04d}"

    def _purchase_order_contact(self, contact: Any, errors: list[str]) -> Record | None:
        """The contact a purchase order names (by ContactID, ContactNumber or Name); None, with the error."""
        keys = ("ContactID", "ContactNumber", "Name")
        if not isinstance(contact, dict) or not any(contact.get(k) for k in keys):
            errors.append(MSG["po_contact"])
            return None
        if contact.get("ContactID"):
            rec = self.contacts_by_id.get(str(contact["ContactID"]).lower())
        elif contact.get("ContactNumber"):
            rec = self._contact_by_number(str(contact["ContactNumber"]))
        else:
            rec = self._active_contact_by_name(str(contact["Name"]))
        if rec is None:
            errors.append(MSG["po_contact_missing"])
        return rec

    @staticmethod
    def _purchase_order_fields(merged: Row, sent: Row, errors: list[str]) -> None:
        if merged.get("Status") not in PURCHASE_ORDER_CREATE_STATUSES:
            errors.append(MSG["po_status"].format(status=merged.get("Status")))
        if merged.get("LineAmountTypes") not in LINE_AMOUNT_TYPES:
            errors.append(MSG["line_amount_types"])
        if merged.get("CurrencyCode") != BASE_CURRENCY:
            errors.append(MSG["currency"].format(code=merged.get("CurrencyCode")))
        for key in ("Date", "DeliveryDate", "ExpectedArrivalDate"):
            if sent.get(key) is not None:
                try:
                    merged[key] = _parse_date(sent[key]).isoformat()
                except ValueError:
                    errors.append(MSG["date"].format(value=sent[key]))

    def _save_purchase_order(self, sent: Row) -> Record:
        """``PUT /PurchaseOrders``: a new purchase order. Xero needs a contact (by ContactID, ContactNumber
        or Name) and at least one line; lines take their blanks from the item's PurchaseDetails; unit
        amounts are kept to 2 dp (createPurchaseOrders takes no unitdp); the number comes from the
        organisation's sequence (PO-0001…) unless one is sent, and must be unique."""
        merged: Row = {"Status": "DRAFT", "LineAmountTypes": "Exclusive", "CurrencyCode": BASE_CURRENCY}
        merged["Date"] = self._today().isoformat()
        for key in ("Status", "LineAmountTypes", "CurrencyCode", "PurchaseOrderNumber", *PURCHASE_ORDER_COPIED):
            if key in sent:
                merged[key] = copy.deepcopy(sent[key])
        errors: list[str] = []
        rec_contact = self._purchase_order_contact(sent.get("Contact"), errors)
        self._purchase_order_fields(merged, sent, errors)
        number = merged.get("PurchaseOrderNumber")
        if number and self._purchase_order_by_number(str(number)) is not None:
            errors.append(MSG["po_number_taken"])
        raw_lines = [raw for raw in sent.get("LineItems") or [] if isinstance(raw, dict)]
        if not raw_lines:
            errors.append(MSG["po_lines"])
        line_types = str(merged.get("LineAmountTypes"))
        if line_types in LINE_AMOUNT_TYPES:
            computed = [self._line(raw, line_types, 2, errors, "PurchaseDetails") for raw in raw_lines]
            merged["LineItems"] = [line for _, line in computed]
            merged.update(self._totals(merged["LineItems"], line_types))
        merged["ContactID"] = rec_contact.data["ContactID"] if rec_contact else None
        if errors:
            raise ElementError(errors, self._purchase_order_view(merged, ZERO_GUID, None))
        if not merged.get("PurchaseOrderNumber"):
            merged["PurchaseOrderNumber"] = self._next_purchase_order_number()
        merged["PurchaseOrderID"] = _new_id()
        rec = Record(merged, self._now_ms(), self._next_seq())
        self.purchase_orders_by_id[merged["PurchaseOrderID"]] = rec
        return rec

    def _purchase_order_view(self, data: Row, purchase_order_id: str, rec: Record | None) -> Row:
        out: Row = {"PurchaseOrderID": purchase_order_id}
        for key in ("PurchaseOrderNumber", "Reference", *PURCHASE_ORDER_COPIED[1:]):
            if data.get(key) is not None:
                out[key] = data[key]
        out["Contact"] = self._contact_summary(data.get("ContactID"), False)
        for key in ("Date", "DeliveryDate", "ExpectedArrivalDate"):
            if data.get(key):
                day = date.fromisoformat(data[key])
                out[f"{key}String"] = f"{day.isoformat()}T00:00:00"
                out[key] = net_date(_date_ms(day))
        out.update(Status=data.get("Status"), LineAmountTypes=data.get("LineAmountTypes"))
        out["LineItems"] = [dict(line) for line in data.get("LineItems", [])]
        for key in ("SubTotal", "TotalTax", "Total", "TotalDiscount"):
            out[key] = data.get(key, Decimal("0.00"))
        out.update(CurrencyCode=data.get("CurrencyCode"), CurrencyRate=Decimal("1.000000"), HasAttachments=False)
        out["SentToContact"] = False
        if rec is not None:
            out["UpdatedDateUTC"] = net_date(rec.updated_ms)
        return out

    def _render_purchase_order(self, rec: Record) -> Row:
        return self._purchase_order_view(rec.data, rec.data["PurchaseOrderID"], rec)

    def purchase_orders(self) -> list[Row]:
        """Every stored purchase order as getPurchaseOrders renders it, oldest first; money stays Decimal."""
        with self.state.lock:
            return [self._render_purchase_order(rec) for rec in self._sorted(self.purchase_orders_by_id)]

    def _get_purchase_orders(self, request: Request) -> Row:
        """``GET /PurchaseOrders``: Status, DateFrom, DateTo (the order's Date), If-Modified-Since, order and
        page/pageSize (getPurchaseOrders publishes no ``where``); lines come back on every row."""
        rows = [self._render_purchase_order(rec) for rec in self._sorted(self.purchase_orders_by_id)]
        status = (_arg(request, "Status") or "").strip().upper()
        if status:
            if status not in PURCHASE_ORDER_STATUSES:
                raise _query_error(f"Status '{status}' is not a valid purchase order status")
            rows = [row for row in rows if row.get("Status") == status]
        for name, keep in (("DateFrom", lambda day, bound: day >= bound), ("DateTo", lambda day, bound: day <= bound)):
            raw = _arg(request, name)
            if raw:
                try:
                    bound = _parse_date(raw)
                except ValueError as exc:
                    raise _query_error(MSG["date"].format(value=raw)) from exc
                rows = [row for row in rows if keep(date.fromisoformat(row["DateString"][:10]), bound)]
        order = _arg(request, "order")
        if order and order.strip():
            rows = order_rows(rows, order, PURCHASE_ORDER_FIELDS, "PurchaseOrder")
        since = _parse_http_time(request.headers.get("If-Modified-Since"))
        if since is not None:
            since_ms = _epoch_ms(since)
            rows = [row for row in rows if (_net_ms(row.get("UpdatedDateUTC")) or since_ms) >= since_ms]
        rows, pagination = self._page(request, rows, False)
        return self._envelope("PurchaseOrders", rows, pagination)

    def _get_purchase_order(self, request: Request, ref: str) -> Row:
        """``GET /PurchaseOrders/{PurchaseOrderID}`` (or ``/{PurchaseOrderNumber}``, as the spec lists both)."""
        rec = self.purchase_orders_by_id.get(ref.lower()) or self._purchase_order_by_number(ref)
        if rec is None:
            raise _not_found()
        return self._envelope("PurchaseOrders", [self._render_purchase_order(rec)])

    def _put_purchase_orders(self, request: Request) -> Row:
        def save(element: Row) -> Row:
            return {**self._render_purchase_order(self._save_purchase_order(element)), "StatusAttributeString": "OK"}

        return self._write_batch(request, "PurchaseOrders", save, "HasErrors")

    def _payment_summary(self, rec: Record) -> Row:
        data = rec.data
        return {
            "PaymentID": data["PaymentID"],
            "Date": net_date(_date_ms(date.fromisoformat(data["Date"]))),
            "Amount": data["Amount"],
            "Reference": data.get("Reference", ""),
            "CurrencyRate": Decimal("1.000000"),
            "HasAccount": False,
            "HasValidationErrors": False,
        }

    def _payment_target(self, sent: Row, errors: list[str]) -> Record | None:
        ref: Row = sent["Invoice"] if isinstance(sent.get("Invoice"), dict) else {}
        number = ref.get("InvoiceNumber") or sent.get("InvoiceNumber")
        invoice = None
        if ref.get("InvoiceID"):
            invoice = self.invoices_by_id.get(str(ref["InvoiceID"]).lower())
        elif number:
            invoice = self._invoice_by_number(str(number))
        if invoice is None:
            errors.append(MSG["payment_invoice"])
        elif invoice.data["Status"] != "AUTHORISED":
            errors.append(MSG["payment_status"])
        return invoice

    @staticmethod
    def _payment_account(sent: Row, errors: list[str]) -> str | None:
        ref: Row = sent["Account"] if isinstance(sent.get("Account"), dict) else {}
        code = ref.get("Code") or sent.get("Code")
        if not code and ref.get("AccountID"):
            code = next((c for c in ACCOUNTS if _account_id(c) == str(ref["AccountID"]).lower()), None)
        if not code or str(code) not in ACCOUNTS:
            errors.append(MSG["payment_account"])
            return None
        if ACCOUNTS[str(code)][1] != "BANK":
            errors.append(MSG["payment_bank"])
        return str(code)

    def _payment_amount(self, sent: Row, invoice: Record | None, errors: list[str]) -> Decimal:
        try:
            amount = _money(_dec(sent.get("Amount")))
        except ValueError:
            errors.append(MSG["number"].format(field="Amount"))
            return Decimal("0.00")
        if amount <= 0:
            errors.append(MSG["payment_amount"])
        elif invoice is not None and invoice.data["Status"] == "AUTHORISED" and amount > self._amount_due(invoice):
            errors.append(MSG["payment_exceeds"])
        return amount

    def _save_payment(self, sent: Row) -> Record:
        errors: list[str] = []
        invoice = self._payment_target(sent, errors)
        code = self._payment_account(sent, errors)
        amount = self._payment_amount(sent, invoice, errors)
        try:
            day = _parse_date(sent["Date"]) if sent.get("Date") else self._today()
        except ValueError:
            errors.append(MSG["date"].format(value=sent.get("Date")))
            day = self._today()
        data: Row = {
            "PaymentID": ZERO_GUID,
            "Date": day.isoformat(),
            "Amount": amount,
            "Reference": str(sent.get("Reference") or ""),
            "IsReconciled": bool(sent.get("IsReconciled")),
            "Status": "AUTHORISED",
            "AccountCode": code,
            "InvoiceID": invoice.data["InvoiceID"] if invoice else None,
        }
        if errors or invoice is None:
            raise ElementError(errors, self._payment_view(data, None))
        data["PaymentID"] = _new_id()
        rec = Record(data, self._now_ms(), self._next_seq())
        self.payments_by_id[data["PaymentID"]] = rec
        invoice.data.setdefault("PaymentIDs", []).append(data["PaymentID"])
        self._settle(invoice, day)
        return rec

    def _settle(self, invoice: Record, day: date | None) -> None:
        """PAID when nothing is left to pay, AUTHORISED again when a payment is deleted."""
        due = self._amount_due(invoice)
        if due <= 0 and invoice.data["Status"] == "AUTHORISED":
            invoice.data.update(Status="PAID", FullyPaidOnDate=(day or self._today()).isoformat())
        elif due > 0 and invoice.data["Status"] == "PAID":
            invoice.data["Status"] = "AUTHORISED"
            invoice.data.pop("FullyPaidOnDate", None)
        invoice.updated_ms = self._now_ms()
        self.webhooks.record("INVOICE", invoice.data["InvoiceID"], "UPDATE")  # no payment webhooks in Xero

    def _payment_view(self, data: Row, rec: Record | None) -> Row:
        invoice = self.invoices_by_id.get(data.get("InvoiceID") or "")
        code = data.get("AccountCode")
        out: Row = {
            "PaymentID": data["PaymentID"],
            "Date": net_date(_date_ms(date.fromisoformat(data["Date"]))),
            "BankAmount": data["Amount"],
            "Amount": data["Amount"],
            "Reference": data["Reference"],
            "CurrencyRate": Decimal("1.000000"),
            "PaymentType": "ACCPAYPAYMENT" if invoice and invoice.data["Type"] == "ACCPAY" else "ACCRECPAYMENT",
            "Status": data["Status"],
            "IsReconciled": data["IsReconciled"],
            "HasAccount": code is not None,
            "HasValidationErrors": False,
        }
        if rec is not None:
            out.update(UpdatedDateUTC=net_date(rec.updated_ms), UpdatedDateUTCString=_iso_seconds(rec.updated_ms))
        if code is not None:
            out["Account"] = {"AccountID": _account_id(code), "Code": code}
        if invoice is not None:
            summary = self._render_invoice(invoice, full_contact=False)
            keep = ("Type", "InvoiceID", "InvoiceNumber", "Contact", "Total", "AmountDue", "AmountPaid", "Status")
            out["Invoice"] = {key: summary[key] for key in keep if key in summary}
        return out

    def _render_payment(self, rec: Record) -> Row:
        return self._payment_view(rec.data, rec)

    def _get_payments(self, request: Request) -> Row:
        rows = [self._render_payment(rec) for rec in self._sorted(self.payments_by_id)]
        rows, pagination = self._select(request, rows, (PAYMENT_FIELDS, "Payment", "PaymentID"))
        return self._envelope("Payments", rows, pagination)

    def _get_payment(self, request: Request, ref: str) -> Row:
        rec = self.payments_by_id.get(ref.lower())
        if rec is None:
            raise _not_found()
        return self._envelope("Payments", [self._render_payment(rec)])

    def _put_payments(self, request: Request) -> Row:
        return self._write_batch(
            request, "Payments", lambda el: self._render_payment(self._save_payment(el)), "HasValidationErrors"
        )

    def _post_payment(self, request: Request, ref: str) -> Row:
        """POST /Payments/{id} with ``{"Status": "DELETED"}`` deletes a payment (the only allowed change)."""
        rec = self.payments_by_id.get(ref.lower())
        if rec is None:
            raise _not_found()

        def delete(element: Row) -> Row:
            if element.get("Status") != "DELETED" or rec.data["Status"] == "DELETED":
                raise ElementError(["Payment can only be deleted."], self._render_payment(rec))
            rec.data["Status"] = "DELETED"
            rec.updated_ms = self._now_ms()
            invoice = self.invoices_by_id.get(rec.data["InvoiceID"])
            if invoice is not None:
                self._settle(invoice, None)
            return self._render_payment(rec)

        return self._write_batch(request, "Payments", delete, "HasValidationErrors")

    # ---- quotes (XS getQuotes, createQuotes, updateOrCreateQuotes, getQuote, updateQuote) -------------------

    #: XS QuoteStatusCodes.
    QUOTE_STATUSES: ClassVar[tuple[str, ...]] = ("DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED", "DELETED")
    #: XS QuoteLineAmountTypes (upper case, unlike invoices') -> the line maths' names.
    QUOTE_LINE_TYPES: ClassVar[dict[str, str]] = {"EXCLUSIVE": "Exclusive", "INCLUSIVE": "Inclusive", "NOTAX": "NoTax"}
    #: A quote is made DRAFT or SENT. The moves between statuses follow Xero's quote life cycle (draft, sent,
    #: then accepted or declined, an accepted one invoiced; deleted from draft, sent or declined); XS lists the
    #: statuses, not the moves: see tests/contracts/xero/GUESSES.md ("quote status moves").
    QUOTE_CREATE_STATUSES: ClassVar[tuple[str, ...]] = ("DRAFT", "SENT")
    QUOTE_MOVES: ClassVar[dict[str, frozenset[str]]] = {
        "DRAFT": frozenset({"DRAFT", "SENT", "DELETED"}),
        "SENT": frozenset({"SENT", "DRAFT", "ACCEPTED", "DECLINED", "DELETED"}),
        "DECLINED": frozenset({"DECLINED", "SENT", "DELETED"}),
        "ACCEPTED": frozenset({"ACCEPTED", "SENT", "INVOICED"}),
        "INVOICED": frozenset({"INVOICED"}),
        "DELETED": frozenset(),
    }
    #: The statuses in which a quote's content (lines, dates, contact, texts) may still change.
    QUOTE_EDITABLE: ClassVar[frozenset[str]] = frozenset({"DRAFT", "SENT"})
    #: XS Quote's free texts, with their maxLength.
    QUOTE_TEXTS: ClassVar[dict[str, int]] = {"Reference": 4000, "Terms": 4000, "Title": 100, "Summary": 3000}
    #: Xero's quotes docs: "Up to 100 quotes will be returned in a single API call" (getQuotes has no pageSize).
    QUOTE_PAGE_SIZE: ClassVar[int] = 100
    QUOTE_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"QuoteID", "QuoteNumber", "Reference", "Terms", "Contact", "LineItems", "Date", "DateString"}
        | {"ExpiryDate", "ExpiryDateString", "Status", "CurrencyCode", "CurrencyRate", "SubTotal", "TotalTax"}
        | {"Total", "TotalDiscount", "Title", "Summary", "BrandingThemeID", "UpdatedDateUTC", "LineAmountTypes"}
    )
    #: Xero's wording where known (the invoice messages), else worded after them (GUESSES.md "quote messages").
    QUOTE_MSG: ClassVar[dict[str, str]] = {
        "contact": "A Contact must be specified for this type of transaction",
        "contact_missing": "The contact specified for this quote could not be found.",
        "status": "Quote Status '{status}' is not valid for this operation.",
        "move": "A quote with status {old} cannot be changed to {new}.",
        "not_modifiable": "Quote not of valid status for modification",
        "line_amount_types": "LineAmountTypes must be EXCLUSIVE, INCLUSIVE or NOTAX.",
        "number_taken": "Quote # must be unique.",
        "expiry": "Expiry date must be on or after the quote date.",
        "missing": "Quote could not be found.",
    }

    def quotes(self) -> list[Row]:
        """Every stored quote (deleted ones too) as getQuote renders it, oldest first; money stays Decimal."""
        with self.state.lock:
            return [self._render_quote(rec) for rec in self._sorted(self._quote_table())]

    def _quote_table(self) -> dict[str, Record]:
        return self.quotes_by_id

    def _add_quote_routes(self, add: Callable[[str, str, Callable[..., Any], str], None]) -> None:
        # Quotes sit under accounting.transactions, and under accounting.invoices in Xero's granular scopes:
        # the scopes of the "invoices" resource.
        add("GET", f"{API_PREFIX}/Quotes", self._get_quotes, "invoices")
        add("PUT", f"{API_PREFIX}/Quotes", self._put_quotes, "invoices")
        add("POST", f"{API_PREFIX}/Quotes", self._post_quotes, "invoices")
        add("GET", f"{API_PREFIX}/Quotes/<ref>", self._get_quote, "invoices")
        add("POST", f"{API_PREFIX}/Quotes/<ref>", self._post_quote, "invoices")

    def _quote_by_number(self, number: str, exclude: str | None = None) -> Record | None:
        wanted = number.strip().casefold()
        return next(
            (
                rec
                for rec in self._quote_table().values()
                if rec.data["QuoteID"] != exclude
                and rec.data["Status"] != "DELETED"
                and str(rec.data.get("QuoteNumber") or "").strip().casefold() == wanted
            ),
            None,
        )

    def _match_quote(self, sent: Row, mode: str, quote_id: str | None) -> Record | None:
        table = self._quote_table()
        if mode == "update":
            rec = table.get((quote_id or "").lower())
            if rec is None:
                raise _not_found()
            return rec
        if mode == "upsert" and sent.get("QuoteID"):
            rec = table.get(str(sent["QuoteID"]).lower())
            if rec is None:
                raise ElementError([self.QUOTE_MSG["missing"]], {"QuoteID": sent["QuoteID"]})
            return rec
        if mode == "upsert" and sent.get("QuoteNumber"):
            return self._quote_by_number(str(sent["QuoteNumber"]))
        return None

    def _quote_contact(self, sent: Row, current: str | None, errors: list[str]) -> str | None:
        """The quote's ContactID: by ContactID, ContactNumber or Name of an existing contact (a quote does
        not make contacts); the current one when no Contact is sent."""
        contact = sent.get("Contact")
        if not isinstance(contact, dict) or not any(contact.get(k) for k in ("ContactID", "ContactNumber", "Name")):
            if current is None:
                errors.append(self.QUOTE_MSG["contact"])
            return current
        rec: Record | None
        if contact.get("ContactID"):
            rec = self.contacts_by_id.get(str(contact["ContactID"]).lower())
        elif contact.get("ContactNumber"):
            rec = self._contact_by_number(str(contact["ContactNumber"]))
        else:
            rec = self._active_contact_by_name(str(contact["Name"]))
        if rec is None:
            errors.append(self.QUOTE_MSG["contact_missing"])
            return current
        return str(rec.data["ContactID"])

    def _quote_status_error(self, merged: Row, existing: Record | None, sent: Row) -> str | None:
        status = merged.get("Status")
        if status not in self.QUOTE_STATUSES:
            return self.QUOTE_MSG["status"].format(status=status)
        if existing is None:
            return None if status in self.QUOTE_CREATE_STATUSES else self.QUOTE_MSG["status"].format(status=status)
        old = existing.data["Status"]
        if status not in self.QUOTE_MOVES[old]:
            return self.QUOTE_MSG["move"].format(old=old, new=status)
        if old not in self.QUOTE_EDITABLE and self._quote_content_changes(existing.data, merged, sent):
            return self.QUOTE_MSG["not_modifiable"]
        return None

    def _quote_content_changes(self, before: Row, merged: Row, sent: Row) -> bool:
        """Whether an update changes more than the status: lines sent, or another value differing."""
        if "LineItems" in sent:
            return True
        keys = ("ContactID", "Date", "ExpiryDate", "CurrencyCode", "LineAmountTypes", "QuoteNumber", *self.QUOTE_TEXTS)
        return any(before.get(key) != merged.get(key) for key in keys)

    def _quote_fields(self, merged: Row, sent: Row, errors: list[str]) -> None:
        if merged.get("LineAmountTypes") not in self.QUOTE_LINE_TYPES:
            errors.append(self.QUOTE_MSG["line_amount_types"])
        if merged.get("CurrencyCode") != BASE_CURRENCY:
            errors.append(MSG["currency"].format(code=merged.get("CurrencyCode")))
        for key in ("Date", "ExpiryDate"):
            if sent.get(key) is not None:
                try:
                    merged[key] = _parse_date(sent[key]).isoformat()
                except ValueError:
                    errors.append(MSG["date"].format(value=sent[key]))
        if merged.get("ExpiryDate") and merged.get("Date") and merged["ExpiryDate"] < merged["Date"]:
            errors.append(self.QUOTE_MSG["expiry"])
        for key, limit in {**self.QUOTE_TEXTS, "QuoteNumber": 255}.items():
            if len(str(merged.get(key) or "")) > limit:
                errors.append(MSG["too_long"].format(field=key, limit=limit))

    def _next_quote_number(self) -> str:
        highest = 0
        for rec in self._quote_table().values():
            match = re.fullmatch(r"QU-(\d+)", str(rec.data.get("QuoteNumber") or ""))
            if match:
                highest = max(highest, int(match.group(1)))
        return f"QU-{highest + 1:04d}"

    def _compute_quote_lines(self, merged: Row, sent: Row, unitdp: int, errors: list[str]) -> None:
        line_types = self.QUOTE_LINE_TYPES[merged["LineAmountTypes"]]
        if "LineItems" in sent:  # the lines sent replace the quote's lines, as on invoices
            raw_lines = sent["LineItems"] if isinstance(sent["LineItems"], list) else []
        else:
            raw_lines, unitdp = merged.get("LineInputs", []), 4
        computed = [self._line(raw, line_types, unitdp, errors) for raw in raw_lines if isinstance(raw, dict)]
        merged["LineInputs"] = [inputs for inputs, _ in computed]
        merged["LineItems"] = [line for _, line in computed]
        merged.update(self._totals(merged["LineItems"], line_types))

    def _save_quote(self, sent: Row, mode: str, quote_id: str | None, unitdp: int) -> Record:
        existing = self._match_quote(sent, mode, quote_id)
        if existing is not None:
            merged = copy.deepcopy(existing.data)
        else:
            merged = {"Status": "DRAFT", "LineAmountTypes": "EXCLUSIVE", "CurrencyCode": BASE_CURRENCY}
            merged["Date"] = self._today().isoformat()  # XS Quote.Date: defaults to the current date
        for key in ("Status", "LineAmountTypes", "CurrencyCode", "QuoteNumber", "BrandingThemeID", *self.QUOTE_TEXTS):
            if key in sent:
                merged[key] = copy.deepcopy(sent[key])
        errors: list[str] = []
        merged["ContactID"] = self._quote_contact(sent, merged.get("ContactID"), errors)
        self._quote_fields(merged, sent, errors)
        status_error = self._quote_status_error(merged, existing, sent)
        if status_error:
            errors.append(status_error)
        own_id = existing.data["QuoteID"] if existing else None
        number = merged.get("QuoteNumber")
        if number and self._quote_by_number(str(number), own_id) is not None:
            errors.append(self.QUOTE_MSG["number_taken"])
        if merged.get("LineAmountTypes") in self.QUOTE_LINE_TYPES:
            self._compute_quote_lines(merged, sent, unitdp, errors)
        if errors:
            raise ElementError(errors, self._quote_view(merged, own_id or ZERO_GUID, None, unitdp))
        if not merged.get("QuoteNumber"):
            merged["QuoteNumber"] = self._next_quote_number()
        if existing is not None:
            existing.data, existing.updated_ms = merged, self._now_ms()
            return existing
        merged["QuoteID"] = _new_id()
        rec = Record(merged, self._now_ms(), self._next_seq())
        self._quote_table()[merged["QuoteID"]] = rec
        return rec

    def _quote_view(self, data: Row, quote_id: str, rec: Record | None, unitdp: int) -> Row:
        """A quote as XS Quote renders it (the spec's getQuotes example: .NET dates with their strings)."""
        contact = self.contacts_by_id.get(data.get("ContactID") or "")
        out: Row = {"QuoteID": quote_id}
        for key in ("QuoteNumber", "Reference", "Terms"):
            if data.get(key) is not None:
                out[key] = data[key]
        out["Contact"] = (
            {"ContactID": contact.data["ContactID"], "Name": contact.data.get("Name") or ""}
            if contact is not None
            else {"ContactID": data.get("ContactID") or ZERO_GUID}
        )
        out["LineItems"] = [self._line_view(line, unitdp) for line in data.get("LineItems", [])]
        for key in ("Date", "ExpiryDate"):
            if data.get(key):
                day = date.fromisoformat(data[key])
                out[key] = net_date(_date_ms(day), offset=False)
                out[f"{key}String"] = f"{day.isoformat()} 00:00:00"
        out.update(Status=data.get("Status"), CurrencyRate=Decimal("1.000000"), CurrencyCode=data.get("CurrencyCode"))
        for key in ("SubTotal", "TotalTax", "Total", "TotalDiscount"):
            out[key] = data.get(key, Decimal("0.00"))
        for key in ("Title", "Summary", "BrandingThemeID"):
            if data.get(key) is not None:
                out[key] = data[key]
        if rec is not None:
            out["UpdatedDateUTC"] = net_date(rec.updated_ms, offset=False)
        out["LineAmountTypes"] = data.get("LineAmountTypes")
        return out

    def _render_quote(self, rec: Record, unitdp: int = 4) -> Row:
        return self._quote_view(rec.data, rec.data["QuoteID"], rec, unitdp)

    def _get_quotes(self, request: Request) -> Row:
        """getQuotes: If-Modified-Since, ContactID, Status, DateFrom/To, ExpiryDateFrom/To, QuoteNumber, order
        and page (100 a page); every quote with its lines, deleted ones too unless a Status is asked."""
        rows = [self._render_quote(rec) for rec in self._sorted(self._quote_table())]
        since = _parse_http_time(request.headers.get("If-Modified-Since"))
        if since is not None:
            since_ms = _epoch_ms(since)
            rows = [row for row in rows if (_net_ms(row.get("UpdatedDateUTC")) or since_ms) >= since_ms]
        wanted = {
            "ContactID": lambda row: str(row["Contact"].get("ContactID")),
            "Status": lambda row: str(row.get("Status")),
            "QuoteNumber": lambda row: str(row.get("QuoteNumber")),
        }
        for name, value_of in wanted.items():
            value = (_arg(request, name) or "").strip()
            if value:
                rows = [row for row in rows if value_of(row).casefold() == value.casefold()]
        for name, key, after in (
            ("DateFrom", "Date", True),
            ("DateTo", "Date", False),
            ("ExpiryDateFrom", "ExpiryDate", True),
            ("ExpiryDateTo", "ExpiryDate", False),
        ):
            raw = (_arg(request, name) or "").strip()
            if not raw:
                continue
            try:
                bound = _parse_date(raw)
            except ValueError as exc:
                raise _query_error(MSG["date"].format(value=raw)) from exc
            rows = [row for row in rows if self._quote_day_within(row, key, bound, after=after)]
        order = _arg(request, "order")
        if order and order.strip():
            rows = order_rows(rows, order, self.QUOTE_FIELDS, "Quote")
        raw_page = _arg(request, "page")
        if raw_page is not None:
            try:
                page = max(1, int(raw_page))
            except ValueError:
                page = 1
            rows = rows[(page - 1) * self.QUOTE_PAGE_SIZE : page * self.QUOTE_PAGE_SIZE]
        return self._envelope("Quotes", rows)

    @staticmethod
    def _quote_day_within(row: Row, key: str, bound: date, *, after: bool) -> bool:
        ms = _net_ms(row.get(key))
        if ms is None:
            return False
        day = datetime.fromtimestamp(ms / 1000, UTC).date()
        return day >= bound if after else day <= bound

    def _get_quote(self, request: Request, ref: str) -> Row:
        rec = self._quote_table().get(ref.lower())
        if rec is None:
            raise _not_found()
        return self._envelope("Quotes", [self._render_quote(rec, _unitdp(request))])

    def _quote_writer(self, request: Request, mode: str, ref: str | None = None) -> Row:
        unitdp = _unitdp(request)

        def save(element: Row) -> Row:
            rec = self._save_quote(element, mode, ref, unitdp)
            return {**self._render_quote(rec, unitdp), "StatusAttributeString": "OK"}

        return self._write_batch(request, "Quotes", save, "HasErrors")

    def _put_quotes(self, request: Request) -> Row:
        return self._quote_writer(request, "create")

    def _post_quotes(self, request: Request) -> Row:
        return self._quote_writer(request, "upsert")

    def _post_quote(self, request: Request, ref: str) -> Row:
        if ref.lower() not in self._quote_table():
            raise _not_found()
        return self._quote_writer(request, "update", ref.lower())

    # ---- repeating invoices (XS getRepeatingInvoices, createRepeatingInvoices, updateOrCreateRepeatingInvoices,
    # getRepeatingInvoice, updateRepeatingInvoice): templates that generate invoices on a schedule ------------

    def _add_repeating_routes(self, add: Callable[..., None]) -> None:
        add("GET", f"{API_PREFIX}/RepeatingInvoices", self._get_repeating_invoices, "repeating")
        add("PUT", f"{API_PREFIX}/RepeatingInvoices", self._put_repeating_invoices, "repeating")
        add("POST", f"{API_PREFIX}/RepeatingInvoices", self._post_repeating_invoices, "repeating")
        add("GET", f"{API_PREFIX}/RepeatingInvoices/<ref>", self._get_repeating_invoice, "repeating")
        add("POST", f"{API_PREFIX}/RepeatingInvoices/<ref>", self._post_repeating_invoice, "repeating")

    def repeating_invoices(self) -> list[Row]:
        """Every stored template (deleted ones too) as the API renders it, oldest first; money stays Decimal."""
        with self.state.lock:
            return [self._render_repeating(rec) for rec in self._sorted(self.repeating_by_id)]

    def generate_repeating_invoices(self, through: date | None = None) -> list[str]:
        """Run Xero's overnight job up to ``through`` (the sandbox's today by default): every live template
        makes its invoices due by then (one per scheduled date up to its EndDate), as ordinary invoices
        carrying its Reference and RepeatingInvoiceID, DRAFT from a DRAFT template and AUTHORISED from an
        AUTHORISED one (the adapter's GUESSES["repeating_generated_invoices"]). The new InvoiceIDs, in order."""
        with self.state.lock:
            until = through or self._today()
            made: list[str] = []
            for rec in self._sorted(self.repeating_by_id):
                made.extend(self._generate_from(rec, until))
            return made

    def _generate_from(self, rec: Record, until: date) -> list[str]:
        data = rec.data
        made: list[str] = []
        while data["Status"] != "DELETED" and data.get("NextScheduledDate"):
            day = date.fromisoformat(data["NextScheduledDate"])
            if day > until:
                break
            schedule = data["Schedule"]
            sent = {
                "Type": data["Type"],
                "Contact": {"ContactID": data["ContactID"]},
                "Date": day.isoformat(),
                "DueDate": _repeating_due(day, schedule["DueDate"], schedule["DueDateType"]).isoformat(),
                "LineAmountTypes": data["LineAmountTypes"],
                "CurrencyCode": data["CurrencyCode"],
                "LineItems": copy.deepcopy(data["LineInputs"]),
                "Status": "AUTHORISED" if data["Status"] == "AUTHORISED" else "DRAFT",
                **({"Reference": data["Reference"]} if data.get("Reference") else {}),
            }
            for line in sent["LineItems"]:
                line.pop("LineItemID", None)
            invoice = self._save_invoice(sent, "create", None, 4)
            invoice.data["RepeatingInvoiceID"] = data["RepeatingInvoiceID"]
            made.append(invoice.data["InvoiceID"])
            # counted from the StartDate, so a month end stays one (31 Jan, 28 Feb, 31 Mar)
            data["Generated"] = data.get("Generated", 0) + 1
            start = date.fromisoformat(schedule["StartDate"])
            following = _repeating_after(start, schedule["Unit"], schedule["Period"] * data["Generated"])
            end = data["Schedule"].get("EndDate")
            data["NextScheduledDate"] = None if end and following > date.fromisoformat(end) else following.isoformat()
            rec.updated_ms = self._now_ms()
        return made

    def _repeating_schedule(self, sent: Any, errors: list[str]) -> Row:
        """A template's Schedule as stored (dates ISO), with the reasons Xero would refuse it."""
        if not isinstance(sent, dict):
            errors.append(REPEATING_MSG["schedule"])
            return {}
        out: Row = {}
        for key, least, default in (("Period", 1, None), ("DueDate", 0, 0)):
            value = sent.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                errors.append(REPEATING_MSG[key.lower()])
            else:
                out[key] = value
        for key, allowed in (("Unit", REPEATING_UNITS), ("DueDateType", REPEATING_DUE_DATE_TYPES)):
            if sent.get(key) not in allowed:
                errors.append(REPEATING_MSG[key.lower()])
            else:
                out[key] = sent[key]
        for key in ("StartDate", "EndDate"):
            if sent.get(key) in (None, ""):
                continue
            try:
                out[key] = _parse_date(sent[key]).isoformat()
            except ValueError:
                errors.append(MSG["date"].format(value=sent[key]))
        if "StartDate" not in out and not any("date" in e.lower() for e in errors):
            errors.append(REPEATING_MSG["start_date"])
        if out.get("EndDate") and out.get("StartDate") and out["EndDate"] < out["StartDate"]:
            errors.append(REPEATING_MSG["end_before_start"])
        return out

    def _save_repeating(self, sent: Row) -> Record:
        """Create a template (PUT, or POST without a RepeatingInvoiceID): validated like an invoice (contact,
        lines, tax, currency), plus its schedule. Its first NextScheduledDate is its StartDate."""
        merged: Row = {"Type": sent.get("Type", "ACCREC"), "Status": sent.get("Status", "DRAFT")}
        merged["LineAmountTypes"] = sent.get("LineAmountTypes", "Exclusive")
        merged["CurrencyCode"] = sent.get("CurrencyCode", BASE_CURRENCY)
        errors: list[str] = []
        if merged["Type"] not in INVOICE_TYPES:
            errors.append(MSG["invoice_type"])
        if merged["Status"] not in REPEATING_CREATE_STATUSES:
            errors.append(REPEATING_MSG["status"].format(status=merged["Status"]))
        if merged["LineAmountTypes"] not in LINE_AMOUNT_TYPES:
            errors.append(MSG["line_amount_types"])
        if merged["CurrencyCode"] != BASE_CURRENCY:
            errors.append(MSG["currency"].format(code=merged["CurrencyCode"]))
        if sent.get("Reference") is not None:
            if merged["Type"] != "ACCREC":
                errors.append(REPEATING_MSG["reference_accpay"])
            elif len(str(sent["Reference"])) > 255:
                errors.append(MSG["too_long"].format(field="Reference", limit=255))
            merged["Reference"] = str(sent["Reference"])
        contact_id, new_contact = self._invoice_contact(sent, None, errors)
        if new_contact is not None:
            errors.append(MSG["invoice_contact_missing"])
        merged["Schedule"] = self._repeating_schedule(sent.get("Schedule"), errors)
        raw_lines = sent.get("LineItems") if isinstance(sent.get("LineItems"), list) else []
        if not raw_lines:
            errors.append(REPEATING_MSG["lines"])
        if merged["LineAmountTypes"] in LINE_AMOUNT_TYPES:
            self._compute_lines(merged, {"LineItems": raw_lines}, 4, errors)
        merged["ContactID"] = contact_id
        if errors:
            raise ElementError(errors, self._repeating_view(merged, ZERO_GUID))
        merged["RepeatingInvoiceID"] = _new_id()
        merged["NextScheduledDate"] = merged["Schedule"]["StartDate"]
        rec = Record(merged, self._now_ms(), self._next_seq())
        self.repeating_by_id[merged["RepeatingInvoiceID"]] = rec
        return rec

    def _delete_repeating(self, rec: Record, sent: Row) -> Record:
        """POST with Status DELETED deletes a template (XS: the only change its POSTs describe)."""
        if sent.get("Status") != "DELETED":
            raise ElementError([REPEATING_MSG["only_delete"]], self._render_repeating(rec))
        if rec.data["Status"] != "DELETED":
            rec.data["Status"] = "DELETED"
            rec.data["NextScheduledDate"] = None
            rec.updated_ms = self._now_ms()
        return rec

    def _repeating_view(self, data: Row, repeating_id: str) -> Row:
        schedule: Row = {}
        stored = data.get("Schedule") or {}
        for key in ("Period", "Unit", "DueDate", "DueDateType"):
            if key in stored:
                schedule[key] = stored[key]
        for key in ("StartDate", "EndDate"):
            if stored.get(key):
                schedule[key] = net_date(_date_ms(date.fromisoformat(stored[key])))
        if data.get("NextScheduledDate") and data.get("Status") != "DELETED":
            schedule["NextScheduledDate"] = net_date(_date_ms(date.fromisoformat(data["NextScheduledDate"])))
        out: Row = {"Schedule": schedule, "RepeatingInvoiceID": repeating_id, "Type": data.get("Type")}
        if data.get("Reference") is not None:
            out["Reference"] = data["Reference"]
        out.update(HasAttachments=False, ApprovedForSending=False, SendCopy=False, MarkAsSent=False, IncludePDF=False)
        out["ID"] = repeating_id
        out["Contact"] = self._contact_summary(data.get("ContactID"), False)
        out.update(Status=data.get("Status"), LineAmountTypes=data.get("LineAmountTypes"))
        out["LineItems"] = [self._line_view(line, 2) for line in data.get("LineItems", [])]
        for key in ("SubTotal", "TotalTax", "Total"):
            out[key] = data.get(key, Decimal("0.00"))
        out["CurrencyCode"] = data.get("CurrencyCode")
        return out

    def _render_repeating(self, rec: Record) -> Row:
        return self._repeating_view(rec.data, rec.data["RepeatingInvoiceID"])

    def _get_repeating_invoices(self, request: Request) -> Row:
        """Live templates (a deleted one is only read by id: the adapter's GUESSES["repeating_deleted_reads"]);
        ``where`` and ``order``, no paging (XS getRepeatingInvoices takes neither page nor pageSize)."""
        rows = [
            self._render_repeating(rec) for rec in self._sorted(self.repeating_by_id) if rec.data["Status"] != "DELETED"
        ]
        rows, _ = self._select(request, rows, (REPEATING_FIELDS, "RepeatingInvoice", "RepeatingInvoiceID"), paged=False)
        return self._envelope("RepeatingInvoices", rows)

    def _get_repeating_invoice(self, request: Request, ref: str) -> Row:
        rec = self.repeating_by_id.get(ref.lower())
        if rec is None:
            raise _not_found()
        return self._envelope("RepeatingInvoices", [self._render_repeating(rec)])

    def _put_repeating_invoices(self, request: Request) -> Row:
        return self._write_batch(
            request, "RepeatingInvoices", lambda el: self._render_repeating(self._save_repeating(el)), "HasErrors"
        )

    def _post_repeating_invoices(self, request: Request) -> Row:
        """XS updateOrCreateRepeatingInvoices: "creates or deletes" (an element naming its id is a delete)."""

        def save(element: Row) -> Row:
            named = str(element.get("RepeatingInvoiceID") or "").lower()
            if not named:
                return self._render_repeating(self._save_repeating(element))
            rec = self.repeating_by_id.get(named)
            if rec is None:
                raise ElementError([REPEATING_MSG["missing"]], {"RepeatingInvoiceID": element["RepeatingInvoiceID"]})
            return self._render_repeating(self._delete_repeating(rec, element))

        return self._write_batch(request, "RepeatingInvoices", save, "HasErrors")

    def _post_repeating_invoice(self, request: Request, ref: str) -> Row:
        rec = self.repeating_by_id.get(ref.lower())
        if rec is None:
            raise _not_found()

        def delete(element: Row) -> Row:
            return self._render_repeating(self._delete_repeating(rec, element))

        return self._write_batch(request, "RepeatingInvoices", delete, "HasErrors")

    # ---- settings: tax rates, accounts, organisation ------------------------------------------------------

    def _get_tax_rates(self, request: Request) -> Row:
        rows: list[Row] = [
            {
                "Name": name,
                "TaxType": tax_type,
                "ReportTaxType": report,
                "CanApplyToRevenue": tax_type != "INPUT2",
                "DisplayTaxRate": shown,
                "EffectiveRate": shown,
                "Status": "ACTIVE",
                "TaxComponents": [{"Name": "GST", "Rate": shown, "IsCompound": False, "IsNonRecoverable": False}],
            }
            for tax_type, (name, rate, report) in TAX_RATES.items()
            for shown in [rate.quantize(QTY)]  # Xero writes rates with 4 dp: 15.0000
        ]
        rows, _ = self._select(request, rows, (TAX_RATE_FIELDS, "TaxRate", "TaxType"))
        return self._envelope("TaxRates", rows)

    def _get_accounts(self, request: Request) -> Row:
        classes = {"BANK": "ASSET", "CURRENT": "ASSET", "REVENUE": "REVENUE", "CURRLIAB": "LIABILITY"}
        rows: list[Row] = [
            {
                "AccountID": _account_id(code),
                "Code": code,
                "Name": name,
                "Type": kind,
                "TaxType": tax_type,
                "Status": "ACTIVE",
                "Class": classes.get(kind, "EXPENSE"),
                "EnablePaymentsToAccount": False,
                "BankAccountType": "BANK" if kind == "BANK" else "",
            }
            for code, (name, kind, tax_type) in ACCOUNTS.items()
        ]
        rows, _ = self._select(request, rows, (ACCOUNT_FIELDS, "Account", "AccountID"))
        return self._envelope("Accounts", rows)

    def _get_organisation(self, request: Request) -> Row:
        org = {
            "OrganisationID": self.tenant_id,
            "Name": self.tenant_name,
            "LegalName": self.tenant_name,
            "PaysTax": True,
            "Version": "NZ",
            "OrganisationType": "COMPANY",
            "BaseCurrency": BASE_CURRENCY,
            "CountryCode": "NZ",
            "IsDemoCompany": False,
            "OrganisationStatus": "ACTIVE",
            "ShortCode": "!" + hashlib.sha256(self.tenant_id.encode()).hexdigest()[:5],
            "Class": "STANDARD",
            "Edition": "BUSINESS",
        }
        return self._envelope("Organisations", [org])

    # ---- control API (/_sandbox/...) ---------------------------------------------------------------------

    def control_routes(self) -> Router:
        routes = super().control_routes()
        routes.add("GET", "/_sandbox/contacts", lambda body: {"Contacts": self.contacts()})
        routes.add("POST", "/_sandbox/contacts", lambda body: self.json(self.seed_contact(**body), 201))
        routes.add("GET", "/_sandbox/invoices", lambda body: {"Invoices": self.invoices()})
        routes.add("GET", "/_sandbox/emails", lambda body: {"emails": self.emails()})
        routes.add("GET", "/_sandbox/repeating-invoices", lambda body: {"RepeatingInvoices": self.repeating_invoices()})
        routes.add("POST", "/_sandbox/repeating-invoices/generate", self._control_generate)
        routes.add("POST", "/_sandbox/expire-tokens", lambda body: self.expire_access_tokens())
        routes.add("POST", "/_sandbox/revoke-refresh-tokens", lambda body: self.revoke_refresh_tokens())
        routes.add("GET", "/_sandbox/refresh-token", self._control_refresh_token)
        routes.add("POST", "/_sandbox/webhooks", self._control_webhooks)
        routes.add("POST", "/_sandbox/webhooks/intent-to-receive", self._control_intent_to_receive)
        routes.add("POST", "/_sandbox/webhooks/flush", lambda body: self.webhooks.flush())
        routes.add("GET", "/_sandbox/webhooks/deliveries", self._control_deliveries)
        return routes

    def _control_generate(self, body: Row) -> Row:
        """Xero's overnight run of the repeating templates, up to ``{"through": "YYYY-MM-DD"}`` (today)."""
        through = date.fromisoformat(str(body["through"])) if body.get("through") else None
        return {"InvoiceIDs": self.generate_repeating_invoices(through)}

    def _control_webhooks(self, body: Row) -> Row:
        status = self.webhooks.subscribe(str(body.get("url") or ""), body.get("categories") or WEBHOOK_CATEGORIES)
        return {"status": status, "key": self.webhooks.key}

    def _control_intent_to_receive(self, body: Row) -> Row:
        passed = self.webhooks.intent_to_receive()
        return {"passed": passed, "status": self.webhooks.status}

    def _control_deliveries(self, body: Row) -> Row:
        with self.state.lock:
            deliveries = list(self.webhooks.deliveries)
        return {"deliveries": deliveries, "pending": self.webhooks.pending()}

    def _control_refresh_token(self, body: Row) -> Response:
        token = self.current_refresh_token
        if token is None:
            return self.json({"error": "no usable refresh token"}, 404)
        return self.json({"refresh_token": token, "tenant_id": self.tenant_id})


def serve(sandbox: XeroSandbox | None = None, port: int = 0) -> tuple[XeroSandbox, SandboxServer]:
    """Start a sandbox on 127.0.0.1 (``port=0`` picks a free port); stop it with ``server.stop()``."""
    app = sandbox if sandbox is not None else XeroSandbox()
    server = SandboxServer(app, port=port).start()
    return app, server


def finance_client(sandbox: XeroSandbox, base_url: str) -> httpx.Client:
    """A Xero client of finance's own: another app connection, as a person in finance would use."""
    client = httpx.Client(base_url=base_url, timeout=10)
    redirect = "http://localhost/finance"
    consent = client.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": sandbox.client_id,
            "redirect_uri": redirect,
            "scope": "offline_access accounting.transactions accounting.contacts",
        },
    )
    code = parse_qs(urlparse(consent.headers["location"]).query)["code"][0]
    tokens = client.post(
        "/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
        auth=(sandbox.client_id, sandbox.client_secret),
    ).json()
    client.headers.update({"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": sandbox.tenant_id})
    return client


def finance_approve_and_pay(sandbox: XeroSandbox, base_url: str, invoice_id: str, amount: str, on: str) -> None:
    """Finance approves the invoice and records a payment against it, in Xero."""
    client = finance_client(sandbox, base_url)
    try:
        client.post(f"{API_PREFIX}/Invoices/{invoice_id}", json={"Status": "AUTHORISED"}).raise_for_status()
        # Xero's spec types Amount as a number (Payment.Amount: double): an exact JSON number, not a string
        payment = {
            "Invoice": {"InvoiceID": invoice_id},
            "Account": {"Code": "090"},
            "Date": on,
            "Amount": Decimal(amount),
        }
        body = dumps_exact({"Payments": [payment]})
        client.put(
            f"{API_PREFIX}/Payments", content=body, headers={"Content-Type": "application/json"}
        ).raise_for_status()
    finally:
        client.close()


class XeroDriver:
    """AccountingDriver for the Xero sandbox: finance's actions (in its own app connection) and reads."""

    name = "xero"
    currency = "NZD"  # the sandbox organisation's base currency

    def __init__(self, sandbox: XeroSandbox, base_url: str) -> None:
        self.sandbox = sandbox
        self.base_url = base_url
        self.state = sandbox.state

    def environment(self, base_url: str) -> dict[str, str]:
        return {
            "ACCOUNTING_PROVIDER": self.name,
            "XERO_API_URL": base_url,
            "XERO_IDENTITY_URL": base_url,
            "XERO_LOGIN_URL": base_url,
            "XERO_CLIENT_ID": self.sandbox.client_id,
            "XERO_CLIENT_SECRET": self.sandbox.client_secret,
            "XERO_REFRESH_TOKEN": str(self.sandbox.current_refresh_token),
            "XERO_TENANT_ID": self.sandbox.tenant_id,
            "XERO_WEBHOOK_KEY": self.sandbox.webhooks.key,
        }

    def subscribe_webhooks(self, url: str) -> str:
        """Point the app's webhook (contacts and invoices) at ``url`` and pass intent to receive; the status."""
        return self.sandbox.webhooks.subscribe(url)

    def flush_webhooks(self) -> None:
        self.sandbox.webhooks.flush()

    def sent_webhooks(self) -> list[SentWebhook]:
        """Every webhook request sent so far (intent-to-receive checks too), oldest first."""
        with self.state.lock:
            sent = [d for d in self.sandbox.webhooks.deliveries if d["kind"] != "lost"]
        return [SentWebhook(str(d["url"]), dict(d["headers"]), str(d["body"]).encode(), d["status"]) for d in sent]

    def customers(self) -> list[SeenCustomer]:
        return [
            SeenCustomer(
                id=str(c["ContactID"]),
                name=str(c.get("Name") or ""),
                number=str(c.get("ContactNumber") or ""),
                email=str(c.get("EmailAddress") or ""),
                tax_number=str(c.get("TaxNumber") or ""),
                active=c.get("ContactStatus", "ACTIVE") == "ACTIVE",
            )
            for c in self.sandbox.contacts()
        ]

    def invoices(self) -> list[SeenInvoice]:
        return [
            SeenInvoice(
                id=str(i["InvoiceID"]),
                reference=str(i.get("Reference") or ""),
                customer_id=str((i.get("Contact") or {}).get("ContactID") or ""),
                currency=str(i.get("CurrencyCode") or ""),
                total=_dec(i.get("Total")),
                amount_due=_dec(i.get("AmountDue")),
                status=str(i.get("Status") or ""),
                lines=tuple(
                    (str(li.get("ItemCode") or ""), _dec(li.get("Quantity")), _dec(li.get("UnitAmount")))
                    for li in i.get("LineItems") or []
                ),
            )
            for i in self.sandbox.invoices()
            if i.get("Type") == "ACCREC"
        ]

    def items(self) -> list[SeenItem]:
        def price(details: Any) -> Decimal | None:
            value = (details or {}).get("UnitPrice")
            return None if value in (None, "") else _dec(value)

        return [
            SeenItem(
                id=str(i["ItemID"]),
                code=str(i.get("Code") or ""),
                name=str(i.get("Name") or ""),
                unit_price=price(i.get("SalesDetails")),
                unit_cost=price(i.get("PurchaseDetails")),
            )
            for i in self.sandbox.items()
        ]

    def seed_item(self, code: str, name: str, unit_price: Decimal) -> None:
        if any(item.get("Code") == code for item in self.sandbox.items()):
            return
        self.sandbox.seed_item(
            Code=code,
            Name=name,
            SalesDetails={"UnitPrice": str(unit_price), "AccountCode": "200", "TaxType": "OUTPUT2"},
        )

    def seed_customer(self, name: str, *, email: str = "", tax_number: str = "") -> str:
        fields = {k: v for k, v in {"Name": name, "EmailAddress": email, "TaxNumber": tax_number}.items() if v}
        return str(self.sandbox.seed_contact(**fields)["ContactID"])

    def edit_customer(
        self, customer_id: str, *, name: str | None = None, email: str | None = None, phone: str | None = None
    ) -> None:
        """Finance edits the contact through an app connection of its own (``POST /Contacts/{id}``): only the
        given fields are sent, the phone as the DEFAULT phone; the sandbox stamps it and queues the webhook."""
        body: Row = {}
        if name is not None:
            body["Name"] = name
        if email is not None:
            body["EmailAddress"] = email
        if phone is not None:
            body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": phone}]
        client = finance_client(self.sandbox, self.base_url)
        try:
            client.post(f"{API_PREFIX}/Contacts/{customer_id}", json={"Contacts": [body]}).raise_for_status()
        finally:
            client.close()

    def approve_and_pay(self, invoice_id: str, amount: Decimal, on: date) -> None:
        """Finance authorises the invoice and records the payment, through an app connection of its own."""
        finance_approve_and_pay(self.sandbox, self.base_url, invoice_id, str(amount), on.isoformat())

    def set_quote_status(self, quote_id: str, status: str) -> None:
        """Finance marks a quote (e.g. ACCEPTED, as the customer answered), through an app connection of its
        own: ``POST /Quotes/{QuoteID}`` with the Contact and Date Xero's quote updates carry, and the status."""
        current = next(q for q in self.sandbox.quotes() if q["QuoteID"] == quote_id)
        body = {"Contact": {"ContactID": current["Contact"]["ContactID"]}, "Date": current["DateString"][:10]}
        client = finance_client(self.sandbox, self.base_url)
        try:
            client.post(
                f"{API_PREFIX}/Quotes/{quote_id}", json={"Quotes": [{**body, "Status": status}]}
            ).raise_for_status()
        finally:
            client.close()

    def generate_scheduled_invoices(self, through: date | None = None) -> list[str]:
        """Xero's overnight run: every live repeating template makes the invoices due by ``through`` (today)."""
        return self.sandbox.generate_repeating_invoices(through)

    # -- quote to cash (issue 12): Quotes, RepeatingInvoices, PurchaseOrders --------------------------------

    def quotes(self) -> list[SeenQuote]:
        """Every quote in the organisation (deleted ones too), with its lines."""
        return [
            SeenQuote(
                id=str(q["QuoteID"]),
                number=str(q.get("QuoteNumber") or ""),
                reference=str(q.get("Reference") or ""),
                status=str(q.get("Status") or ""),
                total=_dec(q.get("Total")),
                lines=_seen_lines(q),
            )
            for q in self.sandbox.quotes()
        ]

    def accept_quote(self, quote_id: str) -> None:
        self.set_quote_status(quote_id, "ACCEPTED")

    def schedules(self) -> list[SeenSchedule]:
        return [
            SeenSchedule(
                id=str(r["RepeatingInvoiceID"]),
                reference=str(r.get("Reference") or ""),
                every=f"{(r.get('Schedule') or {}).get('Period', '')} {(r.get('Schedule') or {}).get('Unit', '')}",
                active=r.get("Status") != "DELETED",
                lines=_seen_lines(r),
            )
            for r in self.sandbox.repeating_invoices()
        ]

    def purchase_orders(self) -> list[SeenPurchaseOrder]:
        names = {str(c["ContactID"]): str(c.get("Name") or "") for c in self.sandbox.contacts()}
        return [
            SeenPurchaseOrder(
                id=str(po["PurchaseOrderID"]),
                number=str(po.get("PurchaseOrderNumber") or ""),
                reference=str(po.get("Reference") or ""),
                supplier=names.get(str((po.get("Contact") or {}).get("ContactID") or ""), ""),
                status=str(po.get("Status") or ""),
                total=_dec(po.get("Total")),
                lines=_seen_lines(po),
            )
            for po in self.sandbox.purchase_orders()
        ]


def _seen_lines(row: Row) -> tuple[Line, ...]:
    return tuple(
        (str(li.get("ItemCode") or ""), _dec(li.get("Quantity")), _dec(li.get("UnitAmount")))
        for li in row.get("LineItems") or []
    )


# -- end of quote to cash --------------------------------------------------------------------------------
