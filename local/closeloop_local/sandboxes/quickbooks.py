"""QuickBooks Online sandbox: a stateful local stand-in for Intuit's OAuth server and the Accounting API v3.

One WSGI app serves both hosts on one port (their paths do not collide):

* ``INTUIT_OAUTH_URL``   ``POST /oauth2/v1/tokens/bearer`` (refresh_token grant, Basic client auth)
* ``QUICKBOOKS_API_URL`` ``/v3/company/{realmId}/...``: ``query`` (GET, or POST with the statement as the
  body), ``customer``, ``vendor``, ``employee``, ``item``, ``account`` (read and query: a fixed chart of
  accounts), ``invoice`` (``?operation=void|delete``, ``/invoice/{id}/send``), ``estimate``, ``payment``,
  ``batch``, ``cdc`` and ``preferences``; ``recurringtransaction`` (POST create / update / ``?operation=delete``,
  GET by id, ``select * from RecurringTransaction``): Invoice templates with RecurringInfo, which
  ``run_recurring`` turns into invoices on their days.

Behaviour follows Intuit's reference and the quirks the adapter must survive:
- refresh tokens change about once a day (``rotate_after``): a refresh inside the window answers the same
  value with a renewed 100-day life, a later one a new value; a superseded value keeps working for
  ``superseded_grace`` seconds (answering the current pair), the 24 h reading of the adapter's
  GUESSES["refresh_token_resend_window"]; unused for 100 days, older than the 5-year hard
  limit, or revoked is ``invalid_grant``. Access tokens live an hour; a bad or expired one gets the gateway's
  lower-case ``{"fault":{"error":[…AuthenticationFailed…]}}`` 401;
- DisplayName is unique (case-insensitively) across Customer, Vendor and Employee, active or not: 6240;
  names must not contain ``:``, tab or newline; writes to an existing record need its current SyncToken
  (5010 otherwise) and ``"sparse": true`` merges while a full update replaces; ``PrimaryTaxIdentifier`` is
  write-only, masked on read (``XXXXXX56789``); a customer's currency is fixed at creation and its invoices
  must use it;
- the query language subset: ``select * | count(*) from E [where c and c …] [orderby f [asc|desc]]
  [startposition n] [maxresults n]`` with ``=  < > <= >= IN LIKE``; ``OR`` and other syntax is a 4000
  QueryParserError, a field the reference does not mark filterable a 4001; name lists (Customer, Vendor,
  Employee, Item) answer active records only unless ``Active`` is filtered; MAXRESULTS is capped at 1000;
- invoices are posted when created (no draft): ``Amount`` must equal ``Qty × UnitPrice`` (6070), tax per
  line from TaxCodeRef and GlobalTaxCalculation, a percent DiscountLineDetail; DocNumber ≤21 chars and,
  with custom transaction numbers on, unique (6140) unless ``include=allowduplicatedocnum``; an Item's Name
  is unique among items (6240), Name and Sku ≤100 and Description ≤4000 chars (2050), a sold type needs an
  IncomeAccountRef and, with a PurchaseCost, an ExpenseAccountRef (2020) naming an active account (2500); a void zeroes
  the amounts and prepends "Voided" to the PrivateNote; a Payment's ``Line[].LinkedTxn`` lowers the
  invoice's Balance and links back from the invoice;
- estimates compute their lines, tax and TotalAmt as invoices do (no Balance); ``TxnStatus`` is one of
  Intuit's QboEstimateStatusEnum (Pending by default, 2500 otherwise), ``ExpirationDate`` and
  ``AcceptedDate`` are dates (2040), the DocNumber rules are the invoice's within estimates; an Invoice
  created with ``LinkedTxn [{TxnId, TxnType: "Estimate"}]`` (an estimate of the same customer, 610
  otherwise) closes the estimate: TxnStatus Closed and a ``LinkedTxn`` back to the invoice
  (closeloop.vendors.quickbooks GUESSES["estimate_closed_by_invoice"]). Nothing expires an estimate:
  QBO has no expired status, so ExpirationDate is only carried;
- purchase orders (``purchaseorder``: create, update, read, query on Id, DocNumber, TxnDate and the MetaData
  times): a VendorRef naming an active Vendor (610), an APAccountRef naming an Accounts Payable account
  (implied when the company has exactly one; 2020 otherwise, 2500 for another account), item lines
  (ItemBasedExpenseLineDetail: ItemRef, Qty, UnitPrice; Amount = Qty × UnitPrice, 6070) or category lines
  (AccountBasedExpenseLineDetail: AccountRef, Amount), the vendor's
  currency, POStatus Open (the default: QBO has no draft purchase order) or Closed, the DocNumber rules of
  the sales forms within purchase orders (≤21 chars, 2050; unique, 6140), TotalAmt the sum of the lines;
- ``?requestid=`` (≤50 chars, ≤36 on /batch) replays the first response of a write; ``/batch`` takes ≤30
  items; ``/cdc`` looks back ≤30 days and answers ≤``cdc_limit`` objects per entity;
- 500 requests a minute per realm, 10 at once, 40 batch calls a minute: 429 ThrottleExceeded, with no
  Retry-After (as Intuit documents none);
- webhooks are signed in ``intuit-signature`` and sent as CloudEvents (Intuit's current shape) unless the
  app is switched to the legacy ``eventNotifications`` shape (``QuickBooksWebhooks.payload_format``).
- recurring templates (Finance.xsd RecurringInfo / RecurringScheduleInfo): a unique Name, RecurType Automated,
  Reminded, UnScheduled or Manual, ScheduleInfo (IntervalType Daily/Weekly/Monthly/Yearly, NumInterval,
  DayOfMonth, DayOfWeek, WeekOfMonth, MonthOfYear, StartDate, EndDate, MaxOccurrences) for the scheduled
  types; NextDate and PreviousDate are read only; ``Active: false`` stops one; its read is answered in a
  QueryResponse as Intuit's page shows (GUESSES["recurring_read_envelope"]);
Money is Decimal inside and an exact JSON number on the wire (``WireEncoder``).

The ``/_sandbox/`` control API (no auth, never logged) resets state, reads the request log, customers,
invoices and emails, injects faults, moves the clock and expires or revokes tokens. Injected faults apply
before any other handling; ``QuickBooksDriver`` drives it as finance would for the shared e2e suite.
"""

from __future__ import annotations

import calendar
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cached_property
from typing import Any, ClassVar, Literal

from werkzeug.routing import BaseConverter, Map
from werkzeug.wrappers import Request, Response

from closeloop_local.sandboxes import outbound
from closeloop_local.sandboxes.base import (
    AccountingSandbox,
    Router,
    SandboxServer,
    SandboxState,
    WireEncoder,
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
from closeloop_local.sandboxes.schedules import Recurrence, Unit

Row = dict[str, Any]

DEFAULT_REALM_ID = "9341452391187452"
DEFAULT_REFRESH_TOKEN = "AB11" + "0" * 46
ACCESS_TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 100 * 86400  # 100 days without use
REFRESH_HARD_TTL = 5 * 365 * 86400  # the 5-year hard limit
ROTATE_AFTER = 86400  # a new refresh token value about once a day
MAX_RESULTS = 1000
DEFAULT_RESULTS = 100
BATCH_MAX_ITEMS = 30
REQUEST_ID_MAX = 50
BATCH_REQUEST_ID_MAX = 36
CDC_LOOKBACK = 30 * 86400
DOC_NUMBER_MAX = 21
COMPANY_ZONE = timezone(timedelta(hours=-8))  # QBO answers in the company's zone (a Pacific-time company)
CENT = Decimal("0.01")

NAME_LISTS = ("Customer", "Vendor", "Employee")
ACTIVE_BY_DEFAULT = frozenset({"Customer", "Vendor", "Employee", "Item", "Account"})
META = ("MetaData.CreateTime", "MetaData.LastUpdatedTime")
FILTERABLE: dict[str, frozenset[str]] = {
    "Customer": frozenset(
        {
            "Id",
            "DisplayName",
            "GivenName",
            "MiddleName",
            "FamilyName",
            "CompanyName",
            "PrimaryEmailAddr",
            "PrintOnCheckName",
            "FullyQualifiedName",
            "Active",
            "Balance",
            *META,
        }
    ),
    "Vendor": frozenset({"Id", "DisplayName", "GivenName", "FamilyName", "CompanyName", "Active", *META}),
    "Employee": frozenset({"Id", "DisplayName", "GivenName", "FamilyName", "Active", *META}),
    # Intuit's XSD (Finance.xsd, Item): Name, Sku and Type "Filterable: ALL", Description "Filterable: QBO".
    "Item": frozenset({"Id", "Name", "Sku", "Description", "Type", "Active", "FullyQualifiedName", *META}),
    # Finance.xsd, Account: Name, AccountType, Classification and Active are "Filterable: QBW" (desktop) only.
    "Account": frozenset({"Id", *META}),
    "Invoice": frozenset({"Id", "DocNumber", "TxnDate", "DueDate", "CustomerRef", "Balance", "TotalAmt", *META}),
    # Intuit's Estimate reference marks Id, CustomerRef, TxnDate, DueDate and DocNumber filterable (the XSD's
    # TxnStatus is "Filterable: QBW", desktop only); PrivateNote is filterable on no transaction.
    "Estimate": frozenset({"Id", "DocNumber", "TxnDate", "DueDate", "CustomerRef", *META}),
    "Payment": frozenset({"Id", "TxnDate", "CustomerRef", "TotalAmt", *META}),
    # Purchase orders (see the block "Purchase orders" below): Id, DocNumber, TxnDate and the MetaData times,
    # as QuickBooks drivers list PurchaseOrder's filterable columns (Finance.xsd marks VendorRef and TotalAmt
    # "Filterable: QBW", desktop only); PrivateNote and POStatus are not filterable.
    "PurchaseOrder": frozenset({"Id", "DocNumber", "TxnDate", *META}),
}
ENTITY_PATHS = {name.lower(): name for name in FILTERABLE}
#: What ``query`` reads: the entities above, and the recurring templates (kept apart from them, filtered on
#: their Id and MetaData times: see GUESSES["recurring_query_filters"]).
QUERYABLE: dict[str, frozenset[str]] = {**FILTERABLE, "RecurringTransaction": frozenset({"Id", *META})}
QUERYABLE_PATHS = {name.lower(): name for name in QUERYABLE}

#: TaxCode id -> (name, rate %): the US pair plus a few of a global company's codes.
TAX_CODES: dict[str, tuple[str, Decimal]] = {
    "TAX": ("Taxable", Decimal("10")),
    "NON": ("Non-taxable", Decimal("0")),
    "2": ("20.0% S", Decimal("20")),
    "3": ("0.0% Z", Decimal("0")),
    "4": ("Exempt", Decimal("0")),
}
GLOBAL_TAX = ("TaxExcluded", "TaxInclusive", "NotApplicable")
#: Finance.xsd QboEstimateStatusEnum: the values of an Estimate's TxnStatus in QuickBooks Online.
ESTIMATE_STATUSES = ("Accepted", "Closed", "Pending", "Rejected")
#: The sales forms whose DocNumber QBO numbers and checks (each form on its own).
SALES_FORMS = ("Invoice", "Estimate")

#: The chart of accounts a new sandbox company starts with (Id, Name, AccountType, Classification), as in
#: Intuit's US sample company: items post to these.
ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    ("1", "Services", "Income", "Revenue"),
    ("79", "Sales of Product Income", "Income", "Revenue"),
    ("80", "Cost of Goods Sold", "Cost of Goods Sold", "Expense"),
    ("81", "Inventory Asset", "Other Current Asset", "Asset"),
    ("7", "Advertising", "Expense", "Expense"),
    ("33", "Accounts Payable (A/P)", "Accounts Payable", "Liability"),  # a purchase order's APAccountRef
)
#: Item lengths of Intuit's XSD (Finance.xsd, Item): "Max. length" of Name and Sku 100, Description 4000.
ITEM_LENGTHS = {"Name": 100, "Sku": 100, "Description": 4000}
#: Item types whose IncomeAccountRef is required (Finance.xsd, Item.IncomeAccountRef; NonInventory is the
#: JSON name of the XSD's "Product"), and which need an ExpenseAccountRef once PurchaseCost is given.
INCOME_ACCOUNT_TYPES = frozenset({"Service", "NonInventory", "Inventory"})


# ---------------------------------------------------------------------------------------------------------
# Errors and small helpers
# ---------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status and a JSON body."""

    def __init__(self, status: int, body: Row) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


def fault_body(code: str, message: str, detail: str = "", kind: str = "ValidationFault") -> Row:
    return {"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}], "type": kind}}


def validation(code: str, message: str, detail: str = "") -> ApiError:
    return ApiError(400, fault_body(code, message, detail))


def business(detail: str) -> ApiError:
    return validation("6000", "A business validation error has occurred while processing your request", detail)


def not_found(what: str = "") -> ApiError:
    return validation(
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. Check the fields with "
        f"accounts, customers, items, vendors or employees.{(' ' + what) if what else ''}",
    )


def duplicate_name() -> ApiError:
    return validation(
        "6240",
        "Duplicate Name Exists Error",
        "The name supplied already exists. : Another customer, vendor or employee is already using this "
        "name. Please use a different name.",
    )


def stale_object() -> ApiError:
    return validation(
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and root were working on this at the same time. root finished before you "
        "did, so your work was not saved.",
    )


def missing_param(name: str) -> ApiError:
    return validation(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
    )


def too_long(name: str, most: int, supplied: int) -> ApiError:
    return validation(
        "2050",
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{most} supplied:{supplied} ({name})",
    )


def parser_error(detail: str) -> ApiError:
    return validation("4000", "Error parsing query", f"QueryParserError: {detail}")


def _no_route() -> Response:
    """The answer to a path no route serves: a plain-text 404, not a Fault."""
    return Response("Not Found", status=404, content_type="text/plain")


class _EntityConverter(BaseConverter):
    """A path segment naming an entity in any case (``customer``, ``INVOICE``), read as its entity name
    (``Customer``); ``<entity("invoice"):name>`` takes only the entities listed."""

    def __init__(self, map: Map, *names: str) -> None:
        super().__init__(map)
        self.regex = "(?i:" + "|".join(re.escape(name) for name in names or ENTITY_PATHS) + ")"

    def to_python(self, value: str) -> str:
        return ENTITY_PATHS[value.lower()]


def _router() -> Router:
    # A doubled slash inside the path is no route (werkzeug would merge it and redirect).
    return Router(converters={"entity": _EntityConverter}, merge_slashes=False)


def _dec(value: Any, name: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise business(f"{name} is not a number")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise business(f"{name} is not a number") from exc


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), COMPANY_ZONE).isoformat()


def _parse_stamp(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=COMPANY_ZONE)).timestamp()


def mask_tax_id(value: str) -> str:
    """QBO's masked read of a tax id: separators dropped, the last five characters kept (``XXXXXX56789``)."""
    plain = re.sub(r"[^0-9A-Za-z]", "", value)
    return "X" * max(len(value) - 5, 0) + plain[-5:]


def _ref_value(value: Any) -> str:
    return str(value.get("value", "")) if isinstance(value, dict) else ""


# ---------------------------------------------------------------------------------------------------------
# The query language subset
# ---------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|!=|=|<|>)|(?P<punct>[(),*])"
    r"|(?P<word>[A-Za-z_][\w.]*))"
)


@dataclass
class Condition:
    field: str
    op: str  # = < > <= >= != IN LIKE
    values: list[Any]


@dataclass
class Query:
    entity: str
    count: bool
    conditions: list[Condition]
    order: str = "Id"
    descending: bool = False
    start: int = 1
    max_results: int = DEFAULT_RESULTS


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    position = 0
    text = text.strip().rstrip(";")
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise parser_error(f'Encountered " "{text[position : position + 10]}" at position {position + 1}.')
        position = match.end()
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "str":
            out.append(("str", re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "num":
            out.append(("num", Decimal(raw)))
        else:
            out.append((kind, raw))
    return out


class QueryParser:
    """Parses the subset above into a Query; anything else answers QBO's parser or validation error."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, Any]:
        token = self._peek()
        if token is None:
            raise parser_error("Encountered <EOF> at end of query.")
        self.i += 1
        return token

    def _keyword(self, *words: str) -> str | None:
        token = self._peek()
        if token and token[0] == "word" and str(token[1]).upper() in words:
            self.i += 1
            return str(token[1]).upper()
        return None

    def _expect(self, word: str) -> None:
        if self._keyword(word) is None:
            token = self._peek()
            raise parser_error(f'Encountered "{token[1] if token else "<EOF>"}", expected {word}.')

    def _unexpected(self) -> ApiError:
        token = self._peek()
        return parser_error(f'Encountered " "{token[1] if token else "<EOF>"}" " at line 1.')

    def parse(self) -> Query:
        self._expect("SELECT")
        count = False
        token = self._next()
        if token == ("punct", "*"):
            pass
        elif token[0] == "word" and str(token[1]).upper() == "COUNT":
            if [self._next(), self._next(), self._next()] != [("punct", "("), ("punct", "*"), ("punct", ")")]:
                raise parser_error("count(*) is the only aggregate.")
            count = True
        else:
            raise parser_error(f'Encountered "{token[1]}": only select * and count(*) are supported here.')
        self._expect("FROM")
        kind, entity = self._next()
        name = QUERYABLE_PATHS.get(str(entity).lower()) if kind == "word" else None
        if name is None:
            raise validation("4001", "Invalid query", f"QueryValidationError: Entity {entity} is not supported")
        query = Query(name, count, [])
        if self._keyword("WHERE"):
            query.conditions.append(self._condition(name))
            while self._keyword("AND"):
                query.conditions.append(self._condition(name))
        if self._keyword("ORDERBY") or (self._keyword("ORDER") and self._keyword("BY")):
            query.order = self._field(name)
            query.descending = self._keyword("DESC", "ASC") == "DESC"
        if self._keyword("STARTPOSITION"):
            query.start = max(1, self._number())
        if self._keyword("MAXRESULTS"):
            query.max_results = min(MAX_RESULTS, max(1, self._number()))
        if self._peek() is not None:
            raise self._unexpected()
        return query

    def _number(self) -> int:
        kind, value = self._next()
        if kind != "num":
            raise parser_error(f'Encountered "{value}", expected a number.')
        return int(value)

    def _field(self, entity: str) -> str:
        kind, value = self._next()
        if kind != "word":
            raise parser_error(f'Encountered "{value}", expected a property.')
        name = str(value)
        known = {f.lower(): f for f in QUERYABLE[entity]}
        if name.lower() not in known:
            raise validation("4001", "Invalid query", f"QueryValidationError: property '{name}' is not queryable")
        return known[name.lower()]

    def _literal(self) -> Any:
        kind, value = self._next()
        if kind in ("str", "num"):
            return value
        if kind == "word" and str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise parser_error(f'Encountered "{value}", expected a literal.')

    def _condition(self, entity: str) -> Condition:
        name = self._field(entity)
        token = self._next()
        if token[0] == "op":
            return Condition(name, str(token[1]), [self._literal()])
        word = str(token[1]).upper() if token[0] == "word" else ""
        if word == "LIKE":
            return Condition(name, "LIKE", [self._literal()])
        if word == "IN":
            if self._next() != ("punct", "("):
                raise parser_error("IN needs a parenthesised list.")
            values = [self._literal()]
            while (sep := self._next()) == ("punct", ","):
                values.append(self._literal())
            if sep != ("punct", ")"):
                raise parser_error(f'Encountered "{sep[1]}" in an IN list.')
            return Condition(name, "IN", values)
        raise parser_error(f'Encountered " "{token[1]}" " at line 1. Only AND of simple conditions is supported.')


def _field_value(row: Row, name: str) -> Any:
    value: Any = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        return value.get("Address", value.get("value"))
    return value


def _comparable(name: str, value: Any) -> Any:  # noqa: PLR0911 - one return per value family
    if value is None:
        return None
    if name.startswith("MetaData."):
        return _parse_stamp(str(value))
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal | int) or name in ("Balance", "TotalAmt"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    if name == "Id" and str(value).isdigit():
        return Decimal(str(value))
    return str(value).casefold()


def _matches(row: Row, condition: Condition) -> bool:
    left = _comparable(condition.field, _field_value(row, condition.field))
    rights = [_comparable(condition.field, v) for v in condition.values]
    if condition.op == "LIKE":
        pattern = "^" + ".*".join(re.escape(part) for part in str(condition.values[0]).casefold().split("%")) + "$"
        return left is not None and re.match(pattern, str(left), re.DOTALL) is not None
    if condition.op == "IN":
        return left in rights
    right = rights[0]
    if left is None or right is None:
        return False
    try:
        return bool(
            {
                "=": left == right,
                "!=": left != right,
                "<": left < right,
                ">": left > right,
                "<=": left <= right,
                ">=": left >= right,
            }[condition.op]
        )
    except TypeError:
        return False


def _sort_key(value: Any) -> tuple[int, Any]:
    return (1, "") if value is None else (0, value)


# ---------------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RefreshToken:
    value: str
    chain_started: float
    issued_at: float
    expires_at: float
    superseded_at: float | None = None
    successor: str | None = None
    revoked: bool = False


@dataclass
class Record:
    """One stored entity: the QBO fields (private ``_`` keys are never rendered) and its creation order."""

    data: Row
    seq: int
    created: float
    updated: float


class Limits:
    """Per-realm minute window, concurrency, and batch-per-minute window."""

    def __init__(self, minute: int, concurrent: int, batch_minute: int) -> None:
        self.minute = minute
        self.concurrent = concurrent
        self.batch_minute = batch_minute
        self.calls = RollingWindow(60)
        self.batches = RollingWindow(60)
        self.in_flight = InFlight()

    def acquire(self, now: float, batch: bool) -> bool:
        calls, batches = self.calls.count(now), self.batches.count(now)
        if calls >= self.minute or self.in_flight.count() >= self.concurrent:
            return False
        if batch and batches >= self.batch_minute:
            return False
        self.calls.add(now)
        if batch:
            self.batches.add(now)
        self.in_flight.enter()
        return True

    def release(self) -> None:
        self.in_flight.leave()


# ---------------------------------------------------------------------------------------------------------
# Webhooks (the app's webhook endpoint in Intuit's developer portal)
# ---------------------------------------------------------------------------------------------------------

#: The sandbox app's webhook Verifier Token: a sandbox credential.
DEFAULT_VERIFIER_TOKEN = "sandbox-qbo-verifier-token-0000-1111-2222"  # noqa: S105
WEBHOOK_ENTITIES = ("Customer", "Invoice", "Payment")
WebhookFormat = Literal["cloudevents", "legacy"]
WEBHOOK_FORMATS: tuple[WebhookFormat, ...] = ("cloudevents", "legacy")
#: A legacy operation -> the CloudEvents ``type`` action (``qbo.invoice.created.v1``).
CLOUD_EVENT_ACTIONS = {
    "Create": "created",
    "Update": "updated",
    "Delete": "deleted",
    "Merge": "merged",
    "Void": "voided",
    "Emailed": "emailed",
}


def cloud_event(realm_id: str, entity: Row) -> Row:
    """One change as Intuit's CloudEvents webhooks carry it (the shape of the SDKs' test payloads).

    The action words are the adapter's GUESSES["cloudevents_action_words"]; ``data`` and ``source`` its
    GUESSES["cloudevents_data_and_source"] (closeloop.vendors.quickbooks.guesses).
    """
    updated = datetime.strptime(str(entity["lastUpdated"]), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "intuit.sandbox-qbo-app",
        "type": f"qbo.{str(entity['name']).lower()}.{CLOUD_EVENT_ACTIONS[str(entity['operation'])]}.v1",
        "datacontenttype": "application/json",
        "time": updated.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "intuitentityid": str(entity["id"]),
        "intuitaccountid": realm_id,
        "data": {},
    }


def intuit_signature(verifier_token: str, body: bytes) -> str:
    """``intuit-signature``: base64(HMAC-SHA256(verifier token, raw body))."""
    return outbound.hmac_sha256_base64(verifier_token, body)


@dataclass
class _QboDelivery:
    body: bytes
    entities: int
    attempt: int = 1


class QuickBooksWebhooks:
    """The app's webhook: an endpoint URL, the entities subscribed, the Verifier Token it signs with.

    Every Create/Update/Delete/Void/Emailed of a subscribed entity (through the API, /batch or the
    sandbox's own ``seed``) is aggregated; ``flush()`` ends the aggregation window: one POST, signed in
    ``intuit-signature``, of a JSON array with one CloudEvent per change (``payload_format`` "cloudevents",
    the default, as Intuit now sends) or of the legacy ``{"eventNotifications": [{"realmId",
    "dataChangeEvent": {"entities": [...]}}]}`` (``payload_format`` "legacy": one notification per realm),
    plus one more attempt for each earlier delivery that got anything but a 2xx in ``timeout`` seconds, up
    to ``max_attempts``. Nothing runs in the background.
    """

    def __init__(
        self,
        sandbox: QuickBooksSandbox,
        verifier_token: str,
        *,
        timeout: float = 3.0,
        payload_format: WebhookFormat = "cloudevents",
    ) -> None:
        self._sandbox = sandbox
        self.verifier_token = verifier_token
        self.timeout = timeout
        self.payload_format: WebhookFormat = payload_format
        self.max_attempts = 5
        self.reset()

    def reset(self) -> None:
        self.url: str | None = None
        self.entities: tuple[str, ...] = WEBHOOK_ENTITIES
        self._window: list[Row] = []
        self._retries: list[_QboDelivery] = []
        self.deliveries: list[Row] = []

    def subscribe(
        self, url: str, entities: Iterable[str] = WEBHOOK_ENTITIES, payload_format: WebhookFormat | None = None
    ) -> None:
        """Set the endpoint and the entities to notify (any entity the sandbox stores), and optionally the
        payload shape ("cloudevents" or "legacy"; unchanged when None)."""
        wanted = tuple(dict.fromkeys(entities))
        if not url.strip() or not wanted or any(e not in FILTERABLE for e in wanted):
            raise ValueError(f"an endpoint URL and entities among {', '.join(FILTERABLE)} are required")
        if payload_format is not None and payload_format not in WEBHOOK_FORMATS:
            raise ValueError(f"payload_format must be one of {', '.join(WEBHOOK_FORMATS)}")
        with self._sandbox.state.lock:
            self.url, self.entities = url.strip(), wanted
            if payload_format is not None:
                self.payload_format = payload_format
            self._window.clear()
            self._retries.clear()

    def record(self, entity: str, entity_id: str, operation: str, updated: float) -> None:
        with self._sandbox.state.lock:
            if self.url is None or entity not in self.entities:
                return
            self._window.append(
                {
                    "name": entity,
                    "id": entity_id,
                    "operation": operation,
                    "lastUpdated": datetime.fromtimestamp(int(updated), COMPANY_ZONE).strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
            )

    def pending(self) -> int:
        with self._sandbox.state.lock:
            return len(self._window) + sum(d.entities for d in self._retries)

    def flush(self) -> Row:
        """Close the aggregation window (one notification) and retry what failed before: one attempt each."""
        with self._sandbox.state.lock:
            url = self.url
            deliveries, self._retries = self._retries, []
            if self._window:
                realm = self._sandbox.realm_id
                payload: Any
                if self.payload_format == "legacy":
                    payload = {
                        "eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": self._window}}]
                    }
                else:
                    payload = [cloud_event(realm, entity) for entity in self._window]
                deliveries.append(_QboDelivery(json.dumps(payload).encode(), len(self._window)))
                self._window = []
        attempts = ok = 0
        for delivery in deliveries:
            if url is None:
                break
            headers = {
                "Content-Type": "application/json",
                "intuit-signature": intuit_signature(self.verifier_token, delivery.body),
            }
            sent = outbound.send(url, delivery.body, headers, self.timeout)
            status, error, success = sent.status, sent.error, sent.ok
            attempts += 1
            ok += success
            with self._sandbox.state.lock:
                self.deliveries.append(
                    {
                        "url": url,
                        "attempt": delivery.attempt,
                        "entities": delivery.entities,
                        "status": status,
                        "ok": success,
                        "error": error or ("" if success else "not answered with a 2xx in time"),
                        "at": self._sandbox.state.clock.now(),
                        "headers": headers,
                        "body": delivery.body.decode(),
                    }
                )
                if not success and delivery.attempt < self.max_attempts:
                    self._retries.append(_QboDelivery(delivery.body, delivery.entities, delivery.attempt + 1))
        return {"attempts": attempts, "succeeded": ok, "failed": attempts - ok}


# ---------------------------------------------------------------------------------------------------------
# Recurring transactions: the names of Intuit's XSDs (Finance.xsd RecurringInfo, RecurringScheduleInfo)
# ---------------------------------------------------------------------------------------------------------

#: Finance.xsd RecurringInfo.RecurType: "Automated, Reminded, UnScheduled or Manual".
RECUR_TYPES = ("Automated", "Reminded", "UnScheduled", "Manual")
#: Finance.xsd RecurringScheduleInfo.IntervalType: "Yearly, Monthly, Daily or Weekly".
INTERVAL_UNITS: dict[str, Unit] = {"Daily": "day", "Weekly": "week", "Monthly": "month", "Yearly": "year"}
#: Finance.xsd WeekEnum, in ``date.weekday()`` order; MonthEnum (without its "Used" value) from January.
WEEK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = tuple(calendar.month_name[1:])
#: The transaction types a recurring template may hold here (Intuit's page shows Invoice; QBO also has Bill,
#: Estimate, JournalEntry... which this sandbox does not keep).
RECURRING_TYPES = ("Invoice",)
#: What an invoice a schedule makes copies from its template besides the lines: see
#: GUESSES["recurring_generated_invoice"].
TEMPLATE_COPIED = (
    "CustomerRef", "CurrencyRef", "GlobalTaxCalculation", "PrivateNote", "CustomerMemo", "BillEmail", "BillAddr",
    "ShipAddr", "SalesTermRef", "ClassRef", "DepartmentRef", "ApplyTaxAfterDiscount",
)  # fmt: skip


#: Purchase orders: Finance.xsd PurchaseOrderStatusEnum; the AccountType an APAccountRef must name (Intuit:
#: "a Liability account with subtype Payables"); PrivateNote's length (Intuit's transaction pages: 4000).
PURCHASE_ORDER_STATUSES = ("Open", "Closed")
PAYABLES_TYPE = "Accounts Payable"
PURCHASE_NOTE_MAX = 4000


class QuickBooksSandbox(AccountingSandbox):
    """A stateful QuickBooks Online company (one realm) plus Intuit's token endpoint, as a WSGI app."""

    json_content_type = "application/json;charset=UTF-8"

    def __init__(
        self,
        client_id: str = "sandbox-qbo-client-id",
        client_secret: str = "sandbox-qbo-client-secret",
        realm_id: str = DEFAULT_REALM_ID,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        *,
        minute_limit: int = 500,
        concurrent_limit: int = 10,
        batch_minute_limit: int = 40,
        rotate_after: float = ROTATE_AFTER,
        superseded_grace: float = 86400,
        cdc_limit: int = 1000,
        custom_txn_numbers: bool = True,
        home_currency: str = "USD",
        multicurrency: bool = True,
        verifier_token: str = DEFAULT_VERIFIER_TOKEN,
    ) -> None:
        super().__init__(client_id, client_secret, refresh_token)
        self.realm_id = realm_id
        self.rotate_after = rotate_after
        self.superseded_grace = superseded_grace
        self.cdc_limit = cdc_limit
        self.custom_txn_numbers = custom_txn_numbers
        self.home_currency = home_currency
        self.multicurrency = multicurrency
        self._limit_args = (minute_limit, concurrent_limit, batch_minute_limit)
        self.webhooks = QuickBooksWebhooks(self, verifier_token)
        self._init_data()

    # ---- state ------------------------------------------------------------------------------------------

    def _init_data(self) -> None:
        now = self._now()
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in FILTERABLE}
        self.deleted: dict[str, Record] = {}  # invoice tombstones, for CDC
        self._seq = 0
        self._access: dict[str, float] = {}
        self._refresh: dict[str, RefreshToken] = {
            self.initial_refresh_token: RefreshToken(self.initial_refresh_token, now, now, now + REFRESH_TOKEN_TTL)
        }
        self._replays = IdempotencyCache()  # requestid -> the first answer (kept as long as the sandbox)
        self._emails: list[Row] = []
        self._limits = Limits(*self._limit_args)
        self._next_doc = dict.fromkeys(SALES_FORMS, 1001)
        self._init_recurring()
        self._next_doc["PurchaseOrder"] = 1001
        for n, (account_id, name, kind, classification) in enumerate(ACCOUNTS):
            data = {
                "Id": account_id,
                "SyncToken": "0",
                "Name": name,
                "FullyQualifiedName": name,
                "AccountType": kind,
                "Classification": classification,
                "Active": True,
                "SubAccount": False,
            }
            self.tables["Account"][account_id] = Record(data, n - len(ACCOUNTS), now, now)

    def reset(self) -> None:
        """Forget data, tokens, limits, webhooks, the request log and faults (the clock keeps its offset)."""
        with self.state.lock:
            self.state.reset_log()
            self._init_data()
            self.webhooks.reset()

    def _now(self) -> float:
        return self.state.clock.now()

    def _next_id(self) -> str:
        self._seq += 1
        return str(self._seq)

    # ---- helpers for tests and the driver ---------------------------------------------------------------

    def rows(self, entity: str) -> list[Row]:
        """Every stored record of ``entity`` as the API renders it, oldest first (inactive too)."""
        with self.state.lock:
            return [self._render(entity, rec) for rec in sorted(self.tables[entity].values(), key=lambda r: r.seq)]

    def raw_tax_id(self, customer_id: str) -> str:
        """The unmasked tax id the API only ever shows masked."""
        with self.state.lock:
            rec = self.tables["Customer"].get(customer_id)
            return str(rec.data.get("_tax", "")) if rec else ""

    def emails(self) -> list[Row]:
        with self.state.lock:
            return [dict(e) for e in self._emails]

    def seed(self, entity: str, **fields: Any) -> Row:
        """Create a record directly, with the API's rules; raises ValueError when QBO would refuse."""
        with self.state.lock:
            try:
                return self._render(entity, self._create(entity, fields))
            except ApiError as err:
                raise ValueError(json.dumps(err.body)) from err

    def edit(self, entity: str, entity_id: str, **fields: Any) -> Row:
        """A person's edit in the QuickBooks UI: a sparse update of ``fields`` at the current SyncToken, with
        the API's rules, LastUpdatedTime (so CDC) and the Update webhook; raises ValueError when QBO refuses."""
        with self.state.lock:
            rec = self.tables[entity].get(entity_id)
            if rec is None:
                raise ValueError(f"no {entity} {entity_id}")
            sent = {**fields, "Id": entity_id, "SyncToken": rec.data["SyncToken"], "sparse": True}
            try:
                return self._render(entity, self._update(entity, sent, allow_dup=False))
            except ApiError as err:
                raise ValueError(json.dumps(err.body)) from err

    def void_invoice(self, invoice_id: str) -> Row:
        with self.state.lock:
            rec = self.tables["Invoice"][invoice_id]
            return self._render("Invoice", self._void(rec))

    @property
    def current_refresh_token(self) -> str | None:
        with self.state.lock:
            now = self._now()
            live = [t for t in self._refresh.values() if t.successor is None and self._usable(t, now)]
            return max(live, key=lambda t: t.issued_at).value if live else None

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            now = self._now()
            for token in self._access:
                self._access[token] = min(self._access[token], now - 1)

    def revoke_refresh_tokens(self) -> None:
        with self.state.lock:
            for token in self._refresh.values():
                token.revoked = True

    # ---- the API (SandboxApp's pipeline: log, faults, then ``handle``) -----------------------------------

    def fault_error(self, status: int) -> Response:
        if status == 429:
            message = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
            return plain_json(fault_body("3001", message, "", "ThrottlingFault"), 429)
        return super().fault_error(status)

    def fault_json(self, payload: Any, status: int) -> Response:
        return plain_json(payload, status)

    def internal_error(self) -> Response:
        return self.json(fault_body("10000", "An application error has occurred", "", "SystemFault"), 500)

    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        if request.path == "/oauth2/v1/tokens/bearer" and request.method == "POST":
            return self._token(request)
        match = re.match(r"^/v3/company/(?P<realm>[^/]+)/(?P<tail>.+)$", request.path)
        if match is None:
            return _no_route()
        return self._api(request, match.group("realm"), match.group("tail").strip("/"))

    # ---- OAuth ------------------------------------------------------------------------------------------

    def _usable(self, token: RefreshToken, now: float) -> bool:
        if token.revoked or now >= token.expires_at or now >= token.chain_started + REFRESH_HARD_TTL:
            return False
        return token.superseded_at is None or now - token.superseded_at <= self.superseded_grace

    def _token(self, request: Request) -> Response:
        auth = request.authorization
        if auth is None or auth.type != "basic" or not self.is_client(auth.username, auth.password):
            return self.json({"error": "invalid_client"}, 401)
        if request.form.get("grant_type") != "refresh_token":
            return self.json({"error": "unsupported_grant_type"}, 400)
        with self.state.lock:
            now = self._now()
            token = self._refresh.get(request.form.get("refresh_token", ""))
            if token is None or not self._usable(token, now):
                return self.json({"error": "invalid_grant"}, 400)
            while token.successor is not None:  # a superseded value in its grace answers the current pair
                token = self._refresh[token.successor]
            if now - token.issued_at >= self.rotate_after:
                fresh = RefreshToken("AB11" + secrets.token_hex(23), token.chain_started, now, now + REFRESH_TOKEN_TTL)
                self._refresh[fresh.value] = fresh
                token.superseded_at, token.successor = now, fresh.value
                token = fresh
            else:
                token.expires_at = now + REFRESH_TOKEN_TTL
            access = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.." + secrets.token_urlsafe(48)
            self._access[access] = now + ACCESS_TOKEN_TTL
            body = {
                "token_type": "bearer",
                "access_token": access,
                "expires_in": ACCESS_TOKEN_TTL,
                "refresh_token": token.value,
                "x_refresh_token_expires_in": int(min(token.expires_at, token.chain_started + REFRESH_HARD_TTL) - now),
            }
        return self.json(body, 200, {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})

    # ---- the API pipeline: auth -> realm -> limits -> requestid replay -> handler ------------------------

    def _api(self, request: Request, realm: str, tail: str) -> Response:
        tid = {"intuit_tid": secrets.token_hex(16)}
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        with self.state.lock:
            expires = self._access.get(value.strip()) if scheme.lower() == "bearer" else None
            now = self._now()
        if expires is None or expires <= now:
            detail = "Token expired: " + value[-12:] if expires is not None else "Token invalid"
            return self.json(
                {
                    "warnings": None,
                    "intuitObject": None,
                    "fault": {
                        "error": [
                            {
                                "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                "detail": detail,
                                "code": "3200",
                                "element": None,
                            }
                        ],
                        "type": "AUTHENTICATION",
                    },
                    "time": int(now * 1000),
                },
                401,
                {**tid, "WWW-Authenticate": 'Bearer realm="Intuit"'},
            )
        if realm != self.realm_id:
            body = fault_body(
                "3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403", "", "AUTHORIZATION"
            )
            return self.json(body, 403, tid)
        batch = tail == "batch"
        with self.state.lock:
            allowed = self._limits.acquire(self._now(), batch)
        if not allowed:
            body = fault_body(
                "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429", "", "ThrottlingFault"
            )
            return self.json(body, 429, tid)
        try:
            response = self._replayable(request, tail, batch)
        finally:
            with self.state.lock:
                self._limits.release()
        response.headers.update(tid)
        return response

    def _replayable(self, request: Request, tail: str, batch: bool) -> Response:
        requestid = request.args.get("requestid")
        if requestid is None or request.method != "POST":
            return self._invoke(request, tail)
        if len(requestid) > (BATCH_REQUEST_ID_MAX if batch else REQUEST_ID_MAX):
            return self.json(fault_body("6000", "requestid is too long", f"requestid: {requestid}"), 400)
        with self.state.lock:
            replay = self._replays.get(requestid, self._now())
            if replay is not None:
                return replay.response()
            response = self._invoke(request, tail)
            self._replays.remember(requestid, response, self._now())
            return response

    def _invoke(self, request: Request, tail: str) -> Response:
        with self.state.lock:
            try:
                payload = self._route(request, tail)
            except ApiError as error:
                return self.json({**error.body, "time": _stamp(self._now())}, error.status)
            if isinstance(payload, Response):
                return payload
            return self.json({**payload, "time": _stamp(self._now())})

    def _body(self, request: Request) -> Row:
        try:
            body = json.loads(request.get_data() or b"{}", parse_float=Decimal)
        except ValueError as exc:
            raise validation("2500", "Invalid Request", "Request has invalid or unsupported property") from exc
        if not isinstance(body, dict):
            raise validation("2500", "Invalid Request", "Request body must be an object")
        return body

    # ---- routing ----------------------------------------------------------------------------------------

    @cached_property
    def _routes(self) -> Router:
        """The API under the company (the path after ``/v3/company/{realmId}``); a handler takes the request and
        the path's arguments and answers a body (``_invoke`` adds its ``time``) or a Response."""
        routes = _router()
        routes.add("POST", "/batch", lambda request: self._batch(self._body(request)))
        routes.add("GET", "/cdc", self._cdc)
        routes.add("GET", "/preferences", lambda request: self._preferences())
        routes.add("POST", "/<entity:entity>", self._write_api)
        routes.add("GET", "/<entity:entity>/<record_id>", self._read)
        routes.add("POST", '/<entity("invoice"):entity>/<invoice_id>/send', self._send_api)
        routes.add("POST", "/recurringtransaction", self._recurring_api)
        routes.add("GET", "/recurringtransaction/<record_id>", self._recurring_read)
        return routes

    @cached_property
    def _any_method_routes(self) -> Router:
        """The paths served whatever the method, matched on the path alone (as GET): ``query`` reads its
        statement from the query string on GET and from the body on any other method."""
        routes = _router()
        routes.add("GET", "/query", self._query_api)
        return routes

    def _route(self, request: Request, tail: str) -> Row | Response:
        """The answer of the route of ``tail`` (the path after the realm, the slashes around it stripped)."""
        path = "/" + tail
        found = self._any_method_routes.find("GET", path)
        if found is None and request.method != "HEAD":  # werkzeug would serve HEAD with a GET rule; QBO: no route
            found = self._routes.find(request.method, path)
        if found is None:
            return _no_route()
        handler, args = found
        answer: Row | Response = handler(request, **args)
        return answer

    def _query_api(self, request: Request) -> Row:
        statement = request.args.get("query") if request.method == "GET" else request.get_data(as_text=True)
        return {"QueryResponse": self._query(statement or "")}

    def _read(self, request: Request, entity: str, record_id: str) -> Row:
        rec = self.tables[entity].get(record_id)
        if rec is None:
            raise not_found()
        return {entity: self._render(entity, rec)}

    def _write_api(self, request: Request, entity: str) -> Row:
        operation = request.args.get("operation", "")
        sent = self._body(request)
        allow_dup = request.args.get("include") == "allowduplicatedocnum"
        return {entity: self._write(entity, operation, sent, allow_dup)}

    def _send_api(self, request: Request, entity: str, invoice_id: str) -> Row:
        return {"Invoice": self._send(invoice_id, request.args.get("sendTo"))}

    # ---- writes -----------------------------------------------------------------------------------------

    def _write(self, entity: str, operation: str, sent: Row, allow_dup: bool = False) -> Row:
        if operation in ("void", "delete"):
            if entity != "Invoice":
                raise business(f"operation={operation} is not supported for {entity} here")
            rec = self._current(entity, sent)
            if operation == "void":
                return self._render(entity, self._void(rec))
            del self.tables[entity][rec.data["Id"]]
            rec.updated = self._now()
            self.deleted[rec.data["Id"]] = rec
            self.webhooks.record(entity, rec.data["Id"], "Delete", rec.updated)
            return {"Id": rec.data["Id"], "status": "Deleted", "domain": "QBO"}
        if operation not in ("", "create", "update"):
            raise business(f"unknown operation {operation}")
        if sent.get("Id"):
            return self._render(entity, self._update(entity, sent, allow_dup))
        return self._render(entity, self._create(entity, sent, allow_dup))

    def _current(self, entity: str, sent: Row) -> Record:
        rec = self.tables[entity].get(str(sent.get("Id", "")))
        if rec is None:
            raise not_found()
        if str(sent.get("SyncToken", "")) != str(rec.data["SyncToken"]):
            raise stale_object()
        return rec

    def _create(self, entity: str, sent: Row, allow_dup: bool = False) -> Record:
        data = {k: v for k, v in sent.items() if k not in ("Id", "SyncToken", "MetaData", "sparse", "domain")}
        now = self._now()
        data = self._validate(entity, data, None, allow_dup)
        data.update(Id=self._next_id(), SyncToken="0")
        rec = Record(data, self._seq, now, now)
        self.tables[entity][data["Id"]] = rec
        self.webhooks.record(entity, data["Id"], "Create", now)
        if entity == "Payment":
            self._apply_payment(rec)
        if entity == "Invoice":
            self._close_estimates(rec)
        return rec

    def _update(self, entity: str, sent: Row, allow_dup: bool) -> Record:
        rec = self._current(entity, sent)
        if entity == "Payment":
            raise business("Payment updates are not supported by this sandbox")
        changes = {k: v for k, v in sent.items() if k not in ("Id", "SyncToken", "MetaData", "sparse", "domain")}
        if sent.get("sparse") is True:
            merged = {**rec.data, **changes}
        else:  # a full update: omitted writable fields are cleared
            merged = {k: v for k, v in rec.data.items() if k.startswith("_") or k in ("Id", "SyncToken")}
            merged.update(changes)
            if entity == "Invoice":
                merged.update(LinkedTxn=rec.data.get("LinkedTxn", []), Balance=rec.data.get("Balance"))
        if entity == "Estimate":  # the links to its invoices are QBO's to keep, whatever the update says
            merged["LinkedTxn"] = rec.data.get("LinkedTxn", [])
        rec.data = self._validate(entity, merged, rec, allow_dup)
        self._touch(rec)
        self.webhooks.record(entity, rec.data["Id"], "Update", rec.updated)
        return rec

    def _touch(self, rec: Record) -> None:
        rec.data["SyncToken"] = str(int(rec.data["SyncToken"]) + 1)
        rec.updated = self._now()

    def _validate(self, entity: str, data: Row, current: Record | None, allow_dup: bool) -> Row:
        if entity in NAME_LISTS:
            return self._validate_name_list(entity, data, current)
        if entity == "Item":
            return self._validate_item(data, current)
        if entity == "Account":
            raise business("Account writes are not supported by this sandbox")
        if entity == "Invoice":
            return self._validate_invoice(data, current, allow_dup)
        if entity == "Estimate":
            return self._validate_estimate(data, current, allow_dup)
        if entity == "PurchaseOrder":
            return self._validate_purchase_order(data, current, allow_dup)
        return self._validate_payment(data)

    def _name_taken(self, name: str, own: Record | None) -> bool:
        wanted = name.strip().casefold()
        return any(
            rec is not own and str(rec.data.get("DisplayName", "")).strip().casefold() == wanted
            for table in NAME_LISTS
            for rec in self.tables[table].values()
        )

    def _validate_name_list(self, entity: str, data: Row, current: Record | None) -> Row:
        parts = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
        name = str(data.get("DisplayName") or " ".join(str(data[p]) for p in parts if data.get(p))).strip()
        if not name:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: You must fill out at least one split line, or a name.",
            )
        for part in ("DisplayName", *parts):
            if any(c in str(data.get(part) or "") for c in ":\t\n"):
                raise validation(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    f"Invalid character in {part}: names cannot contain a colon, tab or newline.",
                )
        if self._name_taken(name, current):
            raise duplicate_name()
        email = _field_value(data, "PrimaryEmailAddr")
        if email and ("@" not in str(email) or "." not in str(email)):
            raise validation("2170", "Invalid Email Address format", f"Invalid Email Address format: {email}")
        data["DisplayName"] = name
        data.setdefault("PrintOnCheckName", name)
        data.setdefault("Active", True)
        if entity == "Customer":
            tax = data.pop("PrimaryTaxIdentifier", None)
            if tax and not str(tax).startswith("XX"):
                data["_tax"] = str(tax)
            currency = _ref_value(data.get("CurrencyRef")) or self.home_currency
            if current is not None and _ref_value(current.data.get("CurrencyRef")) != currency:
                raise business("The currency of a customer cannot be changed.")
            if currency != self.home_currency and not self.multicurrency:
                raise business("Multicurrency is not enabled for this company.")
            data["CurrencyRef"] = {"value": currency}
        return data

    def _validate_item(self, data: Row, current: Record | None) -> Row:
        """Intuit's Item rules: a Name unique among items (6240), the XSD's lengths (2050), an IncomeAccountRef
        for the sold types and an ExpenseAccountRef once PurchaseCost is given (2020), refs to active accounts
        (2500), money as numbers."""
        name = str(data.get("Name") or "").strip()
        if not name:
            raise missing_param("Name")
        for key, most in ITEM_LENGTHS.items():
            if len(str(data.get(key) or "")) > most:
                raise too_long(key, most, len(str(data[key])))
        wanted = name.casefold()
        if any(r is not current and str(r.data["Name"]).casefold() == wanted for r in self.tables["Item"].values()):
            raise duplicate_name()
        data.setdefault("Type", "Service")
        data.setdefault("Active", True)
        for key in ("UnitPrice", "PurchaseCost"):
            if data.get(key) is not None:
                data[key] = _dec(data[key], key)
        if data["Type"] in INCOME_ACCOUNT_TYPES:
            if not _ref_value(data.get("IncomeAccountRef")):
                raise missing_param("IncomeAccountRef")
            if data.get("PurchaseCost") is not None and not _ref_value(data.get("ExpenseAccountRef")):
                raise missing_param("ExpenseAccountRef")
        for key in ("IncomeAccountRef", "ExpenseAccountRef"):
            if _ref_value(data.get(key)):
                data[key] = self._account_ref(_ref_value(data[key]))
        return data

    def _account_ref(self, account_id: str) -> Row:
        account = self.tables["Account"].get(account_id)
        if account is None or account.data.get("Active") is False:
            raise validation("2500", "Invalid Reference Id", f"Invalid Reference Id : Accounts element id {account_id}")
        return {"value": account_id, "name": account.data["Name"]}

    def _customer(self, ref: Any) -> Record:
        rec = self.tables["Customer"].get(_ref_value(ref))
        if rec is None or rec.data.get("Active") is False:
            raise not_found("CustomerRef")
        return rec

    def _validate_sales_form(self, entity: str, data: Row, current: Record | None, allow_dup: bool) -> Record:
        """What an Invoice and an Estimate share: customer and currency, tax mode, DocNumber, dates, lines and
        totals, BillEmail; returns the customer."""
        customer = self._customer(data.get("CustomerRef"))
        currency = _ref_value(data.get("CurrencyRef")) or self.home_currency
        if currency != _ref_value(customer.data.get("CurrencyRef")):
            raise business(f"The currency {currency} does not match the customer's currency.")
        data["CurrencyRef"] = {"value": currency}
        calc = str(data.get("GlobalTaxCalculation") or "TaxExcluded")
        if calc not in GLOBAL_TAX:
            raise validation("2500", "Invalid Enumeration", f"GlobalTaxCalculation: {calc}")
        data["GlobalTaxCalculation"] = calc
        self._doc_number(entity, data, current, allow_dup)
        for key in ("TxnDate", "DueDate", "ExpirationDate", "AcceptedDate"):
            if data.get(key):
                try:
                    date.fromisoformat(str(data[key]))
                except ValueError as exc:
                    raise validation("2040", "Invalid Date", f"{key}: {data[key]}") from exc
        data.setdefault("TxnDate", datetime.fromtimestamp(self._now(), COMPANY_ZONE).date().isoformat())
        self._compute(data)
        email = _field_value(customer.data, "PrimaryEmailAddr")
        if email and not data.get("BillEmail"):
            data["BillEmail"] = {"Address": email}
        data.setdefault("EmailStatus", "NotSet")
        return customer

    def _validate_invoice(self, data: Row, current: Record | None, allow_dup: bool) -> Row:
        customer = self._validate_sales_form("Invoice", data, current, allow_dup)
        paid = sum((p for p in self._payments_of(current)), Decimal(0)) if current else Decimal(0)
        data["Balance"] = data["TotalAmt"] - paid
        data.setdefault("LinkedTxn", [])
        if current is None:
            for txn in data["LinkedTxn"]:
                if isinstance(txn, dict) and txn.get("TxnType") == "Estimate":
                    estimate = self.tables["Estimate"].get(str(txn.get("TxnId")))
                    if estimate is None:
                        raise not_found("LinkedTxn")
                    if _ref_value(estimate.data["CustomerRef"]) != customer.data["Id"]:
                        raise business("The estimate's customer is not the invoice's customer.")
                    txn["TxnId"] = estimate.data["Id"]
        return data

    def _validate_estimate(self, data: Row, current: Record | None, allow_dup: bool) -> Row:
        """Intuit's Estimate: a sales form (CustomerRef and a line required), TxnStatus one of
        QboEstimateStatusEnum (Pending when not given), no Balance, LinkedTxn kept by QBO."""
        status = str(data.get("TxnStatus") or "Pending")
        if status not in ESTIMATE_STATUSES:
            raise validation("2500", "Invalid Enumeration", f"TxnStatus: {status}")
        data["TxnStatus"] = status
        self._validate_sales_form("Estimate", data, current, allow_dup)
        data.pop("Balance", None)
        if current is None:
            data["LinkedTxn"] = []
        return data

    def _close_estimates(self, invoice: Record) -> None:
        """An invoice made from estimates closes them and is linked from them, as QBO's "Create invoice" from
        an estimate does (GUESSES["estimate_closed_by_invoice"] of closeloop.vendors.quickbooks)."""
        for txn in invoice.data.get("LinkedTxn") or []:
            if txn.get("TxnType") != "Estimate":
                continue
            estimate = self.tables["Estimate"][str(txn["TxnId"])]
            estimate.data["TxnStatus"] = "Closed"
            estimate.data["LinkedTxn"] = [
                *estimate.data.get("LinkedTxn", []),
                {"TxnId": invoice.data["Id"], "TxnType": "Invoice"},
            ]
            self._touch(estimate)
            self.webhooks.record("Estimate", estimate.data["Id"], "Update", estimate.updated)

    def _payments_of(self, invoice: Record) -> list[Decimal]:
        amounts: list[Decimal] = []
        for txn in invoice.data.get("LinkedTxn") or []:
            payment = self.tables["Payment"].get(str(txn.get("TxnId")))
            if txn.get("TxnType") == "Payment" and payment is not None:
                for line in payment.data.get("Line") or []:
                    if any(t.get("TxnId") == invoice.data["Id"] for t in line.get("LinkedTxn") or []):
                        amounts.append(_dec(line.get("Amount"), "Amount"))
        return amounts

    def _doc_number(self, entity: str, data: Row, current: Record | None, allow_dup: bool) -> None:
        doc = data.get("DocNumber")
        if doc in (None, ""):
            if current is None and not self.custom_txn_numbers:
                data["DocNumber"] = str(self._next_doc[entity])
                self._next_doc[entity] += 1
            return
        doc = str(doc)
        if len(doc) > DOC_NUMBER_MAX:
            raise validation(
                "2050",
                "String length is either shorter or longer than supported by specification",
                f"DocNumber: Min:0 Max:{DOC_NUMBER_MAX} supported, found:{len(doc)}",
            )
        taken = any(
            rec is not current and str(rec.data.get("DocNumber") or "") == doc for rec in self.tables[entity].values()
        )
        if taken and self.custom_txn_numbers and not allow_dup:
            raise validation(
                "6140",
                "Duplicate Document Number Error",
                "Duplicate Document Number Error : You must specify a different number. This number has already "
                f"been used. DocNumber={doc}",
            )

    def _compute(self, data: Row) -> None:
        """Line amounts, discount, per-line tax and totals, as QBO computes them (to the cent)."""
        calc = data["GlobalTaxCalculation"]
        sales: list[Row] = []
        discount: Row | None = None
        for raw in data.get("Line") or []:
            kind = raw.get("DetailType")
            if kind == "SalesItemLineDetail":
                sales.append(self._sales_line(raw))
            elif kind == "DiscountLineDetail":
                discount = raw
            elif kind != "SubTotalLineDetail":
                raise validation("2500", "Invalid Enumeration", f"Line.DetailType: {kind}")
        if not sales:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: You must fill out at least one split line.",
            )
        subtotal = sum((_dec(line["Amount"], "Amount") for line in sales), Decimal(0))
        pct = Decimal(0)
        lines: list[Row] = sales
        if discount is not None:
            detail = discount.get("DiscountLineDetail") or {}
            pct = (
                _dec(detail.get("DiscountPercent", 0), "DiscountPercent") if detail.get("PercentBased") else Decimal(0)
            )
            amount = (
                _money(subtotal * pct / 100) if detail.get("PercentBased") else _dec(discount.get("Amount"), "Amount")
            )
            pct = amount / subtotal * 100 if subtotal else Decimal(0)
            discount = {"DetailType": "DiscountLineDetail", "Amount": amount, "DiscountLineDetail": detail}
        tax = Decimal(0)
        for line in sales:
            code = _ref_value(line["SalesItemLineDetail"].get("TaxCodeRef"))
            rate = TAX_CODES[code][1] if code else Decimal(0)
            base = _dec(line["Amount"], "Amount") * (100 - pct) / 100
            if calc == "TaxExcluded":
                tax += _money(base * rate / 100)
            elif calc == "TaxInclusive":
                tax += _money(base - base / (1 + rate / 100))
        discount_amount = discount["Amount"] if discount else Decimal(0)
        total = subtotal - discount_amount + (tax if calc == "TaxExcluded" else Decimal(0))
        for number, line in enumerate(lines, start=1):
            line.update(Id=str(number), LineNum=number)
        data["Line"] = [*lines, {"DetailType": "SubTotalLineDetail", "Amount": subtotal, "SubTotalLineDetail": {}}]
        if discount:
            data["Line"].append(discount)
        data["TxnTaxDetail"] = {"TotalTax": tax}
        data["TotalAmt"] = _money(total)

    def _sales_line(self, raw: Row) -> Row:
        detail = dict(raw.get("SalesItemLineDetail") or {})
        item = self.tables["Item"].get(_ref_value(detail.get("ItemRef")))
        if item is None or item.data.get("Active") is False:
            raise not_found("ItemRef")
        if raw.get("Amount") is None:
            raise validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Line.Amount is missing in the request",
            )
        amount = _dec(raw["Amount"], "Amount")
        qty = _dec(detail.get("Qty", 1), "Qty")
        price = detail.get("UnitPrice", item.data.get("UnitPrice"))
        if price is not None and _money(qty * _dec(price, "UnitPrice")) != amount:
            raise validation(
                "6070",
                "Amount is not equal to UnitPrice * Qty",
                f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
            )
        code = _ref_value(detail.get("TaxCodeRef")) or _ref_value(item.data.get("SalesTaxCodeRef"))
        if code and code not in TAX_CODES:
            raise not_found("TaxCodeRef")
        detail["ItemRef"] = {"value": item.data["Id"], "name": item.data["Name"]}
        if code:
            detail["TaxCodeRef"] = {"value": code}
        detail["Qty"] = qty
        if price is not None:
            detail["UnitPrice"] = _dec(price, "UnitPrice")
        return {
            "DetailType": "SalesItemLineDetail",
            "Amount": amount,
            "Description": raw.get("Description", item.data.get("Description", "")),
            "SalesItemLineDetail": detail,
        }

    def _void(self, rec: Record) -> Record:
        if any(t.get("TxnType") == "Payment" for t in rec.data.get("LinkedTxn") or []):
            raise business("This transaction is linked to a payment; delete or unlink the payment first.")
        for line in rec.data["Line"]:
            line["Amount"] = Decimal(0)
            if "SalesItemLineDetail" in line:
                line["SalesItemLineDetail"]["Qty"] = Decimal(0)
        note = str(rec.data.get("PrivateNote") or "")
        rec.data.update(
            TotalAmt=Decimal(0),
            Balance=Decimal(0),
            TxnTaxDetail={"TotalTax": Decimal(0)},
            PrivateNote=f"Voided - {note}" if note else "Voided",
        )
        self._touch(rec)
        self.webhooks.record("Invoice", rec.data["Id"], "Void", rec.updated)
        return rec

    def _validate_payment(self, data: Row) -> Row:
        customer = self._customer(data.get("CustomerRef"))
        total = _dec(data.get("TotalAmt"), "TotalAmt")
        applied = Decimal(0)
        for line in data.get("Line") or []:
            amount = _dec(line.get("Amount"), "Amount")
            for txn in line.get("LinkedTxn") or []:
                invoice = self.tables["Invoice"].get(str(txn.get("TxnId")))
                if txn.get("TxnType") != "Invoice" or invoice is None:
                    raise not_found("LinkedTxn")
                if _ref_value(invoice.data["CustomerRef"]) != customer.data["Id"]:
                    raise business("The payment's customer is not the invoice's customer.")
                if amount > invoice.data["Balance"]:
                    raise business(f"The payment amount {amount} exceeds the invoice's open balance.")
            applied += amount
        if applied > total:
            raise business("The amount applied exceeds the payment's TotalAmt.")
        data["TotalAmt"] = total
        data["UnappliedAmt"] = total - applied
        data.setdefault("TxnDate", datetime.fromtimestamp(self._now(), COMPANY_ZONE).date().isoformat())
        data["CurrencyRef"] = customer.data["CurrencyRef"]
        return data

    def _apply_payment(self, payment: Record) -> None:
        for line in payment.data.get("Line") or []:
            for txn in line.get("LinkedTxn") or []:
                invoice = self.tables["Invoice"][str(txn["TxnId"])]
                invoice.data["Balance"] -= _dec(line["Amount"], "Amount")
                invoice.data["LinkedTxn"].append({"TxnId": payment.data["Id"], "TxnType": "Payment"})
                self._touch(invoice)
                self.webhooks.record("Invoice", invoice.data["Id"], "Update", invoice.updated)

    def _send(self, invoice_id: str, send_to: str | None) -> Row:
        rec = self.tables["Invoice"].get(invoice_id)
        if rec is None:
            raise not_found()
        address = send_to or _field_value(rec.data, "BillEmail")
        if not address:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: An email address is required to send this invoice.",
            )
        self._emails.append({"InvoiceId": invoice_id, "To": str(address), "at": self._now()})
        rec.data.update(
            EmailStatus="EmailSent", DeliveryInfo={"DeliveryType": "Email", "DeliveryTime": _stamp(self._now())}
        )
        if send_to:
            rec.data["BillEmail"] = {"Address": send_to}
        self._touch(rec)
        self.webhooks.record("Invoice", invoice_id, "Emailed", rec.updated)
        return self._render("Invoice", rec)

    # ---- reads ------------------------------------------------------------------------------------------

    def _render(self, entity: str, rec: Record) -> Row:
        out = {k: v for k, v in rec.data.items() if not k.startswith("_")}
        out.update(domain="QBO", sparse=False)
        out["MetaData"] = {"CreateTime": _stamp(rec.created), "LastUpdatedTime": _stamp(rec.updated)}
        if entity in NAME_LISTS:
            out["FullyQualifiedName"] = out["DisplayName"]
        if entity == "Customer":
            if rec.data.get("_tax"):
                out["PrimaryTaxIdentifier"] = mask_tax_id(rec.data["_tax"])
            out["Balance"] = sum(
                (
                    i.data["Balance"]
                    for i in self.tables["Invoice"].values()
                    if _ref_value(i.data["CustomerRef"]) == rec.data["Id"]
                ),
                Decimal(0),
            )
        if entity == "Item":
            out["FullyQualifiedName"] = out["Name"]
        return json.loads(json.dumps(out, cls=WireEncoder), parse_float=Decimal)  # a deep copy, Decimals kept

    def _query(self, statement: str) -> Row:
        query = QueryParser(statement).parse()
        if query.entity == "RecurringTransaction":
            return self._query_recurring(query)
        rows = [self._render(query.entity, rec) for rec in self.tables[query.entity].values()]
        conditions = list(query.conditions)
        if query.entity in ACTIVE_BY_DEFAULT and not any(c.field == "Active" for c in conditions):
            conditions.append(Condition("Active", "=", [True]))
        rows = [r for r in rows if all(_matches(r, c) for c in conditions)]
        if query.count:
            return {"totalCount": len(rows)}
        rows.sort(
            key=lambda r: _sort_key(_comparable(query.order, _field_value(r, query.order))), reverse=query.descending
        )
        page = rows[query.start - 1 : query.start - 1 + query.max_results]
        if not page:
            return {}
        return {query.entity: page, "startPosition": query.start, "maxResults": len(page)}

    def _batch(self, body: Row) -> Row:
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "BatchItemRequest is missing",
            )
        if len(items) > BATCH_MAX_ITEMS:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Batch size {len(items)} exceeds the maximum of {BATCH_MAX_ITEMS} items",
            )
        answers: list[Row] = []
        for item in items:
            answer: Row = {"bId": item.get("bId")}
            try:
                if "Query" in item:
                    answer["QueryResponse"] = self._query(str(item["Query"]))
                else:
                    entity = next((k for k in item if k in FILTERABLE), None)
                    if entity is None:
                        raise validation("2500", "Invalid Request", "no entity in batch item")
                    operation = str(item.get("operation") or "create")
                    answer[entity] = self._write(
                        entity, "" if operation in ("create", "update") else operation, item[entity]
                    )
            except ApiError as error:
                answer["Fault"] = error.body["Fault"]
            answers.append(answer)
        return {"BatchItemResponse": answers}

    def _cdc(self, request: Request) -> Row:
        entities = [e for e in (request.args.get("entities") or "").split(",") if e]
        since_text = request.args.get("changedSince") or ""
        since = _parse_stamp(since_text) if since_text else None
        if not entities or since is None:
            raise validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "entities and changedSince are required",
            )
        if since < self._now() - CDC_LOOKBACK:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                "changedSince cannot be more than 30 days in the past",
            )
        blocks: list[Row] = []
        for raw in entities:
            entity = ENTITY_PATHS.get(raw.strip().lower())
            if entity is None:
                raise validation("4001", "Invalid query", f"CDC is not supported for {raw}")
            records = [r for r in self.tables[entity].values() if int(r.updated) >= int(since)]
            rendered = [(r.updated, self._render(entity, r)) for r in records]
            if entity == "Invoice":
                rendered += [
                    (
                        r.updated,
                        {
                            "Id": r.data["Id"],
                            "status": "Deleted",
                            "domain": "QBO",
                            "MetaData": {"LastUpdatedTime": _stamp(r.updated)},
                        },
                    )
                    for r in self.deleted.values()
                    if int(r.updated) >= int(since)
                ]
            rendered.sort(key=lambda pair: pair[0])
            rows = [row for _, row in rendered[: self.cdc_limit]]
            blocks.append({entity: rows, "startPosition": 1, "maxResults": len(rows)} if rows else {})
        return {"CDCResponse": [{"QueryResponse": blocks}]}

    def _preferences(self) -> Row:
        return {
            "Preferences": {
                "SalesFormsPrefs": {"CustomTxnNumbers": self.custom_txn_numbers, "AllowDiscount": True},
                "CurrencyPrefs": {
                    "MultiCurrencyEnabled": self.multicurrency,
                    "HomeCurrency": {"value": self.home_currency},
                },
                "domain": "QBO",
            }
        }

    # ---- recurring transactions (an Invoice template with RecurringInfo) ---------------------------------

    def _init_recurring(self) -> None:
        #: template Id -> its Invoice fields (``_made``: invoices made so far, never rendered)
        self.recurring: dict[str, Record] = {}

    def recurring_templates(self) -> list[Row]:
        """Every recurring template as the API renders it (``{"Invoice": {...}}``), oldest first."""
        with self.state.lock:
            return [self._render_recurring(rec) for rec in sorted(self.recurring.values(), key=lambda r: r.seq)]

    def run_recurring(self, on: date | None = None) -> list[Row]:
        """What QuickBooks does each day: every active Automated template whose NextDate is ``on`` (the company's
        today by default) or earlier makes its invoices, one per due day up to ``on``, as QBO makes them
        (GUESSES["recurring_generated_invoice"]); Reminded and UnScheduled ones make none. Returns the invoices
        made, as the API renders them; an invoice QBO would refuse (an inactive customer or item) raises
        ValueError and leaves that template's NextDate where it was."""
        with self.state.lock:
            day = on or datetime.fromtimestamp(self._now(), COMPANY_ZONE).date()
            made: list[Row] = []
            for rec in sorted(self.recurring.values(), key=lambda r: r.seq):
                info = rec.data["RecurringInfo"]
                while info.get("Active") and info["RecurType"] == "Automated":
                    due = info["ScheduleInfo"].get("NextDate")
                    if not due or date.fromisoformat(due) > day:
                        break
                    try:
                        invoice = self._create("Invoice", self._from_template(rec, date.fromisoformat(due)))
                    except ApiError as err:
                        raise ValueError(json.dumps(err.body)) from err
                    made.append(self._render("Invoice", invoice))
                    rec.data["_made"] = int(rec.data.get("_made", 0)) + 1
                    info["ScheduleInfo"]["PreviousDate"] = due
                    self._schedule_next(rec.data, date.fromisoformat(due) + timedelta(days=1))
                    self._touch(rec)
            return made

    def _recurring_api(self, request: Request) -> Row:
        operation = request.args.get("operation", "")
        kind, sent = self._recurring_body(self._body(request))
        if operation == "delete":
            rec = self._current_recurring(sent)
            del self.recurring[rec.data["Id"]]
            return {"RecurringTransaction": {kind: {"Id": rec.data["Id"], "status": "Deleted", "domain": "QBO"}}}
        if operation not in ("", "create", "update"):
            raise business(f"unknown operation {operation}")
        if sent.get("Id"):
            rec = self._current_recurring(sent)
            changes = {k: v for k, v in sent.items() if k not in ("Id", "SyncToken", "MetaData", "sparse", "domain")}
            if sent.get("sparse") is True:
                merged = {**rec.data, **changes}
            else:  # a full update: omitted writable fields are cleared
                merged = {k: v for k, v in rec.data.items() if k.startswith("_") or k in ("Id", "SyncToken")}
                merged.update(changes)
            rec.data = self._validate_template(merged, rec)
            self._touch(rec)
            return {"RecurringTransaction": self._render_recurring(rec)}
        data = {k: v for k, v in sent.items() if k not in ("Id", "SyncToken", "MetaData", "sparse", "domain")}
        data = self._validate_template(data, None)
        data.update(Id=self._next_id(), SyncToken="0", _type=kind, _made=0)
        now = self._now()
        rec = Record(data, self._seq, now, now)
        self.recurring[data["Id"]] = rec
        return {"RecurringTransaction": self._render_recurring(rec)}

    def _recurring_read(self, request: Request, record_id: str) -> Row:
        """Intuit's page shows a read answered in a QueryResponse: see GUESSES["recurring_read_envelope"]."""
        rec = self.recurring.get(record_id)
        if rec is None:
            raise not_found()
        return {"QueryResponse": {"RecurringTransaction": [self._render_recurring(rec)], "startPosition": 1,
                                  "maxResults": 1}}  # fmt: skip

    @staticmethod
    def _recurring_body(body: Row) -> tuple[str, Row]:
        """The one transaction a RecurringTransaction body holds, under its type's name (IntuitRestServiceDef.xsd:
        an IntuitEntity holding one IntuitObject)."""
        kinds = [k for k in body if isinstance(body[k], dict)]
        if len(kinds) != 1 or kinds[0] not in RECURRING_TYPES:
            raise validation(
                "2500", "Invalid Request", f"A recurring transaction holds one of {', '.join(RECURRING_TYPES)} here"
            )
        return kinds[0], dict(body[kinds[0]])

    def _current_recurring(self, sent: Row) -> Record:
        rec = self.recurring.get(str(sent.get("Id", "")))
        if rec is None:
            raise not_found()
        if str(sent.get("SyncToken", "")) != str(rec.data["SyncToken"]):
            raise stale_object()
        return rec

    def _validate_template(self, data: Row, current: Record | None) -> Row:
        """An Invoice template: the invoice's rules (customer, currency, lines, tax, totals; no DocNumber
        uniqueness, as a template is no invoice) and its RecurringInfo (required, GUESSES
        ["recurring_required_fields"])."""
        customer = self._customer(data.get("CustomerRef"))
        currency = _ref_value(data.get("CurrencyRef")) or self.home_currency
        if currency != _ref_value(customer.data.get("CurrencyRef")):
            raise business(f"The currency {currency} does not match the customer's currency.")
        data["CurrencyRef"] = {"value": currency}
        calc = str(data.get("GlobalTaxCalculation") or "TaxExcluded")
        if calc not in GLOBAL_TAX:
            raise validation("2500", "Invalid Enumeration", f"GlobalTaxCalculation: {calc}")
        data["GlobalTaxCalculation"] = calc
        if len(str(data.get("DocNumber") or "")) > DOC_NUMBER_MAX:
            raise too_long("DocNumber", DOC_NUMBER_MAX, len(str(data["DocNumber"])))
        for key in ("TxnDate", "DueDate"):
            if data.get(key):
                self._iso_day(data[key], key)
        self._compute(data)
        info = data.get("RecurringInfo")
        if not isinstance(info, dict):
            raise missing_param("RecurringInfo")
        data["RecurringInfo"] = self._recurring_info(dict(info), current)
        self._schedule_next(data, self._today())
        return data

    def _recurring_info(self, info: Row, current: Record | None) -> Row:
        name = str(info.get("Name") or "").strip()
        if not name:
            raise missing_param("RecurringInfo.Name")
        if any(r is not current and r.data["RecurringInfo"]["Name"].casefold() == name.casefold()
               for r in self.recurring.values()):  # fmt: skip
            raise duplicate_name()
        kind = str(info.get("RecurType") or "")
        if kind not in RECUR_TYPES:
            raise validation("2500", "Invalid Enumeration", f"RecurringInfo.RecurType: {kind}")
        active = info.get("Active", True)
        if not isinstance(active, bool):
            raise validation("2500", "Invalid Request", "RecurringInfo.Active is a boolean")
        out: Row = {"Name": name, "RecurType": kind, "Active": active}
        sent = info.get("ScheduleInfo")
        if kind in ("Automated", "Reminded") and not isinstance(sent, dict):
            raise missing_param("RecurringInfo.ScheduleInfo")
        if isinstance(sent, dict):
            out["ScheduleInfo"] = self._schedule_info(sent, current)
        return out

    def _schedule_info(self, sent: Row, current: Record | None) -> Row:
        interval = str(sent.get("IntervalType") or "")
        if interval not in INTERVAL_UNITS:
            raise validation("2500", "Invalid Enumeration", f"ScheduleInfo.IntervalType: {interval}")
        if not sent.get("StartDate"):
            raise missing_param("RecurringInfo.ScheduleInfo.StartDate")
        out: Row = {"IntervalType": interval, "StartDate": self._iso_day(sent["StartDate"], "StartDate").isoformat()}
        for key, low, high in (
            ("NumInterval", 1, 999), ("DayOfMonth", 1, 31), ("WeekOfMonth", 1, 5), ("MaxOccurrences", 1, 9999),
            ("RemindDays", 0, 90), ("DaysBefore", 0, 90),
        ):  # fmt: skip
            value = sent.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | Decimal) or not low <= int(value) <= high:
                raise validation("2500", "Invalid Number", f"ScheduleInfo.{key}: {value} is not in {low}..{high}")
            out[key] = int(value)
        out.setdefault("NumInterval", 1)
        for key, names in (("DayOfWeek", WEEK_DAYS), ("MonthOfYear", MONTHS)):
            if sent.get(key) is not None:
                if sent[key] not in names:
                    raise validation("2500", "Invalid Enumeration", f"ScheduleInfo.{key}: {sent[key]}")
                out[key] = sent[key]
        if sent.get("EndDate"):
            end = self._iso_day(sent["EndDate"], "EndDate")
            if end < date.fromisoformat(out["StartDate"]):
                raise business("The end date of a recurring schedule cannot be before its start date.")
            out["EndDate"] = end.isoformat()
        previous = ((current.data["RecurringInfo"].get("ScheduleInfo") or {}).get("PreviousDate")) if current else None
        if previous:  # read only (the XSD), kept from the runs so far
            out["PreviousDate"] = previous
        return out

    @staticmethod
    def _iso_day(value: Any, name: str) -> date:
        try:
            return date.fromisoformat(str(value))
        except ValueError as exc:
            raise validation("2040", "Invalid Date", f"{name}: {value}") from exc

    def _today(self) -> date:
        return datetime.fromtimestamp(self._now(), COMPANY_ZONE).date()

    def _schedule_next(self, data: Row, earliest: date) -> None:
        """NextDate (read only in the XSD): the schedule's first day on or after ``earliest`` and after the last
        run, within EndDate and MaxOccurrences; none for an inactive or unscheduled template, or a finished one.
        A StartDate in the past counts from today: see GUESSES["recurring_past_start"]."""
        info = data["RecurringInfo"]
        schedule = info.get("ScheduleInfo")
        if not isinstance(schedule, dict):
            return
        schedule.pop("NextDate", None)
        if not info["Active"] or info["RecurType"] not in ("Automated", "Reminded"):
            return
        if schedule.get("MaxOccurrences") and int(data.get("_made", 0)) >= schedule["MaxOccurrences"]:
            return
        previous = schedule.get("PreviousDate")
        if previous:
            earliest = max(earliest, date.fromisoformat(previous) + timedelta(days=1))
        weekday = WEEK_DAYS.index(schedule["DayOfWeek"]) if schedule.get("DayOfWeek") else None
        recurrence = Recurrence(
            unit=INTERVAL_UNITS[schedule["IntervalType"]],
            every=schedule["NumInterval"],
            start=date.fromisoformat(schedule["StartDate"]),
            end=date.fromisoformat(schedule["EndDate"]) if schedule.get("EndDate") else None,
            day_of_month=schedule.get("DayOfMonth"),
            weekday=weekday,
            week_of_month=schedule.get("WeekOfMonth"),
            month=MONTHS.index(schedule["MonthOfYear"]) + 1 if schedule.get("MonthOfYear") else None,
        )
        following = recurrence.first_on_or_after(earliest)
        if following is not None:
            schedule["NextDate"] = following.isoformat()

    def _from_template(self, rec: Record, day: date) -> Row:
        """The invoice a template makes on ``day``: its customer, lines, tax and notes, dated ``day``, with the
        due date as far after it as the template's, the company's next number and RecurDataRef naming the
        template (Finance.xsd Transaction.RecurDataRef): see GUESSES["recurring_generated_invoice"]."""
        template = rec.data
        fields: Row = {k: json.loads(json.dumps(template[k], cls=WireEncoder), parse_float=Decimal)
                       for k in TEMPLATE_COPIED if k in template}  # fmt: skip
        fields["Line"] = [
            {k: v for k, v in line.items() if k not in ("Id", "LineNum")}
            for line in json.loads(json.dumps(template["Line"], cls=WireEncoder), parse_float=Decimal)
            if line.get("DetailType") != "SubTotalLineDetail"
        ]
        fields["TxnDate"] = day.isoformat()
        if template.get("TxnDate") and template.get("DueDate"):
            terms = date.fromisoformat(template["DueDate"]) - date.fromisoformat(template["TxnDate"])
            fields["DueDate"] = (day + terms).isoformat()
        else:
            fields["DueDate"] = day.isoformat()
        taken = {str(r.data.get("DocNumber") or "") for r in self.tables["Invoice"].values()}
        while str(self._next_doc["Invoice"]) in taken:
            self._next_doc["Invoice"] += 1
        fields["DocNumber"] = str(self._next_doc["Invoice"])
        self._next_doc["Invoice"] += 1
        fields["RecurDataRef"] = {"value": template["Id"], "name": template["RecurringInfo"]["Name"]}
        return fields

    def _render_recurring(self, rec: Record) -> Row:
        out = {k: v for k, v in rec.data.items() if not k.startswith("_")}
        out.update(domain="QBO", sparse=False)
        out["MetaData"] = {"CreateTime": _stamp(rec.created), "LastUpdatedTime": _stamp(rec.updated)}
        rendered = json.loads(json.dumps(out, cls=WireEncoder), parse_float=Decimal)
        return {str(rec.data["_type"]): rendered}

    def _query_recurring(self, query: Query) -> Row:
        """``select * from RecurringTransaction``: the templates, filtered and ordered on their own fields."""
        rows = [self._render_recurring(rec) for rec in self.recurring.values()]

        def inner(row: Row) -> Row:
            return next(iter(row.values()))

        rows = [r for r in rows if all(_matches(inner(r), c) for c in query.conditions)]
        if query.count:
            return {"totalCount": len(rows)}
        rows.sort(
            key=lambda r: _sort_key(_comparable(query.order, _field_value(inner(r), query.order))),
            reverse=query.descending,
        )
        page = rows[query.start - 1 : query.start - 1 + query.max_results]
        if not page:
            return {}
        return {"RecurringTransaction": page, "startPosition": query.start, "maxResults": len(page)}

    # ---- purchase orders (Finance.xsd PurchaseOrder <- PurchaseByVendor; lines ItemBasedExpenseLineDetail) --

    def _validate_purchase_order(self, data: Row, current: Record | None, allow_dup: bool) -> Row:
        """Intuit's PurchaseOrder: a VendorRef (an active vendor), an APAccountRef (an Accounts Payable
        account; implied when the company has exactly one), at least one item line, the vendor's currency,
        POStatus Open or Closed (PurchaseOrderStatusEnum; Open when not given: QBO has no draft), the
        DocNumber rules of the sales forms within purchase orders, and TotalAmt the sum of the lines."""
        vendor = self.tables["Vendor"].get(_ref_value(data.get("VendorRef")))
        if not _ref_value(data.get("VendorRef")):
            raise missing_param("VendorRef")
        if vendor is None or vendor.data.get("Active") is False:
            raise not_found("VendorRef")
        data["VendorRef"] = {"value": vendor.data["Id"], "name": vendor.data["DisplayName"]}
        data["APAccountRef"] = self._payables_ref(data.get("APAccountRef"))
        status = str(data.get("POStatus") or "Open")
        if status not in PURCHASE_ORDER_STATUSES:
            raise validation("2500", "Invalid Enumeration", f"POStatus: {status}")
        data["POStatus"] = status
        currency = _ref_value(data.get("CurrencyRef")) or self.home_currency
        if currency != (_ref_value(vendor.data.get("CurrencyRef")) or self.home_currency):
            raise business(f"The currency {currency} does not match the vendor's currency.")
        data["CurrencyRef"] = {"value": currency}
        # DocNumber as on the sales forms (closeloop.vendors.quickbooks GUESSES["purchase_order_doc_number_unique"])
        self._doc_number("PurchaseOrder", data, current, allow_dup)
        for key in ("TxnDate", "DueDate", "ExpectedDate"):
            if data.get(key):
                try:
                    date.fromisoformat(str(data[key]))
                except ValueError as exc:
                    raise validation("2040", "Invalid Date", f"{key}: {data[key]}") from exc
        if len(str(data.get("PrivateNote") or "")) > PURCHASE_NOTE_MAX:
            raise too_long("PrivateNote", PURCHASE_NOTE_MAX, len(str(data["PrivateNote"])))
        data.setdefault("TxnDate", datetime.fromtimestamp(self._now(), COMPANY_ZONE).date().isoformat())
        lines = [self._purchase_line(raw) for raw in data.get("Line") or []]
        if not lines:
            raise validation(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: You must fill out at least one split line.",
            )
        for number, line in enumerate(lines, start=1):
            line.update(Id=str(number), LineNum=number)
        data["Line"] = lines
        data["TotalAmt"] = _money(sum((line["Amount"] for line in lines), Decimal(0)))
        data.setdefault("EmailStatus", "NotSet")
        data.pop("Balance", None)
        return data

    def _payables_ref(self, sent: Any) -> Row:
        """The APAccountRef: the account sent (an active Accounts Payable account, 2500 otherwise), else the
        company's only active Accounts Payable account (several or none: the ref is required, 2020)."""
        payables = [
            rec for rec in self.tables["Account"].values()
            if rec.data.get("AccountType") == PAYABLES_TYPE and rec.data.get("Active") is not False
        ]  # fmt: skip
        wanted = _ref_value(sent)
        if not wanted:
            if len(payables) != 1:
                raise missing_param("APAccountRef")
            wanted = payables[0].data["Id"]
        if wanted not in {rec.data["Id"] for rec in payables}:
            raise validation("2500", "Invalid Reference Id", f"Invalid Reference Id : Accounts element id {wanted}")
        return {"value": wanted, "name": self.tables["Account"][wanted].data["Name"]}

    def _purchase_line(self, raw: Row) -> Row:
        """An item line (ItemBasedExpenseLineDetail: ItemRef, Qty, UnitPrice): an active item, an Amount equal
        to Qty × UnitPrice (6070); the item's PurchaseCost when no UnitPrice is given."""
        kind = raw.get("DetailType")
        if kind == "AccountBasedExpenseLineDetail":
            return self._account_line(raw)
        if kind != "ItemBasedExpenseLineDetail":
            raise validation("2500", "Invalid Enumeration", f"Line.DetailType: {kind}")
        detail = dict(raw.get("ItemBasedExpenseLineDetail") or {})
        item = self.tables["Item"].get(_ref_value(detail.get("ItemRef")))
        if item is None or item.data.get("Active") is False:
            raise not_found("ItemRef")
        if raw.get("Amount") is None:
            raise missing_param("Line.Amount")
        amount = _dec(raw["Amount"], "Amount")
        qty = _dec(detail.get("Qty", 1), "Qty")
        price = detail.get("UnitPrice", item.data.get("PurchaseCost"))
        if price is not None and _money(qty * _dec(price, "UnitPrice")) != amount:
            raise validation(
                "6070",
                "Amount is not equal to UnitPrice * Qty",
                f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
            )
        detail["ItemRef"] = {"value": item.data["Id"], "name": item.data["Name"]}
        detail["Qty"] = qty
        if price is not None:
            detail["UnitPrice"] = _dec(price, "UnitPrice")
        detail.setdefault("BillableStatus", "NotBillable")
        line: Row = {
            "DetailType": "ItemBasedExpenseLineDetail",
            "Amount": amount,
            "ItemBasedExpenseLineDetail": detail,
        }
        description = raw.get("Description", item.data.get("PurchaseDesc", item.data.get("Description")))
        if description:
            line["Description"] = description
        return line

    def _account_line(self, raw: Row) -> Row:
        """A category line (AccountBasedExpenseLineDetail): an AccountRef naming an active account, an Amount."""
        detail = dict(raw.get("AccountBasedExpenseLineDetail") or {})
        if not _ref_value(detail.get("AccountRef")):
            raise missing_param("AccountRef")
        detail["AccountRef"] = self._account_ref(_ref_value(detail["AccountRef"]))
        if raw.get("Amount") is None:
            raise missing_param("Line.Amount")
        detail.setdefault("BillableStatus", "NotBillable")
        line: Row = {
            "DetailType": "AccountBasedExpenseLineDetail",
            "Amount": _dec(raw["Amount"], "Amount"),
            "AccountBasedExpenseLineDetail": detail,
        }
        if raw.get("Description"):
            line["Description"] = raw["Description"]
        return line

    # ---- control API (/_sandbox/...) ---------------------------------------------------------------------

    def control_routes(self) -> Router:
        routes = super().control_routes()
        for name, entity in (
            ("customers", "Customer"),
            ("invoices", "Invoice"),
            ("estimates", "Estimate"),
            ("payments", "Payment"),
            ("items", "Item"),
        ):
            routes.add("GET", f"/_sandbox/{name}", lambda body, entity=entity: {entity: self.rows(entity)})
        routes.add("GET", "/_sandbox/emails", lambda body: {"emails": self.emails()})
        routes.add("GET", "/_sandbox/recurring", lambda body: {"RecurringTransaction": self.recurring_templates()})
        routes.add("POST", "/_sandbox/recurring/run", self._control_run_recurring)
        routes.add("POST", "/_sandbox/expire-tokens", lambda body: self.expire_access_tokens())
        routes.add("POST", "/_sandbox/revoke-refresh-tokens", lambda body: self.revoke_refresh_tokens())
        routes.add("GET", "/_sandbox/refresh-token", self._control_refresh_token)
        routes.add("POST", "/_sandbox/webhooks", self._control_subscribe)
        routes.add("POST", "/_sandbox/webhooks/flush", lambda body: self.webhooks.flush())
        routes.add("GET", "/_sandbox/webhooks/deliveries", self._control_deliveries)
        return routes

    def _control_run_recurring(self, body: Any) -> Row:
        on = (body or {}).get("on") if isinstance(body, dict) else None
        return {"Invoice": self.run_recurring(date.fromisoformat(on) if on else None)}

    def _control_refresh_token(self, body: Any) -> Response:
        token = self.current_refresh_token
        return self.json({"refresh_token": token, "realm_id": self.realm_id}, 200 if token else 404)

    def _control_subscribe(self, body: Any) -> Row:
        self.webhooks.subscribe(
            str(body.get("url") or ""), body.get("entities") or WEBHOOK_ENTITIES, body.get("payload_format")
        )
        return {
            "url": self.webhooks.url,
            "verifier_token": self.webhooks.verifier_token,
            "payload_format": self.webhooks.payload_format,
        }

    def _control_deliveries(self, body: Any) -> Row:
        with self.state.lock:
            deliveries = list(self.webhooks.deliveries)
        return {"deliveries": deliveries, "pending": self.webhooks.pending()}


# ---------------------------------------------------------------------------------------------------------
# The driver for the shared e2e suite, and serve()
# ---------------------------------------------------------------------------------------------------------


def _item_code(row: Mapping[str, Any]) -> str:
    """The code an Item carries: its Sku, else its Name (items made before SKUs were written)."""
    return str(row.get("Sku") or "").strip() or str(row.get("Name") or "")


class QuickBooksDriver:
    """AccountingDriver for the QuickBooks sandbox: finance's actions and reads, in canonical terms."""

    name = "quickbooks"

    def __init__(self, sandbox: QuickBooksSandbox) -> None:
        self.sandbox = sandbox

    @property
    def state(self) -> SandboxState:
        return self.sandbox.state

    @property
    def currency(self) -> str:
        return self.sandbox.home_currency

    def environment(self, base_url: str) -> dict[str, str]:
        sandbox = self.sandbox
        return {
            "ACCOUNTING_PROVIDER": self.name,
            "QUICKBOOKS_API_URL": base_url,
            "INTUIT_OAUTH_URL": base_url,
            "QUICKBOOKS_CLIENT_ID": sandbox.client_id,
            "QUICKBOOKS_CLIENT_SECRET": sandbox.client_secret,
            "QUICKBOOKS_REFRESH_TOKEN": sandbox.current_refresh_token or sandbox.initial_refresh_token,
            "QUICKBOOKS_REALM_ID": sandbox.realm_id,
            "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN": sandbox.webhooks.verifier_token,
        }

    def subscribe_webhooks(self, url: str) -> None:
        """Point the app's webhook (customers, invoices, payments) at ``url``."""
        self.sandbox.webhooks.subscribe(url)

    def flush_webhooks(self) -> None:
        self.sandbox.webhooks.flush()

    def sent_webhooks(self) -> list[SentWebhook]:
        with self.sandbox.state.lock:
            sent = list(self.sandbox.webhooks.deliveries)
        return [SentWebhook(str(d["url"]), dict(d["headers"]), str(d["body"]).encode(), d["status"]) for d in sent]

    def customers(self) -> list[SeenCustomer]:
        return [
            SeenCustomer(
                id=row["Id"],
                name=row["DisplayName"],
                number=str(row.get("MiddleName") or ""),
                email=str(_field_value(row, "PrimaryEmailAddr") or ""),
                tax_number=self.sandbox.raw_tax_id(row["Id"]),
                active=row.get("Active") is not False,
            )
            for row in self.sandbox.rows("Customer")
        ]

    def invoices(self) -> list[SeenInvoice]:
        """Each invoice; a line's item code is its Item's code (``items``), not the ItemRef's display name."""
        codes = {str(item["Id"]): _item_code(item) for item in self.sandbox.rows("Item")}
        out: list[SeenInvoice] = []
        for row in self.sandbox.rows("Invoice"):
            note = str(row.get("PrivateNote") or "")
            voided = note.startswith("Voided") and row["TotalAmt"] == 0
            status = "VOIDED" if voided else ("PAID" if row["Balance"] == 0 and row["TotalAmt"] > 0 else "AUTHORISED")
            lines = tuple(
                (
                    codes.get(
                        _ref_value(line["SalesItemLineDetail"]["ItemRef"]),
                        str(line["SalesItemLineDetail"]["ItemRef"].get("name", "")),
                    ),
                    Decimal(line["SalesItemLineDetail"].get("Qty", 0)),
                    Decimal(line["SalesItemLineDetail"].get("UnitPrice", 0)),
                )
                for line in row["Line"]
                if line.get("DetailType") == "SalesItemLineDetail"
            )
            out.append(
                SeenInvoice(
                    id=row["Id"],
                    reference=note.splitlines()[0] if note and not voided else str(row.get("DocNumber") or ""),
                    customer_id=_ref_value(row.get("CustomerRef")),
                    currency=_ref_value(row.get("CurrencyRef")),
                    total=row["TotalAmt"],
                    amount_due=row["Balance"],
                    status=status,
                    lines=lines,
                )
            )
        return out

    def items(self) -> list[SeenItem]:
        """Every item: its code is its Sku, else (an item made before SKUs, as ``seed_item`` makes them) its Name,
        whose display name is then its Description."""
        return [
            SeenItem(
                id=str(row["Id"]),
                code=_item_code(row),
                name=str(row.get("Name") or "")
                if str(row.get("Sku") or "").strip()
                else str(row.get("Description") or row.get("Name") or ""),
                unit_price=None if row.get("UnitPrice") is None else Decimal(str(row["UnitPrice"])),
                unit_cost=None if row.get("PurchaseCost") is None else Decimal(str(row["PurchaseCost"])),
            )
            for row in self.sandbox.rows("Item")
        ]

    def seed_item(self, code: str, name: str, unit_price: Decimal) -> None:
        """An item whose Name is the code the adapter looks up (the display name goes in Description)."""
        if any(row.get("Name") == code for row in self.sandbox.rows("Item")):
            return  # item names are unique in QuickBooks: seeding twice is a no-op, as for the other drivers
        self.sandbox.seed(
            "Item", Name=code, Description=name, UnitPrice=unit_price, Type="Service", IncomeAccountRef={"value": "1"}
        )

    def seed_customer(self, name: str, *, email: str = "", tax_number: str = "") -> str:
        fields: dict[str, Any] = {"DisplayName": name, "CompanyName": name}
        if email:
            fields["PrimaryEmailAddr"] = {"Address": email}
        if tax_number:
            fields["PrimaryTaxIdentifier"] = tax_number
        return str(self.sandbox.seed("Customer", **fields)["Id"])

    def edit_customer(
        self, customer_id: str, *, name: str | None = None, email: str | None = None, phone: str | None = None
    ) -> None:
        """A sparse update of the given fields (DisplayName, PrimaryEmailAddr, PrimaryPhone) as finance's edit
        in the UI: CDC and the Customer Update webhook see it like any other change."""
        fields: dict[str, Any] = {}
        if name is not None:
            fields["DisplayName"] = name
        if email is not None:
            fields["PrimaryEmailAddr"] = {"Address": email}
        if phone is not None:
            fields["PrimaryPhone"] = {"FreeFormNumber": phone}
        self.sandbox.edit("Customer", customer_id, **fields)

    def approve_and_pay(self, invoice_id: str, amount: Decimal, on: date) -> None:
        """QBO invoices are posted when created, so only the Payment is recorded, linked to the invoice."""
        invoice = next(row for row in self.sandbox.rows("Invoice") if row["Id"] == invoice_id)
        self.sandbox.seed(
            "Payment",
            CustomerRef=invoice["CustomerRef"],
            TotalAmt=amount,
            TxnDate=on.isoformat(),
            Line=[{"Amount": amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
        )

    def run_recurring(self, on: date | None = None) -> list[str]:
        """QuickBooks' daily run of the recurring templates up to ``on``: the ids of the invoices it made."""
        return [str(row["Id"]) for row in self.sandbox.run_recurring(on)]

    # -- quote to cash (issue 12): Estimates, RecurringTransactions, PurchaseOrders ---------------------------

    #: Finance.xsd QboEstimateStatusEnum -> the canonical quote status (QBO has no draft and no expiry state).
    ESTIMATE_STATUSES: ClassVar[dict[str, str]] = {
        "Pending": "SENT",
        "Accepted": "ACCEPTED",
        "Rejected": "DECLINED",
        "Closed": "INVOICED",
        "Converted": "INVOICED",
    }

    def quotes(self) -> list[SeenQuote]:
        """Every estimate; its reference is the PrivateNote's first line (where Closeloop writes it)."""
        codes = self._item_codes()
        return [
            SeenQuote(
                id=str(row["Id"]),
                number=str(row.get("DocNumber") or ""),
                reference=str(row.get("PrivateNote") or "").split("\n")[0],
                status=self.ESTIMATE_STATUSES.get(str(row.get("TxnStatus") or "Pending"), str(row.get("TxnStatus"))),
                total=Decimal(str(row.get("TotalAmt") or 0)),
                lines=_sales_lines(row, codes),
            )
            for row in self.sandbox.rows("Estimate")
        ]

    def accept_quote(self, quote_id: str) -> None:
        """The customer accepted: finance sets the estimate's status to Accepted in the UI."""
        self.sandbox.edit("Estimate", quote_id, TxnStatus="Accepted")

    def schedules(self) -> list[SeenSchedule]:
        """Every recurring template (an Invoice with RecurringInfo); its reference is RecurringInfo.Name."""
        codes = self._item_codes()
        out: list[SeenSchedule] = []
        for rendered in self.sandbox.recurring_templates():
            row = next(iter(rendered.values()))
            info = row.get("RecurringInfo") or {}
            schedule = info.get("ScheduleInfo") or {}
            out.append(
                SeenSchedule(
                    id=str(row["Id"]),
                    reference=str(info.get("Name") or ""),
                    every=f"{schedule.get('NumInterval', '')} {schedule.get('IntervalType', '')}",
                    active=info.get("Active") is not False,
                    lines=_sales_lines(row, codes),
                )
            )
        return out

    def purchase_orders(self) -> list[SeenPurchaseOrder]:
        """Every purchase order; its reference is the PrivateNote's first line (where Closeloop writes it), its
        supplier the vendor's DisplayName, its status the POStatus (QBO has no draft: Open)."""
        codes = self._item_codes()
        vendors = {str(row["Id"]): str(row.get("DisplayName") or "") for row in self.sandbox.rows("Vendor")}
        return [
            SeenPurchaseOrder(
                id=str(row["Id"]),
                number=str(row.get("DocNumber") or ""),
                reference=str(row.get("PrivateNote") or "").split("\n")[0],
                supplier=vendors.get(_ref_value(row.get("VendorRef")), ""),
                status=str(row.get("POStatus") or "").upper(),
                total=Decimal(str(row.get("TotalAmt") or 0)),
                lines=_purchase_lines(row, codes),
            )
            for row in self.sandbox.rows("PurchaseOrder")
        ]

    def _item_codes(self) -> dict[str, str]:
        return {str(item["Id"]): _item_code(item) for item in self.sandbox.rows("Item")}


def _sales_lines(row: Mapping[str, Any], codes: Mapping[str, str]) -> tuple[Line, ...]:
    """A sales form's item lines as (item code, quantity, unit price)."""
    out: list[Line] = []
    for line in row.get("Line") or []:
        if line.get("DetailType") != "SalesItemLineDetail":
            continue
        detail = line["SalesItemLineDetail"]
        code = codes.get(_ref_value(detail["ItemRef"]), str(detail["ItemRef"].get("name", "")))
        out.append((code, Decimal(str(detail.get("Qty", 0))), Decimal(str(detail.get("UnitPrice", 0)))))
    return tuple(out)


def _purchase_lines(row: Mapping[str, Any], codes: Mapping[str, str]) -> tuple[Line, ...]:
    """A purchase form's item lines (ItemBasedExpenseLineDetail) as (item code, quantity, unit cost)."""
    out: list[Line] = []
    for line in row.get("Line") or []:
        if line.get("DetailType") != "ItemBasedExpenseLineDetail":
            continue
        detail = line["ItemBasedExpenseLineDetail"]
        code = codes.get(_ref_value(detail["ItemRef"]), str(detail["ItemRef"].get("name", "")))
        out.append((code, Decimal(str(detail.get("Qty", 0))), Decimal(str(detail.get("UnitPrice", 0)))))
    return tuple(out)


# -- end of quote to cash --------------------------------------------------------------------------------


def serve(sandbox: QuickBooksSandbox | None = None, port: int = 0) -> tuple[QuickBooksSandbox, SandboxServer]:
    """Start a sandbox on 127.0.0.1 (``port=0`` picks a free port); stop it with ``server.stop()``."""
    app = sandbox if sandbox is not None else QuickBooksSandbox()
    server = SandboxServer(app, port=port).start()
    return app, server


__all__ = ["DEFAULT_REALM_ID", "DEFAULT_REFRESH_TOKEN", "QuickBooksDriver", "QuickBooksSandbox", "serve"]
