"""Contact pipeline: a CRM company or contact becomes exactly one customer in the accounting system.

For each changed CRM object the billable customer is resolved (a contact's company if it has one), then,
under a per-customer lease so concurrent workers cannot both create:
1. a stored mapping -> update only the fields that changed since the last sync;
2. otherwise match, in order: our external number stamp (finds a record created just before a crash),
   tax number, email, normalised name (legal suffixes, case and punctuation ignored) -> link and update;
3. otherwise create, with an idempotency key derived from the CRM object and event. A duplicate-name
   answer from the vendor is resolved by one lookup by name, never by another create.
Every action is audited with before/after per field; a record that cannot sync is kept as a failed sync.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Literal

from closeloop.errors import Busy, Conflict, FatalError, RetriableError, ValidationFailed
from closeloop.models import AccountingCustomer, CrmRef, Customer, SyncEvent, customer_fields
from closeloop.ports import AccountingPort, CrmPort, IdMapping, SyncStore
from closeloop.rules import FieldRules
from closeloop.sync.flags import flag
from closeloop.sync.leases import LEASE_SECONDS, held
from closeloop.sync.trail import Trail

#: Prefix of the accounting system's own values in a mapping's snapshot (see ``ContactSync._remember``).
ACCOUNTING_VIEW = "accounting:"
#: From this many new customers in one batch on, matching reads candidates in bulk and creates in batches.
BULK_MIN = 3
MAX_NAME = 255
MAX_TAX_NUMBER = 50
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LEGAL_SUFFIXES = frozenset(
    {
        "ltd",
        "limited",
        "inc",
        "incorporated",
        "llc",
        "llp",
        "lp",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "aps",
        "pty",
        "co",
        "company",
        "corp",
        "corporation",
        "kk",
    }
)

Action = Literal["created", "matched", "updated", "unchanged", "failed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one CRM object (ids only: safe to log)."""

    ref: CrmRef
    action: Action
    accounting_id: str = ""
    detail: str = ""


def _for_ref(result: Outcome | RetriableError, ref: CrmRef) -> Outcome | RetriableError:
    """A customer's result as the result of one of the CRM objects that resolved to it."""
    return replace(result, ref=ref) if isinstance(result, Outcome) else result


def normalise_name(name: str) -> str:
    """Compare-key for company names: accents, case, punctuation, '&', 'the' and legal suffixes ignored."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace("&", " and ")
    words = re.findall(r"[a-z0-9]+", text)
    if words and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


def normalise_tax_number(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def external_number(ref: CrmRef) -> str:
    """Our stamp on the accounting record (≤ 50 chars), e.g. ``hubspot-company-1000001``."""
    return f"{ref.crm}-{ref.object_type}-{ref.object_id}"[:50]


def idempotency_key(ref: CrmRef, event: SyncEvent | None, action: str) -> str:
    basis = f"{ref}|{event.dedupe_key if event else 'manual'}|{action}"
    return f"closeloop-{hashlib.sha256(basis.encode()).hexdigest()}"


def validate(customer: Customer) -> list[str]:
    """Why this customer cannot be sent to accounting (empty when it can)."""
    problems = []
    if not customer.name.strip():
        problems.append(f"the CRM {customer.ref.object_type} has no name")
    if len(customer.name) > MAX_NAME:
        problems.append(f"name longer than {MAX_NAME} characters")
    if customer.email and not _EMAIL.match(customer.email):
        problems.append("email address is malformed")
    if len(customer.tax_number) > MAX_TAX_NUMBER:
        problems.append(f"tax number longer than {MAX_TAX_NUMBER} characters")
    return problems


class ContactSync:
    """Vendor-free contact synchronisation over the ports."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: SyncStore,
        *,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rules: FieldRules | None = None,
    ) -> None:
        self.rules = rules or FieldRules.load()
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.owner = owner
        self.clock = clock
        self.trail = Trail(store, accounting.name, clock)

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        """Bring the customer behind ``ref`` up to date. Raises RetriableError; records FatalError itself."""
        ordered = sorted(events, key=lambda e: e.occurred_at)
        trigger = ordered[-1] if ordered else None
        if ordered and all(e.kind == "deleted" for e in ordered):
            # Deleting a customer in accounting loses invoice history; finance archives by hand.
            self.trail.audit(ref, "ignored", "", trigger, {}, "CRM deletion is not propagated to accounting")
            return Outcome(ref, "skipped", detail="deletion not propagated")
        try:
            customer = self.crm.resolve_customer(ref)
            if customer is None:
                self.trail.audit(ref, "skipped", "", trigger, {}, "the CRM object no longer exists")
                return Outcome(ref, "skipped", detail="gone from CRM")
            with held(
                self.store, f"customer#{customer.ref}", self.owner, f"{customer.ref} is being synced by another worker"
            ):
                return self._sync_customer(customer, trigger)
        except FatalError as exc:
            self.trail.fail(ref, trigger, str(exc), type(exc).__name__)
            return Outcome(ref, "failed", detail=type(exc).__name__)

    def sync_many(self, groups: Mapping[CrmRef, Iterable[SyncEvent]]) -> dict[CrmRef, Outcome | RetriableError]:
        """``sync`` for many CRM objects at once, with the accounting system's bulk reads and writes.

        Customers are resolved together; those not mapped yet are matched against one set of candidates
        (``find_customers_any``) with exactly the rules of ``sync``, and the rest created in batches
        (``create_customers``). Every object gets its Outcome, or the RetriableError to retry it with (a
        busy lease, an outage); a SetupError raises. Below ``BULK_MIN`` new customers the one-by-one path
        is cheaper and is used.
        """
        results: dict[CrmRef, Outcome | RetriableError] = {}
        live: dict[CrmRef, SyncEvent | None] = {}
        for ref, events in groups.items():
            ordered = sorted(events, key=lambda e: e.occurred_at)
            if ordered and all(e.kind == "deleted" for e in ordered):
                results[ref] = self.sync(ref, ordered)
            else:
                live[ref] = ordered[-1] if ordered else None
        if not live:
            return results
        try:
            resolved = self.crm.resolve_customers(list(live))
        except RetriableError as exc:
            return results | dict.fromkeys(live, exc)
        except FatalError:
            # One object broke the batch read: each one alone, so the others still sync.
            return results | {ref: self._sync_alone(ref, groups[ref]) for ref in live}
        by_customer: dict[CrmRef, tuple[Customer, list[CrmRef]]] = {}
        for ref, trigger in live.items():
            customer = resolved.get(ref)
            if customer is None:
                self.trail.audit(ref, "skipped", "", trigger, {}, "the CRM object no longer exists")
                results[ref] = Outcome(ref, "skipped", detail="gone from CRM")
                continue
            by_customer.setdefault(customer.ref, (customer, []))[1].append(ref)
        held: list[str] = []
        try:
            batch: list[tuple[Customer, list[CrmRef], SyncEvent | None]] = []
            for customer, refs in by_customer.values():
                lease = f"customer#{customer.ref}"
                if not self.store.acquire_lease(lease, self.owner, LEASE_SECONDS):
                    busy = Busy(f"{customer.ref} is being synced by another worker")
                    results.update(dict.fromkeys(refs, busy))
                    continue
                held.append(lease)
                batch.append((customer, refs, live[refs[-1]]))
            self._sync_batch(batch, results)
        finally:
            for lease in held:
                self.store.release_lease(lease, self.owner)
        return results

    def link(self, customer: Customer, candidate_id: str, method: str, event: SyncEvent | None = None) -> Outcome:
        """Link ``customer`` to an accounting record a person or the backfill's matcher chose.

        Under the customer's lease: an existing mapping wins (nothing is re-linked), a record that is gone or
        belongs to another CRM object is refused (ValidationFailed, kept as a failed sync by the caller).
        """
        with held(
            self.store, f"customer#{customer.ref}", self.owner, f"{customer.ref} is being synced by another worker"
        ):
            mapping = self.store.get_mapping(customer.ref, self.accounting.name)
            if mapping is not None:
                return Outcome(customer.ref, "unchanged", mapping.accounting_id, detail="already mapped")
            found = self.accounting.get_customer(candidate_id)
            number = external_number(customer.ref)
            if found is None or self._owned_elsewhere(found, customer.ref, number):
                raise ValidationFailed(f"accounting record {candidate_id} is gone or linked to another CRM record")
            outcome = self._link(customer, found, method, customer_fields(customer), number, event)
            self.store.clear_failed_sync(customer.ref)
            return outcome

    def _sync_alone(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome | RetriableError:
        try:
            return self.sync(ref, events)
        except RetriableError as exc:
            return exc

    def _sync_batch(
        self,
        batch: list[tuple[Customer, list[CrmRef], SyncEvent | None]],
        results: dict[CrmRef, Outcome | RetriableError],
    ) -> None:
        """Mapped customers are updated one by one (only changed fields); the rest matched and created in bulk."""
        new: list[tuple[Customer, list[CrmRef], SyncEvent | None]] = []
        for customer, refs, event in batch:
            try:
                outcome = self._mapped_or_invalid(customer, event)
            except RetriableError as exc:
                results.update(dict.fromkeys(refs, exc))
                continue
            except FatalError as exc:
                self.trail.fail(customer.ref, event, str(exc), type(exc).__name__)
                outcome = Outcome(customer.ref, "failed", detail=type(exc).__name__)
            if outcome is None:
                new.append((customer, refs, event))
            else:
                results.update({ref: replace(outcome, ref=ref) for ref in refs})
        if not new:
            return
        if len(new) < BULK_MIN:
            for customer, refs, event in new:
                outcome_or_error = self._guarded(
                    partial(self._match_or_create, customer, customer_fields(customer), event), customer, event
                )
                results.update({ref: _for_ref(outcome_or_error, ref) for ref in refs})
            return
        try:
            self._match_and_create_many(new, results)
        except RetriableError as exc:
            for _, refs, _ in new:
                for ref in refs:
                    results.setdefault(ref, exc)

    def _mapped_or_invalid(self, customer: Customer, event: SyncEvent | None) -> Outcome | None:
        """The outcome for an invalid or already mapped customer; None when it must be matched or created."""
        problems = validate(customer)
        if problems:
            reason = "; ".join(problems)
            self.trail.fail(customer.ref, event, reason, "ValidationFailed")
            return Outcome(customer.ref, "failed", detail=reason)
        mapping = self.store.get_mapping(customer.ref, self.accounting.name)
        if mapping is None:
            return None
        outcome = self._update_mapped(customer, mapping, customer_fields(customer), event)
        if outcome is not None:
            self.store.clear_failed_sync(customer.ref)
        return outcome

    def _guarded(
        self, work: Callable[[], Outcome], customer: Customer, event: SyncEvent | None
    ) -> Outcome | RetriableError:
        try:
            outcome = work()
        except RetriableError as exc:
            return exc
        except FatalError as exc:
            self.trail.fail(customer.ref, event, str(exc), type(exc).__name__)
            return Outcome(customer.ref, "failed", detail=type(exc).__name__)
        self.store.clear_failed_sync(customer.ref)
        return outcome

    def _match_and_create_many(
        self,
        new: list[tuple[Customer, list[CrmRef], SyncEvent | None]],
        results: dict[CrmRef, Outcome | RetriableError],
    ) -> None:
        customers = [c for c, _, _ in new]
        candidates = self.accounting.find_customers_any(
            numbers=[external_number(c.ref) for c in customers],
            tax_numbers=[c.tax_number for c in customers if c.tax_number],
            emails=[c.email for c in customers if c.email],
            names=[c.name for c in customers],
        )
        to_create: list[tuple[Customer, list[CrmRef], SyncEvent | None]] = []
        for customer, refs, event in new:
            found = self._match_among(customer, candidates)
            if found is None:
                to_create.append((customer, refs, event))
                continue
            link = partial(
                self._link,
                customer,
                found[0],
                found[1],
                customer_fields(customer),
                external_number(customer.ref),
                event,
            )
            outcome = self._guarded(link, customer, event)
            results.update({ref: _for_ref(outcome, ref) for ref in refs})
        if not to_create:
            return
        key_basis = "|".join(sorted(f"{c.ref}:{e.dedupe_key if e else 'manual'}" for c, _, e in to_create))
        created = self.accounting.create_customers(
            [(c, external_number(c.ref)) for c, _, _ in to_create],
            idempotency_key=f"closeloop-{hashlib.sha256(key_basis.encode()).hexdigest()}",
        )
        for (customer, refs, event), result in zip(to_create, created, strict=True):
            outcome = self._guarded(partial(self._created, customer, result, event), customer, event)
            results.update({ref: _for_ref(outcome, ref) for ref in refs})

    def _created(self, customer: Customer, result: AccountingCustomer | FatalError, event: SyncEvent | None) -> Outcome:
        desired = customer_fields(customer)
        if isinstance(result, Conflict):
            return self._after_conflict(customer, result, desired, event)
        if isinstance(result, FatalError):
            raise result
        self._remember(customer.ref, result.id, desired, seen=result)
        changes = {f: {"before": "", "after": v} for f, v in desired.items() if v}
        self.trail.audit(customer.ref, "created", result.id, event, changes)
        return Outcome(customer.ref, "created", result.id)

    def _match_among(
        self, customer: Customer, candidates: list[AccountingCustomer]
    ) -> tuple[AccountingCustomer, str] | None:
        """``_match`` over candidates already read: number, tax number, email, normalised name, in that order."""
        number = external_number(customer.ref)
        if hit := self._best([c for c in candidates if c.number.casefold() == number.casefold()], customer):
            return hit[0], "external number"
        if customer.tax_number:
            wanted = normalise_tax_number(customer.tax_number)
            same = [c for c in candidates if c.tax_number and normalise_tax_number(c.tax_number) == wanted]
            if hit := self._best(same, customer):
                return hit[0], "tax number"
        if customer.email:
            email = customer.email.lower()
            if hit := self._best([c for c in candidates if c.email.lower() == email], customer):
                return hit[0], "email"
        wanted_name = normalise_name(customer.name)
        if hit := self._best([c for c in candidates if normalise_name(c.name) == wanted_name], customer):
            return hit[0], "normalised name"
        return None

    def _sync_customer(self, customer: Customer, event: SyncEvent | None) -> Outcome:
        outcome = self._mapped_or_invalid(customer, event)
        if outcome is not None:
            return outcome
        outcome = self._match_or_create(customer, customer_fields(customer), event)
        self.store.clear_failed_sync(customer.ref)
        return outcome

    def _update_mapped(
        self, customer: Customer, mapping: IdMapping, desired: dict[str, str], event: SyncEvent | None
    ) -> Outcome | None:
        changed = [f for f, value in desired.items() if mapping.snapshot.get(f, "") != value]
        if not changed:
            return Outcome(customer.ref, "unchanged", mapping.accounting_id)
        # Only fields the CRM owns flow to accounting (the field rules). A CRM edit of a field accounting owns
        # is a conflict: recorded once per new value (with the CRM's before/after), never written.
        writable = set(self.rules.fields_to_write("customer", "accounting"))
        held = [f for f in changed if f not in writable]
        if held:
            conflicts = {f: {"before": mapping.snapshot.get(f, ""), "after": desired[f]} for f in held}
            self.trail.audit(
                customer.ref, "conflict", mapping.accounting_id, event, conflicts, "the accounting system owns these"
            )
            note = (
                f"Changed in the CRM but owned by {self.accounting.name}: {', '.join(held)} ({self.clock():%Y-%m-%d})"
            )
            flag(self.crm, customer.ref, note)
        changed = [f for f in changed if f in writable]
        if not changed:
            self._remember(customer.ref, mapping.accounting_id, desired, previous=mapping)
            return Outcome(customer.ref, "unchanged", mapping.accounting_id, detail="conflict: " + ",".join(held))
        if self.accounting.get_customer(mapping.accounting_id) is None:
            return None  # deleted or archived in accounting since: match or create again
        seen = self.accounting.update_customer(
            mapping.accounting_id,
            customer,
            changed,
            number=None,
            idempotency_key=idempotency_key(customer.ref, event, "update"),
        )
        changes = {f: {"before": mapping.snapshot.get(f, ""), "after": desired[f]} for f in changed}
        self._remember(customer.ref, mapping.accounting_id, desired, seen=seen)
        self.trail.audit(customer.ref, "updated", mapping.accounting_id, event, changes)
        return Outcome(customer.ref, "updated", mapping.accounting_id, detail=",".join(changed))

    def _match_or_create(self, customer: Customer, desired: dict[str, str], event: SyncEvent | None) -> Outcome:
        number = external_number(customer.ref)
        found = self._match(customer)
        if found is not None:
            return self._link(customer, found[0], found[1], desired, number, event)
        try:
            created = self.accounting.create_customer(
                customer, number=number, idempotency_key=idempotency_key(customer.ref, event, "create")
            )
        except Conflict as exc:
            return self._after_conflict(customer, exc, desired, event)
        self._remember(customer.ref, created.id, desired, seen=created)
        changes = {f: {"before": "", "after": v} for f, v in desired.items() if v}
        self.trail.audit(customer.ref, "created", created.id, event, changes)
        return Outcome(customer.ref, "created", created.id)

    def _after_conflict(
        self, customer: Customer, refusal: Conflict, desired: dict[str, str], event: SyncEvent | None
    ) -> Outcome:
        """The name (or number) is taken: look that record up once; never loop on the vendor's 400."""
        number = external_number(customer.ref)
        found = self._best(self.accounting.find_customers(number=number), customer) or self._by_name(customer)
        if found is None:
            raise refusal
        return self._link(customer, found[0], "name, after a duplicate-name refusal", desired, number, event)

    def _match(self, customer: Customer) -> tuple[AccountingCustomer, str] | None:
        """Mapping aside, find the accounting record for ``customer``: number, tax number, email, name."""
        accounting = self.accounting
        if hit := self._best(accounting.find_customers(number=external_number(customer.ref)), customer):
            return hit[0], "external number"
        if customer.tax_number:
            wanted = normalise_tax_number(customer.tax_number)
            hits = accounting.find_customers(tax_number=customer.tax_number)
            same = [c for c in hits if normalise_tax_number(c.tax_number) == wanted]
            if hit := self._best(same, customer):
                return hit[0], "tax number"
        if customer.email and (hit := self._best(accounting.find_customers(email=customer.email), customer)):
            return hit[0], "email"
        return self._by_name(customer)

    def _by_name(self, customer: Customer) -> tuple[AccountingCustomer, str] | None:
        wanted = normalise_name(customer.name)
        hits = [c for c in self.accounting.find_customers(name=customer.name) if normalise_name(c.name) == wanted]
        if hit := self._best(hits, customer):
            return hit[0], "normalised name"
        return None

    def _best(self, candidates: list[AccountingCustomer], customer: Customer) -> tuple[AccountingCustomer, str] | None:
        """The best candidate that does not belong to another CRM object (stamped or mapped elsewhere)."""
        number = external_number(customer.ref)
        free = [c for c in candidates if not self._owned_elsewhere(c, customer.ref, number)]
        if not free:
            return None
        wanted = normalise_name(customer.name)
        free.sort(key=lambda c: (c.number != number, normalise_name(c.name) != wanted, c.name, c.id))
        return free[0], ""

    def _owned_elsewhere(self, candidate: AccountingCustomer, ref: CrmRef, number: str) -> bool:
        if candidate.number == number:
            return False
        if candidate.number.startswith(f"{ref.crm}-"):
            return True  # stamped by us for another CRM object
        owner = self.store.find_ref(self.accounting.name, candidate.id)
        return owner is not None and owner != ref

    def _link(
        self,
        customer: Customer,
        found: AccountingCustomer,
        method: str,
        desired: dict[str, str],
        number: str,
        event: SyncEvent | None,
    ) -> Outcome:
        # First link: fill in what accounting lacks, never overwrite what finance entered (its legal name,
        # its billing email). Later CRM changes to a field do propagate, through the mapping's snapshot.
        changed = [f for f, value in desired.items() if value and not found.fields.get(f, "")]
        stamp = number if found.number != number else None
        seen = found
        if changed or stamp:
            seen = self.accounting.update_customer(
                found.id,
                customer,
                changed,
                number=stamp,
                idempotency_key=idempotency_key(customer.ref, event, f"link:{found.id}"),
            )
        self._remember(customer.ref, found.id, desired, seen=seen)
        changes = {f: {"before": found.fields.get(f, ""), "after": desired[f]} for f in changed}
        self.trail.audit(customer.ref, "matched", found.id, event, changes, f"matched by {method}")
        return Outcome(customer.ref, "matched", found.id, detail=method)

    def _remember(
        self,
        ref: CrmRef,
        accounting_id: str,
        snapshot: dict[str, str],
        *,
        seen: AccountingCustomer | None = None,
        previous: IdMapping | None = None,
    ) -> None:
        """Store the link with the CRM values synced and the accounting record as last seen after our write.

        The accounting view (``accounting:<field>``) is how an accounting-side notification tells a person's
        edit from the echo of our own write: only a value that differs from it is a change.
        """
        if seen is not None:
            view = {f"{ACCOUNTING_VIEW}{k}": v for k, v in seen.fields.items()}
        else:
            view = {k: v for k, v in (previous.snapshot if previous else {}).items() if k.startswith(ACCOUNTING_VIEW)}
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=self.accounting.name,
                accounting_id=accounting_id,
                snapshot={**snapshot, **view},
                updated_at=self.clock(),
            )
        )
