"""Quotes: an approved or published CRM quote becomes one accounting quote; its status flows back; the won
deal's invoice bills the quote's lines, and the quote is marked invoiced.

Forward (``QuoteSync.sync``, the deals queue, under a per-quote lease): a CRM quote that is ``ready``
(approved, or published without approval) is validated whole first (lines, SKUs, currency, a party to
quote), so bad input is a failed sync of the quote with nothing created; its SKUs become lines exactly as a
won deal's do (``billed_lines``: the SKU -> item map, the tax rule table; items made just in time from
their CRM products when the catalogue sync is on). The customer is ensured through the contact pipeline.
The accounting quote already made for it is found by the stored mapping, then by its Reference (which
carries the CRM quote id, so a crash between the vendor's create and our mapping write is healed); only
then is one created, with an idempotency key derived from the quote alone. Its number, status, link and
revision are written back to the CRM quote (or the deal standing in for it).

A quote found in draft while the CRM quote is ready (a create that made the draft and stopped before marking
it sent, in a system that creates drafts only) is marked sent (``mark_quote_sent``) before it is linked.

Revisions: what the quote asks for (customer, currency, lines, expiry, title) is fingerprinted in the
mapping. An edit after the quote was made revises the same accounting quote in place (its number stays;
the revision count goes up, on the CRM quote and in the audit trail): never a second live quote. A quote the
customer already accepted or declined, or that was invoiced, is not revised: the edit is a failed sync of
the CRM quote saying so (make a new quote in the CRM).

Back-flow (``QuoteSync.status_changed`` per accounting quote; ``QuoteStatusPoll`` reads the quotes changed
since its watermark): sent, accepted, declined, expired (a sent quote past its expiry date, in a system
without that state), invoiced and deleted are written to the CRM quote. With ``invoice_on_accept`` an
acceptance also asks for the deal's invoice (``invoice_deal``), and ``QuoteFlow.promised`` then makes the
deal billable before it is won.

Invoice (``QuoteFlow``, a ``WonDealFlow``): the won deal is billed with its quote's lines (the quote
accepted in accounting first, then the one synced, then one approved in the CRM); a deal without a quote is
billed as before. The promised deal names the synced accounting quote (``Deal.accounting_quote_id``, when
quote and deal bill the same CRM party), so the invoice is made from it where the system links the two (the
quote then reads invoiced by the invoice itself). After the invoice, the accounting quote is marked invoiced
where the system can (``marks_invoiced``), once: the mapping says so, and the create's key is derived from
the quote. A system that marks a quote only through that link, for an invoice made without it, leaves the
quote as it is: flagged once in the trail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from closeloop.errors import FatalError, RateLimited, ValidationFailed
from closeloop.models import (
    AccountingQuote,
    AccountingQuoteStatus,
    CrmRef,
    Deal,
    Item,
    LineItem,
    Quote,
    QuoteDraft,
    SyncEvent,
)
from closeloop.ports import (
    AccountingPort,
    CrmPort,
    IdMapping,
    PropertyDefinition,
    QuoteAccounting,
    QuoteCrm,
    SyncStore,
)
from closeloop.sync.catchup import CatchUpResult, deferral
from closeloop.sync.contacts import Action, ContactSync, Outcome
from closeloop.sync.invoices import (
    InvoicePolicy,
    billed_lines,
    billing_currency,
    deal_idempotency_key,
    items_just_in_time,
    money,
)
from closeloop.sync.leases import held
from closeloop.sync.products import ProductSync
from closeloop.sync.trail import Trail

QUOTE_STATUSES: tuple[AccountingQuoteStatus, ...] = (
    "DRAFT",
    "SENT",
    "ACCEPTED",
    "DECLINED",
    "EXPIRED",
    "INVOICED",
    "DELETED",
)
#: The states in which an accounting quote may still be revised (the customer has not answered it).
REVISABLE: frozenset[str] = frozenset({"DRAFT", "SENT"})
#: The states that mean the customer agreed (the quote's lines are what the deal promised).
AGREED: frozenset[str] = frozenset({"ACCEPTED", "INVOICED"})
#: The states of a quote that no longer stands.
CLOSED: frozenset[str] = frozenset({"DECLINED", "EXPIRED", "DELETED"})

#: The quote fields Closeloop writes (``closeloop setup`` creates them; the worker does when missing).
QUOTE_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition("closeloop_quote_number", "Accounting quote number", description="Set by Closeloop"),
    PropertyDefinition("closeloop_quote_status", "Accounting quote status", "enumeration", QUOTE_STATUSES),
    PropertyDefinition("closeloop_quote_url", "Accounting quote link", description="Opens it in accounting"),
    PropertyDefinition("closeloop_quote_revision", "Accounting quote revision", "number"),
)

QUOTE_WATERMARK = "accounting-quotes"
#: Re-read this much before the watermark: a change saved in the same second as the last run's end.
OVERLAP = timedelta(minutes=2)


def quote_reference(quote: Quote) -> str:
    """``hubspot-quote-4000001 Big quote``: the quote id first (unique, searchable), then its title."""
    return f"{quote.ref.crm}-quote-{quote.ref.object_id} {quote.title}".strip()[:255]


def effective_status(quote: AccountingQuote, today: date) -> AccountingQuoteStatus:
    """The quote's status as the CRM is told it: a sent quote past its expiry date is ``EXPIRED`` (systems
    without that state keep it ``SENT``)."""
    if quote.status == "SENT" and quote.expiry is not None and quote.expiry < today:
        return "EXPIRED"
    return quote.status


def fingerprint(draft: QuoteDraft) -> str:
    """What a revision changes: customer, currency, lines, tax treatment, expiry and title (not the
    issue date, which is the day it was first made)."""
    content = draft.model_dump_json(
        include={"customer_id", "currency", "lines", "line_amount_types", "expiry", "title"}
    )
    return hashlib.sha256(content.encode()).hexdigest()[:32]


class QuoteCrmPort(CrmPort, QuoteCrm, Protocol):
    """A CRM with quotes: the customer reads of the CRM port and the quote port."""


class QuoteBooks(AccountingPort, QuoteAccounting, Protocol):
    """An accounting system with quotes: its items (for the lines) and the quote port."""


def write_to_quote(crm: QuoteCrm, quote_id: str, values: dict[str, str]) -> None:
    """Write Closeloop's quote fields; when the CRM refuses them (most likely they do not exist yet) create
    them once and write again."""
    try:
        crm.write_quote(quote_id, values)
    except ValidationFailed:
        if not crm.ensure_quote_properties(QUOTE_PROPERTIES):
            raise
        crm.write_quote(quote_id, values)


@dataclass(frozen=True)
class QuotePolicy:
    """How quotes are made and billed, per deployment."""

    #: Invoice the deal as soon as its quote is accepted in accounting, won or not (INVOICE_ON_QUOTE_ACCEPTED).
    invoice_on_accept: bool = False


class QuoteSync:
    """Vendor-free CRM quote -> accounting quote, and the accounting quote's status back to the CRM."""

    def __init__(
        self,
        crm: QuoteCrmPort,
        accounting: QuoteBooks,
        store: SyncStore,
        contacts: ContactSync,
        policy: InvoicePolicy,
        *,
        owner: str,
        quotes: QuotePolicy = QuotePolicy(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        products: ProductSync | None = None,
        invoice_deal: Callable[[CrmRef], None] | None = None,
    ) -> None:
        """``products``: the catalogue sync, when on (items made just in time). ``invoice_deal``: asks for a
        deal's invoice (queues a deal event) when its quote is accepted and ``quotes.invoice_on_accept``."""
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.contacts = contacts
        self.policy = policy
        self.quotes = quotes
        self.owner = owner
        self.clock = clock
        self.products = products
        self.invoice_deal = invoice_deal
        self.trail = Trail(store, accounting.name, clock)

    # -- CRM quote -> accounting quote ------------------------------------------------------------------

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent] = ()) -> Outcome:
        """Make or revise the accounting quote of CRM quote ``ref``. Raises RetriableError; keeps a
        FatalError as the quote's failed sync."""
        ordered = sorted(events, key=lambda e: e.occurred_at)
        trigger = ordered[-1] if ordered else None
        if self.contacts.rules.direction("invoice") in ("off", "accounting_to_crm"):
            self.trail.audit(ref, "ignored", "", trigger, {}, "invoicing from the CRM is off (field rules)")
            return Outcome(ref, "skipped", detail="invoice direction is off")
        try:
            with held(self.store, f"quote#{ref}", self.owner, f"{ref} is being quoted by another worker"):
                outcome = self._sync_quote(ref, trigger)
        except FatalError as exc:
            self.trail.fail(ref, trigger, str(exc), type(exc).__name__)
            return Outcome(ref, "failed", detail=exc.message)
        if outcome.action != "skipped":
            self.store.clear_failed_sync(ref)
        return outcome

    def _sync_quote(self, ref: CrmRef, event: SyncEvent | None) -> Outcome:
        quote = self.crm.get_quote(ref.object_id)
        mapping = self.store.get_mapping(ref, self.accounting.name)
        if quote is None:
            return Outcome(ref, "skipped", detail="gone from CRM")
        if quote.status != "ready":
            detail = "no longer approved in the CRM; the accounting quote stays" if mapping else "not approved yet"
            return Outcome(ref, "skipped", mapping.accounting_id if mapping else "", detail=detail)
        party = quote.company or quote.contact
        if party is None:
            raise ValidationFailed("the quote has no associated company or contact to quote")
        if not quote.line_items:
            raise ValidationFailed("the quote has no line items")
        currency = billing_currency(quote.currency, self.policy, "quote")
        items = self._items(quote, event)  # every SKU known before anything is made

        customer_outcome = self.contacts.sync(party, [event] if event else [])
        if customer_outcome.action in ("failed", "skipped") or not customer_outcome.accounting_id:
            raise ValidationFailed(f"the quote's customer {party} could not be synced: {customer_outcome.detail}")
        existing = self._existing(quote, mapping, customer_outcome.accounting_id)
        customer = self.crm.resolve_customer(party)
        if customer is None:
            raise ValidationFailed(f"the quote's customer {party} no longer exists in the CRM")
        lines, amounts = billed_lines(quote.line_items, customer, items, self.policy)
        today = self.clock().date()
        draft = QuoteDraft(
            customer_id=customer_outcome.accounting_id,
            reference=quote_reference(quote),
            title=quote.title,
            currency=currency,
            lines=lines,
            line_amount_types=amounts,
            issue_date=existing.issue_date if existing and existing.issue_date else today,
            expiry=quote.expiry,
            url=quote.url,
        )
        wanted = fingerprint(draft)
        if existing is None:
            made = self.accounting.create_quote(draft, idempotency_key=deal_idempotency_key(ref, "quote"))
            self._remember(quote, made, wanted, revision=0, written_back=False)  # the mapping first: never two
            self.trail.audit(ref, "quoted", made.id, event, self._changes(None, made), "created")
            return self._written_back(quote, made, wanted, 0, "created")
        return self._revise(quote, existing, mapping, draft, event)

    def _revise(
        self,
        quote: Quote,
        existing: AccountingQuote,
        mapping: IdMapping | None,
        draft: QuoteDraft,
        event: SyncEvent | None,
    ) -> Outcome:
        """The accounting quote exists: link it (found by reference), write back what is stale, or revise
        it in place when the CRM quote changed and the customer has not answered it yet."""
        ref = quote.ref
        wanted = fingerprint(draft)
        revision = int(mapping.snapshot.get("revision", "0")) if mapping else 0
        if existing.status == "DRAFT" and draft.status == "SENT":
            existing = self._sent(quote, existing, event)
        if mapping is None or mapping.accounting_id != existing.id:
            # Found by reference: made by an attempt that died before its mapping (from this content).
            self._remember(quote, existing, wanted, revision=revision, written_back=False)
            self.trail.audit(ref, "linked", existing.id, event, self._changes(None, existing), "found by reference")
            return self._written_back(quote, existing, wanted, revision, "matched")
        if mapping.snapshot.get("fingerprint") == wanted:
            if mapping.snapshot.get("written_back") != "yes" or self._stale(quote, existing, revision):
                return self._written_back(quote, existing, wanted, revision, "unchanged")
            return Outcome(ref, "unchanged", existing.id, detail="no change to quote")
        status = effective_status(existing, self.clock().date())
        if status not in REVISABLE:
            raise ValidationFailed(
                f"the quote changed after accounting quote {existing.number or existing.id} was {status.lower()}: "
                "it is not revised (make a new quote in the CRM)"
            )
        revised = self.accounting.revise_quote(
            existing, draft, idempotency_key=deal_idempotency_key(ref, f"quote-revision:{revision + 1}:{wanted}")
        )
        revision += 1
        self._remember(quote, revised, wanted, revision=revision, written_back=False)
        changes = {
            **self._changes(existing, revised),
            "revision": {"before": str(revision - 1), "after": str(revision)},
        }
        self.trail.audit(ref, "revised", revised.id, event, changes, f"revision {revision}")
        return self._written_back(quote, revised, wanted, revision, "updated")

    def _sent(self, quote: Quote, draft_quote: AccountingQuote, event: SyncEvent | None) -> AccountingQuote:
        """Mark sent an accounting quote left in draft while the CRM quote asks it sent: a create that made
        the draft and stopped before marking it sent (a system that creates drafts only), healed here."""
        key = deal_idempotency_key(quote.ref, "quote-sent")
        sent = self.accounting.mark_quote_sent(draft_quote, idempotency_key=key)
        changes: dict[str, dict[str, str]] = {"quote_status": {"before": draft_quote.status, "after": sent.status}}
        self.trail.audit(quote.ref, "status", sent.id, event, changes, "draft left by an earlier attempt marked sent")
        return sent

    def _items(self, quote: Quote, event: SyncEvent | None) -> dict[str, Item]:
        """The items of the quote's SKUs; ValidationFailed for a line without a SKU or a SKU without an item
        (after the catalogue sync made what it can, when on)."""
        codes: set[str] = set()
        for line in quote.line_items:
            if not line.sku:
                raise ValidationFailed(f"line item {line.name or line.crm_id!r} has no SKU")
            codes.add(self.policy.sku_item_codes.get(line.sku, line.sku))
        items = self.accounting.get_items(codes)
        missing = codes - set(items)
        if missing and self.products is not None:
            made = items_just_in_time(
                self.accounting, self.products, self.store, self.policy, quote.ref.crm, quote.line_items, missing, event
            )
            items = {**items, **made}
        for line in quote.line_items:
            code = self.policy.sku_item_codes.get(line.sku, line.sku)
            if code not in items:
                raise ValidationFailed(f"unknown SKU {line.sku!r}: no accounting item with code {code!r}")
        return items

    def _existing(self, quote: Quote, mapping: IdMapping | None, customer_id: str) -> AccountingQuote | None:
        if mapping is not None:
            found = self.accounting.get_quote(mapping.accounting_id)
            if found is not None and found.status != "DELETED":
                return found
        return self.accounting.find_quote(quote_reference(quote), customer_id)

    def _stale(self, quote: Quote, current: AccountingQuote, revision: int) -> bool:
        """Whether the CRM quote shows other values than the accounting quote has now (e.g. a person
        cleared them, or a write-back was lost)."""
        return any(quote.synced.get(k, "") != v for k, v in self._values(current, revision).items())

    def _values(self, current: AccountingQuote, revision: int) -> dict[str, str]:
        return {
            "closeloop_quote_number": current.number,
            "closeloop_quote_status": effective_status(current, self.clock().date()),
            "closeloop_quote_url": current.url,
            "closeloop_quote_revision": str(revision),
        }

    def _written_back(
        self, quote: Quote, current: AccountingQuote, wanted: str, revision: int, action: Action
    ) -> Outcome:
        write_to_quote(self.crm, quote.ref.object_id, self._values(current, revision))
        self._remember(quote, current, wanted, revision=revision, written_back=True)
        return Outcome(quote.ref, action, current.id, detail=f"revision {revision}" if revision else "")

    @staticmethod
    def _changes(before: AccountingQuote | None, after: AccountingQuote) -> dict[str, dict[str, str]]:
        return {
            "quote_number": {"before": before.number if before else "", "after": after.number},
            "quote_total": {
                "before": f"{money(before.total)} {before.currency}" if before else "",
                "after": f"{money(after.total)} {after.currency}",
            },
        }

    def _remember(
        self,
        quote: Quote,
        current: AccountingQuote,
        wanted: str,
        *,
        revision: int,
        written_back: bool,
        status: str = "",
    ) -> None:
        self.store.put_mapping(
            IdMapping(
                ref=quote.ref,
                system=self.accounting.name,
                accounting_id=current.id,
                snapshot={
                    "kind": "quote",
                    "deal_id": quote.deal.object_id if quote.deal else "",
                    "number": current.number,
                    "status": status or effective_status(current, self.clock().date()),
                    "fingerprint": wanted,
                    "revision": str(revision),
                    "written_back": "yes" if written_back else "no",
                },
                updated_at=self.clock(),
            )
        )

    # -- accounting quote status -> CRM quote ------------------------------------------------------------

    def status_changed(self, current: AccountingQuote) -> Outcome | None:
        """Write an accounting quote's status (and number) back to its CRM quote when it changed; None when
        the quote is not one Closeloop made. With ``invoice_on_accept``, an acceptance asks for the deal's
        invoice. Raises RetriableError; keeps a FatalError as the CRM quote's failed sync."""
        ref = self.store.find_ref(self.accounting.name, current.id)
        if ref is None or ref.object_type != "quote":
            return None
        try:
            with held(self.store, f"quote#{ref}", self.owner, f"{ref} is being quoted by another worker"):
                return self._status_changed(ref, current)
        except FatalError as exc:
            self.trail.fail(ref, None, str(exc), type(exc).__name__, source=f"quote:{current.id}")
            return Outcome(ref, "failed", current.id, detail=exc.message)

    def _status_changed(self, ref: CrmRef, current: AccountingQuote) -> Outcome:
        mapping = self.store.get_mapping(ref, self.accounting.name)
        if mapping is None or mapping.accounting_id != current.id:
            return Outcome(ref, "skipped", current.id, detail="not this CRM quote's accounting quote")
        before = mapping.snapshot.get("status", "")
        status = effective_status(current, self.clock().date())
        if status == before and current.number == mapping.snapshot.get("number", ""):
            return Outcome(ref, "unchanged", current.id, detail=status)
        revision = int(mapping.snapshot.get("revision", "0"))
        write_to_quote(self.crm, ref.object_id, self._values(current, revision))
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=mapping.system,
                accounting_id=current.id,
                snapshot={**mapping.snapshot, "number": current.number, "status": status, "written_back": "yes"},
                updated_at=self.clock(),
            )
        )
        changes = {"quote_status": {"before": before, "after": status}}
        self.trail.audit(ref, "status", current.id, None, changes, f"quote {status.lower()} in accounting")
        deal_id = mapping.snapshot.get("deal_id", "")
        accepted = status == "ACCEPTED" and before != "ACCEPTED"
        if accepted and self.quotes.invoice_on_accept and deal_id and self.invoice_deal is not None:
            self.invoice_deal(CrmRef(crm=ref.crm, object_type="deal", object_id=deal_id))
        return Outcome(ref, "updated", current.id, detail=status)


class QuoteStatusPoll:
    """The status back-flow's change feed: the accounting quotes changed since the watermark, each handled
    as read (the first run only sets the watermark). A RetriableError stops the run with the watermark where
    it was, so the next run reads those quotes again: a ``RateLimited`` one ends the run as ``deferred``, any
    other is raised."""

    def __init__(
        self,
        accounting: QuoteAccounting,
        quotes: QuoteSync,
        store: Watermarks,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.accounting = accounting
        self.quotes = quotes
        self.store = store
        self.clock = clock

    def run(self) -> CatchUpResult:
        """Handle the quotes changed since the last run; ``queued["quotes"]``: the CRM quotes written."""
        started = self.clock()
        mark = self.store.get_watermark(QUOTE_WATERMARK)
        if mark is None:
            self.store.put_watermark(QUOTE_WATERMARK, started)
            return CatchUpResult(None, {}, started, complete=True)
        written = 0
        try:
            for current in self.accounting.iter_quotes_changed_since(mark - OVERLAP):
                outcome = self.quotes.status_changed(current)
                written += outcome is not None and outcome.action == "updated"
        except RateLimited as exc:  # the rest (and what was written) is read again by the next run
            queued = {"quotes": written} if written else {}
            return CatchUpResult(mark - OVERLAP, queued, mark, complete=False, deferred=deferral(exc))
        self.store.put_watermark(QUOTE_WATERMARK, started)
        return CatchUpResult(mark - OVERLAP, {"quotes": written} if written else {}, started, complete=True)


class Watermarks(Protocol):
    def get_watermark(self, name: str) -> datetime | None: ...

    def put_watermark(self, name: str, value: datetime) -> None: ...


# -- the won deal's invoice from its quote ----------------------------------------------------------------


RECURRING_TERMS = ("recurring_frequency", "recurring_start", "recurring_periods", "recurring_end")


def with_recurring_terms(quoted: tuple[LineItem, ...], sold: tuple[LineItem, ...]) -> tuple[LineItem, ...]:
    """The quote's lines, each quote line without recurring terms taking those of the deal's recurring line
    with the same SKU (each deal line lends its terms once): a CRM whose quote lines cannot carry a billing
    frequency (SugarCRM's quoted line items) still schedules what the deal sells as recurring."""
    lenders = [line for line in sold if line.recurring_frequency and line.sku]
    lines: list[LineItem] = []
    for line in quoted:
        lender = None if line.recurring_frequency else next((d for d in lenders if d.sku == line.sku), None)
        if lender is None:
            lines.append(line)
            continue
        lenders.remove(lender)
        lines.append(line.model_copy(update={term: getattr(lender, term) for term in RECURRING_TERMS}))
    return tuple(lines)


class QuoteFlow:
    """The ``WonDealFlow`` of quotes: the deal promised its quote's lines; the quote is marked invoiced."""

    name = "quote"

    def __init__(self, quotes: QuoteSync) -> None:
        self.quotes = quotes

    def promised(self, deal: Deal) -> Deal:
        if not deal.is_won and not self.quotes.quotes.invoice_on_accept:
            return deal  # nothing to bill, and no acceptance that could bill it: no read
        chosen = self._chosen(deal)
        if chosen is None:
            return deal
        quote, status, quote_id = chosen
        won = deal.is_won or (self.quotes.quotes.invoice_on_accept and status in AGREED)
        if not won:
            return deal
        # The invoice names the accounting quote it bills (where the system links them) only when both bill
        # the same CRM party: the systems refuse a link to another customer's quote, which would fail the deal.
        same_party = (quote.company or quote.contact) == (deal.company or deal.contact)
        return deal.model_copy(
            update={
                "line_items": with_recurring_terms(quote.line_items, deal.line_items),
                "currency": quote.currency or deal.currency,
                "is_won": True,
                "accounting_quote_id": quote_id if same_party else "",
            }
        )

    def off_invoice(self, deal: Deal) -> frozenset[str]:
        return frozenset()

    def follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        """Mark the billed quote's accounting quote invoiced (once), and say so on the CRM quote."""
        sync = self.quotes
        if not sync.accounting.marks_invoiced:
            return
        chosen = self._chosen(deal)
        invoice = sync.store.get_mapping(deal.ref, sync.accounting.name)
        if chosen is None or invoice is None or invoice.snapshot.get("kind") != "invoice":
            return
        quote = chosen[0]
        with held(sync.store, f"quote#{quote.ref}", sync.owner, f"{quote.ref} is being quoted by another worker"):
            mapping = sync.store.get_mapping(quote.ref, sync.accounting.name)
            if mapping is None or mapping.snapshot.get("status") == "INVOICED":
                return
            if mapping.snapshot.get("unmarked_by") == invoice.accounting_id:
                return  # the system could not mark it for this invoice, and the trail says so already
            current = sync.accounting.get_quote(mapping.accounting_id)
            if current is None or current.status == "DELETED":
                return
            if current.status != "INVOICED":
                current = sync.accounting.mark_quote_invoiced(
                    current, invoice.accounting_id, idempotency_key=deal_idempotency_key(quote.ref, "quote-invoiced")
                )
            if current.status != "INVOICED":
                self._unmarked(deal, quote, mapping, current, invoice.accounting_id, event)
                return
            revision = int(mapping.snapshot.get("revision", "0"))
            write_to_quote(sync.crm, quote.ref.object_id, sync._values(current, revision))
            before = mapping.snapshot.get("status", "")
            sync.store.put_mapping(
                IdMapping(
                    ref=quote.ref,
                    system=mapping.system,
                    accounting_id=current.id,
                    snapshot={**mapping.snapshot, "status": current.status, "written_back": "yes"},
                    updated_at=sync.clock(),
                )
            )
            changes = {"quote_status": {"before": before, "after": current.status}}
            sync.trail.audit(quote.ref, "invoiced", current.id, event, changes, f"billed by invoice of {deal.ref}")

    def _unmarked(
        self,
        deal: Deal,
        quote: Quote,
        mapping: IdMapping,
        current: AccountingQuote,
        invoice_id: str,
        event: SyncEvent | None,
    ) -> None:
        """The system marks a quote invoiced only through the invoice's link to it, and this invoice was made
        without one (e.g. before invoices named their quote): said once in the trail, and not asked again
        for this invoice. The quote stays as it is; the reconciliation's quote checks see the deal invoiced."""
        sync = self.quotes
        status = effective_status(current, sync.clock().date())
        sync.store.put_mapping(
            IdMapping(
                ref=quote.ref,
                system=mapping.system,
                accounting_id=current.id,
                snapshot={**mapping.snapshot, "status": status, "unmarked_by": invoice_id},
                updated_at=sync.clock(),
            )
        )
        sync.trail.audit(
            quote.ref,
            "flagged",
            current.id,
            event,
            {},
            f"billed by invoice {invoice_id} of {deal.ref}, which does not link the quote: it stays {status.lower()}",
        )

    def _chosen(self, deal: Deal) -> tuple[Quote, str, str] | None:
        """The quote the deal promised, with its accounting status and id ("" when not synced): the one
        accepted (or invoiced) in accounting first, then one synced and still standing, then one approved in
        the CRM; the latest of each. None when the deal has no such quote."""
        sync = self.quotes
        ranked: list[tuple[int, float, Quote, str, str]] = []
        for quote in sync.crm.quotes_of_deal(deal.ref.object_id):
            mapping = sync.store.get_mapping(quote.ref, sync.accounting.name)
            status = mapping.snapshot.get("status", "") if mapping else ""
            if status in AGREED:
                rank = 0
            elif mapping is not None and status not in CLOSED:
                rank = 1
            elif mapping is None and quote.status == "ready":
                rank = 2
            else:
                continue
            newest_first = -quote.updated_at.timestamp() if quote.updated_at else 0.0
            ranked.append((rank, newest_first, quote, status, mapping.accounting_id if mapping else ""))
        if not ranked:
            return None
        _, _, quote, status, quote_id = min(ranked, key=lambda entry: (entry[0], entry[1]))
        return quote, status, quote_id


class DealPipeline(Protocol):
    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome: ...


class WithQuotes:
    """The deals queue's pipeline: quotes to ``QuoteSync`` (None: quotes off or not carried by this pair,
    and a quote event is audited and skipped), deals (and the customers of a mixed batch) to ``DealSync``."""

    def __init__(self, deals: DealPipeline, quotes: QuoteSync | None, trail: Trail) -> None:
        self.deals = deals
        self.quotes = quotes
        self.trail = trail

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        if ref.object_type != "quote":
            return self.deals.sync(ref, events)
        if self.quotes is None:
            trigger = max(events, key=lambda e: e.occurred_at, default=None)
            self.trail.audit(ref, "ignored", "", trigger, {}, "quotes are not synced by this stack")
            return Outcome(ref, "skipped", detail="quote sync off")
        return self.quotes.sync(ref, events)
