"""Xero adapter: OAuth2 with rotating refresh tokens, the Accounting API's Contacts, Xero's rate limits.

Vendor facts encoded here (Xero's OpenAPI spec v16 and developer docs):
- every call carries ``Authorization: Bearer`` and ``xero-tenant-id``; access tokens live 30 minutes;
  refresh tokens rotate on each refresh and are single-use (see closeloop.oauth for the lease around it);
- ``PUT /Contacts`` creates, ``POST /Contacts/{ContactID}`` updates only the fields sent; contact names and
  ContactNumbers are unique, a duplicate is a 400 ValidationException; ContactNumber is "used to identify
  contacts in external systems", so it carries our CRM key and finds a contact created before a crash;
- ``Idempotency-Key`` (≤128 chars) on every create/update;
- 429 says which limit was hit in ``X-Rate-Limit-Problem``: a minute or concurrency limit is worth
  waiting ``Retry-After`` for, the daily limit is not (the queue retries much later);
- sales invoices are ``Type=ACCREC``: ``PUT /Invoices`` creates, ``unitdp=4`` keeps unit amounts at 4 dp
  (2 otherwise), Xero rounds tax per line to the cent; ``POST /Invoices/{id}/Email`` (204) emails an
  authorised one; money is a JSON number, so bodies are written with the exact decimal literal and answers
  read with ``parse_float=Decimal``; dates come as .NET ``/Date(ms+0000)/`` (plus an ISO ``…String`` twin);
- lists page only when ``page`` is given (100 a page, with line items); ``If-Modified-Since`` takes a UTC
  ``yyyy-mm-ddThh:mm:ss`` (no fraction), so it is floored to the second and the rest filtered here;
- webhooks (xero-webhooks.yaml, developer.xero.com webhooks guide): ``x-xero-signature`` is
  base64(HMAC-SHA256(webhook key, raw body)); a body is ``{events[], firstEventSequence, lastEventSequence,
  entropy}``, each event ``resourceId``, ``eventCategory`` (CONTACT, INVOICE, CREDITNOTE, SUBSCRIPTION),
  ``eventType`` CREATE|UPDATE (archiving is an UPDATE), ``eventDateUtc`` (UTC without an offset) and
  ``tenantId``: events carry ids only. The "intent to receive" check is a delivery with no events, signed
  right or wrong, that must get 200 or 401 with an empty body. There are no payment webhooks: a payment
  shows as an INVOICE UPDATE (GUESSES["payment_updates_invoice"]), and the If-Modified-Since polls catch the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal, cast
from urllib.parse import quote

import httpx

from closeloop.dates import parse_timestamp
from closeloop.errors import ConfigurationError, Conflict, FatalError, ValidationFailed, WebhookRejected
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
    AccountingCustomer,
    AccountingEvent,
    AccountingResource,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    customer_fields,
)
from closeloop.oauth import RefreshingTokens, TokenEndpoint, TokenGrant
from closeloop.paging import Page, next_page, paginate
from closeloop.ports import WebhookRequest
from closeloop.wire import dumps_exact, hmac_base64_matches, read_decimal_object, to_decimal, webhook_json

API_PREFIX = "/api.xro/2.0"
MAX_CONTACT_PERSONS = 5
#: Xero's duplicate-name/number/code messages (GUESSES["duplicate_contact_number_message"] for the number).
_DUPLICATE = re.compile(r"already (assigned to another contact|exists)|must be unique", re.IGNORECASE)


def xero_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Xero's 429: retry minute/concurrent limits after Retry-After; the daily limit is not worth waiting for.

    The header's values: GUESSES["rate_limit_problem_values"].
    """
    verdict = retry_after_header(response)
    problem = response.headers.get("x-rate-limit-problem", "").lower()
    problem = {"daily": "day"}.get(problem, problem)  # both spellings are reported
    return RateLimitVerdict(retry=problem != "day", retry_after=verdict.retry_after, problem=problem)


def xero_fault(response: httpx.Response) -> Fault | None:
    """What a Xero error body says: the ``ValidationErrors`` messages of a ValidationException's
    ``Elements`` (else its ``Message``), or a problem-details ``Detail`` (an Idempotency-Key reused for another
    request: GUESSES["idempotency_replay"]); a duplicate name or number is a Conflict. None for a body with
    neither (Xero's 404 is a plain-text page)."""
    try:
        payload = json.loads(response.text)
    except ValueError:  # not JSON: the messages Xero's shape would carry, if any
        messages = re.findall(r'"Message"\s*:\s*"([^"]*)"', response.text)
        return _validation_fault(messages) if messages else None
    if not isinstance(payload, dict):
        return None
    messages = [message for element in payload.get("Elements") or [] for message in _element_messages(element)]
    messages = messages or [str(payload.get(key)) for key in ("Message", "Detail") if payload.get(key)][:1]
    code = str(payload.get("Type") or payload.get("Title") or "")
    return _validation_fault(messages, code) if messages or code else None


def element_fault(element: Mapping[str, Any]) -> Fault | None:
    """The refusal of one element of a ``summarizeErrors=false`` batch answered 200 (None: it was saved): its
    ValidationErrors, a Conflict when they name a duplicate, else a ValidationFailed."""
    if not element.get("HasValidationErrors") and element.get("StatusAttributeString", "OK") != "ERROR":
        return None
    fault = _validation_fault(_element_messages(element))
    return fault if fault.error is not None else Fault(fault.message, fault.code, ValidationFailed)


def _element_messages(element: Mapping[str, Any]) -> list[str]:
    return [str(error.get("Message", "")) for error in element.get("ValidationErrors") or []]


def _validation_fault(messages: Sequence[str], code: str = "") -> Fault:
    duplicate = any(_DUPLICATE.search(message) for message in messages)
    return Fault("; ".join(messages) or "validation error", code, Conflict if duplicate else None)


#: Re-sending a refresh token whose answer was lost is safe for this long. Xero's OAuth FAQ
#: (developer.xero.com/faq/oauth2, quoted in /work/shared/vendors/accounting.md §1 and reliability.md §4): refresh
#: tokens rotate and are single-use, but "if … you don't receive the response you can retry refreshing your existing
#: refresh token for a grace period of 30 minutes". Our sandbox answers such a replay with the same new token set.
REFRESH_RESEND_WITHIN_SECONDS = 30 * 60.0


#: Xero's token endpoint (identity.xero.com/connect/token): HTTP Basic client authentication, and a new refresh
#: token in every answer (single-use, rotating).
TOKEN_ENDPOINT = TokenEndpoint(
    vendor="xero",
    label="Xero",
    client="xero-identity",
    path="/connect/token",
    reconnect="reconnect with `closeloop connect xero`",
    default_expires_in=1800.0,
    rotates=True,
)


def refresh_with_identity(
    identity_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Xero's token endpoint.

    Never re-sends a POST that may have reached Xero (Unanswered: RefreshingTokens decides, within the grace
    period above). Raises AuthRevoked on ``invalid_grant``, FatalError on any other refusal.
    """
    return TOKEN_ENDPOINT.refresher(identity_url, client_id, client_secret, transport=transport)


@dataclass(frozen=True)
class PageAfter:
    """Where a ``page=N`` list goes on: page ``number``, after the page whose row ids were ``after``.

    Two positions are the same when they follow the same rows (``number`` is not compared): a server that
    ignores ``page`` hands back the rows just read, so the position after them repeats and ``paginate``
    refuses it instead of reading the same page for ever.
    """

    number: int = dataclass_field(compare=False)
    after: tuple[str, ...]

    def __repr__(self) -> str:
        return f"page {self.number} (after the same {len(self.after)} rows again)"


def _quote(value: str) -> str:
    """A string literal for Xero's ``where`` (Dynamic LINQ: a double quote is written twice)."""
    return '"' + value.replace('"', '""') + '"'


class XeroAccounting:
    """AccountingPort for Xero."""

    name = "xero"
    PAGE_SIZE: ClassVar[int] = 100
    #: Where a person opens an invoice: Xero's web app, not the API host.
    WEB_URL: ClassVar[str] = "https://go.xero.com"
    INVOICE_WEB_PATH: ClassVar[str] = "/AccountsReceivable/View.aspx?InvoiceID={id}"
    SALES_INVOICE_TYPE: ClassVar[str] = "ACCREC"
    #: A reference lookup skips VOIDED and DELETED invoices: a voided invoice may be re-made for the deal.
    LIVE_INVOICE_STATUSES: ClassVar[tuple[str, ...]] = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID")
    #: ``where=Code=="A"||…`` lookups per call, so the URL stays well under proxies' limits.
    ITEM_CODES_PER_CALL: ClassVar[int] = 50
    #: ``unitdp=4``: unit prices and amounts at 4 decimal places (Xero rounds them to 2 otherwise).
    UNIT_DECIMALS: ClassVar[str] = "4"
    #: Xero reads If-Modified-Since as a UTC timestamp without a fraction of a second
    #: (GUESSES["if_modified_since_format"]).
    MODIFIED_SINCE_FORMAT: ClassVar[str] = "%Y-%m-%dT%H:%M:%S"
    IDEMPOTENCY_KEY_MAX: ClassVar[int] = 128
    #: Elements per ``PUT``: Xero recommends batches of up to 50.
    BATCH_SIZE: ClassVar[int] = 50
    #: Page size of a whole-organisation read (Xero's maximum).
    BULK_PAGE_SIZE: ClassVar[int] = 1000
    #: Longest ``where`` of an OR-ed lookup: the URL stays under common proxy limits (about 8 KB).
    WHERE_MAX_CHARS: ClassVar[int] = 2500
    #: Webhook eventCategory -> the resource it is about; other categories are not followed.
    WEBHOOK_RESOURCES: ClassVar[Mapping[str, AccountingResource]] = {
        "CONTACT": "customer",
        "INVOICE": "invoice",
    }
    WEBHOOK_KINDS: ClassVar[Mapping[str, Literal["created", "changed"]]] = {"CREATE": "created", "UPDATE": "changed"}
    SIGNATURE_HEADER: ClassVar[str] = "x-xero-signature"
    #: Per tenant: 60 calls in any rolling minute, 5 in flight (developer.xero.com/faq/limits; the daily
    #: 5,000 is left to the 429's X-Rate-Limit-Problem: day).
    RATE_LIMIT: ClassVar[RateLimit] = RateLimit(per_minute=60, concurrent=5)

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        tenant_id: Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        webhook_key: Callable[[], str] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``webhook_key``: the key Xero's developer portal shows for the app's webhook (XERO_WEBHOOK_KEY);
        ``pacer``: the tenant's shared call budget (``RATE_LIMIT``; see closeloop.pacing)."""
        kwargs: dict[str, Any] = {"transport": transport}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self._tenant_id = tenant_id
        self._webhook_key = webhook_key
        self.http = VendorHttp(
            self.name,
            base_url.rstrip("/") + API_PREFIX,
            auth=TokenAuth(tokens, prepare=lambda request: request.headers.update({"xero-tenant-id": tenant_id()})),
            rate_limit=xero_rate_limit,
            read_fault=xero_fault,
            request_id_header="xero-correlation-id",
            pacer=pacer,
            **kwargs,
        )

    # -- change notifications ----------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """``x-xero-signature`` must be base64(HMAC-SHA256(webhook key, raw body)), compared in constant time.

        Raises WebhookRejected(401) when it is missing or wrong (the intent-to-receive check expects exactly
        that), ConfigurationError when XERO_WEBHOOK_KEY is not set. Nothing of the body is parsed.
        """
        key = self._webhook_key() if self._webhook_key is not None else ""
        if not key:
            raise ConfigurationError("XERO_WEBHOOK_KEY is not set", vendor=self.name)
        sent = next((v for k, v in request.headers.items() if k.lower() == self.SIGNATURE_HEADER), "").strip()
        if not hmac_base64_matches(key, request.body, sent):
            raise WebhookRejected(401, "missing or wrong x-xero-signature for this webhook key")

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """The CONTACT and INVOICE events of our tenant (others are dropped); ``[]`` for intent-to-receive.

        The dedupe key is built from the event's own fields (category, resource, type, time), so a
        redelivered batch gives the same keys (GUESSES["webhook_event_identity"]). Raises WebhookRejected(400)
        naming what is malformed.
        """
        payload = _webhook_object(body)
        events = payload.get("events")
        if not isinstance(events, list):
            raise WebhookRejected(400, "events: expected a list (a Xero webhook payload)")
        tenant = self._tenant_id().strip().lower()
        found: list[AccountingEvent] = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise WebhookRejected(400, f"events[{index}]: expected an object")
            for key in ("resourceId", "eventCategory", "eventType", "eventDateUtc", "tenantId"):
                if not isinstance(event.get(key), str) or not event[key].strip():
                    raise WebhookRejected(400, f"events[{index}].{key}: Field required")
            occurred = parse_xero_datetime(event["eventDateUtc"])
            if occurred is None:
                raise WebhookRejected(400, f"events[{index}].eventDateUtc: not a date-time")
            resource = self.WEBHOOK_RESOURCES.get(event["eventCategory"].upper())
            if resource is None or event["tenantId"].strip().lower() != tenant:
                continue
            resource_id = event["resourceId"].strip().lower()
            event_type = event["eventType"].upper()
            occurred = occurred.astimezone(UTC)
            found.append(
                AccountingEvent(
                    system=self.name,
                    resource=resource,
                    resource_id=resource_id,
                    kind=self.WEBHOOK_KINDS.get(event_type, "other"),
                    occurred_at=occurred,
                    dedupe_key=f"{self.name}:{resource}:{resource_id}:{event_type.lower()}:{occurred.isoformat()}",
                )
            )
        return found

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Contacts (archived too) modified at or after ``since``, lazily, page by page.

        ``GET /Contacts?includeArchived=true&page=N`` with ``If-Modified-Since``: Xero filters, so the calls
        are 1 + the number of full pages of changed contacts. Rows of ``since``'s second but before it are
        dropped here (the header has whole seconds). Raises IntegrationError subclasses.
        """
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        headers = {"If-Modified-Since": since.strftime(self.MODIFIED_SINCE_FORMAT)}
        for row in self._rows("/Contacts", "Contacts", "ContactID", {"includeArchived": "true"}, headers):
            updated = _xero_datetime(row, "UpdatedDateUTC")
            if updated is None or updated >= since:
                yield to_customer(row)

    def _rows(
        self,
        path: str,
        collection: str,
        id_field: str,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a paged list (JSON numbers as Decimal), PAGE_SIZE per call, until a short page.

        A page repeating the previous one (a server ignoring ``page``) would loop for ever: ``PageAfter``
        makes it a repeated position, which ``paginate`` refuses (PagingLoop).
        """

        def fetch(at: PageAfter) -> Page[dict[str, Any], PageAfter]:
            query = {**params, "page": str(at.number), "pageSize": str(self.PAGE_SIZE)}
            response = self.http.request("GET", path, params=query, headers=headers)
            rows: list[dict[str, Any]] = _read_json(response).get(collection) or []
            following = PageAfter(at.number + 1, tuple(str(row.get(id_field, "")) for row in rows))
            return Page(rows, following if len(rows) >= self.PAGE_SIZE else None)

        return paginate(fetch, PageAfter(1, ()), vendor=self.name, what=f"GET {path}")

    # -- reads -------------------------------------------------------------------------------------

    def _contacts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return list(self._rows("/Contacts", "Contacts", "ContactID", params))

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        contacts = self._contacts({"IDs": customer_id})
        active = [c for c in contacts if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]
        return to_customer(active[0]) if active else None

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        if number:
            contacts = self._contacts({"where": f"ContactNumber=={_quote(number)}"})
        elif tax_number:
            contacts = self._contacts({"where": f"TaxNumber=={_quote(tax_number)}"})
        elif email:
            wanted = email.lower()
            contacts = [
                c for c in self._contacts({"searchTerm": email}) if str(c.get("EmailAddress", "")).lower() == wanted
            ]
        elif name:
            contacts = self._contacts({"searchTerm": _search_word(name)})
        else:
            return []
        return [to_customer(c) for c in contacts if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        """Candidates for many customers: OR-ed ``where`` filters, or one paged read when that is cheaper.

        A large page (1,000) of every active contact says, in its ``pagination``, how many pages the whole
        organisation takes; when that is fewer calls than the filters need, the rest is read instead.
        """
        clauses = [f"ContactNumber=={_quote(v)}" for v in sorted(set(numbers)) if v]
        clauses += [f"TaxNumber=={_quote(v)}" for v in sorted(set(tax_numbers)) if v]
        clauses += [f"EmailAddress=={_quote(v.lower())}" for v in sorted({e.lower() for e in emails}) if v]
        clauses += [f"Name.Contains({_quote(w)})" for w in sorted({_search_word(n) for n in names if n.strip()})]
        queries = _or_queries(clauses, self.WHERE_MAX_CHARS)
        if not queries:
            return []
        rows: list[dict[str, Any]] = []
        if len(queries) > 1:
            first = self._all_active_page(1)
            pages = int((first.get("pagination") or {}).get("pageCount") or 1)
            if pages - 1 < len(queries):

                def fetch(number: int) -> Page[dict[str, Any], int]:
                    payload = first if number == 1 else self._all_active_page(number)
                    return Page(payload.get("Contacts") or [], next_page(number, more=number < pages))

                return [to_customer(c) for c in paginate(fetch, 1, vendor=self.name, what="GET /Contacts")]
        for where in queries:
            rows.extend(self._contacts({"where": f'ContactStatus=="ACTIVE"&&({where})'}))
        unique = {str(c.get("ContactID")): c for c in rows}
        return [to_customer(c) for c in unique.values() if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def _all_active_page(self, page: int) -> dict[str, Any]:
        """Page ``page`` of every active contact, BULK_PAGE_SIZE a page (its ``pagination`` says how many)."""
        params = {"where": 'ContactStatus=="ACTIVE"', "page": str(page), "pageSize": str(self.BULK_PAGE_SIZE)}
        return _read_json(self.http.request("GET", "/Contacts", params=params))

    # -- writes ------------------------------------------------------------------------------------

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        """``PUT /Contacts`` with up to 50 contacts a call; ``summarizeErrors=false`` keeps each one's error."""
        results: list[AccountingCustomer | FatalError] = []
        for start in range(0, len(customers), self.BATCH_SIZE):
            chunk = customers[start : start + self.BATCH_SIZE]
            body = {
                "Contacts": [
                    {"ContactNumber": number, **to_xero(customer, customer_fields(customer).keys())}
                    for customer, number in chunk
                ]
            }
            response = self.http.request(
                "PUT",
                "/Contacts",
                params={"summarizeErrors": "false"},
                json=body,
                # Per chunk and content: a retried batch that now holds fewer contacts is a new request
                # (GUESSES["idempotency_replay"]).
                headers={"Idempotency-Key": _chunk_key(idempotency_key, body, self.IDEMPOTENCY_KEY_MAX)},
            )
            rows = response.json().get("Contacts") or []
            if len(rows) != len(chunk):
                raise FatalError(f"Xero answered {len(rows)} contacts for {len(chunk)} sent", vendor=self.name)
            request_id = response.headers.get("xero-correlation-id")
            for index, row in enumerate(rows, start=start + 1):
                fault = element_fault(row)
                if fault is None:
                    results.append(to_customer(row))
                else:  # 400: what Xero answers the same refusal of a contact sent alone
                    what = f"PUT /Contacts: contact {index} of {len(customers)}"
                    error = typed_error(400, fault, what, vendor=self.name, request_id=request_id)
                    # element_fault names Conflict or ValidationFailed, both FatalErrors
                    results.append(cast(FatalError, error))
        return results

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        body = {"ContactNumber": number, **to_xero(customer, customer_fields(customer).keys())}
        return self._write("PUT", "/Contacts", body, idempotency_key)

    def update_customer(
        self,
        customer_id: str,
        customer: Customer,
        fields: Collection[str],
        *,
        number: str | None,
        idempotency_key: str,
    ) -> AccountingCustomer:
        body: dict[str, Any] = {"ContactID": customer_id, **to_xero(customer, fields)}
        if number:
            body["ContactNumber"] = number
        return self._write("POST", f"/Contacts/{customer_id}", body, idempotency_key)

    def _write(self, method: str, path: str, contact: dict[str, Any], idempotency_key: str) -> AccountingCustomer:
        response = self.http.request(
            method,
            path,
            params={"summarizeErrors": "true"},
            json={"Contacts": [contact]},
            headers={"Idempotency-Key": idempotency_key[:128]},
        )
        return to_customer((response.json().get("Contacts") or [{}])[0])

    # -- items and invoices ------------------------------------------------------------------------

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """The items among ``codes``, keyed by the code asked for (Xero matches codes case-insensitively:
        GUESSES["item_code_case"]).

        ``GET /Items?where=Code=="A"||Code=="B"&unitdp=4``, ITEM_CODES_PER_CALL codes per call; absent codes
        are simply missing from the answer. Raises IntegrationError subclasses.
        """
        asked: dict[str, list[str]] = {}
        for code in sorted({c for c in codes if c.strip()}):
            asked.setdefault(code.casefold(), []).append(code)
        wanted = [code for group in asked.values() for code in group]
        found: dict[str, Item] = {}
        for start in range(0, len(wanted), self.ITEM_CODES_PER_CALL):
            chunk = wanted[start : start + self.ITEM_CODES_PER_CALL]
            where = "||".join(f"Code=={_quote(code)}" for code in chunk)
            response = self.http.request("GET", "/Items", params={"where": where, "unitdp": self.UNIT_DECIMALS})
            for row in _read_json(response).get("Items") or []:
                item = to_item(row)
                for code in asked.get(item.code.casefold(), []):
                    found[code] = item
        return found

    def find_invoice(self, reference: str) -> Invoice | None:
        """The first live (not VOIDED/DELETED) sales invoice whose Reference equals ``reference``, or None.

        ``GET /Invoices?where=Type=="ACCREC"&&Reference=="…"&Statuses=DRAFT,SUBMITTED,AUTHORISED,PAID&page=1``.
        Raises IntegrationError subclasses.
        """
        params = {
            "where": f"{self._sales_where()}&&Reference=={_quote(reference)}",
            "Statuses": ",".join(self.LIVE_INVOICE_STATUSES),
            "page": "1",
        }
        rows = _read_json(self.http.request("GET", "/Invoices", params=params)).get("Invoices") or []
        return self._to_invoice(rows[0]) if rows else None

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """One invoice by id (``GET /Invoices/{id}``), whatever its status; None when Xero answers 404.

        Raises IntegrationError subclasses.
        """
        if not invoice_id.strip():
            return None
        response = self.http.request("GET", f"/Invoices/{quote(invoice_id, safe='')}", ok=(200, 404))
        if response.status_code == 404:  # Xero's 404 is a plain-text page, not JSON
            return None
        rows = _read_json(response).get("Invoices") or []
        return self._to_invoice(rows[0]) if rows else None

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        """Create the sales invoice exactly as drafted and return it as Xero computed it (totals, number).

        ``PUT /Invoices?summarizeErrors=true&unitdp=4`` with ``Idempotency-Key``; the body's numbers are the
        draft's decimals written literally. Raises ValidationFailed listing Xero's (redacted) messages on a
        400 ValidationException (e.g. an unknown item code), other IntegrationError subclasses otherwise.
        """
        body = dumps_exact({"Invoices": [to_xero_invoice(draft, self.SALES_INVOICE_TYPE)]})
        response = self.http.request(
            "PUT",
            "/Invoices",
            params={"summarizeErrors": "true", "unitdp": self.UNIT_DECIMALS},
            content=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = _read_json(response).get("Invoices") or []
        if not rows:
            raise FatalError("Xero accepted the invoice but returned none", vendor=self.name, status=200)
        return self._to_invoice(rows[0])

    def send_invoice(self, invoice_id: str) -> None:
        """Have Xero email the (authorised) invoice to its contact: ``POST /Invoices/{id}/Email`` → 204.

        The Idempotency-Key is derived from the invoice, so a retry within Xero's 6-minute window sends one
        email, not two; still, the call is never repeated once sent (the key's window is short and a
        second email is worse than none): only a connect error or a 429 is retried. Raises
        ValidationFailed when Xero refuses (e.g. not authorised, no contact email), Unanswered when the
        request was sent and no answer says whether Xero emailed it.
        """
        self.http.request(
            "POST",
            f"/Invoices/{quote(invoice_id, safe='')}/Email",
            content=b"{}",  # the spec's RequestEmpty body
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": f"closeloop-email-{invoice_id}"[: self.IDEMPOTENCY_KEY_MAX],
            },
            ok=(200, 204),
            retry_sent=False,
        )

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        """Sales invoices modified at or after ``since`` (every one when None), lazily, page by page.

        ``GET /Invoices?where=Type=="ACCREC"&page=N`` with ``If-Modified-Since``: Xero filters, so the calls
        are 1 + the number of full pages of changed invoices. The header has whole seconds only, so rows
        from the same second but before ``since`` are dropped here. Raises IntegrationError subclasses.
        """
        headers: dict[str, str] | None = None
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            headers = {"If-Modified-Since": since.astimezone(UTC).strftime(self.MODIFIED_SINCE_FORMAT)}
        for invoice in self._invoice_pages(self._sales_where(), headers):
            if since is None or invoice.updated_at is None or invoice.updated_at >= since:
                yield invoice

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        """Sales invoices dated in [issued_from, issued_before), any status, lazily, page by page.

        ``GET /Invoices?where=Type=="ACCREC"&&Date>=DateTime(y,m,d)&&Date<DateTime(y,m,d)&page=N``.
        Raises IntegrationError subclasses.
        """
        where = (
            f"{self._sales_where()}&&Date>={_datetime_literal(issued_from)}&&Date<{_datetime_literal(issued_before)}"
        )
        yield from self._invoice_pages(where)

    def _sales_where(self) -> str:
        return f"Type=={_quote(self.SALES_INVOICE_TYPE)}"

    def _invoice_pages(self, where: str, headers: Mapping[str, str] | None = None) -> Iterator[Invoice]:
        """Every invoice matching ``where``, page by page (``_rows``)."""
        for row in self._rows("/Invoices", "Invoices", "InvoiceID", {"where": where}, headers):
            yield self._to_invoice(row)

    def _to_invoice(self, row: Mapping[str, Any]) -> Invoice:
        """A Xero Invoice (JSON read with Decimal numbers) as the canonical Invoice."""
        invoice_id = str(row.get("InvoiceID") or "")
        contact: Mapping[str, Any] = row.get("Contact") or {}
        updated = _xero_datetime(row, "UpdatedDateUTC")
        return Invoice(
            id=invoice_id,
            number=str(row.get("InvoiceNumber") or ""),
            reference=str(row.get("Reference") or ""),
            status=str(row.get("Status") or "DRAFT"),
            customer_id=str(contact.get("ContactID") or ""),
            currency=str(row.get("CurrencyCode") or ""),
            issue_date=_xero_date(row, "Date"),
            due_date=_xero_date(row, "DueDate"),
            sub_total=_decimal(row.get("SubTotal")),
            total_tax=_decimal(row.get("TotalTax")),
            total=_decimal(row.get("Total")),
            amount_paid=_decimal(row.get("AmountPaid")),
            amount_due=_decimal(row.get("AmountDue")),
            last_payment_date=_last_payment_date(row),
            url=self.WEB_URL + self.INVOICE_WEB_PATH.format(id=quote(invoice_id, safe="")) if invoice_id else "",
            updated_at=updated.astimezone(UTC) if updated else None,
        )


def _webhook_object(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object, or WebhookRejected(400) saying why it is not one."""
    payload = webhook_json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "expected a JSON object with an 'events' list")
    return payload


_NET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_xero_datetime(value: Any) -> datetime | None:
    """A Xero timestamp, or None when absent or unreadable.

    .NET JSON ``/Date(1573755038314+0000)/`` is milliseconds since the epoch in UTC (the offset only says
    which zone wrote it); ISO 8601 keeps its own offset, a naive one is UTC.
    """
    match = _NET_DATE.match(value.strip()) if isinstance(value, str) else None
    if match:
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    return parse_timestamp(value)


def _xero_datetime(row: Mapping[str, Any], key: str) -> datetime | None:
    """``row[key]`` (.NET or ISO), else its ISO twin ``row[key + "String"]``."""
    return parse_xero_datetime(row.get(key)) or parse_xero_datetime(row.get(f"{key}String"))


def _xero_date(row: Mapping[str, Any], key: str) -> date | None:
    stamp = _xero_datetime(row, key)
    return stamp.date() if stamp else None


def _last_payment_date(row: Mapping[str, Any]) -> date | None:
    """The latest live payment's date, else FullyPaidOnDate."""
    days = [
        day
        for payment in row.get("Payments") or []
        if str(payment.get("Status") or "AUTHORISED") != "DELETED" and (day := _xero_date(payment, "Date"))
    ]
    return max(days) if days else _xero_date(row, "FullyPaidOnDate")


def _datetime_literal(day: date) -> str:
    """A date for ``where`` (Dynamic LINQ): ``DateTime(2024, 01, 31)``, midnight UTC."""
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


#: Canonical InvoiceLine field -> Xero LineItem field, each sent only when set.
LINE_FIELDS: tuple[tuple[str, str], ...] = (
    ("item_code", "ItemCode"),
    ("description", "Description"),
    ("quantity", "Quantity"),
    ("unit_amount", "UnitAmount"),
    ("tax_type", "TaxType"),
    ("account_code", "AccountCode"),
    ("discount_rate", "DiscountRate"),
)


def to_xero_line(line: InvoiceLine) -> dict[str, Any]:
    """One Xero LineItem: the fields of ``line`` that are set (Decimals kept for ``dumps_exact``)."""
    values = ((xero, getattr(line, field)) for field, xero in LINE_FIELDS)
    return {xero: value for xero, value in values if value is not None and value != ""}


def to_xero_invoice(draft: InvoiceDraft, invoice_type: str) -> dict[str, Any]:
    """A Xero Invoice body for ``draft``: every value decided by the draft, none left to Xero's defaults."""
    body: dict[str, Any] = {
        "Type": invoice_type,
        "Contact": {"ContactID": draft.customer_id},
        "LineItems": [to_xero_line(line) for line in draft.lines],
        "LineAmountTypes": draft.line_amount_types,
        "Status": draft.status,
        "Date": draft.issue_date.isoformat(),
        "DueDate": draft.due_date.isoformat(),
        "CurrencyCode": draft.currency,
        "Reference": draft.reference,
    }
    if draft.url:
        body["Url"] = draft.url  # shown in Xero as "Go to …": the way back to the CRM deal
    return body


def to_item(row: Mapping[str, Any]) -> Item:
    """A Xero Item with its sales defaults (price as Decimal, None when the item has none)."""
    sales: Mapping[str, Any] = row.get("SalesDetails") or {}
    price = sales.get("UnitPrice")
    return Item(
        code=str(row.get("Code") or ""),
        name=str(row.get("Name") or ""),
        unit_price=None if price is None else _decimal(price),
        account_code=str(sales.get("AccountCode") or ""),
        tax_type=str(sales.get("TaxType") or ""),
    )


_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def _chunk_key(key: str, body: Mapping[str, Any], limit: int) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{key[: limit - len(digest) - 1]}-{digest}"


def _or_queries(clauses: Sequence[str], max_chars: int) -> list[str]:
    """``clauses`` joined with ``||`` into as few ``where`` expressions as fit ``max_chars`` once URL-encoded."""
    queries: list[str] = []
    current: list[str] = []
    size = 0
    for clause in clauses:
        cost = len(quote(clause, safe="")) + 6
        if current and size + cost > max_chars:
            queries.append("||".join(current))
            current, size = [], 0
        current.append(clause)
        size += cost
    if current:
        queries.append("||".join(current))
    return queries


def _search_word(name: str) -> str:
    """The longest significant word of a name: Xero's searchTerm is a substring match."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in _LEGAL_WORDS]
    return max(words, key=len) if words else name


def to_xero(customer: Customer, fields: Collection[str]) -> dict[str, Any]:
    """The Xero Contact fields for the named canonical ``fields`` of ``customer``."""
    wanted = set(fields)
    body: dict[str, Any] = {}
    simple = {
        "name": ("Name", customer.name),
        "first_name": ("FirstName", customer.first_name),
        "last_name": ("LastName", customer.last_name),
        "email": ("EmailAddress", customer.email),
        "tax_number": ("TaxNumber", customer.tax_number),
    }
    for field, (xero_name, value) in simple.items():
        if field in wanted:
            body[xero_name] = value
    if "phone" in wanted:
        body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": customer.phone}]
    if any(f.startswith("address.") for f in wanted):
        a = customer.address
        body["Addresses"] = [
            {
                "AddressType": "STREET",
                "AddressLine1": a.line1,
                "AddressLine2": a.line2,
                "City": a.city,
                "Region": a.region,
                "PostalCode": a.postal_code,
                "Country": a.country,
            }
        ]
    if "people" in wanted:
        body["ContactPersons"] = [
            {"FirstName": p.first_name, "LastName": p.last_name, "EmailAddress": p.email, "IncludeInEmails": True}
            for p in sorted(customer.people, key=lambda p: p.crm_id)[:MAX_CONTACT_PERSONS]
        ]
    return body


def to_customer(contact: Mapping[str, Any]) -> AccountingCustomer:
    """A Xero Contact as the comparable canonical fields."""
    phones = contact.get("Phones") or []
    phone: Mapping[str, Any] = next((p for p in phones if p.get("PhoneType") == "DEFAULT"), {})
    addresses = contact.get("Addresses") or []
    # The address with any content (a city and a country alone count), the STREET one first: Xero also
    # returns an empty POBOX address on every contact.
    _parts = ("AddressLine1", "AddressLine2", "City", "Region", "PostalCode", "Country")
    filled = [a for a in addresses if any(a.get(k) for k in _parts)]
    street = [a for a in filled if a.get("AddressType") == "STREET"]
    address: Mapping[str, Any] = (street or filled or [{}])[0]
    people = ";".join(
        f"{p.get('FirstName', '')}|{p.get('LastName', '')}|{str(p.get('EmailAddress', '')).lower()}"
        for p in contact.get("ContactPersons") or []
    )
    fields = {
        "name": str(contact.get("Name", "")),
        "first_name": str(contact.get("FirstName", "")),
        "last_name": str(contact.get("LastName", "")),
        "email": str(contact.get("EmailAddress", "")).lower(),
        "phone": " ".join(
            str(phone.get(k, "")) for k in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber") if phone.get(k)
        ),
        "tax_number": str(contact.get("TaxNumber", "")),
        "address.line1": str(address.get("AddressLine1", "")),
        "address.line2": str(address.get("AddressLine2", "")),
        "address.city": str(address.get("City", "")),
        "address.region": str(address.get("Region", "")),
        "address.postal_code": str(address.get("PostalCode", "")),
        "address.country": str(address.get("Country", "")),
        "people": people,
    }
    return AccountingCustomer(
        id=str(contact.get("ContactID", "")),
        name=fields["name"],
        number=str(contact.get("ContactNumber", "")),
        email=fields["email"],
        tax_number=fields["tax_number"],
        status=str(contact.get("ContactStatus", "ACTIVE")),
        fields=fields,
    )


def _read_json(response: httpx.Response) -> dict[str, Any]:
    return read_decimal_object(response.text, who="Xero", vendor="xero", status=response.status_code)


def _decimal(value: Any) -> Decimal:
    return to_decimal(value, who="Xero", vendor="xero")
