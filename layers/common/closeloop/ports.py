"""The ports: what the sync logic needs from a CRM, an accounting system and its own state store.

One adapter module per vendor implements ``CrmPort`` or ``AccountingPort``; ``closeloop.store`` implements
``SyncStore`` on DynamoDB and tests use in-memory fakes. The logic never learns which vendor it talks to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from closeloop.models import AccountingCustomer, CrmRef, Customer, SyncEvent


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
