"""Zoho Books adapter: Zoho OAuth (non-rotating refresh tokens), Books API v3 contacts, items and invoices.

Vendor facts encoded here (zoho.com/books/api/v3, Zoho Accounts OAuth docs, the vendor fact sheet):
- the API root is per data centre (``https://www.zohoapis.<dc>/books/v3``); every call carries
  ``Authorization: Zoho-oauthtoken <token>`` and the ``organization_id`` query parameter;
- ``POST <accounts>/oauth/v2/token`` with ``grant_type=refresh_token`` returns an access token for 1 hour
  and no new refresh token (refresh tokens do not rotate). Zoho answers a bad refresh token or client with
  HTTP 200 and ``{"error": "invalid_code" | "invalid_client"}``, and throttles refreshes (10 access tokens
  per refresh token per 10 minutes, 30 live ones) with ``{"error": "Access Denied"}``: tokens are cached
  for their hour in the store (closeloop.oauth), never refreshed per request;
- every answer is an envelope ``{"code": 0, "message": "success", "<entity>": {...}}``; a non-zero code
  is an error: 3062 a contact name already taken (Conflict), 1001 a duplicate value (Conflict), 1002 does
  not exist (NotFound), 57 not authorised, 6041 an organisation the user does not belong to;
- 100 requests a minute per organisation and a daily cap by plan (1,000 on Free to 10,000); a 429 carries
  no Retry-After. A daily-cap 429 is not worth waiting for (like Xero's ``day`` problem);
- idempotency: Zoho has no idempotency key. Creates go through ``PUT /contacts`` / ``PUT /invoices`` with
  ``X-Unique-Identifier-Key`` (a custom field set to "do not allow duplicate values"),
  ``X-Unique-Identifier-Value`` and ``X-Upsert: true``: a repeated create updates the record it made
  instead of making a second one. Contacts carry our number stamp in ``cf_closeloop_ref``, invoices the
  deal key (the reference's first word, ``hubspot-deal-<id>``) in ``cf_closeloop_deal``;
- lists page with ``page``/``per_page`` (max 200) and ``page_context.has_more_page``; invoices filter on
  ``reference_number``, ``date_start``/``date_end``, ``last_modified_time`` and sort by
  ``last_modified_time``. The ``cf_<api name>`` custom-field and ``sku`` list filters are not documented:
  every row such a list returns is checked again here (GUESSES["custom_field_filter"], GUESSES["sku_filter"]);
- money is a JSON number: bodies are written with the exact decimal literal, answers read as Decimal;
- Books has no signed webhooks (its workflow webhooks carry no signature Closeloop could verify), so
  accounting-side changes are polled: contacts sort by ``last_modified_time`` (there is no filter on it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from closeloop.dates import parse_day, parse_utc
from closeloop.errors import (
    ConfigurationError,
    Conflict,
    FatalError,
    IntegrationError,
    NotFound,
    ValidationFailed,
    WebhookRejected,
)
from closeloop.http import (
    Fault,
    Pacer,
    RateLimit,
    RateLimitVerdict,
    TokenAuth,
    VendorHttp,
    retry_after_header,
    typed_error,
)
from closeloop.models import (
    CUSTOMER_FIELDS,
    AccountingCustomer,
    AccountingEvent,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    LineAmountTypes,
)
from closeloop.oauth import RefreshingTokens, TokenEndpoint, TokenGrant
from closeloop.paging import Page, next_page, paginate
from closeloop.ports import WebhookRequest
from closeloop.redaction import redact
from closeloop.wire import dumps_exact, read_decimal_object, to_decimal

API_PREFIX = "/books/v3"
VENDOR = "zohobooks"


#: Zoho's envelope codes the adapter acts on.
CODE_OK = 0
CODE_NOT_AUTHORISED = 57
CODE_DUPLICATE_VALUE = 1001
CODE_DOES_NOT_EXIST = 1002
CODE_DUPLICATE_CONTACT_NAME = 3062
CODE_UNKNOWN_ORGANISATION = 6041
#: The per-minute and per-day 429 codes (the daily one is also recognised by its message).
#: See GUESSES["rate_limit_codes"].
CODE_MINUTE_LIMIT = 44
CODE_DAY_LIMIT = 45
#: Without a Retry-After, the per-minute limit is a rolling minute: waiting less only burns calls.
MINUTE_WINDOW_SECONDS = 60.0

#: Zoho's invoice statuses as the canonical InvoiceStatus (overdue, unpaid, viewed and partially paid
#: invoices are approved and awaiting payment; the sync logic works out overdue itself).
INVOICE_STATUSES: dict[str, str] = {
    "draft": "DRAFT",
    "pending_approval": "SUBMITTED",
    "approved": "SUBMITTED",
    "sent": "AUTHORISED",
    "viewed": "AUTHORISED",
    "unpaid": "AUTHORISED",
    "overdue": "AUTHORISED",
    "partially_paid": "AUTHORISED",
    "paid": "PAID",
    "void": "VOIDED",
}
_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


#: What a non-zero code means when the status alone does not say (Zoho answers some refusals with HTTP 200).
CODE_ERRORS: dict[int, type[IntegrationError]] = {
    CODE_DUPLICATE_VALUE: Conflict,
    CODE_DUPLICATE_CONTACT_NAME: Conflict,
    CODE_DOES_NOT_EXIST: NotFound,
    CODE_UNKNOWN_ORGANISATION: ConfigurationError,
}


def read_fault(response: httpx.Response) -> Fault | None:
    """Zoho's error body ``{"code": N, "message": ...}``; None for ``code`` 0 (or none) or a body of another shape.

    The code decides the error where it names one (CODE_ERRORS); any other non-zero code on a 2xx is a refusal
    (ValidationFailed, see GUESSES["invalid_value_code"]); on a failed status, the status decides. A 5xx stays
    an outage whatever its body says."""
    body = json.loads(response.text)
    if not isinstance(body, dict):
        return None
    code = body.get("code", CODE_OK)
    if code == CODE_OK or not isinstance(code, int):
        return None
    message = str(body.get("message") or "")
    error: type[IntegrationError] | None = None
    if response.status_code < 500:
        error = CODE_ERRORS.get(code, ValidationFailed if response.is_success else None)
    if code == CODE_UNKNOWN_ORGANISATION:
        message += " (check ZOHO_BOOKS_ORGANIZATION_ID)"
    return Fault(message=message, code=str(code), error=error)


def zoho_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Zoho's 429: the daily cap is not worth waiting for; the minute limit is a rolling 60 seconds."""
    header = retry_after_header(response)
    try:
        fault = read_fault(response)
    except ValueError:  # not JSON: the status alone says it is a rate limit
        fault = None
    code, message = (fault.code, fault.message) if fault else ("", "")
    if code == str(CODE_DAY_LIMIT) or re.search(r"\bper day\b|\bdaily\b", message, re.IGNORECASE):
        return RateLimitVerdict(retry=False, retry_after=header.retry_after, problem="day")
    return RateLimitVerdict(retry=True, retry_after=header.retry_after or MINUTE_WINDOW_SECONDS, problem="minute")


@dataclasses.dataclass(frozen=True)
class PageAfter:
    """Where a Zoho list goes on: the page ``number`` to read, after a page whose rows hash to ``after``.

    Zoho's page numbers always advance, so a stuck list shows as the same rows answered again (a page number
    Zoho ignores). A position is therefore the same as another when the rows that led to it are: paginate's
    repeated-position guard then raises PagingLoop, after the repeated page's rows (already read once).
    """

    number: int = dataclasses.field(compare=False)
    after: str = ""


#: One page of a Zoho list: its rows, and where the next page starts.
ZohoPage = Page[dict[str, Any], PageAfter]


def _fingerprint(rows: Sequence[Mapping[str, Any]]) -> str:
    """A digest of a page's rows (no record content in an error message)."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _organisation(organization_id: Callable[[], str]) -> Callable[[httpx.Request], None]:
    """Put ``organization_id`` on every request (Zoho answers 400, code 6041, without it)."""

    def prepare(request: httpx.Request) -> None:
        organization = organization_id()
        if not organization:
            raise ConfigurationError("ZOHO_BOOKS_ORGANIZATION_ID is not set", vendor=VENDOR)
        request.url = request.url.copy_merge_params({"organization_id": organization})

    return prepare


#: Re-sending a refresh token whose answer was lost is always safe: Zoho's refresh tokens do not rotate and do
#: not expire (zoho.com/accounts/protocol/oauth/web-apps/access-token-expiry.html; /work/shared/vendors/accounting.md
#: §1). A re-send costs one of the 10 access tokens a refresh token may mint per 10 minutes.
REFRESH_RESEND_WITHIN_SECONDS = math.inf


#: Zoho's ``/oauth/v2/token``: the client id and secret are form fields, an error can come with status 200, and
#: too many refreshes are refused as ``Access Denied`` (at most 10 access tokens per refresh token in 10 minutes).
TOKEN_ENDPOINT = TokenEndpoint(
    vendor=VENDOR,
    label="Zoho",
    client="zoho-accounts",
    path="/oauth/v2/token",
    reconnect="reconnect Zoho Books and update the credentials",
    client_auth="body",
    revoked=frozenset({"invalid_code", "invalid_client"}),
    throttled=frozenset({"Access Denied"}),
    throttle_seconds=MINUTE_WINDOW_SECONDS,
)


def refresh_with_zoho(
    accounts_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Zoho's ``/oauth/v2/token``.

    The grant keeps the refresh token it was given (Zoho's do not rotate). Raises AuthRevoked on
    ``invalid_code``/``invalid_client`` (a person must reconnect), RateLimited when Zoho throttles
    refreshes (``Access Denied``), FatalError on any other refusal.
    """
    return TOKEN_ENDPOINT.refresher(accounts_url, client_id, client_secret, transport=transport)


class ZohoBooksAccounting:
    """AccountingPort for Zoho Books (API v3)."""

    name = "zohobooks"
    PAGE_SIZE: ClassVar[int] = 200
    #: Where a person opens an invoice: the Books web app of the data centre, not the API host.
    INVOICE_WEB_PATH: ClassVar[str] = "/app/{organization}#/invoices/{id}"
    #: Contact persons Closeloop writes besides the primary one (the CRM's other people).
    MAX_OTHER_PERSONS: ClassVar[int] = 9
    #: Zoho's last_modified_time filter and its answers: ``2024-05-01T10:00:00+0000``.
    TIME_FORMAT: ClassVar[str] = "%Y-%m-%dT%H:%M:%S%z"
    #: Per organisation: 100 calls a minute (GUESSES["per_minute_limit"]).
    RATE_LIMIT: ClassVar[RateLimit] = RateLimit(per_minute=100)

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        organization_id: Callable[[], str],
        web_url: str = "https://books.zoho.com",
        tax_number_field: str = "vat_reg_no",
        contact_ref_field: str = "cf_closeloop_ref",
        invoice_ref_field: str = "cf_closeloop_deal",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``pacer``: the organisation's shared call budget (``RATE_LIMIT``; see closeloop.pacing)."""
        kwargs: dict[str, Any] = {"transport": transport}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.http = VendorHttp(
            self.name,
            base_url.rstrip("/") + API_PREFIX,
            auth=TokenAuth(tokens, prefix="Zoho-oauthtoken ", prepare=_organisation(organization_id)),
            rate_limit=zoho_rate_limit,
            read_fault=read_fault,
            pacer=pacer,
            **kwargs,
        )
        self._organization_id = organization_id
        self.web_url = web_url.rstrip("/")
        self.tax_number_field = tax_number_field
        self.contact_ref_field = contact_ref_field
        self.invoice_ref_field = invoice_ref_field
        self._item_ids: dict[str, str] = {}

    # -- the envelope --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_sent: bool = True,
    ) -> dict[str, Any]:
        """One call; the envelope read with Decimal numbers, a non-zero ``code`` raised as a typed error.

        ``retry_sent=False``: never repeated once sent (see VendorHttp.request)."""
        content = dumps_exact(body) if body is not None else None
        sent_headers = {**(headers or {}), **({"Content-Type": "application/json"} if content is not None else {})}
        response = self.http.request(
            method, path, params=params, content=content, headers=sent_headers, ok=(200, 201), retry_sent=retry_sent
        )
        payload = read_decimal_object(response.text, who=f"{method} {path}: Zoho", vendor=VENDOR)
        fault = self.http.fault(response)
        if fault is None:
            return payload
        raise typed_error(
            response.status_code,
            fault,
            f"{method} {path} failed",
            vendor=VENDOR,
            request_id=response.headers.get("x-request-id"),
            body=redact(response.text),
        )

    def _fetch(self, path: str, key: str, params: Mapping[str, str]) -> Callable[[PageAfter], ZohoPage]:
        """How to read one page of a list: ``page``/``per_page``, the rows under ``key``, and a next position
        while ``page_context.has_more_page`` is true."""

        def fetch(position: PageAfter) -> ZohoPage:
            query = {**params, "page": str(position.number), "per_page": str(self.PAGE_SIZE)}
            payload = self._call("GET", path, params=query)
            rows: list[dict[str, Any]] = payload.get(key) or []
            more = bool((payload.get("page_context") or {}).get("has_more_page"))
            number = next_page(position.number, more=more)
            return Page(rows, None if number is None else PageAfter(number, _fingerprint(rows)))

        return fetch

    def _pages(self, path: str, key: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Rows of a paged list, page by page, until ``has_more_page`` is false (or a page is empty).

        Raises PagingLoop when Zoho answers a page with the rows of one already read (see PageAfter)."""
        return paginate(self._fetch(path, key, params), PageAfter(1), vendor=VENDOR, what=f"GET {path}")

    def _pages_within(
        self, path: str, key: str, params: Mapping[str, str], max_pages: int
    ) -> list[dict[str, Any]] | None:
        """Every row of a paged list when it has at most ``max_pages`` pages; None when more are left (after
        reading ``max_pages`` pages: the caller then asks a cheaper way)."""
        fetch = self._fetch(path, key, params)
        last: list[ZohoPage] = []

        def remember(position: PageAfter) -> ZohoPage:
            last[:] = [fetch(position)]
            return last[0]

        rows = list(paginate(remember, PageAfter(1), vendor=VENDOR, what=f"GET {path}", max_pages=max_pages))
        # paginate stopped with a next page and rows on the last one read: max_pages cut the list short.
        return None if last and last[0].next is not None and last[0].items else rows

    # -- change notifications ------------------------------------------------------------------------

    NO_WEBHOOKS: ClassVar[str] = "Zoho Books has no webhooks; changes are polled"

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Always WebhookRejected(404): Zoho Books sends no signed webhooks; ``iter_customers_changed_since``
        and ``iter_invoices_changed_since`` are its change feed."""
        raise WebhookRejected(404, self.NO_WEBHOOKS)

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """Always WebhookRejected(404), as ``verify_webhook``."""
        raise WebhookRejected(404, self.NO_WEBHOOKS)

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Customer contacts (inactive too) modified at or after ``since``'s second, newest first, each read
        in full (list rows carry no persons or address).

        ``GET /contacts?filter_by=Status.All&sort_column=last_modified_time&sort_order=D``: Zoho has no
        modified-since filter for contacts, so the walk stops at the first row older than ``since``: the
        cost is the pages of changes plus one read per changed customer. Raises IntegrationError subclasses.
        """
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        floor = since.astimezone(UTC).replace(microsecond=0)
        params = {"filter_by": "Status.All", "sort_column": "last_modified_time", "sort_order": "D"}
        for row in self._pages("/contacts", "contacts", params):
            modified = parse_utc(row.get("last_modified_time"))
            if modified is not None and modified < floor:
                return
            if str(row.get("contact_type") or "customer") != "customer":
                continue
            contact = self._contact(str(row.get("contact_id") or ""))
            if contact is not None:
                yield self._to_customer(contact)

    # -- customers -----------------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        """``GET /contacts/{id}``; None when it does not exist, is inactive or is not a customer."""
        contact = self._contact(customer_id)
        if contact is None or str(contact.get("status", "active")) != "active":
            return None
        return self._to_customer(contact)

    def _contact(self, contact_id: str) -> dict[str, Any] | None:
        if not contact_id.strip():
            return None
        try:
            payload = self._call("GET", f"/contacts/{quote(contact_id, safe='')}")
        except NotFound:
            return None
        contact = payload.get("contact")
        return contact if isinstance(contact, dict) else None

    def _active_contacts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        query = {"filter_by": "Status.Active", **params}
        return list(self._pages("/contacts", "contacts", query))

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        """Active customers matching one criterion, each read in full (``GET /contacts/{id}``).

        number: ``cf_closeloop_ref=<number>``, and only contacts whose stamp (read in full) is that number
        are kept, as the filter is undocumented (GUESSES["custom_field_filter"]); tax number: Zoho has no
        filter for it, so every active contact is read (paged) and matched on the edition's tax field
        (``vat_reg_no``, ``gst_no``...); email: ``email=`` (the primary contact person's); name:
        ``contact_name_contains`` its longest significant word (candidates). Raises IntegrationError
        subclasses.
        """
        if number:
            rows = self._active_contacts({self.contact_ref_field: number})
            # Checked on the contact read in full: list rows may not carry the custom field.
            return [c for c in self._full([str(row.get("contact_id") or "") for row in rows]) if c.number == number]
        elif tax_number:  # no tax-number filter in Zoho: every active contact, matched here
            wanted = _norm_tax(tax_number)
            rows = [
                r for r in self._active_contacts({}) if _norm_tax(str(r.get(self.tax_number_field) or "")) == wanted
            ]
        elif email:
            rows = self._active_contacts({"email": email})
        elif name:
            rows = self._active_contacts({"contact_name_contains": _search_word(name)})
        else:
            return []
        return self._full([str(row.get("contact_id") or "") for row in rows])

    def _full(self, contact_ids: Collection[str]) -> list[AccountingCustomer]:
        """List rows carry no persons or address: the matches are read in full, as the sync compares them."""
        found: list[AccountingCustomer] = []
        for contact_id in dict.fromkeys(contact_ids):
            customer = self.get_customer(contact_id)
            if customer is not None:
                found.append(customer)
        return found

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        """Active customers matching any value, each read in full.

        Zoho filters take one value each, so one lookup per value costs ``len(values)`` calls. First one
        paged read of every active contact is tried, stopped after that many pages: a small organisation
        is matched locally from it; a larger one falls back to the per-value lookups (at most twice the
        cheaper cost). Raises IntegrationError subclasses.
        """
        lookups = [*(("number", v) for v in numbers), *(("tax", v) for v in tax_numbers)]
        lookups += [*(("email", v) for v in emails), *(("name", v) for v in names)]
        lookups = [(kind, value) for kind, value in dict.fromkeys(lookups) if value.strip()]
        if not lookups:
            return []
        rows = self._pages_within("/contacts", "contacts", {"filter_by": "Status.Active"}, max_pages=len(lookups))
        if rows is None:
            return self._lookup_each(lookups)
        wanted_numbers = {v for kind, v in lookups if kind == "number"}
        wanted_tax = {_norm_tax(v) for kind, v in lookups if kind == "tax"}
        wanted_emails = {v.casefold() for kind, v in lookups if kind == "email"}
        wanted_names = {_name_key(v) for kind, v in lookups if kind == "name"}
        hits = [
            str(row.get("contact_id") or "")
            for row in rows
            if _custom_field(row, self.contact_ref_field) in wanted_numbers
            or (_norm_tax(str(row.get(self.tax_number_field) or "")) or None) in wanted_tax
            or str(row.get("email") or "").casefold() in wanted_emails
            or _name_key(str(row.get("contact_name") or "")) in wanted_names
        ]
        return self._full(hits)

    def _lookup_each(self, lookups: Sequence[tuple[str, str]]) -> list[AccountingCustomer]:
        by_id: dict[str, AccountingCustomer] = {}
        for kind, value in lookups:
            criterion = {"number": "number", "tax": "tax_number", "email": "email", "name": "name"}[kind]
            for customer in self.find_customers(**{criterion: value}):
                by_id.setdefault(customer.id, customer)
        return list(by_id.values())

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        """Upsert by our number stamp: ``PUT /contacts`` with ``X-Unique-Identifier-Key: cf_closeloop_ref``,
        ``X-Unique-Identifier-Value: <number>`` and ``X-Upsert: true``, so a repeated create (a crash before
        the mapping was written) updates the contact it made instead of making a second one.

        Zoho has no idempotency key; ``idempotency_key`` is not sent. Raises Conflict when the name is
        taken by another contact (code 3062), ValidationFailed on other refusals.
        """
        body = self._contact_body(customer, None, set(CUSTOMER_FIELDS))
        payload = self._call(
            "PUT", "/contacts", body=body, headers=self._upsert_headers(self.contact_ref_field, number)
        )
        return self._to_customer(payload.get("contact") or {})

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        """One upsert per customer (Zoho has no bulk contact create); a record's own refusal is its result.

        A call-wide failure (rate limit, outage, auth) raises; the ones already made are upserts, so a
        retry of the whole batch does not duplicate them.
        """
        results: list[AccountingCustomer | FatalError] = []
        for customer, number in customers:
            try:
                results.append(self.create_customer(customer, number=number, idempotency_key=idempotency_key))
            except (ValidationFailed, Conflict, NotFound) as error:
                results.append(error)
        return results

    def update_customer(
        self,
        customer_id: str,
        customer: Customer,
        fields: Collection[str],
        *,
        number: str | None,
        idempotency_key: str,
    ) -> AccountingCustomer:
        """Write only ``fields`` (and ``number``): the contact is read first (``GET /contacts/{id}``) so a
        change to one person field or one address line keeps what finance entered in the others, then
        ``PUT /contacts/{id}``. Raises NotFound when the contact is gone, Conflict on a taken name."""
        current = self._contact(customer_id)
        if current is None:
            raise NotFound(f"Zoho contact {customer_id} does not exist", vendor=VENDOR, status=404)
        body = self._contact_body(customer, current, set(fields))
        if number:
            body["custom_fields"] = [{"api_name": self.contact_ref_field, "value": number}]
        if not body:
            return self._to_customer(current)
        payload = self._call("PUT", f"/contacts/{quote(customer_id, safe='')}", body=body)
        return self._to_customer(payload.get("contact") or {})

    @staticmethod
    def _upsert_headers(field: str, value: str) -> dict[str, str]:
        return {"X-Unique-Identifier-Key": field, "X-Unique-Identifier-Value": value, "X-Upsert": "true"}

    def _contact_body(self, customer: Customer, current: Mapping[str, Any] | None, fields: set[str]) -> dict[str, Any]:
        """The Zoho contact fields for the canonical ``fields``, merged into ``current`` (None: a create)."""
        body: dict[str, Any] = {}
        if "name" in fields:
            body["contact_name"] = customer.name
            if customer.ref.object_type == "company":
                body["company_name"] = customer.name
        if current is None:
            body["contact_type"] = "customer"
            body["customer_sub_type"] = "business" if customer.ref.object_type == "company" else "individual"
        if "tax_number" in fields:
            body[self.tax_number_field] = customer.tax_number
        if any(f.startswith("address.") for f in fields):
            old: Mapping[str, Any] = (current or {}).get("billing_address") or {}
            a = customer.address
            address = {
                "address": ("address.line1", a.line1),
                "street2": ("address.line2", a.line2),
                "city": ("address.city", a.city),
                "state": ("address.region", a.region),
                "zip": ("address.postal_code", a.postal_code),
                "country": ("address.country", a.country),
            }
            body["billing_address"] = {
                key: value if field in fields else str(old.get(key) or "") for key, (field, value) in address.items()
            }
        person_fields = {"first_name", "last_name", "email", "phone", "people"}
        if fields & person_fields:
            body["contact_persons"] = self._persons(customer, current, fields)
        return body

    def _persons(self, customer: Customer, current: Mapping[str, Any] | None, fields: set[str]) -> list[dict[str, Any]]:
        """The primary person's named fields from ``customer`` (the rest kept), and the CRM's other people
        when ``people`` is named (else the current ones kept). Existing persons keep their ids."""
        persons: list[Mapping[str, Any]] = list((current or {}).get("contact_persons") or [])
        old_primary: Mapping[str, Any] = next((p for p in persons if p.get("is_primary_contact")), {})
        primary: dict[str, Any] = {k: old_primary[k] for k in ("contact_person_id",) if old_primary.get(k)}
        for field, key, value in (
            ("first_name", "first_name", customer.first_name),
            ("last_name", "last_name", customer.last_name),
            ("email", "email", customer.email),
            ("phone", "phone", customer.phone),
        ):
            primary[key] = value if field in fields or not old_primary else str(old_primary.get(key) or "")
        primary["is_primary_contact"] = True
        others_now = [p for p in persons if not p.get("is_primary_contact")]
        if "people" in fields:
            by_email = {str(p.get("email") or "").casefold(): p for p in others_now if p.get("email")}
            others: list[dict[str, Any]] = []
            for person in sorted(customer.people, key=lambda p: p.crm_id)[: self.MAX_OTHER_PERSONS]:
                entry: dict[str, Any] = {
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                    "email": person.email,
                    "is_primary_contact": False,
                }
                known = by_email.get(person.email.casefold()) if person.email else None
                if known and known.get("contact_person_id"):
                    entry["contact_person_id"] = known["contact_person_id"]
                others.append(entry)
        else:
            others = [
                {k: p[k] for k in ("contact_person_id", "first_name", "last_name", "email", "phone") if k in p}
                | {"is_primary_contact": False}
                for p in others_now
            ]
        has_primary = any(primary.get(k) for k in ("first_name", "last_name", "email", "phone"))
        return ([primary] if has_primary or old_primary else []) + others

    def _to_customer(self, contact: Mapping[str, Any]) -> AccountingCustomer:
        """A Zoho contact (read in full) as the comparable canonical fields."""
        persons: list[Mapping[str, Any]] = list(contact.get("contact_persons") or [])
        primary: Mapping[str, Any] = next((p for p in persons if p.get("is_primary_contact")), {})
        address: Mapping[str, Any] = contact.get("billing_address") or {}
        people = ";".join(
            f"{p.get('first_name') or ''}|{p.get('last_name') or ''}|{str(p.get('email') or '').lower()}"
            for p in persons
            if not p.get("is_primary_contact")
        )
        email = str(primary.get("email") or contact.get("email") or "").lower()
        fields = {
            "name": str(contact.get("contact_name") or ""),
            "first_name": str(primary.get("first_name") or contact.get("first_name") or ""),
            "last_name": str(primary.get("last_name") or contact.get("last_name") or ""),
            "email": email,
            "phone": str(primary.get("phone") or contact.get("phone") or ""),
            "tax_number": str(contact.get(self.tax_number_field) or ""),
            "address.line1": str(address.get("address") or ""),
            "address.line2": str(address.get("street2") or ""),
            "address.city": str(address.get("city") or ""),
            "address.region": str(address.get("state") or ""),
            "address.postal_code": str(address.get("zip") or ""),
            "address.country": str(address.get("country") or ""),
            "people": people,
        }
        return AccountingCustomer(
            id=str(contact.get("contact_id") or ""),
            name=fields["name"],
            number=_custom_field(contact, self.contact_ref_field),
            email=email,
            tax_number=fields["tax_number"],
            status="ACTIVE" if str(contact.get("status", "active")) == "active" else "ARCHIVED",
            fields=fields,
        )

    # -- items ---------------------------------------------------------------------------------------

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """Active items whose ``sku`` is among ``codes`` (the item code is Zoho's SKU), keyed by the code
        asked for (matched case-insensitively).

        One paged read of the active items, stopped after as many pages as there are codes; a larger
        catalogue falls back to ``GET /items?sku=<code>`` per code. Raises IntegrationError subclasses.
        """
        asked: dict[str, list[str]] = {}
        for code in sorted({c for c in codes if c.strip()}):
            asked.setdefault(code.casefold(), []).append(code)
        if not asked:
            return {}
        rows = self._pages_within("/items", "items", {"filter_by": "Status.Active"}, max_pages=len(asked))
        if rows is None:
            rows = [row for group in asked.values() for row in self._item_rows(group[0])]
        found: dict[str, Item] = {}
        for row in rows:
            item = _to_item(row)
            for code in asked.get(item.code.casefold(), []):
                found[code] = item
                self._item_ids[code.casefold()] = str(row.get("item_id") or "")
        return found

    def _item_rows(self, code: str) -> list[dict[str, Any]]:
        """``GET /items?sku=<code>``: undocumented (GUESSES["sku_filter"]), so only rows with that SKU are kept."""
        rows = self._pages("/items", "items", {"sku": code})
        return [row for row in rows if str(row.get("sku") or "").casefold() == code.casefold()]

    # -- invoices ------------------------------------------------------------------------------------

    def find_invoice(self, reference: str) -> Invoice | None:
        """The live (not void) invoice made for the deal that ``reference`` names.

        ``GET /invoices?cf_closeloop_deal=<deal key>``: the deal key is the reference's first word, unique
        per deal and unchanged when the deal is renamed. The filter is undocumented
        (GUESSES["custom_field_filter"]): a row is trusted only when its own ``cf_closeloop_deal`` is the key
        (a row that does not show the field is read in full first), so an ignored filter finds nothing
        rather than another deal's invoice. Raises IntegrationError subclasses.
        """
        key = deal_key(reference)
        if not key:
            return None
        for row in list(self._pages("/invoices", "invoices", {self.invoice_ref_field: key})):
            if str(row.get("status") or "") == "void":
                continue
            shown = _custom_field(row, self.invoice_ref_field)
            if shown == key:
                return self._to_invoice(row)
            if not shown and self._invoice_deal_key(str(row.get("invoice_id") or "")) == key:
                return self._to_invoice(row)
        return None

    def _invoice_deal_key(self, invoice_id: str) -> str:
        """The deal key stamped on an invoice, read in full (``GET /invoices/{id}``); "" when none or gone."""
        if not invoice_id.strip():
            return ""
        try:
            payload = self._call("GET", f"/invoices/{quote(invoice_id, safe='')}")
        except NotFound:
            return ""
        row = payload.get("invoice")
        return _custom_field(row, self.invoice_ref_field) if isinstance(row, dict) else ""

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """``GET /invoices/{id}`` whatever its status; None when Zoho says it does not exist."""
        if not invoice_id.strip():
            return None
        try:
            payload = self._call("GET", f"/invoices/{quote(invoice_id, safe='')}")
        except NotFound:
            return None
        row = payload.get("invoice")
        return self._to_invoice(row) if isinstance(row, dict) else None

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        """Upsert the invoice by its deal key, then mark it sent when the draft says AUTHORISED.

        ``PUT /invoices`` with ``X-Unique-Identifier-Key: cf_closeloop_deal``, ``X-Unique-Identifier-Value:
        <deal key>``, ``X-Upsert: true``: a repeated create updates the invoice instead of adding one.
        Lines name ``item_id`` (resolved from the SKU), ``rate``, ``quantity``, ``discount`` (``"10%"``) and
        ``tax_id`` (the draft's tax type is the Zoho tax id); ``is_inclusive_tax`` follows the amounts type
        (NoTax sends no tax ids). An AUTHORISED draft is then ``POST /invoices/{id}/status/sent`` (Zoho's
        approved, awaiting payment). The invoice's currency is its customer's (a Zoho rule). Raises
        ValidationFailed with Zoho's message (unknown SKU, bad tax id...), other IntegrationErrors otherwise.
        """
        key = deal_key(draft.reference)
        if not key:
            raise ValidationFailed("the invoice reference names no deal", vendor=VENDOR)
        missing = [line.item_code for line in draft.lines if line.item_code.casefold() not in self._item_ids]
        if missing:
            self.get_items(missing)
        unknown = sorted({code for code in missing if code.casefold() not in self._item_ids})
        if unknown:
            raise ValidationFailed(f"Zoho Books has no active item with SKU {', '.join(unknown)}", vendor=VENDOR)
        body = self._invoice_body(draft, key)
        payload = self._call("PUT", "/invoices", body=body, headers=self._upsert_headers(self.invoice_ref_field, key))
        row = payload.get("invoice")
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the invoice but returned none", vendor=VENDOR)
        invoice = self._to_invoice(row)
        if draft.status == "AUTHORISED" and invoice.status == "DRAFT":
            self._call("POST", f"/invoices/{quote(invoice.id, safe='')}/status/sent")
            invoice = invoice.model_copy(update={"status": "AUTHORISED"})
        return invoice

    def _invoice_body(self, draft: InvoiceDraft, key: str) -> dict[str, Any]:
        return {
            "customer_id": draft.customer_id,
            "reference_number": draft.reference,
            "date": draft.issue_date.isoformat(),
            "due_date": draft.due_date.isoformat(),
            "is_inclusive_tax": draft.line_amount_types == "Inclusive",
            "discount_type": "item_level",
            "line_items": [self._line(line, draft.line_amount_types) for line in draft.lines],
            "custom_fields": [{"api_name": self.invoice_ref_field, "value": key}],
        }

    def _line(self, line: InvoiceLine, amounts: LineAmountTypes) -> dict[str, Any]:
        out: dict[str, Any] = {
            "item_id": self._item_ids[line.item_code.casefold()],
            "description": line.description,
            "quantity": line.quantity,
            "rate": line.unit_amount,
        }
        if line.discount_rate is not None:
            out["discount"] = f"{format(line.discount_rate, 'f')}%"
        if amounts != "NoTax" and line.tax_type and line.tax_type.upper() != "NONE":
            out["tax_id"] = line.tax_type
        return out

    def send_invoice(self, invoice_id: str) -> None:
        """``POST /invoices/{id}/email`` with Zoho's default template to the customer's contact persons.

        Zoho has no idempotency key, so the call is never repeated once sent (a second email is worse than
        none): only a connect error or a 429 is retried. Raises ValidationFailed when Zoho refuses (a draft,
        no contact email), Unanswered when the request was sent and no answer says whether Zoho emailed.
        """
        self._call("POST", f"/invoices/{quote(invoice_id, safe='')}/email", body={}, retry_sent=False)

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        """Invoices modified at or after ``since`` (every one when None), newest first, page by page.

        ``GET /invoices?last_modified_time=<since>&sort_column=last_modified_time&sort_order=D``: Zoho
        filters, so the cost is the pages of changes; the walk also stops at the first row older than
        ``since`` (should a filter be ignored). Zoho's times have whole seconds, so rows of ``since``'s own
        second are all kept: a change in that second is never lost, one already seen may come again.
        """
        params = {"sort_column": "last_modified_time", "sort_order": "D"}
        floor = None
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            floor = since.astimezone(UTC).replace(microsecond=0)
            params["last_modified_time"] = floor.strftime(self.TIME_FORMAT)
        for row in self._pages("/invoices", "invoices", params):
            invoice = self._to_invoice(row)
            if floor is not None and invoice.updated_at is not None and invoice.updated_at < floor:
                return
            yield invoice

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        """Invoices dated in [issued_from, issued_before), any status: ``date_start``/``date_end`` (inclusive)."""
        if issued_before <= issued_from:
            return
        params = {
            "date_start": issued_from.isoformat(),
            "date_end": (issued_before - timedelta(days=1)).isoformat(),
            "sort_column": "date",
            "sort_order": "A",
        }
        for row in self._pages("/invoices", "invoices", params):
            yield self._to_invoice(row)

    def _to_invoice(self, row: Mapping[str, Any]) -> Invoice:
        """A Zoho invoice (in full, or a list row) as the canonical Invoice."""
        invoice_id = str(row.get("invoice_id") or "")
        total = _decimal(row.get("total"))
        balance = _decimal(row.get("balance"))
        tax = _decimal(row.get("tax_total"))
        paid = row.get("payment_made")
        organization = self._organization_id()
        return Invoice(
            id=invoice_id,
            number=str(row.get("invoice_number") or ""),
            reference=str(row.get("reference_number") or ""),
            status=INVOICE_STATUSES.get(str(row.get("status") or "draft"), "AUTHORISED"),
            customer_id=str(row.get("customer_id") or ""),
            currency=str(row.get("currency_code") or ""),
            issue_date=parse_day(row.get("date")),
            due_date=parse_day(row.get("due_date")),
            sub_total=_decimal(row["sub_total"]) if row.get("sub_total") is not None else total - tax,
            total_tax=tax,
            total=total,
            amount_paid=_decimal(paid) if paid is not None else total - balance,
            amount_due=balance,
            last_payment_date=parse_day(row.get("last_payment_date")),
            url=(
                self.web_url + self.INVOICE_WEB_PATH.format(organization=organization, id=invoice_id)
                if invoice_id
                else ""
            ),
            updated_at=parse_utc(row.get("last_modified_time")),
        )


def deal_key(reference: str) -> str:
    """The deal part of an invoice reference: ``hubspot-deal-3000001`` of ``hubspot-deal-3000001 Big deal``."""
    parts = reference.split()
    return parts[0] if parts else ""


def _custom_field(record: Mapping[str, Any], api_name: str) -> str:
    """A custom field's value: from ``custom_fields`` by api_name, else the flattened ``cf_…`` keys."""
    for field in record.get("custom_fields") or []:
        if isinstance(field, Mapping) and field.get("api_name") == api_name:
            return str(field.get("value") or "")
    hashed: Mapping[str, Any] = record.get("custom_field_hash") or {}
    return str(hashed.get(api_name) or record.get(api_name) or "")


def _to_item(row: Mapping[str, Any]) -> Item:
    rate = row.get("rate")
    return Item(
        code=str(row.get("sku") or ""),
        name=str(row.get("name") or ""),
        unit_price=None if rate is None or rate == "" else _decimal(rate),
        account_code=str(row.get("account_id") or ""),
        tax_type=str(row.get("tax_id") or ""),
    )


def _norm_tax(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def _name_key(name: str) -> str:
    """Case, punctuation, "the" and legal suffixes ignored: a candidate key for a normalised-name match."""
    words = [w for w in re.findall(r"[\w']+", name.casefold().replace("&", " and ")) if w not in _LEGAL_WORDS]
    return " ".join(words)


def _search_word(name: str) -> str:
    """The longest significant word of a name, for ``contact_name_contains``."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in _LEGAL_WORDS]
    return max(words, key=len) if words else name


def _decimal(value: Any) -> Decimal:
    return to_decimal(value, who="Zoho", vendor=VENDOR)
