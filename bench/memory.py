"""An in-memory store for the benchmarks: SyncStore, TokenStore and the poller's PaymentStore in dicts.

Same conditional semantics as ``closeloop.store.DynamoStore`` (leases, token versions), with the indexes
DynamoDB has (GSI1: accounting id -> CRM ref, due date -> open invoices) so that the store is never what a
benchmark measures. Leases, tokens and call schedules are atomic under one lock (the rate-limit benchmark
runs several workers on one store, as Lambdas share a table); the rest is plain dicts.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import date, datetime

from closeloop.models import CrmRef, Invoice
from closeloop.pacing import Booking
from closeloop.ports import AuditRecord, FailedSync, IdMapping, InvoiceEmail
from closeloop.store import TokenState


class MemoryStore:
    """Mappings, audit trail, failed syncs, leases, tokens, watermarks and per-customer invoices."""

    def __init__(self) -> None:
        self.mappings: dict[tuple[CrmRef, str], IdMapping] = {}
        self.owner_of: dict[tuple[str, str], CrmRef] = {}
        self.audit: dict[CrmRef, list[AuditRecord]] = defaultdict(list)
        self.failed: dict[CrmRef, FailedSync] = {}
        self.invoice_emails: dict[tuple[CrmRef, str], InvoiceEmail] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.tokens: dict[str, TokenState] = {}
        self.watermarks: dict[str, datetime] = {}
        self.customer_invoices: dict[tuple[str, str], dict[str, Invoice]] = defaultdict(dict)
        self.open_due: dict[str, dict[str, Invoice]] = defaultdict(dict)
        self.schedules: dict[str, float] = {}
        self._lock = threading.RLock()

    # -- SyncStore ---------------------------------------------------------------------------------

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        return self.mappings.get((ref, system))

    def put_mapping(self, mapping: IdMapping) -> None:
        self.mappings[(mapping.ref, mapping.system)] = mapping
        self.owner_of[(mapping.system, mapping.accounting_id)] = mapping.ref

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        return self.owner_of.get((system, accounting_id))

    def get_invoice_email(self, ref: CrmRef, system: str) -> InvoiceEmail | None:
        return self.invoice_emails.get((ref, system))

    def put_invoice_email(self, email: InvoiceEmail) -> None:
        self.invoice_emails[(email.ref, email.system)] = email

    def put_audit(self, record: AuditRecord) -> None:
        self.audit[record.ref].append(record)

    def list_audit(self, ref: CrmRef) -> list[AuditRecord]:
        return list(self.audit.get(ref, ()))

    def record_failed_sync(self, failure: FailedSync) -> None:
        previous = self.failed.get(failure.ref)
        attempts = previous.attempts + 1 if previous else failure.attempts
        self.failed[failure.ref] = FailedSync(
            ref=failure.ref,
            at=failure.at,
            reason=failure.reason,
            error_type=failure.error_type,
            source_event=failure.source_event,
            attempts=attempts,
            extra=failure.extra,
        )

    def clear_failed_sync(self, ref: CrmRef) -> None:
        self.failed.pop(ref, None)

    def get_failed_sync(self, ref: CrmRef) -> FailedSync | None:
        return self.failed.get(ref)

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        with self._lock:
            now = time.time()
            held = self.leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self.leases[name] = (owner, now + seconds)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            held = self.leases.get(name)
            if held is not None and held[0] == owner:
                del self.leases[name]

    # -- call schedules (closeloop.pacing), as DynamoStore keeps them ------------------------------

    def book_call_slots(self, budget: str, count: int, spacing: float, now: float, latest: float) -> Booking:
        with self._lock:
            start = max(now, self.schedules.get(budget, 0.0))
            if start > latest:
                return Booking(booked=False, at=start)
            self.schedules[budget] = start + count * spacing
            return Booking(booked=True, at=start)

    def hold_call_slots(self, budget: str, until: float) -> None:
        with self._lock:
            self.schedules[budget] = max(until, self.schedules.get(budget, 0.0))

    # -- TokenStore --------------------------------------------------------------------------------

    def get_token(self, connection: str) -> TokenState | None:
        return self.tokens.get(connection)

    def put_token(self, connection: str, state: TokenState) -> None:
        with self._lock:
            current = self.tokens.get(connection)
            if current is not None and current.version != state.version - 1:
                raise RuntimeError("conditional check failed: the token was refreshed by another worker")
            self.tokens[connection] = state

    # -- PaymentStore ------------------------------------------------------------------------------

    def get_watermark(self, name: str) -> datetime | None:
        return self.watermarks.get(name)

    def put_watermark(self, name: str, value: datetime) -> None:
        self.watermarks[name] = value

    def put_customer_invoice(self, system: str, invoice: Invoice, *, open_: bool) -> None:
        self.customer_invoices[(system, invoice.customer_id)][invoice.id] = invoice
        if open_ and invoice.due_date:
            self.open_due[system][invoice.id] = invoice
        else:
            self.open_due[system].pop(invoice.id, None)

    def list_customer_invoices(self, system: str, customer_id: str) -> list[Invoice]:
        return list(self.customer_invoices.get((system, customer_id), {}).values())

    def list_open_invoices_due(self, system: str, due_from: date, due_to: date) -> list[Invoice]:
        return [
            invoice
            for invoice in self.open_due.get(system, {}).values()
            if invoice.due_date is not None and due_from <= invoice.due_date <= due_to
        ]
