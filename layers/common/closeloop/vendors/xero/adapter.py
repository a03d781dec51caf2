"""Xero's AccountingPort: contacts, items and sales invoices through the Accounting API, over the HTTP side
in ``client`` (paging, error reading), the conversions in ``mapping`` and the webhooks in ``webhooks``.

Vendor facts encoded here (Xero's OpenAPI spec v16 and developer docs):
- ``PUT /Contacts`` creates, ``POST /Contacts/{ContactID}`` updates only the fields sent; contact names and
  ContactNumbers are unique, a duplicate is a 400 ValidationException; ContactNumber is "used to identify
  contacts in external systems", so it carries our CRM key and finds a contact created before a crash;
- ``Idempotency-Key`` (≤128 chars) on every create/update;
- sales invoices are ``Type=ACCREC``: ``PUT /Invoices`` creates, ``unitdp=4`` keeps unit amounts at 4 dp
  (2 otherwise), Xero rounds tax per line to the cent; ``POST /Invoices/{id}/Email`` (204) emails an
  authorised one; money is a JSON number, so bodies are written with the exact decimal literal;
- lists page only when ``page`` is given (100 a page, with line items); ``If-Modified-Since`` takes a UTC
  ``yyyy-mm-ddThh:mm:ss`` (no fraction), so it is floored to the second and the rest filtered here;
- items (XS Item, getItems, createItems, getItem, updateItem): ``Code`` ≤ 30 characters and required on every
  Item body, ``Name`` ≤ 50, ``Description`` ≤ 4000; the sales price, account and tax type live in
  ``SalesDetails``, the cost and purchase account in ``PurchaseDetails``; ``PUT /Items`` creates,
  ``POST /Items/{ItemID}`` updates; ``GET /Items`` publishes no paging (one answer holds every item);
- purchase orders (getPurchaseOrders, createPurchaseOrders, getPurchaseOrder): ``PUT /PurchaseOrders``
  creates (Idempotency-Key, no ``unitdp``: unit costs at 2 dp); the list takes Status, DateFrom/DateTo,
  If-Modified-Since and paging but no ``where``, so a reference is found among the orders of its date; a
  supplier is any contact (``IsSupplier`` is read-only, set by Xero once the contact has bills).
- quotes (XS getQuotes, createQuotes, getQuote, updateQuote): ``PUT /Quotes`` creates, ``POST /Quotes/{QuoteID}``
  updates the same quote (a revision keeps its QuoteNumber: Xero keeps no versions, its history notes say
  what changed); statuses DRAFT, SENT, DECLINED, ACCEPTED, INVOICED, DELETED (no EXPIRED); getQuotes filters
  by ContactID, Status and QuoteNumber, not by Reference, so a reference lookup reads that contact's quotes;
  Xero's webhooks carry no quote events (XW eventCategory: CONTACT, INVOICE, SUBSCRIPTION): statuses are polled.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote

import httpx

from closeloop.errors import ConfigurationError, FatalError, NotFound
from closeloop.http import Pacer, RateLimit, TokenAuth, VendorHttp, typed_error
from closeloop.models import (
    PRODUCT_FIELDS,
    AccountingCustomer,
    AccountingEvent,
    AccountingQuote,
    Customer,
    Invoice,
    InvoiceDraft,
    Item,
    ItemDraft,
    ItemLimits,
    PurchaseOrder,
    PurchaseOrderDraft,
    QuoteDraft,
    Supplier,
    customer_fields,
)
from closeloop.oauth import RefreshingTokens
from closeloop.paging import Page, next_page, paginate
from closeloop.ports import QuoteAccounting, WebhookRequest
from closeloop.vendors.xero.client import (
    API_PREFIX,
    PageAfter,
    element_fault,
    page_rows,
    read_json,
    xero_fault,
    xero_rate_limit,
)
from closeloop.vendors.xero.mapping import (
    chunk_key,
    datetime_literal,
    or_queries,
    quote_literal,
    search_word,
    to_customer,
    to_invoice,
    to_item,
    to_purchase_order,
    to_quote,
    to_supplier,
    to_xero,
    to_xero_invoice,
    to_xero_item,
    to_xero_purchase_order,
    to_xero_quote,
    xero_datetime,
)
from closeloop.vendors.xero.repeating import XeroRepeatingInvoices
from closeloop.vendors.xero.webhooks import parse_xero_webhook, verify_xero_signature
from closeloop.wire import dumps_exact


class XeroAccounting(XeroRepeatingInvoices):
    """AccountingPort for Xero; its repeating invoices (RecurringAccounting) come from ``repeating``."""

    name = "xero"
    #: XS Item: Code "max length = 30", Name "max length = 50", Description "max length = 4000".
    item_limits = ItemLimits(code=30, name=50, description=4000)
    PAGE_SIZE: ClassVar[int] = 100
    #: Where a person opens an invoice: Xero's web app, not the API host.
    WEB_URL: ClassVar[str] = "https://go.xero.com"
    INVOICE_WEB_PATH: ClassVar[str] = "/AccountsReceivable/View.aspx?InvoiceID={id}"
    #: Where a person opens a purchase order (see GUESSES["purchase_order_web_path"]).
    PURCHASE_ORDER_WEB_PATH: ClassVar[str] = "/Accounts/Payable/PurchaseOrders/View/{id}"
    #: Where a person opens a quote (see GUESSES["quote_web_path"]).
    QUOTE_WEB_PATH: ClassVar[str] = "/app/quotes/view/{id}"
    #: A quote reference lookup skips DELETED quotes (XS QuoteStatusCodes; a deleted one may be re-made).
    LIVE_QUOTE_STATUSES: ClassVar[tuple[str, ...]] = ("DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED")
    #: Xero marks a quote INVOICED: ``mark_quote_invoiced`` sets it (a plain attribute, as QuoteAccounting
    #: declares it: a ClassVar is not the protocol's instance attribute to mypy).
    marks_invoiced: bool = True
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
            transport=transport,
            sleep=sleep,
        )

    # -- change notifications ----------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """``x-xero-signature`` must be base64(HMAC-SHA256(webhook key, raw body)) (``verify_xero_signature``).

        Raises WebhookRejected(401) when it is missing or wrong, ConfigurationError when XERO_WEBHOOK_KEY is
        not set.
        """
        key = self._webhook_key() if self._webhook_key is not None else ""
        if not key:
            raise ConfigurationError("XERO_WEBHOOK_KEY is not set", vendor=self.name)
        verify_xero_signature(key, request)

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """The CONTACT and INVOICE events of our tenant (``parse_xero_webhook``); ``[]`` for intent-to-receive.

        Raises WebhookRejected(400) naming what is malformed.
        """
        return parse_xero_webhook(body, tenant_id=self._tenant_id(), system=self.name)

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Contacts (archived too) modified at or after ``since``, lazily, page by page.

        ``GET /Contacts?includeArchived=true&page=N`` with ``If-Modified-Since``: Xero filters, so the calls
        are 1 + the number of full pages of changed contacts. Rows of ``since``'s second but before it are
        dropped here (the header has whole seconds). Raises IntegrationError subclasses.
        """
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        headers = {"If-Modified-Since": since.strftime(self.MODIFIED_SINCE_FORMAT)}
        for row in self._rows("/Contacts", "Contacts", "ContactID", {"includeArchived": "true"}, headers):
            updated = xero_datetime(row, "UpdatedDateUTC")
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
        """Every row of a paged list, PAGE_SIZE per call (``page_rows``: a page repeated is a PagingLoop)."""
        return page_rows(self.http, path, collection, id_field, params, headers, page_size=self.PAGE_SIZE)

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
            contacts = self._contacts({"where": f"ContactNumber=={quote_literal(number)}"})
        elif tax_number:
            contacts = self._contacts({"where": f"TaxNumber=={quote_literal(tax_number)}"})
        elif email:
            wanted = email.lower()
            contacts = [
                c for c in self._contacts({"searchTerm": email}) if str(c.get("EmailAddress", "")).lower() == wanted
            ]
        elif name:
            contacts = self._contacts({"searchTerm": search_word(name)})
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
        clauses = [f"ContactNumber=={quote_literal(v)}" for v in sorted(set(numbers)) if v]
        clauses += [f"TaxNumber=={quote_literal(v)}" for v in sorted(set(tax_numbers)) if v]
        clauses += [f"EmailAddress=={quote_literal(v.lower())}" for v in sorted({e.lower() for e in emails}) if v]
        clauses += [f"Name.Contains({quote_literal(w)})" for w in sorted({search_word(n) for n in names if n.strip()})]
        queries = or_queries(clauses, self.WHERE_MAX_CHARS)
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
        return read_json(self.http.request("GET", "/Contacts", params=params))

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
                headers={"Idempotency-Key": chunk_key(idempotency_key, body, self.IDEMPOTENCY_KEY_MAX)},
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
            where = "||".join(f"Code=={quote_literal(code)}" for code in chunk)
            response = self.http.request("GET", "/Items", params={"where": where, "unitdp": self.UNIT_DECIMALS})
            for row in read_json(response).get("Items") or []:
                item = to_item(row)
                for code in asked.get(item.code.casefold(), []):
                    found[code] = item
        return found

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        """Create the item with every value the draft sets: ``PUT /Items?summarizeErrors=true&unitdp=4`` with
        ``Idempotency-Key`` (a retry within Xero's replay window answers the first create).

        Raises Conflict when the code is taken (Xero's 400 "… already exists", read by ``xero_fault``),
        ValidationFailed on any other refusal (e.g. a code over 30 characters), other IntegrationError
        subclasses otherwise.
        """
        row = self._write_item("PUT", "/Items", to_xero_item(draft, PRODUCT_FIELDS), idempotency_key)
        return to_item(row)

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        """Write only ``fields`` of ``draft`` onto ``item`` (``"code"`` among them renames its code) and return
        it as saved.

        Reads the item first (``GET /Items/{ItemID}``), so a price or account is sent inside the whole
        section Xero holds (GUESSES["item_details_sent_whole"]) and a tracked item's purchase account goes
        to COGSAccountCode, then ``POST /Items/{ItemID}?unitdp=4`` with ``Idempotency-Key``. Raises NotFound
        when the item is gone, Conflict when the new code is taken, FatalError when Xero answers another
        item than the one addressed (GUESSES["item_code_rename"]), other IntegrationError subclasses otherwise.
        """
        current = self._item_row(item)
        item_id = str(current.get("ItemID") or "")
        body = to_xero_item(draft, fields, current)
        if set(body) == {"Code"} and body["Code"] == current.get("Code"):
            return to_item(current)  # nothing the draft sets among ``fields``: no write
        row = self._write_item("POST", f"/Items/{quote(item_id, safe='')}", body, idempotency_key)
        if str(row.get("ItemID") or "").lower() != item_id.lower() or str(row.get("Code") or "") != body["Code"]:
            raise FatalError(
                f"Xero answered item {row.get('ItemID')!r} coded {row.get('Code')!r} to an update of item "
                f"{item_id!r} coded {body['Code']!r} (GUESSES['item_code_rename'])",
                vendor=self.name,
                status=200,
            )
        return to_item(row)

    def iter_items(self) -> Iterator[Item]:
        """Every item (Xero items have no status: all are active), lazily.

        ``GET /Items?unitdp=4``: XS publishes no paging for it, so one answer holds every item; should an
        answer carry a ``pagination`` saying there are more pages, they are read too (GUESSES["items_unpaged"]).
        Raises IntegrationError subclasses (PagingLoop when pages repeat).
        """

        def fetch(at: PageAfter) -> Page[dict[str, Any], PageAfter]:
            params = {"unitdp": self.UNIT_DECIMALS, **({"page": str(at.number)} if at.number > 1 else {})}
            payload = read_json(self.http.request("GET", "/Items", params=params))
            rows: list[dict[str, Any]] = payload.get("Items") or []
            pages = int((payload.get("pagination") or {}).get("pageCount") or 1)
            following = PageAfter(at.number + 1, tuple(str(row.get("ItemID", "")) for row in rows))
            return Page(rows, following if at.number < pages else None)

        for row in paginate(fetch, PageAfter(1, ()), vendor=self.name, what="GET /Items"):
            yield to_item(row)

    def _item_row(self, item: Item) -> dict[str, Any]:
        """The item as Xero holds it now: ``GET /Items/{ItemID}?unitdp=4`` (by code when ``item`` has no id).
        Raises NotFound when it is gone."""
        if not item.id:
            found = self.get_items([item.code]).get(item.code)
            if found is None or not found.id:
                raise NotFound(f"no Xero item is coded {item.code!r}", vendor=self.name, status=404)
            item = found
        path = f"/Items/{quote(item.id, safe='')}"
        response = self.http.request("GET", path, params={"unitdp": self.UNIT_DECIMALS}, ok=(200, 404))
        if response.status_code == 404:  # Xero's 404 is a plain-text page, not JSON
            raise NotFound(f"Xero item {item.id} is gone", vendor=self.name, status=404)
        rows = read_json(response).get("Items") or []
        if not rows:
            raise NotFound(f"Xero item {item.id} is gone", vendor=self.name, status=404)
        return dict(rows[0])

    def _write_item(self, method: str, path: str, item: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """One Item written (money as exact JSON numbers); the saved row Xero answers."""
        params = {"unitdp": self.UNIT_DECIMALS, **({"summarizeErrors": "true"} if method == "PUT" else {})}
        response = self.http.request(
            method,
            path,
            params=params,
            content=dumps_exact({"Items": [item]}),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = read_json(response).get("Items") or []
        if not rows:
            raise FatalError(f"Xero accepted {method} {path} but returned no item", vendor=self.name, status=200)
        return dict(rows[0])

    def find_invoice(self, reference: str) -> Invoice | None:
        """The first live (not VOIDED/DELETED) sales invoice whose Reference equals ``reference``, or None.

        ``GET /Invoices?where=Type=="ACCREC"&&Reference=="…"&Statuses=DRAFT,SUBMITTED,AUTHORISED,PAID&page=1``.
        Raises IntegrationError subclasses.
        """
        params = {
            "where": f"{self._sales_where()}&&Reference=={quote_literal(reference)}",
            "Statuses": ",".join(self.LIVE_INVOICE_STATUSES),
            "page": "1",
        }
        rows = read_json(self.http.request("GET", "/Invoices", params=params)).get("Invoices") or []
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
        rows = read_json(response).get("Invoices") or []
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
        rows = read_json(response).get("Invoices") or []
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
        where = f"{self._sales_where()}&&Date>={datetime_literal(issued_from)}&&Date<{datetime_literal(issued_before)}"
        yield from self._invoice_pages(where)

    def _sales_where(self) -> str:
        return f"Type=={quote_literal(self.SALES_INVOICE_TYPE)}"

    def _invoice_pages(self, where: str, headers: Mapping[str, str] | None = None) -> Iterator[Invoice]:
        """Every invoice matching ``where``, page by page (``_rows``)."""
        for row in self._rows("/Invoices", "Invoices", "InvoiceID", {"where": where}, headers):
            yield self._to_invoice(row)

    def _to_invoice(self, row: Mapping[str, Any]) -> Invoice:
        return to_invoice(row, self.WEB_URL + self.INVOICE_WEB_PATH)

    # -- suppliers and purchase orders (PurchasingAccounting) -----------------------------------------

    def find_suppliers(self, name: str) -> list[Supplier]:
        """Active contacts that may be the supplier ``name``: ``GET /Contacts?searchTerm=<its first word>``
        (any contact may be a supplier; the sync logic compares normalised names). Raises IntegrationError."""
        word = search_word(name)
        if not word:
            return []
        contacts = self._contacts({"searchTerm": word})
        return [to_supplier(c) for c in contacts if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def create_supplier(self, name: str, *, idempotency_key: str) -> Supplier:
        """``PUT /Contacts`` with the name only (Xero marks it a supplier once it has bills). Raises Conflict
        when the name is taken (Xero's names are unique among active contacts)."""
        response = self.http.request(
            "PUT",
            "/Contacts",
            params={"summarizeErrors": "true"},
            json={"Contacts": [{"Name": name}]},
            headers={"Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX]},
        )
        rows = read_json(response).get("Contacts") or []
        if not rows:
            raise FatalError("Xero accepted the supplier but returned no contact", vendor=self.name, status=200)
        return to_supplier(rows[0])

    def find_purchase_order(self, reference: str, dated: date) -> PurchaseOrder | None:
        """The first non-deleted purchase order dated ``dated`` whose Reference equals ``reference``.

        ``GET /PurchaseOrders?DateFrom=d&DateTo=d&page=N`` (getPurchaseOrders has no ``where``): the calls
        grow with that day's orders, not with the organisation. Raises IntegrationError subclasses.
        """
        day = dated.isoformat()
        params = {"DateFrom": day, "DateTo": day}
        for row in self._rows("/PurchaseOrders", "PurchaseOrders", "PurchaseOrderID", params):
            if row.get("Reference") == reference and row.get("Status") != "DELETED":
                return self._to_purchase_order(row)
        return None

    def get_purchase_order(self, purchase_order_id: str) -> PurchaseOrder | None:
        """``GET /PurchaseOrders/{id}`` whatever its status; None when Xero answers 404."""
        if not purchase_order_id.strip():
            return None
        response = self.http.request("GET", f"/PurchaseOrders/{quote(purchase_order_id, safe='')}", ok=(200, 404))
        if response.status_code == 404:
            return None
        rows = read_json(response).get("PurchaseOrders") or []
        return self._to_purchase_order(rows[0]) if rows else None

    def create_purchase_order(self, draft: PurchaseOrderDraft, *, idempotency_key: str) -> PurchaseOrder:
        """``PUT /PurchaseOrders?summarizeErrors=true`` with ``Idempotency-Key``; the body's numbers are the
        draft's decimals written literally. Raises ValidationFailed with Xero's reasons on a 400."""
        response = self.http.request(
            "PUT",
            "/PurchaseOrders",
            params={"summarizeErrors": "true"},
            content=dumps_exact({"PurchaseOrders": [to_xero_purchase_order(draft)]}),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = read_json(response).get("PurchaseOrders") or []
        if not rows:
            raise FatalError("Xero accepted the purchase order but returned none", vendor=self.name, status=200)
        return self._to_purchase_order(rows[0])

    def _to_purchase_order(self, row: Mapping[str, Any]) -> PurchaseOrder:
        return to_purchase_order(row, self.WEB_URL + self.PURCHASE_ORDER_WEB_PATH)

    # -- quotes ------------------------------------------------------------------------------------

    def find_quote(self, reference: str, customer_id: str) -> AccountingQuote | None:
        """The first live (not DELETED) quote of contact ``customer_id`` whose Reference equals ``reference``.

        ``GET /Quotes?ContactID=…&page=N`` (getQuotes filters by contact, not by reference): the calls grow
        with that contact's quotes only. Raises IntegrationError subclasses.
        """
        if not customer_id.strip():
            return None
        for row in self._rows("/Quotes", "Quotes", "QuoteID", {"ContactID": customer_id}):
            if str(row.get("Reference") or "") == reference and row.get("Status") in self.LIVE_QUOTE_STATUSES:
                return self._to_quote(row)
        return None

    def get_quote(self, quote_id: str) -> AccountingQuote | None:
        """One quote by id (``GET /Quotes/{QuoteID}``), whatever its status; None when Xero answers 404."""
        if not quote_id.strip():
            return None
        response = self.http.request("GET", f"/Quotes/{quote(quote_id, safe='')}", ok=(200, 404))
        if response.status_code == 404:
            return None
        rows = read_json(response).get("Quotes") or []
        return self._to_quote(rows[0]) if rows else None

    def create_quote(self, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """``PUT /Quotes?summarizeErrors=true&unitdp=4`` with ``Idempotency-Key``, in the draft's status (XS
        createQuotes: a quote may be created SENT). Raises ValidationFailed with Xero's messages."""
        return self._write_quote("PUT", "/Quotes", to_xero_quote(draft, draft.status), idempotency_key)

    def revise_quote(self, quote_: AccountingQuote, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """``POST /Quotes/{QuoteID}``: the same quote with the draft's lines, dates, currency and title; its
        status and number stay (see GUESSES["quote_update_whole_lines"]). Raises ValidationFailed when Xero
        refuses (e.g. the quote was accepted meanwhile)."""
        body = {**to_xero_quote(draft), "QuoteID": quote_.id}
        return self._write_quote("POST", f"/Quotes/{quote(quote_.id, safe='')}", body, idempotency_key)

    def mark_quote_sent(self, quote_: AccountingQuote, *, idempotency_key: str) -> AccountingQuote:
        """Set a DRAFT quote SENT (``POST /Quotes/{QuoteID}`` with Status, Contact and Date, which Xero's quote
        updates require, and ``Idempotency-Key``); a quote in another status is returned as given."""
        if quote_.status != "DRAFT":
            return quote_
        body = {
            "QuoteID": quote_.id,
            "Contact": {"ContactID": quote_.customer_id},
            "Date": (quote_.issue_date or date.today()).isoformat(),
            "Status": "SENT",
        }
        return self._write_quote("POST", f"/Quotes/{quote(quote_.id, safe='')}", body, idempotency_key)

    def mark_quote_invoiced(self, quote_: AccountingQuote, invoice_id: str, *, idempotency_key: str) -> AccountingQuote:
        """Set the quote INVOICED (``POST /Quotes/{QuoteID}`` with Status, Contact and Date, which Xero's
        quote updates require); a quote still SENT is marked ACCEPTED first (GUESSES["quote_invoiced_path"]).
        Xero quotes hold no invoice link: ``invoice_id`` is the audit trail's."""
        path = f"/Quotes/{quote(quote_.id, safe='')}"
        current = quote_
        steps = ("ACCEPTED", "INVOICED") if quote_.status in ("DRAFT", "SENT") else ("INVOICED",)
        for status in steps:
            body = {
                "QuoteID": quote_.id,
                "Contact": {"ContactID": current.customer_id},
                "Date": (current.issue_date or date.today()).isoformat(),
                "Status": status,
            }
            current = self._write_quote("POST", path, body, f"{idempotency_key}-{status.lower()}")
        return current

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        """Quotes modified at or after ``since`` (all when None), page by page: ``GET /Quotes?page=N`` with
        ``If-Modified-Since`` (XS getQuotes). Raises IntegrationError subclasses."""
        headers: dict[str, str] | None = None
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            headers = {"If-Modified-Since": since.astimezone(UTC).strftime(self.MODIFIED_SINCE_FORMAT)}
        for row in self._rows("/Quotes", "Quotes", "QuoteID", {}, headers):
            found = self._to_quote(row)
            if since is None or found.updated_at is None or found.updated_at >= since:
                yield found

    def _write_quote(self, method: str, path: str, body: dict[str, Any], idempotency_key: str) -> AccountingQuote:
        response = self.http.request(
            method,
            path,
            params={"summarizeErrors": "true", "unitdp": self.UNIT_DECIMALS},
            content=dumps_exact({"Quotes": [body]}),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key[: self.IDEMPOTENCY_KEY_MAX],
            },
        )
        rows = read_json(response).get("Quotes") or []
        if not rows:
            raise FatalError(f"Xero accepted {method} {path} but returned no quote", vendor=self.name, status=200)
        return self._to_quote(rows[0])

    def _to_quote(self, row: Mapping[str, Any]) -> AccountingQuote:
        return to_quote(row, self.WEB_URL + self.QUOTE_WEB_PATH)


if TYPE_CHECKING:  # mypy holds the adapter to the quote port its spec declares (``quote``)
    _QUOTES: type[QuoteAccounting] = XeroAccounting
