"""In-memory fakes of the ports, for unit tests of the vendor-free logic (no network, no AWS)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from closeloop.errors import Conflict, FatalError, NotFound, ValidationFailed
from closeloop.models import (
    AccountingCustomer,
    AccountingQuote,
    CrmRef,
    Customer,
    Deal,
    Invoice,
    InvoiceDraft,
    Item,
    ItemDraft,
    ItemLimits,
    Product,
    PurchaseOrder,
    PurchaseOrderDraft,
    Quote,
    QuoteDraft,
    RepeatingSchedule,
    ScheduleDraft,
    Supplier,
    SyncEvent,
    customer_fields,
    item_fields,
)
from closeloop.ports import (
    AuditRecord,
    FailedSync,
    IdMapping,
    InvoiceEmail,
    PropertyDefinition,
    ReviewItem,
    WebhookRequest,
)
from closeloop.store import TokenState


class ProcessKilled(BaseException):
    """A Lambda stopped mid-call (a timeout, out of memory): not an error any ``except`` in the code handles."""


class MemoryStore:
    """SyncStore + TokenStore in memory, with the same conditional semantics as DynamoStore.

    ``clock``: the time leases are taken and compared on (DynamoStore: ``time.time``).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.mappings: dict[tuple[CrmRef, str], IdMapping] = {}
        self.audit: list[AuditRecord] = []
        self.failed: dict[CrmRef, FailedSync] = {}
        self.invoice_emails: dict[tuple[CrmRef, str], InvoiceEmail] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.tokens: dict[str, TokenState] = {}
        self.watermarks: dict[str, datetime] = {}
        self.deliveries: set[tuple[str, str]] = set()
        self.customer_invoices: dict[tuple[str, str], dict[str, tuple[Invoice, bool]]] = {}
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self.reviews: dict[tuple[CrmRef, str], ReviewItem] = {}

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        return self.checkpoints.get(name)

    def put_checkpoint(self, name: str, data: dict[str, Any]) -> None:
        self.checkpoints[name] = dict(data)

    def delete_checkpoint(self, name: str) -> None:
        self.checkpoints.pop(name, None)

    def put_review(self, item: ReviewItem) -> None:
        current = self.reviews.get((item.ref, item.system))
        if current is None or current.status == "pending":
            self.reviews[(item.ref, item.system)] = item

    def get_review(self, ref: CrmRef, system: str) -> ReviewItem | None:
        return self.reviews.get((ref, system))

    def list_reviews(self, system: str, status: str = "pending") -> list[ReviewItem]:
        return [r for (_, s), r in self.reviews.items() if s == system and r.status == status]

    def decide_review(self, ref: CrmRef, system: str, status: str, who: str) -> ReviewItem:
        current = self.reviews.get((ref, system))
        if current is None or current.status != "pending":
            raise KeyError(f"no pending review for {ref}")
        decided = replace(current, status=status, decided_by=who, decided_at=datetime.now(UTC))  # type: ignore[arg-type]
        self.reviews[(ref, system)] = decided
        return decided

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        return self.mappings.get((ref, system))

    def put_mapping(self, mapping: IdMapping) -> None:
        self.mappings[(mapping.ref, mapping.system)] = mapping

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        for (ref, sys), mapping in self.mappings.items():
            if sys == system and mapping.accounting_id == accounting_id:
                return ref
        return None

    def get_invoice_email(self, ref: CrmRef, system: str) -> InvoiceEmail | None:
        return self.invoice_emails.get((ref, system))

    def put_invoice_email(self, email: InvoiceEmail) -> None:
        self.invoice_emails[(email.ref, email.system)] = email

    def put_audit(self, record: AuditRecord) -> None:
        self.audit.append(record)

    def list_audit(self, ref: CrmRef) -> list[AuditRecord]:
        return [r for r in self.audit if r.ref == ref]

    def record_failed_sync(self, failure: FailedSync) -> None:
        self.failed[failure.ref] = failure

    def claim_delivery(self, sender: str, digest: str, ttl_seconds: int) -> bool:
        with self.lock:
            if (sender, digest) in self.deliveries:
                return False
            self.deliveries.add((sender, digest))
            return True

    def remember_delivery(self, sender: str, digest: str, ttl_seconds: int) -> None:
        self.deliveries.add((sender, digest))

    def release_delivery(self, sender: str, digest: str) -> None:
        self.deliveries.discard((sender, digest))

    def clear_failed_sync(self, ref: CrmRef) -> None:
        self.failed.pop(ref, None)

    def get_failed_sync(self, ref: CrmRef) -> FailedSync | None:
        return self.failed.get(ref)

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        with self.lock:
            held = self.leases.get(name)
            if held and held[0] != owner and held[1] > self.clock():
                return False
            self.leases[name] = (owner, self.clock() + seconds)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self.lock:
            if self.leases.get(name, ("",))[0] == owner:
                del self.leases[name]

    def get_token(self, connection: str) -> TokenState | None:
        return self.tokens.get(connection)

    def get_watermark(self, name: str) -> datetime | None:
        return self.watermarks.get(name)

    def put_watermark(self, name: str, value: datetime) -> None:
        self.watermarks[name] = value

    def put_customer_invoice(self, system: str, invoice: Invoice, *, open_: bool) -> None:
        self.customer_invoices.setdefault((system, invoice.customer_id), {})[invoice.id] = (invoice, open_)

    def list_customer_invoices(self, system: str, customer_id: str) -> list[Invoice]:
        return [i for i, _ in self.customer_invoices.get((system, customer_id), {}).values()]

    def list_open_invoices_due(self, system: str, due_from: date, due_to: date) -> list[Invoice]:
        found = []
        for (sys, _), invoices in self.customer_invoices.items():
            for invoice, is_open in invoices.values():
                if sys == system and is_open and invoice.due_date and due_from <= invoice.due_date <= due_to:
                    found.append(invoice)
        return found

    def put_token(self, connection: str, state: TokenState) -> None:
        with self.lock:
            current = self.tokens.get(connection)
            if (current.version if current else 0) != state.version - 1:
                raise RuntimeError("conditional check failed")
            self.tokens[connection] = state


@dataclass
class FakeAccounting:
    """AccountingPort in memory, with the vendor's unique-name rule."""

    name: str = "books"
    records: dict[str, AccountingCustomer] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def add(self, name: str, *, number: str = "", email: str = "", tax_number: str = "") -> AccountingCustomer:
        record = AccountingCustomer(
            id=uuid.uuid4().hex,
            name=name,
            number=number,
            email=email,
            tax_number=tax_number,
            fields={"name": name, "email": email, "tax_number": tax_number},
        )
        self.records[record.id] = record
        return record

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        self.calls.append("get")
        return self.records.get(customer_id)

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        self.calls.append("list")
        yield from list(self.records.values())

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        self.calls.append("find")
        found = list(self.records.values())
        if number:
            return [r for r in found if r.number == number]
        if tax_number:
            return [r for r in found if r.tax_number == tax_number]
        if email:
            return [r for r in found if r.email.lower() == email.lower()]
        if name:
            word = name.split()[0].lower()
            return [r for r in found if word in r.name.lower()]
        return []

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        self.calls.append("create")
        return self._create(customer, number)

    def _create(self, customer: Customer, number: str) -> AccountingCustomer:
        if any(r.name.lower() == customer.name.lower() for r in self.records.values()):
            raise Conflict("duplicate name", vendor=self.name, status=400)
        record = AccountingCustomer(
            id=uuid.uuid4().hex,
            name=customer.name,
            number=number,
            email=customer.email,
            tax_number=customer.tax_number,
            fields=customer_fields(customer),
        )
        self.records[record.id] = record
        return record

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        self.calls.append("find_any")
        words = {n.split()[0].lower() for n in names if n.split()}
        mails = {e.lower() for e in emails}
        return [
            r
            for r in self.records.values()
            if r.number in numbers
            or r.tax_number in tax_numbers
            or r.email.lower() in mails
            or any(w in r.name.lower() for w in words)
        ]

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        self.calls.append("create_many")
        results: list[AccountingCustomer | FatalError] = []
        for customer, number in customers:
            try:
                results.append(self._create(customer, number))
            except FatalError as exc:
                results.append(exc)
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
        self.calls.append("update")
        current = self.records[customer_id]
        values = dict(current.fields)
        desired = customer_fields(customer)
        values.update({f: desired[f] for f in fields})
        record = current.model_copy(
            update={
                "name": values.get("name", current.name),
                "email": values.get("email", current.email),
                "tax_number": values.get("tax_number", current.tax_number),
                "number": number or current.number,
                "fields": values,
            }
        )
        self.records[customer_id] = record
        return record


@dataclass
class FakeCrm:
    """CrmPort in memory: customers by ref; contacts may point at their company."""

    name: str = "crm"
    customers: dict[CrmRef, Customer] = field(default_factory=dict)
    company_of: dict[CrmRef, CrmRef] = field(default_factory=dict)
    field_writes: list[tuple[CrmRef, dict[str, str]]] = field(default_factory=list)
    #: Canonical fields this CRM cannot hold (besides "people", which no CRM writes).
    unwritable_fields: frozenset[str] = frozenset()
    #: Property writes on customers (flags, balances), in order.
    property_writes: list[tuple[CrmRef, dict[str, str]]] = field(default_factory=list)

    def verify_webhook(self, request: WebhookRequest) -> None:
        return None

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        self.property_writes.extend((r, dict(v)) for r, v in updates.items())

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        return []

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Record the call and apply the writable values to the customer ``ref`` resolves to."""
        self.field_writes.append((ref, dict(values)))
        target = self.company_of.get(ref, ref)
        customer = self.customers.get(target)
        if customer is None:
            raise NotFound(f"no customer {ref}", vendor=self.name, status=404)
        refused = [n for n in values if n == "people" or n in self.unwritable_fields]
        written = {n: v for n, v in values.items() if n not in refused}
        address = {n.removeprefix("address."): v for n, v in written.items() if n.startswith("address.")}
        top = {n: v for n, v in written.items() if not n.startswith("address.")}
        self.customers[target] = customer.model_copy(
            update={**top, "address": customer.address.model_copy(update=address)}
        )
        return refused

    def parse_webhook(self, body: bytes) -> list:  # type: ignore[type-arg]
        return []

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        return self.customers.get(self.company_of.get(ref, ref))

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        return {r: self.resolve_customer(r) for r in refs}

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        for ref in [*self.customers, *self.company_of]:
            yield SyncEvent(
                ref=ref,
                event_id=f"poll:{ref}",
                kind="changed",
                occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
                source_type=f"{ref.object_type}.poll",
                dedupe_key=f"poll:{ref}",
            )


def ref(object_type: str = "company", object_id: str = "1", crm: str = "crm") -> CrmRef:
    return CrmRef(crm=crm, object_type=object_type, object_id=object_id)  # type: ignore[arg-type]


@dataclass
class WritableCrm(FakeCrm):
    """FakeCrm that also takes canonical field writes and property writes (recorded)."""

    field_writes: list[tuple[CrmRef, dict[str, str]]] = field(default_factory=list)
    property_writes: list[tuple[CrmRef, dict[str, str]]] = field(default_factory=list)
    properties: set[str] = field(default_factory=set)

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        self.field_writes.append((ref, dict(values)))
        current = self.customers[ref]
        self.customers[ref] = current.model_copy(update={k: v for k, v in values.items() if k in ("name", "email")})
        return [k for k in values if k not in ("name", "email")]

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        for ref_, values in updates.items():
            if not set(values) <= self.properties:
                raise ValidationFailed("unknown property", vendor="crm", status=400)
            self.property_writes.append((ref_, dict(values)))

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        created = [d.name for d in definitions if d.name not in self.properties]
        self.properties.update(created)
        return created


def events_for(r: CrmRef, count: int = 1, kind: str = "changed") -> Iterable:  # type: ignore[type-arg]
    from datetime import UTC, datetime

    from closeloop.models import SyncEvent

    return [
        SyncEvent(
            ref=r,
            event_id=str(i),
            kind=kind,  # type: ignore[arg-type]
            occurred_at=datetime(2026, 11, 1, 12, 0, i, tzinfo=UTC),
            source_type=f"{r.object_type}.propertyChange",
            actor="userId:7",
            dedupe_key=f"sub:{i}:{r.object_id}",
        )
        for i in range(count)
    ]


TAX_RATES = {"OUTPUT2": Decimal("15"), "NONE": Decimal(0), "": Decimal(0)}


@dataclass
class FakeBooks(FakeAccounting):
    """FakeAccounting with items and invoices (tax per line, rounded per line like Xero)."""

    items: dict[str, Item] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    drafts: dict[str, InvoiceDraft] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    fail_after_create: bool = False
    schedules: dict[str, RepeatingSchedule] = field(default_factory=dict)
    schedule_drafts: dict[str, ScheduleDraft] = field(default_factory=dict)

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        self.calls.append("items")
        return {c: self.items[c] for c in codes if c in self.items}

    def find_invoice(self, reference: str) -> Invoice | None:
        self.calls.append("find_invoice")
        return next((i for i in self.invoices.values() if i.reference == reference and i.status != "VOIDED"), None)

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        return self.invoices.get(invoice_id)

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        self.calls.append("create_invoice")
        if idempotency_key in self.keys:
            return self.invoices[self.keys[idempotency_key]]
        for line in draft.lines:
            if line.item_code and line.item_code not in self.items:
                raise ValidationFailed(f"Item code {line.item_code} is not valid")
        cent = Decimal("0.01")
        sub = Decimal(0)
        tax = Decimal(0)
        for line in draft.lines:
            net = (line.quantity * line.unit_amount * (1 - (line.discount_rate or Decimal(0)) / 100)).quantize(cent)
            sub += net
            tax += (net * TAX_RATES.get(line.tax_type, Decimal(0)) / 100).quantize(cent)
        number = f"INV-{len(self.invoices) + 1:04d}"
        invoice = Invoice(
            id=uuid.uuid4().hex,
            number=number,
            reference=draft.reference,
            status=draft.status,
            customer_id=draft.customer_id,
            currency=draft.currency,
            issue_date=draft.issue_date,
            due_date=draft.due_date,
            sub_total=sub,
            total_tax=tax,
            total=sub + tax,
            amount_due=sub + tax,
            url=f"https://books.example/invoices/{number}",
            updated_at=datetime.now(UTC),
        )
        self.invoices[invoice.id] = invoice
        self.drafts[invoice.id] = draft
        self.keys[idempotency_key] = invoice.id
        if self.fail_after_create:
            self.fail_after_create = False
            raise RuntimeError("the worker died right after the vendor created the invoice")
        return invoice

    def send_invoice(self, invoice_id: str) -> None:
        self.sent.append(invoice_id)

    # -- repeating schedules (RecurringAccounting) ---------------------------------------------------

    def find_schedule(self, reference: str) -> RepeatingSchedule | None:
        self.calls.append("find_schedule")
        return next((s for s in self.schedules.values() if s.reference == reference and s.status == "active"), None)

    def get_schedule(self, schedule_id: str) -> RepeatingSchedule | None:
        return self.schedules.get(schedule_id)

    def create_schedule(self, draft: ScheduleDraft, *, idempotency_key: str) -> RepeatingSchedule:
        self.calls.append("create_schedule")
        if idempotency_key in self.keys:
            return self.schedules[self.keys[idempotency_key]]
        for line in draft.lines:
            if line.item_code not in self.items:
                raise ValidationFailed(f"Item code {line.item_code} is not valid")
        cent = Decimal("0.01")
        nets = [
            (li.quantity * li.unit_amount * (1 - (li.discount_rate or Decimal(0)) / 100)).quantize(cent)
            for li in draft.lines
        ]
        sub = sum(nets, Decimal(0))
        rates = [TAX_RATES.get(li.tax_type, Decimal(0)) for li in draft.lines]
        tax = sum(((net * rate / 100).quantize(cent) for net, rate in zip(nets, rates, strict=True)), Decimal(0))
        schedule = RepeatingSchedule(
            id=uuid.uuid4().hex,
            reference=draft.reference,
            approved=draft.status == "AUTHORISED",
            frequency=draft.frequency,
            customer_id=draft.customer_id,
            currency=draft.currency,
            start_date=draft.start,
            next_invoice_date=draft.start,
            end_date=draft.end,
            sub_total=sub,
            total=sub + tax,
        )
        self.schedules[schedule.id] = schedule
        self.schedule_drafts[schedule.id] = draft
        self.keys[idempotency_key] = schedule.id
        if self.fail_after_create:
            self.fail_after_create = False
            raise RuntimeError("the worker died right after the vendor created the schedule")
        return schedule

    def end_schedule(self, schedule_id: str, *, idempotency_key: str) -> RepeatingSchedule:
        self.calls.append("end_schedule")
        ended = self.schedules[schedule_id].model_copy(update={"status": "ended", "next_invoice_date": None})
        self.schedules[schedule_id] = ended
        return ended

    def extend_schedule(self, schedule: RepeatingSchedule, end: date, *, idempotency_key: str) -> RepeatingSchedule:
        self.calls.append("extend_schedule")
        extended = self.schedules[schedule.id].model_copy(update={"end_date": end})
        self.schedules[schedule.id] = extended
        return extended

    def pay(self, invoice_id: str, amount: Decimal, on: date) -> Invoice:
        invoice = self.invoices[invoice_id]
        paid = invoice.amount_paid + amount
        due = invoice.total - paid
        updated = invoice.model_copy(
            update={
                "amount_paid": paid,
                "amount_due": due,
                "status": "PAID" if due == 0 else invoice.status,
                "last_payment_date": on,
                "updated_at": datetime.now(UTC),
            }
        )
        self.invoices[invoice_id] = updated
        return updated

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        self.calls.append("changed_since")
        return iter([i for i in self.invoices.values() if since is None or (i.updated_at and i.updated_at >= since)])

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        return iter([i for i in self.invoices.values() if i.issue_date and issued_from <= i.issue_date < issued_before])


@dataclass
class FakeDealCrm(FakeCrm):
    """FakeCrm with deals and write-back."""

    deals: dict[str, Deal] = field(default_factory=dict)
    deal_properties: dict[str, dict[str, str]] = field(default_factory=dict)
    customer_properties: dict[CrmRef, dict[str, str]] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)
    write_calls: int = 0

    def get_deal(self, deal_id: str) -> Deal | None:
        return self.deals.get(deal_id)

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        return iter([d for d in self.deals.values() if d.is_won])

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        self.write_calls += 1
        for deal_id, values in updates.items():
            unknown = set(values) - self.defined
            if unknown:
                raise ValidationFailed(f"Property values were not valid: {sorted(unknown)}")
            self.deal_properties.setdefault(deal_id, {}).update(values)

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        for ref_, values in updates.items():
            self.customer_properties.setdefault(ref_, {}).update(values)

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        created = [d.name for d in definitions if d.name not in self.defined]
        self.defined.update(created)
        return created


class KilledHolderStore(MemoryStore):
    """A MemoryStore whose leases outlive a killed holder: once ``killed``, releases are lost, as a stopped
    Lambda runs no ``finally``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.killed = False

    def release_lease(self, name: str, owner: str) -> None:
        if not self.killed:
            super().release_lease(name, owner)


@dataclass
class FakeCatalogueCrm:
    """A CRM's product catalogue (CatalogueCrm)."""

    name: str = "crm"
    products: dict[str, Product] = field(default_factory=dict)

    def add(self, product_id: str, **values: Any) -> CrmRef:
        ref = CrmRef(crm=self.name, object_type="product", object_id=product_id)
        self.products[product_id] = Product(ref=ref, **values)
        return ref

    def get_product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def iter_products(self) -> Iterator[Product]:
        yield from self.products.values()


@dataclass
class FakeCatalogueBooks:
    """An accounting system's items (CatalogueAccounting): codes unique, ids its own, writes counted."""

    name: str = "books"
    item_limits: ItemLimits = ItemLimits(code=30, name=50, description=4000)
    items: dict[str, Item] = field(default_factory=dict)
    writes: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    #: Create the item, then raise as if the answer were lost (a crash after the vendor acted).
    lose_create_answer: bool = False

    def put(self, code: str, **values: str) -> Item:
        item = Item(code=code, id=f"item-{len(self.items) + 1}", name=values.get("name", ""), fields=dict(values))
        self.items[code] = item
        return item

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        return {c: self.items[c] for c in codes if c and c in self.items}  # an item without a code is not found by one

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        if idempotency_key in self.keys:
            return self.items[self.keys[idempotency_key]]
        if draft.code in self.items:
            raise Conflict(f"Item code {draft.code} already exists", vendor=self.name, status=400)
        values = {k: v for k, v in {**item_fields(draft), "tax_code": draft.tax_code}.items() if v}
        item = self.put(draft.code, **values)
        self.keys[idempotency_key] = draft.code
        self.writes.append(("create", draft.code, tuple(values)))
        if self.lose_create_answer:
            self.lose_create_answer = False
            raise ProcessKilled("after create_item")
        return item

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        values = {
            **item_fields(draft),
            "tax_code": draft.tax_code,
            "sales_account": draft.sales_account,
            "purchase_account": draft.purchase_account,
        }
        code = draft.code if "code" in fields else item.code
        merged = {**item.fields, **{f: values[f] for f in fields if f in values}}
        saved = item.model_copy(update={"code": code, "name": merged.get("name", item.name), "fields": merged})
        self.items.pop(item.code)
        self.items[code] = saved
        self.writes.append(("update", code, tuple(fields)))
        return saved

    def iter_items(self) -> Iterator[Item]:
        yield from self.items.values()


@dataclass
class FakePurchasingBooks(FakeBooks):
    """FakeBooks that also takes purchase orders and keeps suppliers (PurchasingAccounting), with the
    vendor's idempotency keys and unique supplier names."""

    suppliers: dict[str, Supplier] = field(default_factory=dict)
    purchase_orders: dict[str, PurchaseOrder] = field(default_factory=dict)
    po_drafts: dict[str, PurchaseOrderDraft] = field(default_factory=dict)
    po_keys: dict[str, str] = field(default_factory=dict)
    #: Create the next purchase order (or supplier), then die as if the answer were lost.
    lose_po_answer: bool = False
    lose_supplier_answer: bool = False

    def add_supplier(self, name: str) -> Supplier:
        supplier = Supplier(id=f"sup-{len(self.suppliers) + 1}", name=name)
        self.suppliers[supplier.id] = supplier
        return supplier

    def find_suppliers(self, name: str) -> list[Supplier]:
        self.calls.append("find_suppliers")
        word = name.split(maxsplit=1)[0].lower() if name.split() else ""
        return [s for s in self.suppliers.values() if word in s.name.lower()]

    def create_supplier(self, name: str, *, idempotency_key: str) -> Supplier:
        self.calls.append("create_supplier")
        if idempotency_key in self.po_keys:
            return self.suppliers[self.po_keys[idempotency_key]]
        if any(s.name.lower() == name.lower() for s in self.suppliers.values()):
            raise Conflict("duplicate supplier name", vendor=self.name, status=400)
        supplier = self.add_supplier(name)
        self.po_keys[idempotency_key] = supplier.id
        if self.lose_supplier_answer:
            self.lose_supplier_answer = False
            raise ProcessKilled("after create_supplier")
        return supplier

    def find_purchase_order(self, reference: str, dated: date) -> PurchaseOrder | None:
        self.calls.append("find_purchase_order")
        return next(
            (
                po
                for po_id, po in self.purchase_orders.items()
                if po.reference == reference and self.po_drafts[po_id].issue_date == dated and po.status != "DELETED"
            ),
            None,
        )

    def get_purchase_order(self, purchase_order_id: str) -> PurchaseOrder | None:
        return self.purchase_orders.get(purchase_order_id)

    def create_purchase_order(self, draft: PurchaseOrderDraft, *, idempotency_key: str) -> PurchaseOrder:
        self.calls.append("create_purchase_order")
        if idempotency_key in self.po_keys:
            return self.purchase_orders[self.po_keys[idempotency_key]]
        if draft.supplier_id not in self.suppliers:
            raise ValidationFailed(f"supplier {draft.supplier_id} does not exist")
        total = sum(((line.quantity * line.unit_cost).quantize(Decimal("0.01")) for line in draft.lines), Decimal(0))
        number = f"PO-{len(self.purchase_orders) + 1:04d}"
        order = PurchaseOrder(
            id=uuid.uuid4().hex,
            number=number,
            reference=draft.reference,
            status=draft.status,
            supplier_id=draft.supplier_id,
            currency=draft.currency,
            total=total,
            url=f"https://books.example/purchase-orders/{number}",
        )
        self.purchase_orders[order.id] = order
        self.po_drafts[order.id] = draft
        self.po_keys[idempotency_key] = order.id
        if self.lose_po_answer:
            self.lose_po_answer = False
            raise ProcessKilled("after create_purchase_order")
        return order


@dataclass
class FakeCatalogueDealCrm(FakeDealCrm):
    """FakeDealCrm with a product catalogue (CatalogueCrm): what a deal's lines name by product_id."""

    products: dict[str, Product] = field(default_factory=dict)

    def add_product(self, product_id: str, **values: Any) -> CrmRef:
        ref_ = CrmRef(crm="crm", object_type="product", object_id=product_id)
        self.products[product_id] = Product(ref=ref_, **values)
        return ref_

    def get_product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def iter_products(self) -> Iterator[Product]:
        yield from self.products.values()


@dataclass
class FakeQuoteCrm(FakeDealCrm):
    """FakeDealCrm with quotes (QuoteCrm): quote fields are refused until ``ensure_quote_properties``."""

    quotes: dict[str, Quote] = field(default_factory=dict)
    quote_properties: dict[str, dict[str, str]] = field(default_factory=dict)
    quote_defined: set[str] = field(default_factory=set)

    def get_quote(self, quote_id: str) -> Quote | None:
        quote = self.quotes.get(quote_id)
        if quote is None:
            return None
        return quote.model_copy(update={"synced": dict(self.quote_properties.get(quote_id, {}))})

    def quotes_of_deal(self, deal_id: str) -> list[Quote]:
        found = [q.ref.object_id for q in self.quotes.values() if q.deal and q.deal.object_id == deal_id]
        return [q for q in (self.get_quote(i) for i in found) if q is not None]

    def write_quote(self, quote_id: str, values: Mapping[str, str]) -> None:
        unknown = set(values) - self.quote_defined
        if unknown:
            raise ValidationFailed(f"Property values were not valid: {sorted(unknown)}")
        self.quote_properties.setdefault(quote_id, {}).update(values)

    def ensure_quote_properties(self, definitions: Collection[PropertyDefinition]) -> list[str]:
        created = [d.name for d in definitions if d.name not in self.quote_defined]
        self.quote_defined.update(created)
        return created


@dataclass
class FakeQuoteBooks(FakeBooks):
    """FakeBooks with quotes (QuoteAccounting): statuses as canonical, revisions in place."""

    quotes: dict[str, AccountingQuote] = field(default_factory=dict)
    quote_drafts: dict[str, QuoteDraft] = field(default_factory=dict)
    quote_keys: dict[str, str] = field(default_factory=dict)
    marks_invoiced: bool = True
    #: Raise after the vendor made the quote, before the answer reaches the caller (a lost answer).
    lose_quote_answer: bool = False
    #: As QuickBooks and Zoho Books: an invoice created naming a quote (``accounting_quote_id``) links it, and
    #: the quote reads INVOICED (as Xero, by default, the invoice has no such link).
    links_quotes: bool = False
    #: As Zoho Books: ``mark_quote_invoiced`` sets nothing and returns the quote as it is (only the link marks it).
    marks_by_link_only: bool = False

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        made = idempotency_key not in self.keys
        invoice = super().create_invoice(draft, idempotency_key=idempotency_key)
        if made and self.links_quotes and draft.accounting_quote_id in self.quotes:  # linked: the quote is invoiced
            self.set_quote_status(draft.accounting_quote_id, "INVOICED")
        return invoice

    def find_quote(self, reference: str, customer_id: str) -> AccountingQuote | None:
        self.calls.append("find_quote")
        live = (q for q in self.quotes.values() if q.customer_id == customer_id and q.status != "DELETED")
        return next((q for q in live if q.reference == reference), None)

    def get_quote(self, quote_id: str) -> AccountingQuote | None:
        return self.quotes.get(quote_id)

    def _totals(self, draft: QuoteDraft) -> tuple[Decimal, Decimal]:
        cent = Decimal("0.01")
        sub = tax = Decimal(0)
        for line in draft.lines:
            if line.item_code and line.item_code not in self.items:
                raise ValidationFailed(f"Item code {line.item_code} is not valid")
            net = (line.quantity * line.unit_amount * (1 - (line.discount_rate or Decimal(0)) / 100)).quantize(cent)
            sub += net
            tax += (net * TAX_RATES.get(line.tax_type, Decimal(0)) / 100).quantize(cent)
        return sub, tax

    def create_quote(self, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        self.calls.append("create_quote")
        if idempotency_key in self.quote_keys:
            return self.quotes[self.quote_keys[idempotency_key]]
        sub, tax = self._totals(draft)
        number = f"QU-{len(self.quotes) + 1:04d}"
        quote = AccountingQuote(
            id=uuid.uuid4().hex,
            number=number,
            reference=draft.reference,
            status=draft.status,
            customer_id=draft.customer_id,
            currency=draft.currency,
            issue_date=draft.issue_date,
            expiry=draft.expiry,
            sub_total=sub,
            total_tax=tax,
            total=sub + tax,
            url=f"https://books.example/quotes/{number}",
            updated_at=datetime.now(UTC),
        )
        self.quotes[quote.id] = quote
        self.quote_drafts[quote.id] = draft
        self.quote_keys[idempotency_key] = quote.id
        if self.lose_quote_answer:
            self.lose_quote_answer = False
            raise RuntimeError("the worker died right after the vendor created the quote")
        return quote

    def revise_quote(self, quote: AccountingQuote, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        self.calls.append("revise_quote")
        current = self.quotes[quote.id]
        if current.status not in ("DRAFT", "SENT"):
            raise ValidationFailed(f"a {current.status} quote cannot be edited")
        sub, tax = self._totals(draft)
        revised = current.model_copy(
            update={
                "currency": draft.currency,
                "expiry": draft.expiry,
                "sub_total": sub,
                "total_tax": tax,
                "total": sub + tax,
                "updated_at": datetime.now(UTC),
            }
        )
        self.quotes[quote.id] = revised
        self.quote_drafts[quote.id] = draft
        return revised

    def set_quote_status(self, quote_id: str, status: str) -> AccountingQuote:
        updated = self.quotes[quote_id].model_copy(update={"status": status, "updated_at": datetime.now(UTC)})
        self.quotes[quote_id] = updated
        return updated

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        return iter([q for q in self.quotes.values() if since is None or (q.updated_at and q.updated_at >= since)])

    def mark_quote_sent(self, quote: AccountingQuote, *, idempotency_key: str) -> AccountingQuote:
        self.calls.append("mark_quote_sent")
        if self.quotes[quote.id].status != "DRAFT":
            return self.quotes[quote.id]
        return self.set_quote_status(quote.id, "SENT")

    def mark_quote_invoiced(self, quote: AccountingQuote, invoice_id: str, *, idempotency_key: str) -> AccountingQuote:
        self.calls.append("mark_quote_invoiced")
        if self.marks_by_link_only:
            return self.quotes[quote.id]
        return self.set_quote_status(quote.id, "INVOICED")


class RecordedEvents:
    """An event bus that keeps what was published (``closeloop.payment-status-changed`` and others)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, list[Mapping[str, Any]]]] = []

    def publish(self, detail_type: str, details: Iterable[Mapping[str, Any]]) -> None:
        self.published.append((detail_type, list(details)))
