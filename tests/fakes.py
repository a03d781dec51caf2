"""In-memory fakes of the ports, for unit tests of the vendor-free logic (no network, no AWS)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from closeloop.errors import Conflict
from closeloop.models import AccountingCustomer, CrmRef, Customer, customer_fields
from closeloop.ports import AuditRecord, FailedSync, IdMapping, WebhookRequest
from closeloop.store import TokenState


class MemoryStore:
    """SyncStore + TokenStore in memory, with the same conditional semantics as DynamoStore."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mappings: dict[tuple[CrmRef, str], IdMapping] = {}
        self.audit: list[AuditRecord] = []
        self.failed: dict[CrmRef, FailedSync] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.tokens: dict[str, TokenState] = {}

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        return self.mappings.get((ref, system))

    def put_mapping(self, mapping: IdMapping) -> None:
        self.mappings[(mapping.ref, mapping.system)] = mapping

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        for (ref, sys), mapping in self.mappings.items():
            if sys == system and mapping.accounting_id == accounting_id:
                return ref
        return None

    def put_audit(self, record: AuditRecord) -> None:
        self.audit.append(record)

    def list_audit(self, ref: CrmRef) -> list[AuditRecord]:
        return [r for r in self.audit if r.ref == ref]

    def record_failed_sync(self, failure: FailedSync) -> None:
        self.failed[failure.ref] = failure

    def clear_failed_sync(self, ref: CrmRef) -> None:
        self.failed.pop(ref, None)

    def get_failed_sync(self, ref: CrmRef) -> FailedSync | None:
        return self.failed.get(ref)

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        with self.lock:
            held = self.leases.get(name)
            if held and held[0] != owner and held[1] > time.time():
                return False
            self.leases[name] = (owner, time.time() + seconds)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self.lock:
            if self.leases.get(name, ("",))[0] == owner:
                del self.leases[name]

    def get_token(self, connection: str) -> TokenState | None:
        return self.tokens.get(connection)

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

    def verify_webhook(self, request: WebhookRequest) -> None:
        return None

    def parse_webhook(self, body: bytes) -> list:  # type: ignore[type-arg]
        return []

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        return self.customers.get(self.company_of.get(ref, ref))


def ref(object_type: str = "company", object_id: str = "1", crm: str = "crm") -> CrmRef:
    return CrmRef(crm=crm, object_type=object_type, object_id=object_id)  # type: ignore[arg-type]


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
