"""QuickBooks Online as an AccountingPort: customers, items, invoices, repeating schedules (recurring
Invoice templates), vendors and purchase orders (PurchasingAccounting), its change feed (CDC, else queries)
and webhooks, thin over ``client`` (HTTP, query paging, faults), ``mapping`` (canonical <-> QBO JSON) and
``webhooks`` (signature, delivery models).

Vendor facts encoded here (developer.intuit.com Accounting API reference, Intuit's blog posts on voiding
invoices and on ``requestid``; see /work/shared/vendors/accounting.md): writes are ``POST /{entity}``; an
update is ``"sparse": true`` with the current ``SyncToken`` (a stale one is error 5010); ``?requestid=`` makes
a write idempotent; ``POST /batch`` runs up to 30 operations or queries; Change Data Capture looks back 30
days and answers at most 1,000 objects per entity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx

from closeloop.dates import parse_day, parse_utc
from closeloop.errors import Conflict, FatalError, NotFound, ValidationFailed
from closeloop.http import Fault, Pacer, RateLimit, typed_error
from closeloop.models import (
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
    customer_fields,
)
from closeloop.oauth import RefreshingTokens
from closeloop.ports import QuoteAccounting, WebhookRequest
from closeloop.vendors.quickbooks import webhooks
from closeloop.vendors.quickbooks.client import (
    VENDOR,
    DuplicateDocNumber,
    QuickBooksClient,
    StaleSyncToken,
    fault_of,
    qbo_literal,
    request_id,
)
from closeloop.vendors.quickbooks.mapping import (
    INVOICED_ESTIMATE_STATUS,
    ITEM_DESCRIPTION_MAX,
    ITEM_KEYS,
    ITEM_NAME_MAX,
    ITEM_SKU_MAX,
    NEW_ESTIMATE_STATUS,
    doc_number,
    is_voided,
    linked_ids,
    purchase_order_doc_number,
    search_word,
    template_of,
    to_customer,
    to_invoice,
    to_item,
    to_purchase_order,
    to_qbo_customer,
    to_qbo_estimate,
    to_qbo_invoice,
    to_qbo_item,
    to_qbo_purchase_order,
    to_qbo_template,
    to_quote,
    to_schedule,
    to_supplier,
    writable_recurring_info,
)

#: Item types a sales line names and ``iter_items`` lists (bundles, categories and the like are not sold alone).
SELLABLE_ITEM_TYPES = frozenset({"Service", "NonInventory", "Inventory"})
#: What ``create_item`` sends besides Name and Type (``code`` is the Sku).
CREATE_FIELDS = ("code", "description", "unit_price", "unit_cost", "tax_code", "sales_account", "purchase_account")
#: The setting that names a new item's account, per purpose (see ``QuickBooksAccounting._default_account``).
DEFAULT_ACCOUNT_SETTINGS = {"income": "QUICKBOOKS_ITEM_INCOME_ACCOUNT", "expense": "QUICKBOOKS_ITEM_EXPENSE_ACCOUNT"}
#: Without a setting: the first active account of these AccountTypes, in this order (QBO's own defaults for
#: a new product or service: an income account, and Cost of Goods Sold for its purchase cost).
DEFAULT_ACCOUNT_TYPES = {"income": ("Income",), "expense": ("Cost of Goods Sold", "Expense")}
#: The AccountType of the account a purchase order is credited to (Intuit: "a Liability account with subtype
#: Payables").
PAYABLES_ACCOUNT_TYPE = "Accounts Payable"


def _id_order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    """QBO ids are digit strings: numeric order (the oldest first), anything else after them."""
    text = str(row.get("Id") or "")
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


class QuickBooksAccounting:
    """AccountingPort for QuickBooks Online.

    Where our values live (each one chosen because QBO's query language can filter on it):
    - the customer number stamp (``hubspot-company-123``) is the Customer's ``MiddleName``: of the fields the
      Customer reference marks filterable (Id, DisplayName, GivenName, MiddleName, FamilyName, CompanyName,
      PrimaryEmailAddr, PrintOnCheckName, Active, Balance, MetaData) it is the only free text that no sales
      form prints. CompanyName is printed on invoices and PrintOnCheckName on refund cheques; ResaleNum (16
      chars), Notes and AlternatePhone cannot be queried at all;
    - the tax number is written to ``PrimaryTaxIdentifier``, which QBO masks on read (``XXXXXX56789``) and
      cannot filter on, so ``find_customers(tax_number=…)`` finds nothing and a masked value is never
      reported as a comparable field (it would look like drift);
    - QBO customers have no contact persons, so ``people`` is neither written nor compared;
    - an invoice's reference: its first word (``hubspot-deal-3000001``) is the ``DocNumber`` (filterable, ≤21
      chars; a company with custom transaction numbers off still stores a DocNumber sent by the API), the
      whole reference and the deal link are the ``PrivateNote`` (not filterable, and overwritten by a void).
      So ``find_invoice`` finds an invoice created just before a crash, and a duplicate DocNumber (6140)
      refuses a second invoice for the deal;
    - a quote's reference: as an invoice's, its first word (``hubspot-quote-4000001``) is the Estimate's
      ``DocNumber`` (Intuit's Estimate page marks Id, CustomerRef, TxnDate, DueDate and DocNumber
      filterable; PrivateNote and TxnStatus are not), the whole reference and the CRM link its
      ``PrivateNote``. So ``find_quote`` finds an estimate created just before a crash, and a duplicate
      DocNumber (6140) refuses a second estimate for the CRM quote;
    - items: our item code is the Item's ``Sku`` (Intuit's XSD: "identifies an item uniquely", ≤100 chars,
      filterable), else its ``Name`` for items made before SKUs were written (the older convention: the
      Name is the code, the display name in Description); the product's name is the Name (unique among
      items: 6240), its description the Description. Map differing SKUs with SKU_ITEM_CODES.
    """

    name = VENDOR
    #: QBO closes an estimate an invoice bills (TxnStatus Closed): ``mark_quote_invoiced`` sets it.
    marks_invoiced: bool = True
    #: The TxnStatus in which an estimate may still be revised (the customer has not answered it).
    REVISABLE_ESTIMATE_STATUSES: ClassVar[frozenset[str]] = frozenset({"Pending"})
    MAX_RESULTS: ClassVar[int] = 1000
    BATCH_SIZE: ClassVar[int] = 30
    #: Values per ``IN (…)`` list, so a GET query URL stays well under proxies' limits.
    IN_CHUNK: ClassVar[int] = 50
    #: CDC looks back at most 30 days; older watermarks (and full CDC answers) use a query instead.
    CDC_LOOKBACK: ClassVar[timedelta] = timedelta(days=29)
    CDC_MAX_OBJECTS: ClassVar[int] = 1000
    #: Per realm: 500 calls a minute, more than 10 concurrent is a 429
    #: (developer.intuit.com …/learn/limits-and-throttles).
    RATE_LIMIT: ClassVar[RateLimit] = RateLimit(per_minute=500, concurrent=10)
    #: Intuit's XSD (Finance.xsd, Item): Sku and Name at most 100 characters, Description 4000.
    item_limits: ItemLimits = ItemLimits(code=ITEM_SKU_MAX, name=ITEM_NAME_MAX, description=ITEM_DESCRIPTION_MAX)

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        realm_id: Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        webhook_verifier_token: Callable[[], str] | None = None,
        pacer: Pacer | None = None,
        item_income_account: str = "",
        item_expense_account: str = "",
        item_type: str = "Service",
    ) -> None:
        """``webhook_verifier_token``: the app's webhook Verifier Token (QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN);
        ``pacer``: the realm's shared call budget (``RATE_LIMIT``; see closeloop.pacing);
        ``item_income_account``/``item_expense_account``: the accounts a new item posts to when the CRM
        names none (an account Id or name; see ``_default_account``); ``item_type``: a new item's Type."""
        self._item_accounts = {"income": item_income_account, "expense": item_expense_account}
        self._item_type = item_type
        self._accounts: list[dict[str, Any]] | None = None
        self._accounts_chosen: dict[str, str] = {}
        self._realm_id = realm_id
        self._clock = clock
        self._verifier_token = webhook_verifier_token
        self.client = QuickBooksClient(
            base_url=base_url,
            tokens=tokens,
            realm_id=realm_id,
            max_results=self.MAX_RESULTS,
            transport=transport,
            sleep=sleep,
            pacer=pacer,
        )
        self.http = self.client.http

    # -- change notifications ----------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """``intuit-signature`` must be base64(HMAC-SHA256(verifier token, raw body)), in constant time.

        Raises WebhookRejected(401) when it is missing or wrong, ConfigurationError when
        QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN is not set. Nothing of the body is parsed.
        """
        webhooks.verify_signature(self._verifier_token() if self._verifier_token is not None else "", request)

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """The Customer, Invoice and Payment entities of our realm (other realms and entities are dropped).

        Two shapes, the same events: a JSON array is CloudEvents, an object is the legacy
        ``eventNotifications`` (``webhooks.QuickBooksWebhookBody``). The dedupe key is the entity, id,
        operation and ``lastUpdated`` (a CloudEvent's ``id``): the same for every redelivery of one change.
        Raises WebhookRejected(400) naming what is malformed.
        """
        return webhooks.parse_delivery(body, self._realm_id().strip(), self._clock)

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Customers (inactive too) changed at or after ``since``'s second.

        Within CDC's look-back: ``GET /cdc?entities=Customer&changedSince=…`` (one call). Older watermarks,
        or a CDC answer at its 1,000-object cap, page through ``Active IN (true, false) AND
        MetaData.LastUpdatedTime >= …`` instead (name lists answer active records only otherwise). QBO's
        times have whole seconds, so every row of ``since``'s second is kept. Raises IntegrationError
        subclasses.
        """
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since.replace(microsecond=0)
        stamp = floor.isoformat()
        rows: Iterable[dict[str, Any]] | None = None
        if since >= self._clock() - self.CDC_LOOKBACK:
            blocks = self._cdc_rows(("Customer",), stamp)
            rows = blocks["Customer"] if blocks is not None else None
        if rows is None:
            rows = self.client.query_all(
                "Customer", f"Active IN (true, false) AND MetaData.LastUpdatedTime >= {qbo_literal(stamp)}"
            )
        for row in rows:
            updated = parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime"))
            if updated is None or updated >= floor:
                yield to_customer(row)

    def _cdc_rows(self, entities: Sequence[str], changed_since: str) -> dict[str, list[dict[str, Any]]] | None:
        """``GET /cdc`` rows per entity, or None when the answer cannot be trusted complete (an entity at
        the 1,000-object cap, or refused, e.g. ``changedSince`` beyond the look-back)."""
        status, payload = self.client.call(
            "GET", "cdc", params={"entities": ",".join(entities), "changedSince": changed_since}, ok=(200, 400)
        )
        if status == 400:
            return None
        rows: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for block in payload.get("CDCResponse") or []:
            for result in block.get("QueryResponse") or []:
                for entity in entities:
                    rows[entity].extend(result.get(entity) or [])
        if any(len(found) >= self.CDC_MAX_OBJECTS for found in rows.values()):
            return None
        return rows

    # -- customers ---------------------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        """``GET /customer/{id}``; None when QBO does not know it (610/404) or it is inactive (deleted)."""
        row = self._read("customer", customer_id)
        if row is None or row.get("Active") is False:
            return None
        return to_customer(row)

    def _read(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        if not entity_id.strip():
            return None
        try:
            _, payload = self.client.call("GET", f"{entity}/{quote(entity_id, safe='')}")
        except NotFound:  # a 404, or QBO's 610 (read_fault)
            return None
        row = payload.get(entity.capitalize())
        return row if isinstance(row, dict) else None

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        """Active customers by MiddleName (our stamp), PrimaryEmailAddr, or a DisplayName word (LIKE).

        A tax number cannot be looked up (QBO masks it and cannot filter on it): [] without a call.
        """
        if number:
            where = f"MiddleName = {qbo_literal(number)}"
        elif tax_number:
            return []
        elif email:
            where = f"PrimaryEmailAddr = {qbo_literal(email)}"
        elif name:
            where = f"DisplayName LIKE {qbo_literal('%' + search_word(name) + '%')}"
        else:
            return []
        rows = list(self.client.query_all("Customer", where))
        found = [to_customer(r) for r in rows]
        if email:
            found = [c for c in found if c.email == email.lower()]
        return found

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        """Active customers matching any value, by the cheaper of two ways (tax numbers cannot be queried).

        Either one paged read of every active customer (``select count(*)`` says how many pages), or queries
        run 30 to a ``POST /batch``: ``MiddleName IN (…)`` and ``PrimaryEmailAddr IN (…)`` IN_CHUNK values at a
        time and one ``DisplayName LIKE '%word%'`` per name. A query that fills MAXRESULTS falls back to
        the paged read, so the answer is always a superset.
        """
        queries: list[str] = []
        for field_name, values in (("MiddleName", numbers), ("PrimaryEmailAddr", emails)):
            wanted = sorted({v for v in values if v.strip()})
            for start in range(0, len(wanted), self.IN_CHUNK):
                chunk = ", ".join(qbo_literal(v) for v in wanted[start : start + self.IN_CHUNK])
                queries.append(f"{field_name} IN ({chunk})")
        words = sorted({search_word(n) for n in names if n.strip()})
        queries.extend(f"DisplayName LIKE {qbo_literal('%' + word + '%')}" for word in words)
        if not queries:
            return []
        count_page = self.client.query_page("select count(*) from Customer")
        total = int(count_page.get("totalCount") or 0)
        if math.ceil(max(total, 1) / self.MAX_RESULTS) <= math.ceil(len(queries) / self.BATCH_SIZE):
            return [to_customer(r) for r in self.client.query_all("Customer")]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(queries), self.BATCH_SIZE):
            group = queries[start : start + self.BATCH_SIZE]
            items = [
                {"bId": str(i), "Query": f"select * from Customer where {q} MAXRESULTS {self.MAX_RESULTS}"}
                for i, q in enumerate(group)
            ]
            answers = self.client.batch(items, None)
            for i in range(len(group)):
                answer = answers.get(str(i)) or {}
                if "QueryResponse" not in answer:
                    raise self._batch_item_error(answer, "a customer query")
                rows: list[dict[str, Any]] = (answer.get("QueryResponse") or {}).get("Customer") or []
                if len(rows) >= self.MAX_RESULTS:
                    return [to_customer(r) for r in self.client.query_all("Customer")]
                found.update({str(r.get("Id")): r for r in rows})
        return [to_customer(r) for r in found.values()]

    def _batch_item_error(self, answer: Mapping[str, Any], what: str) -> FatalError:
        """A refused batch item (inside a 200 answer): the error its Fault means, ValidationFailed by default."""
        fault = fault_of(answer, otherwise=ValidationFailed) or Fault("no answer", error=ValidationFailed)
        error = typed_error(200, fault, f"QuickBooks refused {what}", vendor=VENDOR)
        if not isinstance(error, FatalError):  # every error FAULT_ERRORS names is fatal; anything else is raised
            raise error
        return error

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        """``POST /customer?requestid=…``. Raises Conflict on 6240 (name taken by a customer, vendor or employee)."""
        body = to_qbo_customer(customer, customer_fields(customer).keys(), number)
        _, payload = self.client.call("POST", "customer", params={"requestid": request_id(idempotency_key)}, body=body)
        return to_customer(payload.get("Customer") or {})

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        """Batched creates, BATCH_SIZE per ``POST /batch?requestid=…`` (the key and the chunk's position)."""
        results: list[AccountingCustomer | FatalError] = []
        for start in range(0, len(customers), self.BATCH_SIZE):
            chunk = customers[start : start + self.BATCH_SIZE]
            items = [
                {
                    "bId": str(i),
                    "operation": "create",
                    "Customer": to_qbo_customer(customer, customer_fields(customer).keys(), number),
                }
                for i, (customer, number) in enumerate(chunk)
            ]
            answers = self.client.batch(items, f"{idempotency_key}#{start}")
            for i in range(len(chunk)):
                answer = answers.get(str(i)) or {}
                row = answer.get("Customer")
                results.append(
                    to_customer(row) if isinstance(row, dict) else self._batch_item_error(answer, "the customer")
                )
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
        """A sparse update with the current SyncToken; a stale token (5010) re-reads and retries once.

        Raises NotFound when the customer is gone, Conflict on a taken name, ValidationFailed otherwise.
        """
        body = to_qbo_customer(customer, fields, number)
        for attempt in (1, 2):
            current = self._read("customer", customer_id)
            if current is None:
                raise NotFound(f"QuickBooks has no customer {customer_id}", vendor=VENDOR, status=400)
            sent = {"Id": customer_id, "SyncToken": str(current.get("SyncToken", "0")), "sparse": True, **body}
            key = idempotency_key if attempt == 1 else f"{idempotency_key}#stale"
            try:
                _, payload = self.client.call("POST", "customer", params={"requestid": request_id(key)}, body=sent)
            except StaleSyncToken:
                if attempt == 1:
                    continue
                raise
            return to_customer(payload.get("Customer") or {})
        raise AssertionError("unreachable")  # pragma: no cover

    # -- items (the catalogue) ----------------------------------------------------------------------

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """Active items by code, with ``id`` and ``fields`` (PRODUCT_FIELDS) filled.

        A code is looked up as the Item's ``Sku`` (``Sku IN (…)``), then, for the codes no Sku holds, as its
        ``Name`` (items made before SKUs were written; an item whose Sku names another code is not taken).
        Intuit's XSD marks both filterable; QBO compares text case-insensitively. Raises ValidationFailed
        when two active items carry one SKU (an invoice line must name one item; see
        GUESSES["item_sku_stored"]), IntegrationError subclasses otherwise.
        """
        return {code: to_item(row, code) for code, row in self._item_rows_by_code(codes).items()}

    def _item_rows_by_code(self, codes: Collection[str]) -> dict[str, dict[str, Any]]:
        asked: dict[str, list[str]] = {}
        for code in sorted({c for c in codes if c.strip()}):
            asked.setdefault(code.casefold(), []).append(code)
        found: dict[str, dict[str, Any]] = {}
        by_sku: dict[str, list[dict[str, Any]]] = {}
        for row in self._item_rows("Sku", [code for group in asked.values() for code in group]):
            by_sku.setdefault(str(row.get("Sku") or "").casefold(), []).append(row)
        for folded, rows in by_sku.items():
            if len(rows) > 1:
                ids = ", ".join(str(r.get("Id")) for r in rows)
                raise ValidationFailed(f"QuickBooks has several items with SKU {rows[0].get('Sku')!r} ({ids})")
            for code in asked.get(folded, []):
                found[code] = rows[0]
        rest = [code for code in sorted(c for group in asked.values() for c in group) if code not in found]
        for row in self._item_rows("Name", rest):
            sku = str(row.get("Sku") or "").strip().casefold()
            for code in asked.get(str(row.get("Name") or "").casefold(), []):
                if code not in found and sku in ("", code.casefold()):
                    found[code] = row
        return found

    def _item_rows(self, key: str, values: Sequence[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(values), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(v) for v in values[start : start + self.IN_CHUNK])
            yield from self.client.query_all("Item", f"{key} IN ({chunk})")

    def iter_items(self) -> Iterator[Item]:
        """Every active item of a type a sales line can name (Service, NonInventory, Inventory), paged by
        STARTPOSITION; each addressed by its Sku, else its Name (``mapping.item_code``)."""
        for rows in self.client.query_pages("Item"):
            for row in rows:
                if row.get("Type") in SELLABLE_ITEM_TYPES:
                    yield to_item(row)

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        """``POST /item?requestid=…``: Name, Sku (the code), Description, UnitPrice, PurchaseCost and the
        tax code and accounts, as a ``QUICKBOOKS_ITEM_TYPE`` item (Service unless set).

        Intuit requires an IncomeAccountRef (and an ExpenseAccountRef once purchase information such as
        PurchaseCost is given); the draft's accounts are used, else ``_default_account``'s rule (see
        GUESSES["item_create_accounts"]). A repeat of
        the same key answers the first item (``requestid``). Raises Conflict when the Name is taken (6240),
        ValidationFailed when QuickBooks refuses the item or no account can be chosen.
        """
        body = {"Name": draft.name or draft.code, "Type": self._item_type, **to_qbo_item(draft, CREATE_FIELDS)}
        body["IncomeAccountRef"] = {"value": draft.sales_account or self._default_account("income")}
        if "PurchaseCost" in body or draft.purchase_account:
            body["ExpenseAccountRef"] = {"value": draft.purchase_account or self._default_account("expense")}
        _, payload = self.client.call("POST", "item", params={"requestid": request_id(idempotency_key)}, body=body)
        return self._saved_item(payload, draft.code)

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        """A sparse update (``"sparse": true`` with the current SyncToken) of the named ``fields`` only;
        ``code`` among them sets the Sku to ``draft.code``. The Sku is set to the code whenever the item
        was found by its Name alone, so later lookups find it by SKU. The item's current Name, Type and
        mapped values are sent alongside (see GUESSES["item_sparse_update"]). A stale SyncToken (5010)
        re-reads and retries once. Raises NotFound when the item is gone, Conflict on a taken Name.
        """
        item_id = item.id or str((self._item_rows_by_code([item.code]).get(item.code) or {}).get("Id") or "")
        for attempt in (1, 2):
            current = self._read("item", item_id)
            if current is None or current.get("Active") is False:
                raise NotFound(f"QuickBooks has no active item {item.code!r}", vendor=VENDOR, status=400)
            wanted = set(fields) | ({"code"} if str(current.get("Sku") or "") != draft.code else set())
            changes = to_qbo_item(draft, wanted)
            if "PurchaseCost" in changes and not (current.get("ExpenseAccountRef") or changes.get("ExpenseAccountRef")):
                changes["ExpenseAccountRef"] = {"value": self._default_account("expense")}
            if not changes:
                return to_item(current, draft.code)
            kept = {k: current[k] for k in ("Name", "Type", *ITEM_KEYS.values()) if current.get(k) is not None}
            sent = {**kept, **changes, "Id": item_id, "SyncToken": str(current.get("SyncToken", "0")), "sparse": True}
            key = idempotency_key if attempt == 1 else f"{idempotency_key}#stale"
            try:
                _, payload = self.client.call("POST", "item", params={"requestid": request_id(key)}, body=sent)
            except StaleSyncToken:
                if attempt == 1:
                    continue
                raise
            return self._saved_item(payload, draft.code if "code" in wanted else item.code)
        raise AssertionError("unreachable")  # pragma: no cover

    def _saved_item(self, payload: Mapping[str, Any], code: str) -> Item:
        row = payload.get("Item")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the item but returned none", vendor=VENDOR, status=200)
        return to_item(row, code)

    def _default_account(self, purpose: str) -> str:
        """The id of the account a new item posts to when the draft names none, by one documented rule:

        the account named by the setting (QUICKBOOKS_ITEM_INCOME_ACCOUNT for ``income``,
        QUICKBOOKS_ITEM_EXPENSE_ACCOUNT for ``expense``: an account Id, Name or FullyQualifiedName), else
        the active account of the first type in ``DEFAULT_ACCOUNT_TYPES[purpose]`` with the lowest Id (the
        one QuickBooks made with the company). Read once per adapter from ``select * from Account`` (active
        accounts; Intuit's XSD marks AccountType filterable on desktop only, so it is not filtered on).
        Raises ValidationFailed naming the setting when the named account does not exist or none fits.
        """
        if purpose in self._accounts_chosen:
            return self._accounts_chosen[purpose]
        if self._accounts is None:
            self._accounts = list(self.client.query_all("Account"))
        setting, named = DEFAULT_ACCOUNT_SETTINGS[purpose], self._item_accounts.get(purpose, "").strip()
        if named:
            wanted = named.casefold()
            hits = [
                a
                for a in self._accounts
                if wanted in (str(a.get(k) or "").casefold() for k in ("Id", "Name", "FullyQualifiedName"))
            ]
            if not hits:
                raise ValidationFailed(f"{setting} names {named!r}, which is no active QuickBooks account")
            chosen = str(hits[0].get("Id"))
        else:
            candidates = [
                a
                for kind in DEFAULT_ACCOUNT_TYPES[purpose]
                for a in sorted(self._accounts, key=_id_order)
                if a.get("AccountType") == kind
            ]
            if not candidates:
                kinds = " or ".join(DEFAULT_ACCOUNT_TYPES[purpose])
                raise ValidationFailed(f"QuickBooks has no active {kinds} account for new items: set {setting}")
            chosen = str(candidates[0].get("Id"))
        self._accounts_chosen[purpose] = chosen
        return chosen

    # -- invoices ----------------------------------------------------------------------------------

    def find_invoice(self, reference: str) -> Invoice | None:
        """The live (not voided) invoice whose DocNumber carries ``reference``'s first word, if any.

        ``select * from Invoice where DocNumber = '…'``; a voided one is skipped (a deal may get a new one).
        """
        doc = doc_number(reference)
        if not doc:
            return None
        rows = list(self.client.query_all("Invoice", f"DocNumber = {qbo_literal(doc)}"))
        live = [r for r in rows if not is_voided(r)]
        if not live:
            return None
        return self._to_invoices(live[:1])[0]

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """``GET /invoice/{id}`` whatever its state; None when QBO does not know it."""
        row = self._read("invoice", invoice_id)
        return self._to_invoices([row])[0] if row else None

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        """``POST /invoice?requestid=…``: posted at once (QBO has no draft state), DocNumber from the reference.

        Items are looked up by Name first (an unknown code is a ValidationFailed naming it, never a guessed
        line). A duplicate DocNumber (6140) means the deal already has an invoice: a live one is returned as
        is; when only voided ones hold the number it is created again with ``include=allowduplicatedocnum``.
        Raises ValidationFailed with QBO's reasons.
        """
        body = to_qbo_invoice(draft, self._line_item_ids(draft.lines))
        params = {"requestid": request_id(idempotency_key)}
        try:
            _, payload = self.client.call("POST", "invoice", params=params, body=body)
        except DuplicateDocNumber:
            existing = self.find_invoice(draft.reference)
            if existing is not None:
                return existing
            params = {"requestid": request_id(f"{idempotency_key}#dup"), "include": "allowduplicatedocnum"}
            _, payload = self.client.call("POST", "invoice", params=params, body=body)
        row = payload.get("Invoice")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the invoice but returned none", vendor=VENDOR, status=200)
        return self._to_invoices([row])[0]

    def send_invoice(self, invoice_id: str) -> None:
        """``POST /invoice/{id}/send``: QBO emails it to its BillEmail.

        QBO takes no ``requestid`` on send, so the call is never repeated once sent (a second email is worse
        than none): only a connect error or a 429 is retried. Raises ValidationFailed when refused,
        Unanswered when the request was sent and no answer says whether QBO emailed it.
        """
        self.client.call(
            "POST",
            f"invoice/{quote(invoice_id, safe='')}/send",
            content_type="application/octet-stream",
            retry_sent=False,
        )

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        """Invoices changed at or after ``since`` (every one when None).

        Within CDC's look-back: ``GET /cdc?entities=Invoice,Payment&changedSince=…`` (one call), plus the
        invoices that a changed payment points at (``Id IN (…)``); deleted ones come back with status
        DELETED. Older watermarks, or a CDC answer at its 1,000-object cap, page through
        ``MetaData.LastUpdatedTime >= …`` instead. Raises IntegrationError subclasses.
        """
        if since is None:
            yield from self._invoice_pages("")
            return
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since.replace(microsecond=0)
        stamp = floor.isoformat()
        if since >= self._clock() - self.CDC_LOOKBACK:
            changed = self._cdc(stamp)
            if changed is not None:
                for invoice in changed:
                    if invoice.updated_at is None or invoice.updated_at >= since:
                        yield invoice
                return
        for invoice in self._invoice_pages(f"MetaData.LastUpdatedTime >= {qbo_literal(stamp)}"):
            if invoice.updated_at is None or invoice.updated_at >= since:
                yield invoice

    def _cdc(self, changed_since: str) -> list[Invoice] | None:
        """The CDC answer as invoices, or None when it cannot be trusted complete (cap reached, refused)."""
        blocks = self._cdc_rows(("Invoice", "Payment"), changed_since)
        if blocks is None:
            return None  # e.g. changedSince beyond the look-back: the query path answers instead
        invoices, payments = blocks["Invoice"], blocks["Payment"]
        deleted = [r for r in invoices if str(r.get("status", "")).lower() == "deleted"]
        live = [r for r in invoices if str(r.get("status", "")).lower() != "deleted"]
        seen = {str(r.get("Id")) for r in invoices}
        linked = sorted(
            {
                str(txn.get("TxnId"))
                for payment in payments
                for line in payment.get("Line") or []
                for txn in line.get("LinkedTxn") or []
                if txn.get("TxnType") == "Invoice" and str(txn.get("TxnId")) not in seen
            }
        )
        for start in range(0, len(linked), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(i) for i in linked[start : start + self.IN_CHUNK])
            live.extend(self.client.query_all("Invoice", f"Id IN ({chunk})"))
        out = self._to_invoices(live)
        for row in deleted:
            updated = parse_utc((row.get("MetaData") or {}).get("LastUpdatedTime"))
            out.append(Invoice(id=str(row.get("Id", "")), status="DELETED", updated_at=updated))
        return out

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        """Invoices with TxnDate in [issued_from, issued_before), any state, paged by STARTPOSITION."""
        where = (
            f"TxnDate >= {qbo_literal(issued_from.isoformat())} AND TxnDate < {qbo_literal(issued_before.isoformat())}"
        )
        yield from self._invoice_pages(where)

    def _invoice_pages(self, where: str) -> Iterator[Invoice]:
        """The invoices of a query, converted a page at a time (each page's payments read before the next)."""
        for rows in self.client.query_pages("Invoice", where):
            yield from self._to_invoices(rows)

    def _to_invoices(self, rows: Sequence[Mapping[str, Any]]) -> list[Invoice]:
        """Canonical invoices; the dates of linked payments are read in one query per IN_CHUNK payments."""
        payment_ids = sorted({pid for row in rows for pid in linked_ids(row, "Payment")})
        paid_on: dict[str, date] = {}
        for start in range(0, len(payment_ids), self.IN_CHUNK):
            chunk = ", ".join(qbo_literal(p) for p in payment_ids[start : start + self.IN_CHUNK])
            for payment in self.client.query_all("Payment", f"Id IN ({chunk})"):
                day = parse_day(payment.get("TxnDate"))
                if day:
                    paid_on[str(payment.get("Id"))] = day
        return [to_invoice(row, paid_on) for row in rows]

    # -- quotes (Estimates) --------------------------------------------------------------------------

    def find_quote(self, reference: str, customer_id: str) -> AccountingQuote | None:
        """The estimate whose DocNumber carries ``reference``'s first word (the CRM quote id), if any.

        ``select * from Estimate where DocNumber = '…'``, as ``find_invoice`` finds invoices: the DocNumber
        names the CRM quote, so the estimate found is that quote's whichever customer it now bills (one of
        ``customer_id`` first, should several hold the number). QBO deletes estimates outright (there is no
        void), so every row is live. Raises IntegrationError subclasses.
        """
        doc = doc_number(reference)
        if not doc:
            return None
        rows = sorted(self.client.query_all("Estimate", f"DocNumber = {qbo_literal(doc)}"), key=_id_order)
        if not rows:
            return None
        own = [r for r in rows if str((r.get("CustomerRef") or {}).get("value") or "") == customer_id]
        return to_quote((own or rows)[0])

    def get_quote(self, quote_id: str) -> AccountingQuote | None:
        """``GET /estimate/{id}``; None when QBO does not know it (deleted)."""
        row = self._read("estimate", quote_id)
        return to_quote(row) if row else None

    def create_quote(self, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """``POST /estimate?requestid=…``: TxnStatus Pending (QBO's sent-and-awaiting-answer; it has no
        draft, so a DRAFT quote is Pending too), ExpirationDate, DocNumber from the reference, lines as an
        invoice's (items resolved by Sku, then Name: an unknown code is a ValidationFailed naming it).

        A repeat of the same key answers the first estimate (``requestid``). A duplicate DocNumber (6140)
        means the CRM quote has an estimate already: it is returned as is. Raises ValidationFailed with
        QBO's reasons.
        """
        body = {**to_qbo_estimate(draft, self._line_item_ids(draft.lines)), "TxnStatus": NEW_ESTIMATE_STATUS}
        try:
            _, payload = self.client.call(
                "POST", "estimate", params={"requestid": request_id(idempotency_key)}, body=body
            )
        except DuplicateDocNumber:
            existing = self.find_quote(draft.reference, draft.customer_id)
            if existing is None:
                raise
            return existing
        return self._saved_quote(payload)

    def revise_quote(self, quote_: AccountingQuote, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """A sparse update (``"sparse": true`` at the current SyncToken) replacing the estimate's customer,
        lines, tax mode, currency, dates and note with the draft's; its TxnStatus and DocNumber stay (QBO
        keeps no versions; the SyncToken counts the edits). A stale SyncToken (5010) re-reads and retries
        once. Raises NotFound when the estimate is gone, ValidationFailed when it is no longer Pending
        (accepted, rejected or closed meanwhile) or QBO refuses the change.
        """
        changes = to_qbo_estimate(draft, self._line_item_ids(draft.lines))
        changes.pop("DocNumber")
        return self._update_estimate(quote_.id, changes, idempotency_key, self.REVISABLE_ESTIMATE_STATUSES)

    def mark_quote_sent(self, quote_: AccountingQuote, *, idempotency_key: str) -> AccountingQuote:
        """QBO has no draft estimate (a new one is Pending, read SENT): the estimate as read, nothing written.
        Raises NotFound when it is gone."""
        current = self.get_quote(quote_.id)
        if current is None:
            raise NotFound(f"QuickBooks has no estimate {quote_.id}", vendor=VENDOR, status=400)
        return current

    def mark_quote_invoiced(self, quote_: AccountingQuote, invoice_id: str, *, idempotency_key: str) -> AccountingQuote:
        """The estimate Closed: QBO's state of an estimate an invoice was made from.

        An invoice drafted with the estimate (``accounting_quote_id``) is created with ``LinkedTxn`` to it,
        which links the two and closes it (GUESSES["estimate_closed_by_invoice"]): read Closed, it is returned
        as read, with no write. The fallback, for an invoice made without the link (before invoices named
        their quote, or QBO left the linked estimate open), is a sparse update of TxnStatus Closed at the
        current SyncToken (5010 re-reads and retries once; GUESSES["estimate_closed_by_update"]): no link, so
        ``invoice_id`` is then the audit trail's only. Raises NotFound when the estimate is gone.
        """
        return self._update_estimate(quote_.id, {"TxnStatus": INVOICED_ESTIMATE_STATUS}, idempotency_key, None)

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        """Estimates changed at or after ``since`` (all when None), as invoices are polled.

        Within CDC's look-back: ``GET /cdc?entities=Estimate&changedSince=…`` (one call; deleted ones come
        back DELETED). Older watermarks, or a CDC answer at its 1,000-object cap, page through
        ``MetaData.LastUpdatedTime >= …`` by STARTPOSITION. Raises IntegrationError subclasses.
        """
        if since is None:
            for rows in self.client.query_pages("Estimate"):
                yield from (to_quote(row) for row in rows)
            return
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        floor = since.replace(microsecond=0)
        stamp = floor.isoformat()
        found: Iterable[dict[str, Any]] | None = None
        if since >= self._clock() - self.CDC_LOOKBACK:
            blocks = self._cdc_rows(("Estimate",), stamp)
            found = blocks["Estimate"] if blocks is not None else None
        if found is None:
            found = self.client.query_all("Estimate", f"MetaData.LastUpdatedTime >= {qbo_literal(stamp)}")
        for row in found:
            current = to_quote(row)
            if current.updated_at is None or current.updated_at >= floor:
                yield current

    def _update_estimate(
        self, estimate_id: str, changes: Mapping[str, Any], idempotency_key: str, revisable: frozenset[str] | None
    ) -> AccountingQuote:
        """A sparse update of ``changes`` at the estimate's current SyncToken; with ``revisable``, refused
        unless its TxnStatus is one of them. Already holding ``changes``' TxnStatus: returned as read."""
        for attempt in (1, 2):
            current = self._read("estimate", estimate_id)
            if current is None:
                raise NotFound(f"QuickBooks has no estimate {estimate_id}", vendor=VENDOR, status=400)
            status = str(current.get("TxnStatus") or NEW_ESTIMATE_STATUS)
            if revisable is not None and status not in revisable:
                raise ValidationFailed(
                    f"QuickBooks estimate {current.get('DocNumber') or estimate_id} is {status}: it is not revised",
                    vendor=VENDOR,
                )
            if changes.get("TxnStatus") == status and len(changes) == 1:
                return to_quote(current)
            sent = {**changes, "Id": estimate_id, "SyncToken": str(current.get("SyncToken", "0")), "sparse": True}
            key = idempotency_key if attempt == 1 else f"{idempotency_key}#stale"
            try:
                _, payload = self.client.call("POST", "estimate", params={"requestid": request_id(key)}, body=sent)
            except StaleSyncToken:
                if attempt == 1:
                    continue
                raise
            return self._saved_quote(payload)
        raise AssertionError("unreachable")  # pragma: no cover

    def _line_item_ids(self, lines: Sequence[InvoiceLine]) -> dict[str, str]:
        """The QBO Item Id of each line's item code (by Sku, then Name); ValidationFailed naming the unknown."""
        return self._item_ids([line.item_code for line in lines])

    def _item_ids(self, codes: Sequence[str]) -> dict[str, str]:
        rows = self._item_rows_by_code(codes)
        missing = sorted({c for c in codes if c not in rows})
        if missing:
            raise ValidationFailed(f"QuickBooks has no item named {', '.join(missing)}", vendor=VENDOR)
        return {code: str(row.get("Id")) for code, row in rows.items()}

    @staticmethod
    def _saved_quote(payload: Mapping[str, Any]) -> AccountingQuote:
        row = payload.get("Estimate")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the estimate but returned none", vendor=VENDOR, status=200)
        return to_quote(row)

    # -- repeating schedules (RecurringTransaction Invoice templates) -------------------------------------

    def find_schedule(self, reference: str) -> RepeatingSchedule | None:
        """The Invoice template whose RecurringInfo.Name is ``reference`` (compared as QBO compares names,
        case-insensitively), whatever its state (``status`` says whether it still runs), else None.

        The Name carries our reference because QBO keeps template Names unique per company (6240), so the
        Name both finds a template made before a crash and refuses a second one for the deal and frequency.
        The query language filters templates on Id and MetaData times only (GUESSES["recurring_query_filters"]),
        so the templates are read a page (MAX_RESULTS) at a time and matched here; a company has few of them,
        and this runs only for a deal and frequency without a stored mapping. An inactive template is returned
        too: its Name is taken, so making another is impossible and a person must decide (the flow flags it).
        Raises IntegrationError subclasses.
        """
        wanted = reference.strip().casefold()
        if not wanted:
            return None
        today = self._clock().date()
        for rows in self.client.query_pages("RecurringTransaction"):
            for row in rows:
                template = template_of({"RecurringTransaction": row})
                name = str(((template or {}).get("RecurringInfo") or {}).get("Name") or "")
                if template is not None and name.strip().casefold() == wanted:
                    return to_schedule(template, today)
        return None

    def get_schedule(self, schedule_id: str) -> RepeatingSchedule | None:
        """``GET /recurringtransaction/{id}``, ended (inactive) ones included; None when QBO does not know it
        (610/404: deleted in QuickBooks)."""
        template = self._read_template(schedule_id)
        return None if template is None else to_schedule(template, self._clock().date())

    def _read_template(self, schedule_id: str) -> dict[str, Any] | None:
        if not schedule_id.strip():
            return None
        try:
            _, payload = self.client.call("GET", f"recurringtransaction/{quote(schedule_id, safe='')}")
        except NotFound:
            return None
        return template_of(payload)

    def create_schedule(self, draft: ScheduleDraft, *, idempotency_key: str) -> RepeatingSchedule:
        """``POST /recurringtransaction?requestid=…`` with an Invoice template (``mapping.to_qbo_template``):
        RecurType Automated for an AUTHORISED draft, Reminded for a DRAFT one (GUESSES["recurring_draft_reminded"]);
        ScheduleInfo from the frequency (``mapping.interval_of``), StartDate and EndDate; lines, tax and currency
        as invoices send them, items resolved by code first (an unknown one is a ValidationFailed naming it).

        A repeat of the key answers the first template (``requestid``); a Name already taken (6240) means the
        deal and frequency have a template: it is returned as found. Raises ValidationFailed with QBO's reasons.
        """
        codes = [line.item_code for line in draft.lines]
        rows = self._item_rows_by_code(codes)
        missing = sorted({c for c in codes if c not in rows})
        if missing:
            raise ValidationFailed(f"QuickBooks has no item named {', '.join(missing)}", vendor=VENDOR)
        body = to_qbo_template(draft, {code: str(row.get("Id")) for code, row in rows.items()})
        try:
            _, payload = self.client.call(
                "POST", "recurringtransaction", params={"requestid": request_id(idempotency_key)}, body=body
            )
        except Conflict:
            found = self.find_schedule(draft.reference)
            if found is None:
                raise
            return found
        return self._saved_schedule(payload)

    def end_schedule(self, schedule_id: str, *, idempotency_key: str) -> RepeatingSchedule:
        """Make the template inactive (``RecurringInfo.Active: false`` in a sparse update at its SyncToken):
        it makes no more invoices, the ones it made stay, and it stays readable (``get_schedule`` says ended)
        with its Name reserved, where a delete would lose both (GUESSES["recurring_ended_inactive"]). An
        inactive one is returned as is. Raises NotFound when the template is gone."""
        return self._update_template(
            schedule_id,
            lambda info: {**info, "Active": False} if info.get("Active") is not False else None,
            idempotency_key,
        )

    def extend_schedule(self, schedule: RepeatingSchedule, end: date, *, idempotency_key: str) -> RepeatingSchedule:
        """Set the template's ScheduleInfo.EndDate to ``end`` in a sparse update at its SyncToken (same id,
        lines, customer and NextDate); one already running until ``end`` or later is returned as is. Raises
        NotFound when the template is gone."""

        def later(info: dict[str, Any]) -> dict[str, Any] | None:
            current = dict(info.get("ScheduleInfo") or {})
            until = parse_day(current.get("EndDate"))
            if until is not None and until >= end:
                return None
            return {**info, "ScheduleInfo": {**current, "EndDate": end.isoformat()}}

        return self._update_template(schedule.id, later, idempotency_key)

    def _update_template(
        self,
        schedule_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        idempotency_key: str,
    ) -> RepeatingSchedule:
        """A sparse update of the template's RecurringInfo (sent whole: ``writable_recurring_info``) to what
        ``change`` makes of it (None: nothing to change); a stale SyncToken (5010) re-reads and retries once."""
        for attempt in (1, 2):
            current = self._read_template(schedule_id)
            if current is None:
                raise NotFound(f"QuickBooks has no recurring transaction {schedule_id}", vendor=VENDOR, status=400)
            info = change(writable_recurring_info(current))
            if info is None:
                return to_schedule(current, self._clock().date())
            sent = {
                "Id": schedule_id,
                "SyncToken": str(current.get("SyncToken", "0")),
                "sparse": True,
                "RecurringInfo": info,
            }
            key = idempotency_key if attempt == 1 else f"{idempotency_key}#stale"
            try:
                _, payload = self.client.call(
                    "POST", "recurringtransaction", params={"requestid": request_id(key)}, body={"Invoice": sent}
                )
            except StaleSyncToken:
                if attempt == 1:
                    continue
                raise
            return self._saved_schedule(payload)
        raise AssertionError("unreachable")  # pragma: no cover

    def _saved_schedule(self, payload: Mapping[str, Any]) -> RepeatingSchedule:
        template = template_of(payload)
        if template is None:
            raise FatalError(
                "QuickBooks accepted the recurring transaction but returned none", vendor=VENDOR, status=200
            )
        return to_schedule(template, self._clock().date())

    # -- suppliers and purchase orders (PurchasingAccounting) -------------------------------------------------

    def find_suppliers(self, name: str) -> list[Supplier]:
        """Active vendors that may be the supplier ``name``: ``select * from Vendor where DisplayName LIKE
        '%word%'`` with the name's longest significant word (``search_word``, as customers are searched; name
        lists answer active records only). The sync logic compares normalised names. Raises IntegrationError."""
        word = search_word(name)
        if not word.strip():
            return []
        rows = self.client.query_all("Vendor", f"DisplayName LIKE {qbo_literal('%' + word + '%')}")
        return [to_supplier(row) for row in rows if row.get("Active") is not False]

    def create_supplier(self, name: str, *, idempotency_key: str) -> Supplier:
        """``POST /vendor?requestid=…`` with the DisplayName only. Raises Conflict when QBO refuses the name
        (6240): QBO keeps DisplayName unique across customers, vendors and employees, so a supplier named as
        an existing customer cannot be created; the Conflict says so."""
        try:
            _, payload = self.client.call(
                "POST", "vendor", params={"requestid": request_id(idempotency_key)}, body={"DisplayName": name}
            )
        except Conflict as exc:
            raise Conflict(
                f"QuickBooks refused the vendor name {name!r}: a customer, vendor or employee already uses it "
                "(QuickBooks names are unique across them); rename one, or make the vendor under this name",
                vendor=VENDOR,
                status=400,
            ) from exc
        row = payload.get("Vendor")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the vendor but returned none", vendor=VENDOR, status=200)
        return to_supplier(row)

    def find_purchase_order(self, reference: str, dated: date) -> PurchaseOrder | None:
        """The purchase order whose PrivateNote's first line is exactly ``reference``: looked up by the
        DocNumber standing for it (``mapping.purchase_order_doc_number``: the reference, or a digest of it
        when longer than QBO's 21 characters), ``select * from PurchaseOrder where DocNumber = '…'``. QBO
        deletes purchase orders outright, so every row is live; ``dated`` is not needed (DocNumber is
        filterable). Raises IntegrationError subclasses."""
        if not reference.strip():
            return None
        doc = purchase_order_doc_number(reference)
        rows = sorted(self.client.query_all("PurchaseOrder", f"DocNumber = {qbo_literal(doc)}"), key=_id_order)
        for row in rows:
            order = to_purchase_order(row)
            if order.reference == reference:
                return order
        return None

    def get_purchase_order(self, purchase_order_id: str) -> PurchaseOrder | None:
        """``GET /purchaseorder/{id}``; None when QBO does not know it (deleted)."""
        if not purchase_order_id.strip():
            return None
        try:
            _, payload = self.client.call("GET", f"purchaseorder/{quote(purchase_order_id, safe='')}")
        except NotFound:  # a 404, or QBO's 610
            return None
        row = payload.get("PurchaseOrder")
        return to_purchase_order(row) if isinstance(row, dict) else None

    def create_purchase_order(self, draft: PurchaseOrderDraft, *, idempotency_key: str) -> PurchaseOrder:
        """``POST /purchaseorder?requestid=…``: POStatus Open, because QuickBooks has no draft purchase order
        (an Open one posts nothing to the books until it is billed); the vendor, the AP account
        (``_payables_account``), item lines at unit cost (items by Sku, then Name: an unknown code is a
        ValidationFailed naming it, before anything is sent; a line naming no item is a category line on the
        new items' expense account, ``_default_account("expense")``), the DocNumber standing for the
        reference and the whole reference in the PrivateNote.

        A repeat of the same key answers the first purchase order (``requestid``). A duplicate DocNumber
        (6140) is this reference's purchase order when one carries it (returned as is); else another holds
        that number and the refusal stands. Raises ValidationFailed with QBO's reasons (its 610, a vendor,
        item or account that is gone or inactive, included).
        """
        codes = [line.item_code for line in draft.lines if line.item_code]
        item_ids = self._item_ids(codes)
        expense = self._default_account("expense") if len(codes) < len(draft.lines) else ""
        body = to_qbo_purchase_order(draft, item_ids, self._payables_account(draft.currency), expense)
        try:
            _, payload = self.client.call(
                "POST", "purchaseorder", params={"requestid": request_id(idempotency_key)}, body=body
            )
        except DuplicateDocNumber:
            existing = self.find_purchase_order(draft.reference, draft.issue_date)
            if existing is None:
                raise
            return existing
        except NotFound as exc:  # QBO's 610: the vendor, an item or an account it names is gone or inactive
            raise ValidationFailed(f"QuickBooks refused the purchase order: {exc}", vendor=VENDOR, status=400) from exc
        row = payload.get("PurchaseOrder")
        if not isinstance(row, dict):
            raise FatalError("QuickBooks accepted the purchase order but returned none", vendor=VENDOR, status=200)
        return to_purchase_order(row)

    def _payables_account(self, currency: str) -> str:
        """The Id of the account a purchase order in ``currency`` is credited to: the active Accounts Payable
        account with the lowest Id among those in that currency, else among those naming no currency (QBO
        makes one A/P account with the company, and one per foreign currency once it is used). Intuit says the
        account is implied when there is only one and recommends naming it always; the choice among several
        is GUESSES["purchase_order_ap_account"]. Read with the item accounts (``select * from Account``, once
        per adapter). Raises ValidationFailed when none fits."""
        key = f"payables#{currency}"
        if key in self._accounts_chosen:
            return self._accounts_chosen[key]
        if self._accounts is None:
            self._accounts = list(self.client.query_all("Account"))
        payables = [a for a in sorted(self._accounts, key=_id_order) if a.get("AccountType") == PAYABLES_ACCOUNT_TYPE]

        def currency_of(account: Mapping[str, Any]) -> str:
            return str((account.get("CurrencyRef") or {}).get("value") or "")

        fitting = [a for a in payables if currency_of(a) == currency] or [a for a in payables if not currency_of(a)]
        if not fitting:
            raise ValidationFailed(
                f"QuickBooks has no active Accounts Payable account in {currency} for purchase orders", vendor=VENDOR
            )
        self._accounts_chosen[key] = str(fitting[0].get("Id"))
        return self._accounts_chosen[key]


if TYPE_CHECKING:  # mypy holds the adapter to the quote port its spec declares (``quote``)
    _QUOTES: type[QuoteAccounting] = QuickBooksAccounting
