"""The ports: what the sync logic needs from a CRM, an accounting system and its own state store.

One adapter module per vendor implements ``CrmPort`` or ``AccountingPort``; ``closeloop.store`` implements
``SyncStore`` on DynamoDB and tests use in-memory fakes. The logic never learns which vendor it talks to.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from closeloop.errors import FatalError
from closeloop.models import (
    AccountingCustomer,
    AccountingEvent,
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
)


@dataclass(frozen=True)
class PropertyDefinition:
    """A custom CRM property Closeloop writes (created by ``closeloop setup`` when absent)."""

    name: str
    label: str
    type: Literal["string", "number", "date", "datetime", "enumeration"] = "string"
    options: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook HTTP request as the sender made it: the public URI it signed, raw body bytes."""

    method: str
    uri: str
    headers: Mapping[str, str]
    body: bytes


class CrmPort(Protocol):
    """A CRM: where webhooks come from and where customer data is read."""

    name: str

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check the request's authenticity (signature, timestamp). Raises WebhookRejected(401)."""

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        """Parse an authenticated body into events. Raises WebhookRejected(400) on a malformed body."""
        ...

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        """The billable customer a contact/company event is about (a contact's company, if it has one).

        Returns None when the object no longer exists. Raises IntegrationError subclasses.
        """
        ...

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """``resolve_customer`` for many refs with the CRM's batch reads; every ref of ``refs`` is a key."""
        ...

    def get_deal(self, deal_id: str) -> Deal | None:
        """The deal with its line items, parties and ``is_won`` resolved (pipelines cached). None if gone."""
        ...

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Won deals whose close date is in [closed_from, closed_before), without line items (reconcile)."""
        ...

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Companies, contacts and deals modified at or after ``since``, as events (catch-up for missed hooks).

        Each event's ``dedupe_key`` is stable for one modification (the poll itself is idempotent); an object
        whose change a webhook already delivered is found unchanged by the sync. Cost grows with the number
        of changes, not with the size of the CRM.
        """
        ...

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """Write properties on deals by id, in batches; values are strings, "" clears. Raises on failure."""

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """Write properties on companies/contacts (e.g. the financial summary), in batches."""

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the custom properties that do not exist yet; return the names created."""
        ...

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer field values (names from CUSTOMER_FIELDS) onto the CRM record ``ref``
        (a company or a contact), each where resolve_customer reads it from, so that resolve_customer
        afterwards returns these values; return the names it cannot write (e.g. "people"), writing the rest.

        A contact that belongs to a company is written as its company, as ``resolve_customer`` reads it.
        A company's email, first and last name live on its primary person: without one they are returned.
        "" clears a value. Raises NotFound when ``ref`` does not exist, IntegrationError subclasses on failure.
        """
        ...


class AccountingPort(Protocol):
    """An accounting system's customer records."""

    name: str

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        """One customer by the accounting system's id; None when it does not exist or was archived."""
        ...

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        """Active customers matching exactly one criterion (name: candidates for a normalised-name match)."""
        ...

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        """Create a customer stamped with ``number`` (our external id). Raises Conflict on a duplicate name."""
        ...

    def find_customers_any(
        self,
        *,
        numbers: Collection[str] = (),
        tax_numbers: Collection[str] = (),
        emails: Collection[str] = (),
        names: Collection[str] = (),
    ) -> list[AccountingCustomer]:
        """Active customers matching any one of the values, for matching many customers at once.

        A superset is fine (the sync logic applies the exact rules); names are candidates for a normalised
        match, as in ``find_customers``. The adapter picks the cheapest way its API allows: batched filters,
        or one paged read of every customer when the organisation is small enough.
        """
        ...

    def create_customers(
        self, customers: Sequence[tuple[Customer, str]], *, idempotency_key: str
    ) -> list[AccountingCustomer | FatalError]:
        """Create ``(customer, number)`` pairs in as few calls as the vendor allows.

        One result per input, in order: the created record, or that record's own error (``Conflict`` for a
        duplicate name, ``ValidationFailed``); a failure of the whole call raises as usual.
        """
        ...

    def update_customer(
        self,
        customer_id: str,
        customer: Customer,
        fields: Collection[str],
        *,
        number: str | None,
        idempotency_key: str,
    ) -> AccountingCustomer:
        """Write only ``fields`` (names from CUSTOMER_FIELDS) of ``customer``, and ``number`` when given."""
        ...

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """The items that exist among ``codes``, keyed by code (absent codes are simply missing)."""
        ...

    def find_invoice(self, reference: str) -> Invoice | None:
        """The (non-deleted, non-voided) sales invoice whose reference equals ``reference``, if any."""
        ...

    def get_invoice(self, invoice_id: str) -> Invoice | None: ...

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> Invoice:
        """Create a sales invoice exactly as drafted. Raises ValidationFailed with the vendor's reasons."""
        ...

    def send_invoice(self, invoice_id: str) -> None:
        """Email the invoice to the customer through the accounting system (authorised invoices only)."""

    def iter_invoices_changed_since(self, since: datetime | None) -> Iterator[Invoice]:
        """Sales invoices modified at or after ``since`` (all when None), paging; cost grows with changes."""
        ...

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        """Sales invoices dated in [issued_from, issued_before) (reconcile)."""
        ...

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check a change notification's authenticity against its raw body, before anything is parsed.

        Raises WebhookRejected(401) when the signature is missing or wrong, WebhookRejected(404) when the
        system sends no webhooks (its changes are polled), ConfigurationError when the secret is not set.
        """

    def parse_webhook(self, body: bytes) -> list[AccountingEvent]:
        """An authenticated notification as events (ids only: the worker fetches current state).

        Changes of other organisations and of resources Closeloop does not follow are dropped; an empty
        list is a valid answer (e.g. a validation ping). Each ``dedupe_key`` is the same for every
        redelivery of one change. Raises WebhookRejected(400) naming what is malformed.
        """
        ...

    def iter_customers_changed_since(self, since: datetime) -> Iterator[AccountingCustomer]:
        """Customers created or modified at or after ``since``, archived/inactive ones included (their
        ``status`` says so), page by page: the catch-up for missed notifications, and the only change feed
        of a system without webhooks. Cost grows with the number of changes, not with the organisation.
        A customer changed in ``since``'s own second may come again. Raises IntegrationError subclasses.
        """
        ...


class CatalogueCrm(Protocol):
    """A CRM whose product catalogue Closeloop reads (the spec's capabilities list ``product``)."""

    name: str

    def get_product(self, product_id: str) -> Product | None:
        """One product by the CRM's id; None when it does not exist (deleted)."""
        ...

    def iter_products(self) -> Iterator[Product]:
        """Every product of the catalogue, archived ones included (``archived`` says so), page by page."""
        ...


class CatalogueAccounting(Protocol):
    """An accounting system whose items Closeloop creates and updates (capability ``product``)."""

    name: str
    #: The published limits of an item's code, name and description.
    item_limits: ItemLimits

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """The items among ``codes`` by code, with ``id`` and ``fields`` (PRODUCT_FIELDS) filled."""
        ...

    def create_item(self, draft: ItemDraft, *, idempotency_key: str) -> Item:
        """Create the item. Raises Conflict when the code (or the name, where names are unique) is taken."""
        ...

    def update_item(self, item: Item, draft: ItemDraft, fields: Collection[str], *, idempotency_key: str) -> Item:
        """Write only ``fields`` (PRODUCT_FIELDS names) of ``draft`` onto ``item``; returns it as saved."""
        ...

    def iter_items(self) -> Iterator[Item]:
        """Every active item, page by page (the catalogue backfill)."""
        ...


class PurchasingAccounting(Protocol):
    """An accounting system that takes purchase orders and keeps suppliers (capability ``purchase_order``)."""

    name: str

    def find_suppliers(self, name: str) -> list[Supplier]:
        """Active suppliers whose name may equal ``name``: candidates for a normalised-name match (a superset
        is fine; the sync logic applies the exact rule). Raises IntegrationError subclasses."""
        ...

    def create_supplier(self, name: str, *, idempotency_key: str) -> Supplier:
        """Create a supplier named ``name``. Raises Conflict when the system refuses a duplicate name."""
        ...

    def get_items(self, codes: Collection[str]) -> dict[str, Item]:
        """The items that exist among ``codes``, keyed by code (a purchase order line names one)."""
        ...

    def find_purchase_order(self, reference: str, dated: date) -> PurchaseOrder | None:
        """The (non-deleted) purchase order whose reference equals ``reference``, if any. ``dated``: the date
        it was drafted with (a system that cannot search by reference lists that day's orders only)."""
        ...

    def get_purchase_order(self, purchase_order_id: str) -> PurchaseOrder | None:
        """One purchase order by the system's id; None when it does not exist (deleted)."""
        ...

    def create_purchase_order(self, draft: PurchaseOrderDraft, *, idempotency_key: str) -> PurchaseOrder:
        """Create a draft purchase order exactly as drafted. Raises ValidationFailed with the vendor's reasons."""


class QuoteCrm(Protocol):
    """A CRM whose quotes become accounting quotes (the spec's capabilities list ``quote``).

    A CRM without quotes (Pipedrive) lets the deal stand in: ``get_quote(deal_id)`` reads the deal as a
    quote (its products as lines, ``ready`` in the stages that mean "quoted"), ``quotes_of_deal`` returns that
    one, and ``write_quote`` writes the deal's fields.
    """

    name: str

    def get_quote(self, quote_id: str) -> Quote | None:
        """One quote with its lines, parties, deal and canonical status; None when it no longer exists."""
        ...

    def quotes_of_deal(self, deal_id: str) -> list[Quote]:
        """The quotes of a deal, with their lines (none: an empty list)."""
        ...

    def write_quote(self, quote_id: str, values: Mapping[str, str]) -> None:
        """Write Closeloop's quote fields (QUOTE_SYNC_FIELDS names; "" clears) on the quote, or on the deal
        that stands in for it. Raises ValidationFailed when the CRM refuses them (most likely they do not
        exist yet: ``ensure_quote_properties`` then creates them), IntegrationError subclasses on failure."""

    def ensure_quote_properties(self, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the quote fields that do not exist yet where ``write_quote`` writes them; the names created."""
        ...


class QuoteAccounting(Protocol):
    """An accounting system's quotes (Xero Quotes, QuickBooks Estimates, Zoho Books Estimates): capability
    ``quote``.

    One accounting quote per CRM quote, found by its reference. A revision is the same record edited in
    place (its number stays; what a system keeps of the previous version is its own: history notes, a sync
    token); a system that can only revise by a new record must void the old one in the same call, so there
    is never a second live quote.
    """

    name: str
    #: Whether the system has an "invoiced" state ``mark_quote_invoiced`` can set or link (all three do). An
    #: invoice drafted with ``accounting_quote_id`` names its quote where the system links them (the quote then
    #: reads invoiced by the invoice itself).
    marks_invoiced: bool

    def find_quote(self, reference: str, customer_id: str) -> AccountingQuote | None:
        """The live (not deleted/voided) quote of customer ``customer_id`` whose reference equals
        ``reference``, if any (a system that cannot filter by reference reads that customer's quotes)."""
        ...

    def get_quote(self, quote_id: str) -> AccountingQuote | None:
        """One quote by the system's id; None when it does not exist."""
        ...

    def create_quote(self, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """Create the quote as drafted, in the draft's status (a system that creates drafts only marks it
        sent in a second call). Raises ValidationFailed with the vendor's reasons."""
        ...

    def revise_quote(self, quote: AccountingQuote, draft: QuoteDraft, *, idempotency_key: str) -> AccountingQuote:
        """Replace the lines, currency, expiry and title of ``quote`` with the draft's; its status stays.
        Raises ValidationFailed when the system refuses (e.g. the quote was accepted or invoiced meanwhile)."""
        ...

    def mark_quote_sent(self, quote: AccountingQuote, *, idempotency_key: str) -> AccountingQuote:
        """Mark a DRAFT quote sent (the customer has it), as ``create_quote`` does for a SENT draft: the heal of a
        create that stopped between making the draft and marking it sent. A system without drafts returns the
        quote as read. Raises NotFound when it is gone, ValidationFailed when the system refuses."""
        ...

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        """Quotes modified at or after ``since`` (all when None), page by page: the status back-flow."""
        ...

    def mark_quote_invoiced(self, quote: AccountingQuote, invoice_id: str, *, idempotency_key: str) -> AccountingQuote:
        """Record that invoice ``invoice_id`` bills ``quote`` (a status where the system has one, a link from
        the invoice where it links them); returns the quote as it is now. A system that marks a quote only
        through the invoice's link returns it unchanged (not INVOICED) when the invoice was made without it."""
        ...


class RecurringAccounting(Protocol):
    """An accounting system that runs repeating invoice schedules (capability ``repeating_invoice``)."""

    name: str

    def find_schedule(self, reference: str) -> RepeatingSchedule | None:
        """The live (not deleted) sales schedule whose reference equals ``reference``, if any: finds a
        schedule made by an attempt that died before its mapping was written. Raises IntegrationError."""
        ...

    def get_schedule(self, schedule_id: str) -> RepeatingSchedule | None:
        """One schedule by id, ended ones included (``status`` says so); None when it does not exist."""
        ...

    def create_schedule(self, draft: ScheduleDraft, *, idempotency_key: str) -> RepeatingSchedule:
        """Create the schedule exactly as drafted. Raises ValidationFailed with the vendor's reasons."""
        ...

    def end_schedule(self, schedule_id: str, *, idempotency_key: str) -> RepeatingSchedule:
        """Stop the schedule generating invoices (invoices it made stay). Ending an ended one is a no-op."""
        ...

    def extend_schedule(self, schedule: RepeatingSchedule, end: date, *, idempotency_key: str) -> RepeatingSchedule:
        """Make ``schedule`` run until ``end`` (later than its end), keeping its lines, customer and next
        invoice date; returns it as it now runs, whose ``id`` may be new where the system can only replace
        a schedule (the replaced one is then ended, never left running beside it)."""
        ...


@dataclass(frozen=True)
class IdMapping:
    """A stored cross-system link: CRM object -> accounting id, with the last values we synced."""

    ref: CrmRef
    system: str
    accounting_id: str
    snapshot: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    """Who changed what, when, and why: one sync action with before/after per field."""

    ref: CrmRef
    at: datetime
    action: str
    system: str
    target_id: str
    actor: str
    source_event: str
    changes: dict[str, dict[str, str]]
    detail: str = ""


@dataclass(frozen=True)
class FailedSync:
    """A record that could not sync, kept with its reason until a later sync succeeds."""

    ref: CrmRef
    at: datetime
    reason: str
    error_type: str
    source_event: str
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


ReviewStatus = Literal["pending", "accepted", "rejected"]


@dataclass(frozen=True)
class ReviewItem:
    """An uncertain match a person must decide: link ``ref`` to ``candidate_id``, or keep them apart."""

    ref: CrmRef
    system: str
    candidate_id: str
    score: float
    reasons: tuple[str, ...]
    crm_name: str
    candidate_name: str
    created_at: datetime
    status: ReviewStatus = "pending"
    decided_by: str = ""
    decided_at: datetime | None = None


#: Where the email of a deal's invoice stands: ``to_send`` (promised before the invoice was created, not
#: sent yet), ``sending`` (the request may be in flight), ``sent``, ``unknown`` (sent, answer lost: a person
#: checks; never re-sent), ``skipped`` (the invoice was not approved, so nothing is emailed).
InvoiceEmailState = Literal["to_send", "sending", "sent", "unknown", "skipped"]


@dataclass(frozen=True)
class InvoiceEmail:
    """The "email this invoice" marker of one deal: written before the invoice is created, so a crash
    between the create and the send leaves a promise the next attempt keeps, exactly once."""

    ref: CrmRef
    system: str
    state: InvoiceEmailState
    invoice_id: str = ""
    updated_at: datetime | None = None


class InvoiceEmailStore(Protocol):
    """The invoice email markers (DynamoDB in production)."""

    def get_invoice_email(self, ref: CrmRef, system: str) -> InvoiceEmail | None: ...

    def put_invoice_email(self, email: InvoiceEmail) -> None: ...


class SyncStore(Protocol):
    """Mappings, the audit trail, failed syncs and leases (DynamoDB in production)."""

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None: ...

    def put_mapping(self, mapping: IdMapping) -> None: ...

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None: ...

    def put_audit(self, record: AuditRecord) -> None: ...

    def list_audit(self, ref: CrmRef) -> list[AuditRecord]: ...

    def record_failed_sync(self, failure: FailedSync) -> None: ...

    def clear_failed_sync(self, ref: CrmRef) -> None: ...

    def get_failed_sync(self, ref: CrmRef) -> FailedSync | None: ...

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        """Take the named lease if free or expired (conditional write). True if now held by ``owner``."""
        ...

    def release_lease(self, name: str, owner: str) -> None: ...
