"""Backfill of won deals: historical deals meet the invoices finance already made, once, before live sync.

The CRM's won deals closed since ``since`` (default: ``DEFAULT_SINCE_DAYS`` back) are laid against the sales
invoices issued from ``INVOICE_LOOKBACK_DAYS`` before ``since`` on. For each won deal without a deal mapping:

1. an invoice whose reference starts with the deal's key (``<crm>-deal-<id>``, as ``invoice_reference``
   writes it and reconcile reads it) is a confident match;
2. otherwise the invoices of the deal's customer (the customer's mapping gives the accounting customer id; a
   customer not linked yet cannot be matched, and the plan says so) in the deal's currency whose amount equals
   the deal amount to the cent and whose issue date is within ``DATE_WINDOW_DAYS`` of the close date. The
   amount is compared like reconcile's ``amount_mismatch`` rule: the invoice's net total (``sub_total``, as
   DealSync compares a deal amount, which is before tax) or its total (tax-inclusive prices). Exactly one
   such invoice is confident, several are uncertain (review list), none is ``missing``.

An invoice claimed by two deals makes both uncertain. Invoices that already carry a deal key in their
reference are never matched by amount. Missing deals are NOT invoiced by a backfill: they are listed for
finance; with ``create_missing`` they go through DealSync like a live won deal. Invoices of the period that no
deal claims are listed as ``invoice_without_deal`` (plan only, nothing is written for them).

A confident match (or a review accepted by a person) writes the deal mapping first, with the snapshot keys
DealSync stores, marked not yet written back, then hands the deal to ``DealSync.sync``: under the per-deal
lease it finds the mapping, writes the invoice number, status and amounts back to the CRM deal with its own
code and marks the mapping written back (the same crash-safe order as a live invoice).

Like the contacts backfill: a dry run reads and plans and writes nothing anywhere; a real run stores a
checkpoint after every chunk and ``resume`` continues after the last finished one; a vendor's rate limit
pauses the run as long as the vendor says and retries (the helpers are the contacts backfill's).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

from closeloop.models import CrmRef, Deal, Invoice
from closeloop.ports import AccountingPort, CrmPort, IdMapping, ReviewItem, SyncStore
from closeloop.sync.backfill import CHUNK, BackfillStore, Progress, with_limits
from closeloop.sync.invoices import CENT, DealSync, money, write_back_values
from closeloop.sync.trail import Trail

#: Without ``since``, deals closed in the last two years are backfilled (older ones are rarely still owed).
DEFAULT_SINCE_DAYS = 730
#: Invoices are read from this many days before ``since``: finance sometimes invoices before the close date.
INVOICE_LOOKBACK_DAYS = 60
#: An invoice matches a deal by amount only when issued within this many days of the deal's close date.
DATE_WINDOW_DAYS = 45
DEAD_STATUSES = ("VOIDED", "DELETED")

DealAction = Literal["link", "review", "missing", "create", "no_customer", "mapped", "invoice_without_deal"]
T = TypeVar("T")


class DealBackfillStore(BackfillStore, SyncStore, Protocol):
    """The contacts backfill's store (checkpoints, reviews) and the sync store DealSync writes to."""


@dataclass(frozen=True)
class DealPlanEntry:
    """What the backfill does (or would do) with one won deal, or one unclaimed invoice. No personal data."""

    action: DealAction
    ref: CrmRef | None
    name: str = ""
    invoice_id: str = ""
    invoice_number: str = ""
    amount: Decimal | None = None
    currency: str = ""
    score: float = 0.0
    reasons: tuple[str, ...] = ()


@dataclass
class DealBackfillResult:
    dry_run: bool
    total: int
    since: datetime
    counts: Counter[str] = field(default_factory=Counter)
    plan: list[DealPlanEntry] = field(default_factory=list)
    failures: list[tuple[CrmRef, str]] = field(default_factory=list)
    resumed_at: int = 0


@dataclass
class _Candidate:
    deal: Deal
    invoices: list[Invoice]
    how: str
    entry: DealPlanEntry | None = None  # set when the deal is decided without candidates


class DealBackfill:
    """Backfill of won deals into deal -> invoice links (see the module docstring)."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: DealBackfillStore,
        deals: DealSync,
        *,
        progress: Callable[[Progress], None] = lambda p: None,
        pause: Callable[[float, str], None] = lambda seconds, why: time.sleep(seconds),
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.deals = deals
        self.progress = progress
        self.pause = pause
        self.clock = clock
        self.now = now
        self.system = accounting.name
        self.trail = Trail(store, accounting.name, now)
        self.deal_key = re.compile(rf"\s*{re.escape(crm.name)}-deal-(\S+)", re.IGNORECASE)

    @property
    def checkpoint_name(self) -> str:
        return f"backfill-deals-{self.crm.name}-{self.accounting.name}"

    def run(
        self,
        *,
        since: datetime | None = None,
        dry_run: bool = False,
        resume: bool = False,
        create_missing: bool = False,
    ) -> DealBackfillResult:
        """Plan, then (unless ``dry_run``) link, review or create chunk by chunk. Raises ValueError on a resume
        without checkpoint; IntegrationError subclasses that outlive the retries."""
        position = 0
        if resume:
            checkpoint = self.store.get_checkpoint(self.checkpoint_name)
            if checkpoint is None:
                raise ValueError("there is no interrupted deals backfill to resume")
            position = int(checkpoint["position"])
            since = datetime.fromisoformat(checkpoint["since"])
            create_missing = bool(checkpoint.get("create_missing"))
        since = since or self.now() - timedelta(days=DEFAULT_SINCE_DAYS)
        entries, orphans, deals, invoices = self._with_limits(lambda: self._plan(since, create_missing))
        result = DealBackfillResult(dry_run=dry_run, total=len(entries), since=since, resumed_at=position)
        started = self.clock()
        for start in range(position, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            if not dry_run:
                self._with_limits(lambda chunk=chunk: self._execute(chunk, deals, invoices, result))  # type: ignore[misc]
                self.store.put_checkpoint(
                    self.checkpoint_name,
                    {
                        "since": since.isoformat(),
                        "position": start + len(chunk),
                        "total": len(entries),
                        "create_missing": create_missing,
                    },
                )
            result.plan.extend(chunk)
            result.counts.update(e.action for e in chunk)
            self.progress(Progress(start + len(chunk) - position, len(entries) - position, started, self.clock()))
        result.plan.extend(orphans)
        result.counts.update(e.action for e in orphans)
        if not dry_run:
            self.store.delete_checkpoint(self.checkpoint_name)
        return result

    def _with_limits(self, work: Callable[[], T]) -> T:
        return with_limits(work, self.pause)

    # -- planning (reads only) -------------------------------------------------------------------------

    def _plan(
        self, since: datetime, create_missing: bool
    ) -> tuple[list[DealPlanEntry], list[DealPlanEntry], dict[CrmRef, Deal], dict[str, Invoice]]:
        won, invoices = self._read(since)
        claimed, by_reference, by_customer = self._index(invoices)
        decided: dict[CrmRef, DealPlanEntry] = {}
        candidates: dict[CrmRef, _Candidate] = {}
        for ref, deal in sorted(won.items(), key=lambda kv: kv[0].object_id.zfill(24)):
            mapping = self.store.get_mapping(ref, self.system)
            if mapping is not None:
                decided[ref] = self._entry("mapped", deal, invoices.get(mapping.accounting_id), ("already linked",))
                continue
            found = self._candidates(deal, invoices, claimed, by_reference, by_customer)
            if found.entry is not None:
                decided[ref] = found.entry
            else:
                candidates[ref] = found

        claimants: dict[str, set[CrmRef]] = defaultdict(set)
        for ref, found in candidates.items():
            for invoice in found.invoices:
                claimants[invoice.id].add(ref)
        for ref, found in candidates.items():
            decided[ref] = self._decide(found, claimants, won, create_missing)

        entries = [decided[ref] for ref in sorted(decided, key=lambda r: r.object_id.zfill(24))]
        orphans = self._orphans(invoices, claimed, claimants, won, since.date())
        return entries, orphans, won, invoices

    def _read(self, since: datetime) -> tuple[dict[CrmRef, Deal], dict[str, Invoice]]:
        """The won deals closed since ``since`` and the live invoices that could be theirs."""
        now = self.now()
        won: dict[CrmRef, Deal] = {}
        for deal in self.crm.iter_won_deals(since, now + timedelta(days=1)):
            if deal.is_won and deal.ref.object_type == "deal":
                won.setdefault(deal.ref, deal)
        issued_from = since.date() - timedelta(days=INVOICE_LOOKBACK_DAYS)
        issued_before = now.date() + timedelta(days=DATE_WINDOW_DAYS + 1)
        invoices: dict[str, Invoice] = {}
        for invoice in self.accounting.iter_invoices(issued_from, issued_before):
            if invoice.status not in DEAD_STATUSES:
                invoices.setdefault(invoice.id, invoice)
        return won, invoices

    def _index(
        self, invoices: dict[str, Invoice]
    ) -> tuple[set[str], dict[str, list[Invoice]], dict[str, list[Invoice]]]:
        """Invoices linked to a deal already; the others by the deal their reference names, or by customer."""
        claimed = {i for i in invoices if self._deal_owning(i) is not None}
        by_reference: dict[str, list[Invoice]] = defaultdict(list)
        by_customer: dict[str, list[Invoice]] = defaultdict(list)
        for invoice in invoices.values():
            if invoice.id in claimed:
                continue
            referenced = self._deal_id_in(invoice.reference)
            if referenced is not None:
                by_reference[referenced].append(invoice)
            else:
                by_customer[invoice.customer_id].append(invoice)
        return claimed, by_reference, by_customer

    def _candidates(
        self,
        deal: Deal,
        invoices: dict[str, Invoice],
        claimed: set[str],
        by_reference: dict[str, list[Invoice]],
        by_customer: dict[str, list[Invoice]],
    ) -> _Candidate:
        review = self.store.get_review(deal.ref, self.system)
        if review is not None and review.status == "accepted":
            invoice = invoices.get(review.candidate_id)
            if invoice is not None and invoice.id not in claimed:
                return _Candidate(deal, [invoice], "accepted in review")
        rejected = review is not None and review.status == "rejected"
        if referenced := by_reference.get(deal.ref.object_id):
            return _Candidate(deal, referenced, "the invoice reference names the deal")
        if rejected:
            return _Candidate(deal, [], "rejected in review")
        return self._by_customer(deal, by_customer)

    def _by_customer(self, deal: Deal, by_customer: dict[str, list[Invoice]]) -> _Candidate:
        full = deal if (deal.company or deal.contact) else self.crm.get_deal(deal.ref.object_id) or deal
        party = full.company or full.contact
        if party is None:
            return _Candidate(
                deal, [], "", self._entry("no_customer", deal, None, ("the deal has no company or contact",))
            )
        customer_id = self._customer_id(party)
        if customer_id is None:
            why = f"its customer {party} is not linked to an accounting customer yet (run `backfill contacts`)"
            return _Candidate(deal, [], "", self._entry("no_customer", deal, None, (why,)))
        if deal.amount is None or deal.close_date is None:
            return _Candidate(deal, [], "the deal has no amount or close date to match an invoice by")
        matching = [i for i in by_customer.get(customer_id, []) if self._same_sale(deal, i)]
        return _Candidate(deal, matching, "same customer, currency and amount, issued near the close date")

    def _customer_id(self, party: CrmRef) -> str | None:
        mapping = self.store.get_mapping(party, self.system)
        if mapping is None and party.object_type == "contact":
            customer = self.crm.resolve_customer(party)  # a contact of a company is billed as its company
            if customer is not None and customer.ref != party:
                mapping = self.store.get_mapping(customer.ref, self.system)
        return mapping.accounting_id if mapping is not None else None

    @staticmethod
    def _same_sale(deal: Deal, invoice: Invoice) -> bool:
        if deal.currency and invoice.currency and deal.currency.upper() != invoice.currency.upper():
            return False
        if deal.amount is None or not _amount_matches(deal.amount, invoice):
            return False
        if deal.close_date is None or invoice.issue_date is None:
            return False
        return abs((invoice.issue_date - deal.close_date).days) <= DATE_WINDOW_DAYS

    def _decide(
        self, found: _Candidate, claimants: dict[str, set[CrmRef]], won: dict[CrmRef, Deal], create_missing: bool
    ) -> DealPlanEntry:
        deal = found.deal
        if not found.invoices:
            action: DealAction = "create" if create_missing else "missing"
            why = found.how or "no invoice of its customer matches"
            return self._entry(action, deal, None, (why,))
        ordered = sorted(found.invoices, key=lambda i: _days_apart(deal.close_date, i.issue_date))
        first = ordered[0]
        others = sorted({r for i in ordered for r in claimants[i.id]} - {deal.ref}, key=str)
        if len(ordered) == 1 and not others:
            return self._entry("link", deal, first, (found.how,), 1.0)
        reasons = [found.how]
        if len(ordered) > 1:
            reasons.append(f"{len(ordered)} invoices match: {', '.join(i.number or i.id for i in ordered)}")
        reasons.extend(f"also matches deal {won[r].name or r} ({r})" for r in others)
        return self._entry("review", deal, first, tuple(reasons), round(1.0 / (len(ordered) + len(others)), 2))

    def _orphans(
        self,
        invoices: dict[str, Invoice],
        claimed: set[str],
        claimants: dict[str, set[CrmRef]],
        won: dict[CrmRef, Deal],
        since: date,
    ) -> list[DealPlanEntry]:
        won_ids = {r.object_id for r in won}
        orphans = []
        for invoice in sorted(invoices.values(), key=lambda i: (i.issue_date or date.min, i.id)):
            if invoice.id in claimed or claimants.get(invoice.id) or (invoice.issue_date or date.min) < since:
                continue
            referenced = self._deal_id_in(invoice.reference)
            if referenced in won_ids:
                continue
            why = (
                f"its reference names deal {referenced}, not a won deal of the period"
                if referenced
                else "no won deal matches it"
            )
            orphans.append(
                DealPlanEntry(
                    "invoice_without_deal",
                    None,
                    "",
                    invoice.id,
                    invoice.number,
                    invoice.total,
                    invoice.currency,
                    reasons=(why,),
                )
            )
        return orphans

    def _deal_owning(self, invoice_id: str) -> CrmRef | None:
        owner = self.store.find_ref(self.system, invoice_id)
        return owner if owner is not None and owner.object_type == "deal" else None  # ids repeat across types

    def _deal_id_in(self, reference: str) -> str | None:
        match = self.deal_key.match(reference or "")
        return match[1] if match else None

    @staticmethod
    def _entry(
        action: DealAction, deal: Deal, invoice: Invoice | None, reasons: tuple[str, ...], score: float = 0.0
    ) -> DealPlanEntry:
        return DealPlanEntry(
            action,
            deal.ref,
            deal.name,
            invoice.id if invoice else "",
            invoice.number if invoice else "",
            deal.amount,
            deal.currency.upper(),
            score,
            reasons,
        )

    # -- execution (real runs only) --------------------------------------------------------------------

    def _execute(
        self,
        chunk: Sequence[DealPlanEntry],
        deals: dict[CrmRef, Deal],
        invoices: dict[str, Invoice],
        result: DealBackfillResult,
    ) -> None:
        for entry in chunk:
            if entry.ref is None:
                continue
            if entry.action == "link":
                self._link(deals[entry.ref], invoices[entry.invoice_id], entry.reasons, result)
            elif entry.action == "review":
                self.store.put_review(
                    ReviewItem(
                        ref=entry.ref,
                        system=self.system,
                        candidate_id=entry.invoice_id,
                        score=entry.score,
                        reasons=entry.reasons,
                        crm_name=entry.name,
                        candidate_name=entry.invoice_number,
                        created_at=self.now(),
                    )
                )
            elif entry.action == "create":
                self._sync(entry.ref, result)

    def _link(self, deal: Deal, invoice: Invoice, reasons: tuple[str, ...], result: DealBackfillResult) -> None:
        if self.store.get_mapping(deal.ref, self.system) is None:  # a retried chunk finds it mapped already
            issue = _amount_issue(deal, invoice)
            self.store.put_mapping(
                IdMapping(
                    ref=deal.ref,
                    system=self.system,
                    accounting_id=invoice.id,
                    # DealSync's own snapshot, marked not written back: DealSync.sync finishes the link.
                    snapshot={
                        "kind": "invoice",
                        "customer_id": invoice.customer_id,
                        "currency": invoice.currency,
                        "total": money(invoice.total),
                        "sync_issue": issue,
                        "written_back": "no",
                        **write_back_values(invoice, self.now().date()),
                    },
                    updated_at=self.now(),
                )
            )
            changes = {
                "invoice_number": {"before": "", "after": invoice.number},
                "invoice_total": {"before": "", "after": f"{money(invoice.total)} {invoice.currency}"},
            }
            self.trail.audit(deal.ref, "linked", invoice.id, None, changes, f"backfill ({'; '.join(reasons)})")
            if issue:
                self.trail.audit(deal.ref, "flagged", invoice.id, None, {}, issue)
        self._sync(deal.ref, result)

    def _sync(self, ref: CrmRef, result: DealBackfillResult) -> None:
        outcome = self.deals.sync(ref, [])
        if outcome.action in ("failed", "skipped"):
            result.failures.append((ref, outcome.detail))


def _amount_matches(amount: Decimal, invoice: Invoice) -> bool:
    wanted = amount.quantize(CENT)
    return wanted in (invoice.sub_total.quantize(CENT), invoice.total.quantize(CENT))


def _amount_issue(deal: Deal, invoice: Invoice) -> str:
    """What DealSync flags on the deal when the linked invoice does not charge the deal amount ("" if it does)."""
    if deal.amount is None:
        return "the deal has no amount to compare with the invoice total"
    if deal.currency and invoice.currency and deal.currency.upper() != invoice.currency.upper():
        return f"currency differs: deal {deal.currency.upper()}, invoice {invoice.currency}"
    if _amount_matches(deal.amount, invoice):
        return ""
    return (
        f"invoice {invoice.number or invoice.id} charges {money(invoice.sub_total)} {invoice.currency} before tax, "
        f"the deal amount is {money(deal.amount)}: a difference of {money(invoice.sub_total - deal.amount)}"
    )


def _days_apart(close: date | None, issued: date | None) -> int:
    return abs((issued - close).days) if close and issued else 10**6


def deal_plan_rows(plan: Iterable[DealPlanEntry]) -> list[list[str]]:
    """The plan as table rows (header first), for the CLI."""
    rows = [["action", "crm deal", "deal name", "invoice", "amount", "why"]]
    for e in plan:
        amount = f"{money(e.amount)} {e.currency}".strip() if e.amount is not None else ""
        rows.append(
            [e.action, str(e.ref or ""), e.name, e.invoice_number or e.invoice_id, amount, "; ".join(e.reasons)]
        )
    return rows


__all__ = [
    "DATE_WINDOW_DAYS",
    "DEFAULT_SINCE_DAYS",
    "INVOICE_LOOKBACK_DAYS",
    "DealBackfill",
    "DealBackfillResult",
    "DealPlanEntry",
    "deal_plan_rows",
]
