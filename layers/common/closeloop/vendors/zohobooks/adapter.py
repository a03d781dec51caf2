"""Zoho Books' AccountingPort and CatalogueAccounting: customers (contacts), items and invoices over
``client.ZohoBooksClient``, with records converted by ``mapping``.

Idempotency: Zoho has no idempotency key. Creates go through ``PUT /contacts`` / ``PUT /invoices`` with
``X-Unique-Identifier-Key`` (a custom field set to "do not allow duplicate values"), ``X-Unique-Identifier-Value``
and ``X-Upsert: true``: a repeated create updates the record it made instead of making a second one. Contacts
carry our number stamp in ``cf_closeloop_ref``, invoices the deal key in ``cf_closeloop_deal``.

Items: the item code is Zoho's SKU ("should be unique throughout the product", the items page), the id its
``item_id``. Zoho has no idempotency key for items either: ``POST /items`` is never re-sent once it may have
reached Zoho (a lost answer is Unanswered, retried by the caller, which looks the SKU up first), and a taken
SKU is answered as a Conflict.

Lookups: invoices filter on ``reference_number``, ``date_start``/``date_end``, ``last_modified_time`` and sort by
``last_modified_time``. The ``cf_<api name>`` custom-field and ``sku`` list filters are not documented: every row
such a list returns is checked again here (GUESSES["custom_field_filter"], GUESSES["sku_filter"]).

Quotes are estimates: the CRM quote key (the reference's first word, ``hubspot-quote-<id>``) is stamped in the
unique custom field ``cf_closeloop_quote`` (so a second create for one CRM quote is refused, 1001) and the
whole reference is the ``reference_number``. Estimates have no upsert in Zoho's estimates page, so a create
is never re-sent: a lost answer is looked up among the customer's estimates by that key.

Books has no signed webhooks (its workflow webhooks carry no signature Closeloop could verify), so
accounting-side changes are polled: contacts sort by ``last_modified_time`` (there is no filter on it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx

from closeloop.dates import parse_utc
from closeloop.errors import Conflict, FatalError, NotFound, Unanswered, ValidationFailed, WebhookRejected
from closeloop.http import Pacer, RateLimit
from closeloop.models import (
    CUSTOMER_FIELDS,
    AccountingCustomer,
    AccountingEvent,
    AccountingQuote,
    Customer,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    ItemDraft,
    ItemLimits,
    PurchaseOrder,
    PurchaseOrderDraft,
    QuoteDraft,
    RepeatingSchedule,
    ScheduleDraft,
    Supplier,
)
from closeloop.oauth import RefreshingTokens
from closeloop.ports import QuoteAccounting, WebhookRequest
from closeloop.vendors.zohobooks.client import VENDOR, ZohoBooksClient
from closeloop.vendors.zohobooks.mapping import (
    ENDED_RECURRING_STATUSES,
    RECURRENCE_NAME_MAX,
    contact_body,
    custom_field,
    deal_key,
    estimate_body,
    invoice_body,
    item_update_body,
    name_key,
    new_item_body,
    norm_tax,
    purchase_order_body,
    recurring_invoice_body,
    search_word,
    to_customer,
    to_invoice,
    to_item,
    to_purchase_order,
    to_quote,
    to_schedule,
    to_supplier,
    upsert_headers,
)


class ZohoBooksAccounting:
    """AccountingPort for Zoho Books (API v3)."""

    name = "zohobooks"
    PAGE_SIZE: ClassVar[int] = 200
    #: Where a person opens an invoice: the Books web app of the data centre, not the API host.
    INVOICE_WEB_PATH: ClassVar[str] = "/app/{organization}#/invoices/{id}"
    #: Where a person opens an estimate (see GUESSES["estimate_web_path"]).
    ESTIMATE_WEB_PATH: ClassVar[str] = "/app/{organization}#/quotes/{id}"
    #: The estimate statuses in which it may still be revised (the customer has not answered it).
    REVISABLE_ESTIMATE_STATUSES: ClassVar[frozenset[str]] = frozenset({"draft", "sent"})
    #: Zoho marks an estimate invoiced when an invoice is created from it (``invoiced_estimate_id``, sent from
    #: the draft's ``accounting_quote_id``); ``mark_quote_invoiced`` reads that state (nothing can set it later).
    marks_invoiced: bool = True
    #: Where a person opens a purchase order (see GUESSES["purchase_order_web_path"]).
    PURCHASE_ORDER_WEB_PATH: ClassVar[str] = "/app/{organization}#/purchaseorders/{id}"
    #: Contact persons Closeloop writes besides the primary one (the CRM's other people).
    MAX_OTHER_PERSONS: ClassVar[int] = 9
    #: Zoho's last_modified_time filter and its answers: ``2024-05-01T10:00:00+0000``.
    TIME_FORMAT: ClassVar[str] = "%Y-%m-%dT%H:%M:%S%z"
    #: Per organisation: 100 calls a minute (GUESSES["per_minute_limit"]).
    RATE_LIMIT: ClassVar[RateLimit] = RateLimit(per_minute=100)
    #: The items page (zoho.com/books/api/v3/items, "Attribute"): name "Max-length [100]", description
    #: "Max-length [2000]"; no length is published for the SKU (GUESSES["sku_length"]).
    item_limits = ItemLimits(code=0, name=100, description=2000)
    #: Item attributes a list row may leave out (GUESSES["item_list_rows_full"]): such a row is read in full.
    ITEM_DETAIL_KEYS: ClassVar[tuple[str, ...]] = ("purchase_rate", "purchase_account_id", "account_id")

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
        quote_ref_field: str = "cf_closeloop_quote",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``pacer``: the organisation's shared call budget (``RATE_LIMIT``; see closeloop.pacing)."""
        self.client = ZohoBooksClient(
            base_url=base_url,
            tokens=tokens,
            organization_id=organization_id,
            page_size=self.PAGE_SIZE,
            transport=transport,
            sleep=sleep,
            pacer=pacer,
        )
        self.http = self.client.http
        self._organization_id = organization_id
        self.web_url = web_url.rstrip("/")
        self.tax_number_field = tax_number_field
        self.contact_ref_field = contact_ref_field
        self.invoice_ref_field = invoice_ref_field
        self.quote_ref_field = quote_ref_field
        self._item_ids: dict[str, str] = {}
        self._profile_references: dict[str, str] = {}

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
        for row in self.client.pages("/contacts", "contacts", params):
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
            payload = self.client.call("GET", f"/contacts/{quote(contact_id, safe='')}")
        except NotFound:
            return None
        contact = payload.get("contact")
        return contact if isinstance(contact, dict) else None

    def _active_contacts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        query = {"filter_by": "Status.Active", **params}
        return list(self.client.pages("/contacts", "contacts", query))

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
            wanted = norm_tax(tax_number)
            rows = [r for r in self._active_contacts({}) if norm_tax(str(r.get(self.tax_number_field) or "")) == wanted]
        elif email:
            rows = self._active_contacts({"email": email})
        elif name:
            rows = self._active_contacts({"contact_name_contains": search_word(name)})
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
        rows = self.client.pages_within("/contacts", "contacts", {"filter_by": "Status.Active"}, max_pages=len(lookups))
        if rows is None:
            return self._lookup_each(lookups)
        wanted_numbers = {v for kind, v in lookups if kind == "number"}
        wanted_tax = {norm_tax(v) for kind, v in lookups if kind == "tax"}
        wanted_emails = {v.casefold() for kind, v in lookups if kind == "email"}
        wanted_names = {name_key(v) for kind, v in lookups if kind == "name"}
        hits = [
            str(row.get("contact_id") or "")
            for row in rows
            if custom_field(row, self.contact_ref_field) in wanted_numbers
            or (norm_tax(str(row.get(self.tax_number_field) or "")) or None) in wanted_tax
            or str(row.get("email") or "").casefold() in wanted_emails
            or name_key(str(row.get("contact_name") or "")) in wanted_names
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
        body = contact_body(customer, None, set(CUSTOMER_FIELDS), **self._contact_options())
        payload = self.client.call(
            "PUT", "/contacts", body=body, headers=upsert_headers(self.contact_ref_field, number)
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
        body = contact_body(customer, current, set(fields), **self._contact_options())
        if number:
            body["custom_fields"] = [{"api_name": self.contact_ref_field, "value": number}]
        if not body:
            return self._to_customer(current)
        payload = self.client.call("PUT", f"/contacts/{quote(customer_id, safe='')}", body=body)
        return self._to_customer(payload.get("contact") or {})

    def _to_customer(self, contact: Mapping[str, Any]) -> AccountingCustomer:
        return to_customer(contact, tax_number_field=self.tax_number_field, contact_ref_field=self.contact_ref_field)

    def _contact_options(self) -> dict[str, Any]:
        return {"tax_number_field": self.tax_number_field, "max_other_persons": self.MAX_OTHER_PERSONS}

    # -- items ---------------------------------------------------------------------------------------

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """Active items whose ``sku`` is among ``codes`` (the item code is Zoho's SKU), keyed by the code
        asked for (matched case-insensitively), with ``id`` and ``fields`` filled.

        One paged read of the active items, stopped after as many pages as there are codes; a larger
        catalogue falls back to ``GET /items?sku=<code>`` per code. A matched row that does not show the
        purchase and account fields is read in full (GUESSES["item_list_rows_full"]). Raises
        IntegrationError subclasses.
        """
        asked: dict[str, list[str]] = {}
        for code in sorted({c for c in codes if c.strip()}):
            asked.setdefault(code.casefold(), []).append(code)
        if not asked:
            return {}
        rows = self.client.pages_within("/items", "items", {"filter_by": "Status.Active"}, max_pages=len(asked))
        if rows is None:
            rows = [row for group in asked.values() for row in self._item_rows(group[0])]
        found: dict[str, Item] = {}
        for row in rows:
            if str(row.get("sku") or "").casefold() not in asked or str(row.get("status") or "active") != "active":
                continue
            item = self._to_item(row)
            for code in asked[item.code.casefold()]:
                found[code] = item
        return found

    def _item_rows(self, code: str) -> list[dict[str, Any]]:
        """``GET /items?sku=<code>``: undocumented (GUESSES["sku_filter"]), so only rows with that SKU are kept."""
        rows = self.client.pages("/items", "items", {"sku": code})
        return [row for row in rows if str(row.get("sku") or "").casefold() == code.casefold()]

    def _to_item(self, row: Mapping[str, Any]) -> Item:
        """The Item of a row, read in full first when the row leaves out its purchase or account fields; the
        item id remembered by SKU for invoice lines."""
        if any(key not in row for key in self.ITEM_DETAIL_KEYS) and row.get("item_id"):
            row = self._item(str(row["item_id"])) or row
        item = to_item(row)
        if item.code:
            self._item_ids[item.code.casefold()] = item.id
        return item

    def _item(self, item_id: str) -> dict[str, Any] | None:
        """``GET /items/{id}``; None when Zoho says it does not exist."""
        try:
            payload = self.client.call("GET", f"/items/{quote(item_id, safe='')}")
        except NotFound:
            return None
        row = payload.get("item")
        return row if isinstance(row, dict) else None

    def _saved_item(self, payload: Mapping[str, Any], what: str) -> Item:
        row = payload.get("item")
        if not isinstance(row, dict):
            raise FatalError(f"Zoho accepted the {what} but returned no item", vendor=VENDOR)
        return self._to_item(row)

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        """``POST /items`` with the SKU, name, rate, and the description, cost, tax and accounts the draft sets
        (a cost makes the item ``sales_and_purchases``, see GUESSES["item_type_for_cost"]).

        Zoho has no idempotency key (``idempotency_key`` is not sent), so the create is never re-sent once it
        may have reached Zoho: a lost answer raises Unanswered and the caller's retry finds the item by SKU.
        Raises Conflict when the SKU or the name is taken (code 1001; a refusal of a SKU that another item
        now holds is one too, GUESSES["item_duplicate_code"]), ValidationFailed on other refusals.
        """
        try:
            payload = self.client.call("POST", "/items", body=new_item_body(draft), retry_sent=False)
        except ValidationFailed as refused:
            if draft.code in self.get_items([draft.code]):
                raise Conflict(f"Zoho has an item with SKU {draft.code} already: {refused}", vendor=VENDOR) from refused
            raise
        return self._saved_item(payload, "item")

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        """Write only ``fields`` (PRODUCT_FIELDS names; ``code`` renames the SKU) of ``draft`` onto ``item``.

        The item is read first (``GET /items/{id}``; by SKU when ``item`` has no id) so that its current name
        and rate go with the change (GUESSES["item_update_body"]), then ``PUT /items/{id}``. Raises NotFound
        when the item is gone, Conflict when a new SKU or name is taken, ValidationFailed on other refusals.
        """
        item_id = item.id or (self.get_items([item.code]).get(item.code) or item).id
        current = self._item(item_id) if item_id else None
        if current is None:
            raise NotFound(f"Zoho item {item.id or item.code} does not exist", vendor=VENDOR, status=404)
        body = item_update_body(draft, fields, current)
        payload = self.client.call("PUT", f"/items/{quote(item_id, safe='')}", body=body)
        saved = self._saved_item(payload, "item update")
        if saved.code.casefold() != item.code.casefold():
            self._item_ids.pop(item.code.casefold(), None)
        return saved

    def iter_items(self) -> Iterator[Item]:
        """Every active item, page by page (``GET /items?filter_by=Status.Active``), with ``fields`` filled."""
        for row in self.client.pages("/items", "items", {"filter_by": "Status.Active"}):
            yield self._to_item(row)

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
        for row in list(self.client.pages("/invoices", "invoices", {self.invoice_ref_field: key})):
            if str(row.get("status") or "") == "void":
                continue
            shown = custom_field(row, self.invoice_ref_field)
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
            payload = self.client.call("GET", f"/invoices/{quote(invoice_id, safe='')}")
        except NotFound:
            return ""
        row = payload.get("invoice")
        return custom_field(row, self.invoice_ref_field) if isinstance(row, dict) else ""

    def _record(self, collection: str, key: str, record_id: str) -> dict[str, Any] | None:
        """``GET /{collection}/{id}``'s ``key`` object; None for a blank id or when Zoho says it does not exist."""
        if not record_id.strip():
            return None
        try:
            payload = self.client.call("GET", f"/{collection}/{quote(record_id, safe='')}")
        except NotFound:
            return None
        row = payload.get(key)
        return row if isinstance(row, dict) else None

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """``GET /invoices/{id}`` whatever its status; None when Zoho says it does not exist."""
        row = self._record("invoices", "invoice", invoice_id)
        return self._to_invoice(row) if row is not None else None

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
        body = invoice_body(draft, key, self._item_ids, invoice_ref_field=self.invoice_ref_field)
        payload = self.client.call("PUT", "/invoices", body=body, headers=upsert_headers(self.invoice_ref_field, key))
        row = payload.get("invoice")
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the invoice but returned none", vendor=VENDOR)
        invoice = self._to_invoice(row)
        if draft.status == "AUTHORISED" and invoice.status == "DRAFT":
            self.client.call("POST", f"/invoices/{quote(invoice.id, safe='')}/status/sent")
            invoice = invoice.model_copy(update={"status": "AUTHORISED"})
        return invoice

    def send_invoice(self, invoice_id: str) -> None:
        """``POST /invoices/{id}/email`` with Zoho's default template to the customer's contact persons.

        Zoho has no idempotency key, so the call is never repeated once sent (a second email is worse than
        none): only a connect error or a 429 is retried. Raises ValidationFailed when Zoho refuses (a draft,
        no contact email), Unanswered when the request was sent and no answer says whether Zoho emailed.
        """
        self.client.call("POST", f"/invoices/{quote(invoice_id, safe='')}/email", body={}, retry_sent=False)

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
        for row in self.client.pages("/invoices", "invoices", params):
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
        for row in self.client.pages("/invoices", "invoices", params):
            yield self._to_invoice(row)

    def _to_invoice(self, row: Mapping[str, Any]) -> Invoice:
        """The canonical invoice of a row. A recurring invoice's child names its profile
        (``recurring_invoice_id``); when it did not copy the profile's reference_number
        (GUESSES["recurring_child_reference"]), its reference is read from the profile (once per profile),
        so the payment poller and the reconciliation still tell it is a schedule's."""
        invoice_id = str(row.get("invoice_id") or "")
        path = self.INVOICE_WEB_PATH.format(organization=self._organization_id(), id=invoice_id)
        reference = None
        profile_id = str(row.get("recurring_invoice_id") or "")
        if profile_id and not str(row.get("reference_number") or "").strip():
            reference = self._profile_reference(profile_id)
        return to_invoice(row, url=self.web_url + path if invoice_id else "", reference=reference)

    def _profile_reference(self, profile_id: str) -> str:
        """The reference of a recurring invoice profile (its reference_number, else its recurrence_name: ours
        carry the schedule reference in both); "" when it is gone. Remembered per profile."""
        if profile_id not in self._profile_references:
            row = self._profile(profile_id) or {}
            self._profile_references[profile_id] = str(row.get("reference_number") or row.get("recurrence_name") or "")
        return self._profile_references[profile_id]

    # -- quotes (estimates) --------------------------------------------------------------------------

    def find_quote(self, reference: str, customer_id: str) -> AccountingQuote | None:
        """The estimate of customer ``customer_id`` made for the CRM quote that ``reference`` names.

        ``GET /estimates?customer_id=…`` (a documented filter), paged; a row is taken when its own
        ``cf_closeloop_quote`` is the quote key (the reference's first word), or, when the row does not show
        the field, its reference_number's first word is. The key rather than the whole reference is matched,
        so a quote renamed since is still found. Zoho deletes estimates outright: every row is live. Raises
        IntegrationError subclasses.
        """
        key = deal_key(reference)
        if not key or not customer_id.strip():
            return None
        row = self._estimate_row_by_key(key, customer_id)
        return self._to_quote(row) if row is not None else None

    def _estimate_row_by_key(self, key: str, customer_id: str) -> dict[str, Any] | None:
        for row in self.client.pages("/estimates", "estimates", {"customer_id": customer_id}):
            shown = custom_field(row, self.quote_ref_field)
            if shown == key or (not shown and deal_key(str(row.get("reference_number") or "")) == key):
                return row
        return None

    def get_quote(self, quote_id: str) -> AccountingQuote | None:
        """``GET /estimates/{id}``; None when Zoho says it does not exist (1002)."""
        row = self._estimate(quote_id)
        return self._to_quote(row) if row is not None else None

    def _estimate(self, estimate_id: str) -> dict[str, Any] | None:
        return self._record("estimates", "estimate", estimate_id)

    def create_quote(self, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """``POST /estimates`` stamped with the quote key, then ``POST /estimates/{id}/status/sent`` when the
        draft is SENT (Zoho creates drafts). Lines name ``item_id`` (from the SKU) as invoices do.

        Zoho has no idempotency key (``idempotency_key`` is not sent) and estimates no upsert, so the create
        is never re-sent: a lost answer (Unanswered) or a refusal of a taken key (1001, Conflict: the estimate
        was made before) looks the estimate up by its key among the customer's estimates and carries on with
        it; Unanswered is raised again when it is not there. Raises ValidationFailed with Zoho's message.
        """
        key = deal_key(draft.reference)
        if not key:
            raise ValidationFailed("the quote reference names no CRM quote", vendor=VENDOR)
        body = estimate_body(draft, key, self._line_item_ids(draft.lines), quote_ref_field=self.quote_ref_field)
        try:
            payload = self.client.call("POST", "/estimates", body=body, retry_sent=False)
            row = payload.get("estimate")
        except (Unanswered, Conflict):
            row = self._estimate_row_by_key(key, draft.customer_id)
            if row is None:
                raise
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the estimate but returned none", vendor=VENDOR)
        made = self._to_quote(row)
        if draft.status == "SENT" and made.status == "DRAFT":
            self.client.call("POST", f"/estimates/{quote(made.id, safe='')}/status/sent")
            made = made.model_copy(update={"status": "SENT"})
        return made

    def revise_quote(self, quote_: AccountingQuote, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """``PUT /estimates/{id}`` with the draft's customer, lines, dates and reference; its number and status
        stay (Zoho keeps no versions). The estimate is read first: one no longer draft or sent (accepted,
        declined, invoiced, or expired) is not revised. Raises NotFound when it is gone, ValidationFailed when
        it is not revisable or Zoho refuses."""
        current = self._estimate(quote_.id)
        if current is None:
            raise NotFound(f"Zoho estimate {quote_.id} does not exist", vendor=VENDOR, status=404)
        status = str(current.get("status") or "")
        if status not in self.REVISABLE_ESTIMATE_STATUSES:
            number = current.get("estimate_number") or quote_.id
            raise ValidationFailed(f"Zoho estimate {number} is {status}: it is not revised", vendor=VENDOR)
        key = deal_key(draft.reference)
        body = estimate_body(draft, key, self._line_item_ids(draft.lines), quote_ref_field=self.quote_ref_field)
        payload = self.client.call("PUT", f"/estimates/{quote(quote_.id, safe='')}", body=body)
        row = payload.get("estimate")
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the estimate update but returned none", vendor=VENDOR)
        return self._to_quote(row)

    def mark_quote_sent(self, quote_: AccountingQuote, *, idempotency_key: str) -> AccountingQuote:
        """``POST /estimates/{id}/status/sent`` for an estimate Zoho shows as draft (read first: e.g. a create
        whose status/sent never ran); another status is returned as read (GUESSES["estimate_status_moves"]:
        the move is refused from any other). Zoho takes no idempotency key: the read makes a repeat a no-op.
        Raises NotFound when the estimate is gone, ValidationFailed when Zoho refuses the move."""
        current = self._estimate(quote_.id)
        if current is None:
            raise NotFound(f"Zoho estimate {quote_.id} does not exist", vendor=VENDOR, status=404)
        found = self._to_quote(current)
        if found.status != "DRAFT":
            return found
        self.client.call("POST", f"/estimates/{quote(found.id, safe='')}/status/sent")
        return found.model_copy(update={"status": "SENT"})

    def mark_quote_invoiced(self, quote_: AccountingQuote, invoice_id: str, *, idempotency_key: str) -> AccountingQuote:
        """The estimate as Zoho shows it now: invoiced when invoice ``invoice_id`` was created from it.

        Zoho marks an estimate invoiced only when an invoice is created from it (``invoiced_estimate_id`` on
        the create, which ``create_invoice`` sends from the draft's ``accounting_quote_id``:
        GUESSES["estimate_invoiced_by_link"]); the estimates page has no status move to invoiced, so nothing
        is written here and an estimate an invoice was made from without the link (e.g. before invoices named
        their quote) is returned as it is, not invoiced (the quote flow says so in its trail). Raises
        NotFound when the estimate is gone."""
        current = self._estimate(quote_.id)
        if current is None:
            raise NotFound(f"Zoho estimate {quote_.id} does not exist", vendor=VENDOR, status=404)
        return self._to_quote(current)

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        """Estimates modified at or after ``since`` (every one when None), newest first, page by page.

        ``GET /estimates?last_modified_time=<since>&sort_column=last_modified_time&sort_order=D``: the filter
        is not on Zoho's estimates page (GUESSES["estimate_last_modified_filter"]), so the walk also stops at
        the first row older than ``since``: an ignored filter only costs pages. A sent estimate turning
        expired does not move its last_modified_time; the sync logic compares expiry dates itself.
        """
        params = {"sort_column": "last_modified_time", "sort_order": "D"}
        floor = None
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            floor = since.astimezone(UTC).replace(microsecond=0)
            params["last_modified_time"] = floor.strftime(self.TIME_FORMAT)
        for row in self.client.pages("/estimates", "estimates", params):
            current = self._to_quote(row)
            if floor is not None and current.updated_at is not None and current.updated_at < floor:
                return
            yield current

    def _line_item_ids(self, lines: Sequence[InvoiceLine]) -> dict[str, str]:
        """Zoho's item id by casefolded SKU for every line; ValidationFailed naming the SKUs it does not have."""
        missing = [line.item_code for line in lines if line.item_code.casefold() not in self._item_ids]
        if missing:
            self.get_items(missing)
        unknown = sorted({code for code in missing if code.casefold() not in self._item_ids})
        if unknown:
            raise ValidationFailed(f"Zoho Books has no active item with SKU {', '.join(unknown)}", vendor=VENDOR)
        return self._item_ids

    def _to_quote(self, row: Mapping[str, Any]) -> AccountingQuote:
        estimate_id = str(row.get("estimate_id") or "")
        path = self.ESTIMATE_WEB_PATH.format(organization=self._organization_id(), id=estimate_id)
        return to_quote(row, url=self.web_url + path if estimate_id else "")

    # -- repeating schedules (recurring invoices) ----------------------------------------------------

    def find_schedule(self, reference: str) -> RepeatingSchedule | None:
        """The recurring invoice whose ``recurrence_name`` is ``reference`` (compared case-insensitively),
        whatever its status (``status`` says whether it still runs), read in full; else None.

        The name rather than the reference_number is the key: Zoho documents it as the profile's "Unique
        name" (a second create with it is refused, GUESSES["recurring_duplicate_name"]) and lists
        ``recurrence_name`` as a filter, so one call finds a profile made by an attempt that died before its
        mapping, and a stopped one too (its name is still taken: a person decides). Raises IntegrationError
        subclasses."""
        row = self._profile_row_by_name(reference)
        if row is None:
            return None
        return to_schedule(self._profile(str(row.get("recurring_invoice_id") or "")) or row)

    def get_schedule(self, schedule_id: str) -> RepeatingSchedule | None:
        """``GET /recurringinvoices/{id}``, stopped and expired ones as ``ended``; None when Zoho says it does
        not exist (1002: deleted in Zoho)."""
        row = self._profile(schedule_id)
        return to_schedule(row) if row is not None else None

    def create_schedule(self, draft: ScheduleDraft, *, idempotency_key: str) -> RepeatingSchedule:
        """``POST /recurringinvoices`` (``mapping.recurring_invoice_body``): our reference as the unique
        ``recurrence_name`` and as the ``reference_number`` its children carry; items resolved by SKU first
        (an unknown one is a ValidationFailed naming it, nothing sent).

        Zoho's recurring invoice has no status to send: whether its child invoices are drafts or sent is the
        organisation's preference (Settings > Preferences > Recurring Invoices: "Create invoices as drafts"
        or "Create and send invoices"), which the API neither takes per profile nor shows, so
        ``draft.status`` (RECURRING_SCHEDULE_STATUS) is the README's instruction to set that preference.

        Zoho has no idempotency key (``idempotency_key`` is not sent), so the create is never re-sent: a lost
        answer (Unanswered) or a refusal (a taken name, GUESSES["recurring_duplicate_name"]) looks the name up
        and answers the profile found; the error is raised again when there is none. Raises ValidationFailed
        with Zoho's message (a start date in the past, GUESSES["recurring_past_start"]; a currency other than
        the customer's)."""
        if len(draft.reference) > RECURRENCE_NAME_MAX:
            raise ValidationFailed(
                f"the schedule reference is longer than Zoho's {RECURRENCE_NAME_MAX} characters", vendor=VENDOR
            )
        body = recurring_invoice_body(draft, self._line_item_ids(draft.lines))
        try:
            payload = self.client.call("POST", "/recurringinvoices", body=body, retry_sent=False)
            row = payload.get("recurring_invoice")
        except (Unanswered, ValidationFailed, Conflict):
            found = self._profile_row_by_name(draft.reference)
            if found is None:
                raise
            row = self._profile(str(found.get("recurring_invoice_id") or "")) or found
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the recurring invoice but returned none", vendor=VENDOR)
        return to_schedule(row)

    def end_schedule(self, schedule_id: str, *, idempotency_key: str) -> RepeatingSchedule:
        """Stop the profile (``POST /recurringinvoices/{id}/status/stop``): it makes no more invoices, the ones
        it made stay, and it stays readable with its name taken (``find_schedule`` still finds it, so no
        second one is made; a person can resume it in Zoho), where a delete would lose both. One already
        stopped or expired is returned as it is; one gone (1002) is answered as ended. A refused stop (it
        stopped or expired meanwhile, GUESSES["recurring_status_moves"]) is settled by reading it again."""
        row = self._profile(schedule_id)
        if row is None:
            return RepeatingSchedule(id=schedule_id, status="ended")
        if str(row.get("status") or "") in ENDED_RECURRING_STATUSES:
            return to_schedule(row)
        path = f"/recurringinvoices/{quote(schedule_id, safe='')}/status/stop"
        try:
            self.client.call("POST", path)
        except ValidationFailed:
            again = self._profile(schedule_id)
            if again is None or str(again.get("status") or "") in ENDED_RECURRING_STATUSES:
                return to_schedule(again) if again is not None else RepeatingSchedule(id=schedule_id, status="ended")
            raise
        stopped = self._profile(schedule_id)
        if stopped is None:
            return RepeatingSchedule(id=schedule_id, status="ended")
        return to_schedule(stopped)

    def extend_schedule(self, schedule: RepeatingSchedule, end: date, *, idempotency_key: str) -> RepeatingSchedule:
        """Move the profile's ``end_date`` to ``end`` (``PUT /recurringinvoices/{id}``): the same id, lines,
        customer and next invoice date. One already running until ``end`` or later (or without an end) is
        returned as it is. The update sends the profile's name, customer and frequency with the new end
        (GUESSES["recurring_update_partial"]); the answer must keep the profile's lines and total, else
        FatalError says a person must check it. Raises FatalError when the profile is gone."""
        row = self._profile(schedule.id)
        if row is None:
            raise FatalError(f"Zoho recurring invoice {schedule.id} is gone: it cannot be extended", vendor=VENDOR)
        current = to_schedule(row)
        if current.end_date is None or current.end_date >= end:
            return current
        body = {
            "recurrence_name": str(row.get("recurrence_name") or ""),
            "customer_id": str(row.get("customer_id") or ""),
            "recurrence_frequency": str(row.get("recurrence_frequency") or ""),
            "repeat_every": int(row.get("repeat_every") or 1),
            "end_date": end.isoformat(),
        }
        payload = self.client.call("PUT", f"/recurringinvoices/{quote(schedule.id, safe='')}", body=body)
        saved = payload.get("recurring_invoice")
        if not isinstance(saved, dict):
            raise FatalError("Zoho accepted the recurring invoice update but returned none", vendor=VENDOR)
        extended = to_schedule(saved)
        lines_kept = len(saved.get("line_items") or []) == len(row.get("line_items") or [])
        if not lines_kept or extended.total != current.total or extended.end_date != end:
            raise FatalError(
                f"Zoho changed recurring invoice {schedule.id} beyond its end date when it was extended: check its "
                'lines in Zoho (see GUESSES["recurring_update_partial"])',
                vendor=VENDOR,
            )
        return extended

    def _profile(self, profile_id: str) -> dict[str, Any] | None:
        """``GET /recurringinvoices/{id}``; None when Zoho says it does not exist."""
        return self._record("recurringinvoices", "recurring_invoice", profile_id)

    def _profile_row_by_name(self, name: str) -> dict[str, Any] | None:
        """The list row of the profile named ``name``: ``GET /recurringinvoices?recurrence_name=…`` (a
        documented filter), every row checked again."""
        wanted = name.strip().casefold()
        if not wanted:
            return None
        params = {"recurrence_name": name.strip(), "filter_by": "Status.All"}
        for row in self.client.pages("/recurringinvoices", "recurring_invoices", params):
            if str(row.get("recurrence_name") or "").strip().casefold() == wanted:
                return row
        return None

    # -- purchasing (vendors and purchase orders) ------------------------------------------------------

    def find_suppliers(self, name: str) -> list[Supplier]:
        """Active vendors whose name contains ``name``'s longest significant word (candidates; the sync logic
        compares normalised names): ``GET /contacts?contact_type=vendor&contact_name_contains=…``. The
        contact_type filter is not on Zoho's contacts page (GUESSES["contact_type_filter"]): each row's own
        type is checked, so a customer is never taken for a supplier. Raises IntegrationError subclasses."""
        word = search_word(name).strip()
        if not word:
            return []
        rows = self._active_contacts({"contact_type": "vendor", "contact_name_contains": word})
        return [to_supplier(row) for row in rows if str(row.get("contact_type") or "") == "vendor"]

    def create_supplier(self, name: str, *, idempotency_key: str) -> Supplier:
        """``POST /contacts`` with ``contact_type`` vendor and the name.

        Zoho has no idempotency key (``idempotency_key`` is not sent) and may allow duplicate names (a
        preference), so the create is never re-sent: a lost answer looks the vendor up by name and answers the
        one found (Unanswered again when none or several are). Raises Conflict when Zoho refuses the name
        (3062: a vendor has it, or a customer where names are unique across types,
        GUESSES["vendor_customer_same_name"]), ValidationFailed on other refusals."""
        body = {"contact_name": name, "contact_type": "vendor"}
        try:
            payload = self.client.call("POST", "/contacts", body=body, retry_sent=False)
        except Unanswered:
            same = [s for s in self.find_suppliers(name) if s.name.strip().casefold() == name.strip().casefold()]
            if len(same) != 1:
                raise
            return same[0]
        except Conflict as taken:
            raise Conflict(
                f"Zoho Books refused the supplier name: a contact has it already ({taken.message})",
                vendor=VENDOR,
                status=taken.status,
            ) from taken
        contact = payload.get("contact")
        if not isinstance(contact, dict):
            raise FatalError("Zoho accepted the vendor but returned no contact", vendor=VENDOR)
        return to_supplier(contact)

    def find_purchase_order(self, reference: str, dated: date) -> PurchaseOrder | None:
        """The purchase order whose reference_number is ``reference`` (any status: Zoho deletes outright, and
        a cancelled one is a person's decision, not ours to make again): ``GET
        /purchaseorders?reference_number=…&filter_by=Status.All``, every row checked again (see
        GUESSES["po_reference_filter"]). ``dated`` is not
        needed: Zoho filters by reference. Raises IntegrationError subclasses."""
        if not reference.strip():
            return None
        params = {"reference_number": reference, "filter_by": "Status.All"}
        for row in self.client.pages("/purchaseorders", "purchaseorders", params):
            if str(row.get("reference_number") or "") == reference:
                return self._to_purchase_order(row)
        return None

    def get_purchase_order(self, purchase_order_id: str) -> PurchaseOrder | None:
        """``GET /purchaseorders/{id}`` whatever its status; None when Zoho says it does not exist."""
        row = self._record("purchaseorders", "purchaseorder", purchase_order_id)
        return self._to_purchase_order(row) if row is not None else None

    def create_purchase_order(self, draft: PurchaseOrderDraft, *, idempotency_key: str) -> PurchaseOrder:
        """``POST /purchaseorders`` (a draft; Zoho numbers it) with lines at unit cost
        (``mapping.purchase_order_body``), after checking what Zoho would refuse: every item code a known
        item, and the vendor an active vendor whose currency is the draft's (a purchase order is in its
        vendor's currency). Raises ValidationFailed naming what is wrong, nothing sent.

        Exactly once without an idempotency key (``idempotency_key`` is not sent): the reference is looked up
        first (an order made by an attempt that died is answered), and the create is never re-sent; a lost
        answer looks the reference up again (Unanswered again when Zoho did not make it)."""
        found = self.find_purchase_order(draft.reference, draft.issue_date)
        if found is not None:
            return found
        codes = sorted({line.item_code for line in draft.lines if line.item_code})
        known = self.get_items(codes)
        unknown = [code for code in codes if code not in known]
        if unknown:
            raise ValidationFailed(f"Zoho Books has no active item with SKU {', '.join(unknown)}", vendor=VENDOR)
        vendor = self._contact(draft.supplier_id)
        if vendor is None or vendor.get("contact_type") != "vendor" or vendor.get("status", "active") != "active":
            raise ValidationFailed(f"Zoho contact {draft.supplier_id} is not an active vendor", vendor=VENDOR)
        currency = str(vendor.get("currency_code") or "")
        if currency and draft.currency and currency.upper() != draft.currency.upper():
            raise ValidationFailed(
                f"Zoho buys from vendor {draft.supplier_id} in {currency}, the purchase order is in {draft.currency}",
                vendor=VENDOR,
            )
        body = purchase_order_body(draft, {code.casefold(): item for code, item in known.items()})
        try:
            payload = self.client.call("POST", "/purchaseorders", body=body, retry_sent=False)
        except Unanswered:
            made = self.find_purchase_order(draft.reference, draft.issue_date)
            if made is None:
                raise
            return made
        row = payload.get("purchaseorder")
        if not isinstance(row, dict):
            raise FatalError("Zoho accepted the purchase order but returned none", vendor=VENDOR)
        return self._to_purchase_order(row)

    def _to_purchase_order(self, row: Mapping[str, Any]) -> PurchaseOrder:
        order_id = str(row.get("purchaseorder_id") or "")
        path = self.PURCHASE_ORDER_WEB_PATH.format(organization=self._organization_id(), id=order_id)
        return to_purchase_order(row, url=self.web_url + path if order_id else "")


if TYPE_CHECKING:  # mypy holds the adapter to the quote port its spec declares (``quote``)
    _QUOTES: type[QuoteAccounting] = ZohoBooksAccounting
