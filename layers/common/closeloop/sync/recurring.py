"""Recurring lines -> repeating invoice schedules: a won deal's contract lines bill on a schedule, not once.

A ``WonDealFlow`` (see closeloop.sync.invoices): the deal's recurring lines (``LineItem.recurring_frequency``)
stay off the one-off invoice and become ONE repeating schedule per deal and frequency in the accounting
system, with the deal's customer, currency and tax, starting at the lines' start date and ending after their
term. Every delivery of the won deal runs ``follow``, which for each frequency:

- validates every recurring line first (a term or an end date, a known SKU, a currency): a line without one is
  a failed sync of the deal naming it, and nothing is created;
- finds what it made before by its mapping (system ``{accounting}#schedule#{frequency}``), then by the
  schedule's reference (``{crm}-deal-{id}/{frequency}``, so a crash between the create and the mapping is
  healed), and only then creates it, with an idempotency key derived from the deal and the frequency;
- extends a schedule whose contract runs longer now (a renewal), ends one whose contract was cut short to an end
  that has passed (a shorter end still ahead is flagged for a person: not every system can shorten a schedule),
  and ends the schedule of a frequency whose
  lines were removed; a schedule someone ended in accounting while the contract runs is flagged, never
  re-made (the reconciliation lists it too);
- writes back to the deal the schedule ids, the next invoice date and the annual value (before tax);
- keeps in each schedule's mapping what its lines make of the deal amount (``deal_amount_share``: their net,
  ``line_net``, the amount DealSync leaves out of the one the invoice is checked against), refreshed when the
  lines change, so the monthly reconciliation compares the deal amount less it with the one-off invoice.

When the deal leaves the won stages or is deleted (the contract was cancelled), ``withdrawn`` ends its
schedules. The invoices a schedule generates carry its reference: the payment poller and the reconciliation
tell them apart from one-off invoices with ``parse_schedule_reference``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal, cast, get_args

from closeloop.errors import ValidationFailed
from closeloop.models import (
    FREQUENCY_PERIODS,
    CrmRef,
    Deal,
    Frequency,
    InvoiceLine,
    Item,
    LineItem,
    RepeatingSchedule,
    ScheduleDraft,
    SyncEvent,
)
from closeloop.ports import AccountingPort, CrmPort, IdMapping, PropertyDefinition, RecurringAccounting, SyncStore
from closeloop.sync.invoices import CENT, InvoicePolicy, deal_idempotency_key, line_net, money, write_to_deal
from closeloop.sync.leases import held
from closeloop.sync.tax import rule_for
from closeloop.sync.trail import Trail

FREQUENCIES: tuple[str, ...] = get_args(Frequency)

#: The deal properties this flow writes.
SCHEDULE_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition("closeloop_schedule_ids", "Repeating invoice schedules", description="Set by Closeloop"),
    PropertyDefinition("closeloop_next_invoice_date", "Next scheduled invoice", "date"),
    PropertyDefinition("closeloop_annual_value", "Annual recurring value", "number", description="Before tax"),
    PropertyDefinition("closeloop_recurring_invoice_number", "Latest scheduled invoice"),
    PropertyDefinition("closeloop_recurring_payment_status", "Latest scheduled invoice payment status"),
    PropertyDefinition("closeloop_recurring_amount_due", "Latest scheduled invoice amount due", "number"),
)

_SCHEDULE_REFERENCE = re.compile(r"^(?P<crm>[\w.]+)-deal-(?P<deal>[^\s/]+)/(?P<frequency>[a-z_0-9]+)$")


def schedule_reference(ref: CrmRef, frequency: str) -> str:
    """``hubspot-deal-3000001/monthly``: stable for the deal and frequency (a renamed deal keeps it), and
    free of the ``[Week]``-style placeholders accounting systems fill in on each generated invoice."""
    return f"{ref.crm}-deal-{ref.object_id}/{frequency}"


def parse_schedule_reference(crm: str, reference: str) -> tuple[CrmRef, Frequency] | None:
    """The deal and frequency a schedule's (or its generated invoice's) reference names, or None."""
    match = _SCHEDULE_REFERENCE.match(reference.strip())
    if match is None or match["crm"] != crm or match["frequency"] not in FREQUENCIES:
        return None
    return CrmRef(crm=crm, object_type="deal", object_id=match["deal"]), cast(Frequency, match["frequency"])


def schedule_system(accounting: str, frequency: str) -> str:
    """The mapping key of a deal's schedule of one frequency (one mapping per deal and frequency)."""
    return f"{accounting}#schedule#{frequency}"


def index_system(accounting: str) -> str:
    """The mapping key listing the frequencies a deal has schedules for (one read tells a deal without any)."""
    return f"{accounting}#schedules"


def add_periods(start: date, frequency: str, periods: int) -> date:
    """``start`` moved on by ``periods`` billing periods (month ends clamp: 31 Jan + 1 month = 28/29 Feb)."""
    unit, count = FREQUENCY_PERIODS[frequency]
    if unit == "week":
        return start + timedelta(weeks=count * periods)
    months = start.month - 1 + count * periods
    year, month = start.year + months // 12, months % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def amount_shares(deal: Deal) -> dict[str, Decimal]:
    """What each frequency's recurring lines make of the deal amount: their net before tax (``line_net``),
    the same amount DealSync takes off the deal amount its one-off invoice is checked against."""
    shares: dict[str, Decimal] = {}
    for line in deal.line_items:
        if line.recurring_frequency:
            shares[line.recurring_frequency] = shares.get(line.recurring_frequency, Decimal(0)) + line_net(line)
    return shares


#: The schedule mapping's snapshot key holding ``amount_shares`` of its frequency (a money string).
SHARE_KEY = "deal_amount_share"


def periods_per_year(frequency: str) -> Decimal:
    unit, count = FREQUENCY_PERIODS[frequency]
    return Decimal(52) / count if unit == "week" else Decimal(12) / count


def annual_value(schedule: RepeatingSchedule, frequency: str) -> Decimal:
    """What the schedule bills in a year, before tax."""
    return (schedule.sub_total * periods_per_year(frequency)).quantize(CENT)


@dataclass(frozen=True)
class SchedulePolicy:
    """How schedules are made (RECURRING_SCHEDULE_STATUS; invoices' due days, currency and tax rules)."""

    status: Literal["DRAFT", "AUTHORISED"] = "DRAFT"
    invoices: InvoicePolicy = InvoicePolicy()


def _line_label(line: LineItem) -> str:
    return repr(line.name or line.crm_id)


class RecurringFlow:
    """WonDealFlow: recurring lines -> one repeating schedule per deal and frequency (module docstring)."""

    name = "recurring"

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        schedules: RecurringAccounting,
        store: SyncStore,
        policy: SchedulePolicy,
        *,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``accounting`` resolves item codes and customers' tax; ``schedules`` is the same system's
        repeating invoices."""
        self.crm = crm
        self.accounting = accounting
        self.schedules = schedules
        self.store = store
        self.policy = policy
        self.owner = owner
        self.clock = clock
        self.trail = Trail(store, schedules.name, clock)

    # -- the WonDealFlow hook ----------------------------------------------------------------------

    def promised(self, deal: Deal) -> Deal:
        return deal

    def off_invoice(self, deal: Deal) -> frozenset[str]:
        """The recurring lines. Raises ValidationFailed naming a recurring line that cannot be scheduled
        (no term, no SKU, unknown SKU, ...): asked before the one-off invoice is made, so nothing is."""
        recurring = frozenset(line.crm_id for line in deal.line_items if line.recurring_frequency)
        if recurring:
            self._terms(deal)
            self._items(deal)
        return recurring

    def follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        """Make, find, extend or end the deal's schedules so they match its recurring lines; write back.

        Raises ValidationFailed naming the line (no term, unknown SKU) before anything is created, other
        FatalError/RetriableError subclasses as the accounting system answers.
        """
        drafts = self._drafts(deal, customer_id)
        index = self.store.get_mapping(deal.ref, index_system(self.schedules.name))
        known = set(filter(None, (index.snapshot.get("frequencies", "") if index else "").split(",")))
        if not drafts and not known:
            return
        self._remember_index(deal.ref, known | set(drafts))  # before any create: withdrawn() must find it
        shares = amount_shares(deal)
        running: dict[str, RepeatingSchedule] = {}
        for frequency in sorted(known | set(drafts)):
            with held(self.store, f"schedule#{deal.ref}#{frequency}", self.owner, f"{deal.ref} schedules are busy"):
                draft = drafts.get(frequency)
                share = shares.get(frequency, Decimal(0))
                schedule = self._follow_one(deal.ref, frequency, draft, event, share)
                if schedule is not None and schedule.status == "active":
                    running[frequency] = schedule
        self._write_back(deal.ref, running)

    def withdrawn(self, ref: CrmRef, deal: Deal | None, event: SyncEvent | None) -> None:
        """The contract was cancelled (the deal is no longer won, or deleted): end every schedule of it."""
        index = self.store.get_mapping(ref, index_system(self.schedules.name))
        known = set(filter(None, (index.snapshot.get("frequencies", "") if index else "").split(",")))
        if not known:
            return
        why = "the deal was deleted" if deal is None else "the deal is no longer won"
        for frequency in sorted(known):
            with held(self.store, f"schedule#{ref}#{frequency}", self.owner, f"{ref} schedules are busy"):
                self._end(ref, frequency, event, why)
        if deal is not None:
            self._write_back(ref, {})

    # -- validation: everything before the first create --------------------------------------------

    def _terms(self, deal: Deal) -> dict[str, tuple[date, date, list[LineItem]]]:
        """Each frequency's start, end and lines. Raises ValidationFailed naming the line at fault."""
        currency = (deal.currency or self.policy.invoices.default_currency).upper()
        if not currency:
            raise ValidationFailed("the deal has no currency and DEFAULT_CURRENCY is not set")
        grouped: dict[str, list[LineItem]] = {}
        for line in deal.line_items:
            if not line.recurring_frequency:
                continue
            if line.recurring_periods is None and line.recurring_end is None:
                raise ValidationFailed(
                    f"recurring line item {_line_label(line)} has no term: set its billing term (number of "
                    "periods) or an end date"
                )
            if not line.sku:
                raise ValidationFailed(f"recurring line item {_line_label(line)} has no SKU")
            grouped.setdefault(line.recurring_frequency, []).append(line)
        today = self.clock().date()
        terms: dict[str, tuple[date, date, list[LineItem]]] = {}
        for frequency, lines in grouped.items():
            starts = {line.recurring_start or deal.close_date or today for line in lines}
            if len(starts) > 1:
                raise ValidationFailed(
                    f"the deal's {frequency} recurring lines start on different dates "
                    f"({', '.join(sorted(d.isoformat() for d in starts))}): one schedule per frequency needs one start"
                )
            (start,) = starts
            ends: set[date] = set()
            for line in lines:
                end = line.recurring_end or add_periods(start, frequency, cast(int, line.recurring_periods) - 1)
                if end < start:
                    raise ValidationFailed(f"recurring line item {_line_label(line)} ends before it starts")
                ends.add(end)
            if len(ends) > 1:
                raise ValidationFailed(
                    f"the deal's {frequency} recurring lines end on different dates "
                    f"({', '.join(sorted(d.isoformat() for d in ends))}): one schedule per frequency needs one term"
                )
            terms[frequency] = (start, ends.pop(), lines)
        return terms

    def _items(self, deal: Deal) -> dict[str, Item]:
        """The accounting items of the recurring lines by SKU. Raises ValidationFailed for an unknown one."""
        codes = self.policy.invoices.sku_item_codes
        recurring = [line for line in deal.line_items if line.recurring_frequency]
        items = self.accounting.get_items({codes.get(line.sku, line.sku) for line in recurring})
        found: dict[str, Item] = {}
        for line in recurring:
            code = codes.get(line.sku, line.sku)
            if code not in items:
                raise ValidationFailed(
                    f"recurring line item {_line_label(line)}: unknown SKU {line.sku!r} "
                    f"(no accounting item with code {code!r})"
                )
            found[line.sku] = items[code]
        return found

    def _drafts(self, deal: Deal, customer_id: str) -> dict[str, ScheduleDraft]:
        terms = self._terms(deal)
        if not terms:
            return {}
        items = self._items(deal)
        party = deal.company or deal.contact
        customer = self.crm.resolve_customer(party) if party is not None else None
        if customer is None:
            raise ValidationFailed("the won deal's customer no longer exists in the CRM")
        rule = rule_for(customer, self.policy.invoices.tax_rules)
        if rule.treatment == "sales_tax_line" and rule.sales_tax_rate:
            # A schedule repeats its lines as they are: a separate sales-tax line would not follow a change.
            raise ValidationFailed("recurring lines cannot carry a separate sales-tax line (TAX_RULES sales_tax_line)")
        currency = (deal.currency or self.policy.invoices.default_currency).upper()
        drafts: dict[str, ScheduleDraft] = {}
        for frequency, (start, end, lines) in terms.items():
            billed = tuple(
                InvoiceLine(
                    item_code=items[line.sku].code,
                    description=line.name or items[line.sku].name or items[line.sku].code,
                    quantity=line.quantity,
                    unit_amount=line.unit_price,
                    tax_type=rule.tax_type or items[line.sku].tax_type,
                    discount_rate=line.discount_percent or None,
                )
                for line in lines
            )
            drafts[frequency] = ScheduleDraft(
                customer_id=customer_id,
                reference=schedule_reference(deal.ref, frequency),
                currency=currency,
                lines=billed,
                line_amount_types=rule.amounts,
                frequency=cast(Frequency, frequency),
                start=start,
                end=end,
                status=self.policy.status,
                due_days=self.policy.invoices.due_days,
                url=deal.url,
            )
        return drafts

    # -- one frequency -----------------------------------------------------------------------------

    def _follow_one(
        self, ref: CrmRef, frequency: str, draft: ScheduleDraft | None, event: SyncEvent | None, share: Decimal
    ) -> RepeatingSchedule | None:
        """``share``: what the frequency's lines make of the deal amount now (kept in the mapping)."""
        if draft is None:
            self._end(ref, frequency, event, f"the deal's {frequency} recurring lines were removed", share)
            return None
        system = schedule_system(self.schedules.name, frequency)
        mapping = self.store.get_mapping(ref, system)
        if mapping is None:
            return self._create_or_link(ref, frequency, draft, event, share)
        self._keep_share(mapping, share)
        if mapping.snapshot.get("state") == "ended":
            self._flag(ref, mapping.accounting_id, event, f"the {frequency} schedule was ended; not made again")
            return None
        schedule = self.schedules.get_schedule(mapping.accounting_id)
        if schedule is None or schedule.status == "ended":
            # Ended in accounting while the CRM contract runs: a person decides (reconciliation lists it too).
            self._flag(
                ref,
                mapping.accounting_id,
                event,
                f"the {frequency} schedule {mapping.accounting_id} was ended in accounting while the contract runs",
            )
            return None
        schedule_end = schedule.end_date
        if schedule_end is not None and draft.end > schedule_end:
            before = schedule
            key = deal_idempotency_key(ref, f"schedule#{frequency}#extend#{draft.end.isoformat()}")
            schedule = self.schedules.extend_schedule(schedule, draft.end, idempotency_key=key)
            self._remember(ref, frequency, schedule, "active", share)
            self.trail.audit(
                ref,
                "extended",
                schedule.id,
                event,
                {
                    "schedule_end": {"before": schedule_end.isoformat(), "after": draft.end.isoformat()},
                    "schedule_id": {"before": before.id, "after": schedule.id},
                },
                f"{frequency} schedule extended (renewal)",
            )
        elif schedule.end_date is not None and draft.end < schedule.end_date and draft.end < self.clock().date():
            # The contract was cut short and its new end has passed: nothing more is owed, the schedule ends.
            self._end(ref, frequency, event, f"the {frequency} contract ended {draft.end.isoformat()}", share)
            return None
        elif schedule.end_date is not None and draft.end < schedule.end_date:
            self._flag(
                ref,
                schedule.id,
                event,
                f"the {frequency} contract now ends {draft.end.isoformat()}, its schedule "
                f"{schedule.end_date.isoformat()}: shorten the schedule in accounting (it is not cut automatically)",
            )
        return schedule

    def _create_or_link(
        self, ref: CrmRef, frequency: str, draft: ScheduleDraft, event: SyncEvent | None, share: Decimal
    ) -> RepeatingSchedule:
        found = self.schedules.find_schedule(draft.reference)
        if found is not None:
            self._remember(ref, frequency, found, "active", share)
            self.trail.audit(ref, "linked", found.id, event, {}, f"{frequency} schedule found by reference")
            return found
        key = deal_idempotency_key(ref, f"schedule#{frequency}")
        made = self.schedules.create_schedule(draft, idempotency_key=key)
        self._remember(ref, frequency, made, "active", share)  # right after the create: never a second schedule
        self.trail.audit(
            ref,
            "scheduled",
            made.id,
            event,
            {
                "schedule": {
                    "before": "",
                    "after": f"{frequency} {draft.start.isoformat()}..{draft.end.isoformat()} "
                    f"{money(made.sub_total)} {draft.currency}",
                }
            },
            "repeating schedule created",
        )
        if made.end_date is not None and made.end_date != draft.end:
            self._flag(ref, made.id, event, f"the {frequency} schedule ends {made.end_date}, the contract {draft.end}")
        return made

    def _end(
        self, ref: CrmRef, frequency: str, event: SyncEvent | None, why: str, share: Decimal | None = None
    ) -> None:
        """End the frequency's schedule; ``share`` (None: as stored) is what its lines make of the deal now."""
        system = schedule_system(self.schedules.name, frequency)
        mapping = self.store.get_mapping(ref, system)
        if mapping is None:
            return
        if mapping.snapshot.get("state") == "ended":
            if share is not None:
                self._keep_share(mapping, share)
            return
        key = deal_idempotency_key(ref, f"schedule#{frequency}#end#{mapping.accounting_id}")
        ended = self.schedules.end_schedule(mapping.accounting_id, idempotency_key=key)
        self._remember(ref, frequency, ended, "ended", share)
        self.trail.audit(ref, "ended", ended.id, event, {"schedule": {"before": "active", "after": "ended"}}, why)

    # -- state and write-back ----------------------------------------------------------------------

    def _remember(
        self, ref: CrmRef, frequency: str, schedule: RepeatingSchedule, state: str, share: Decimal | None
    ) -> None:
        system = schedule_system(self.schedules.name, frequency)
        previous = self.store.get_mapping(ref, system)
        shared = {SHARE_KEY: money(share)} if share is not None else {}
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=system,
                accounting_id=schedule.id,
                snapshot={
                    **(previous.snapshot if previous else {}),
                    "kind": "schedule",
                    "state": state,
                    "frequency": frequency,
                    "customer_id": schedule.customer_id,
                    "currency": schedule.currency,
                    "sub_total": money(schedule.sub_total),
                    "start_date": schedule.start_date.isoformat() if schedule.start_date else "",
                    "end_date": schedule.end_date.isoformat() if schedule.end_date else "",
                    "next_invoice_date": schedule.next_invoice_date.isoformat() if schedule.next_invoice_date else "",
                    **shared,
                },
                updated_at=self.clock(),
            )
        )

    def _keep_share(self, mapping: IdMapping, share: Decimal) -> None:
        """Store what the frequency's lines make of the deal amount when it changed (or a mapping made before
        it was kept has none): the reconciliation reads it. A delivery without a change writes nothing."""
        if mapping.snapshot.get(SHARE_KEY) == money(share):
            return
        self.store.put_mapping(
            IdMapping(
                mapping.ref,
                mapping.system,
                mapping.accounting_id,
                {**mapping.snapshot, SHARE_KEY: money(share)},
                updated_at=self.clock(),
            )
        )

    def _remember_index(self, ref: CrmRef, frequencies: set[str]) -> None:
        system = index_system(self.schedules.name)
        value = ",".join(sorted(frequencies))
        current = self.store.get_mapping(ref, system)
        if current is not None and current.snapshot.get("frequencies") == value:
            return
        self.store.put_mapping(
            IdMapping(ref, system, f"{ref}#schedules", {"frequencies": value}, updated_at=self.clock())
        )

    def _flag(self, ref: CrmRef, target: str, event: SyncEvent | None, issue: str) -> None:
        self.trail.audit(ref, "flagged", target, event, {}, issue)

    def _write_back(self, ref: CrmRef, running: Mapping[str, RepeatingSchedule]) -> None:
        dates = [s.next_invoice_date for s in running.values() if s.next_invoice_date is not None]
        values = {
            "closeloop_schedule_ids": ", ".join(running[f].id for f in sorted(running)),
            "closeloop_next_invoice_date": min(dates).isoformat() if dates else "",
            "closeloop_annual_value": money(sum((annual_value(s, f) for f, s in running.items()), Decimal(0)))
            if running
            else "",
        }
        index = self.store.get_mapping(ref, index_system(self.schedules.name))
        if index is not None and all(index.snapshot.get(k) == v for k, v in values.items()):
            return  # written before: a redelivery writes nothing
        write_to_deal(self.crm, ref.object_id, values, SCHEDULE_PROPERTIES)
        if index is not None:
            self.store.put_mapping(
                IdMapping(ref, index.system, index.accounting_id, {**index.snapshot, **values}, updated_at=self.clock())
            )
