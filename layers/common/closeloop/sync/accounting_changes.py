"""Two-way sync, the accounting side: a customer changed in the accounting system, applied or flagged by the rules.

For each notified (or polled) customer that is linked to a CRM record, the accounting record is read back and
compared with the accounting view stored at our last write (``ContactSync._remember``): equal means the
notification is the echo of our own write (or of nothing we follow) and nothing happens. For each field that a
person changed, the field rules decide:

- ``apply``: the accounting system owns the field; the value is written to the CRM record, and the CRM-side
  snapshot is moved to it, so the CRM's own notification of that write finds nothing to send back;
- ``conflict``: the CRM owns the field; nothing is written, the conflict is audited with both values, the CRM
  record is flagged (``closeloop_sync_issue``) and the month's report lists it;
- ``ignore``: the object or field does not flow (direction ``off``, or one-way the other way).

Either way the new accounting values become the stored view, so the same edit is never handled twice.

A change that fails for good (``FatalError``: the CRM refuses the write, the record is gone) is kept as the linked
CRM record's failed sync with its reason (so the month's report lists it) and does not stop the changes after it;
a ``RetriableError`` propagates, so the message or the catch-up run is retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from closeloop.errors import FatalError, RetriableError
from closeloop.models import CUSTOMER_FIELDS, AccountingCustomer, AccountingEvent, AccountingWorkMessage, CrmRef
from closeloop.ports import AccountingPort, CrmPort, IdMapping, SyncStore
from closeloop.rules import FieldRules
from closeloop.sync.contacts import ACCOUNTING_VIEW
from closeloop.sync.flags import flag
from closeloop.sync.trail import Trail

logger = Logger(child=True)


ChangeAction = Literal["applied", "conflict", "unchanged", "ignored", "skipped", "failed"]


@dataclass(frozen=True)
class ChangeOutcome:
    """What one accounting-side change did (ids and field names only: safe to log)."""

    accounting_id: str
    action: ChangeAction
    ref: CrmRef | None = None
    fields: tuple[str, ...] = ()
    detail: str = ""


class AccountingChangeSync:
    """Applies accounting-side customer changes to the CRM under the field rules (see the module docstring)."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: SyncStore,
        rules: FieldRules,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.rules = rules
        self.clock = clock
        self.trail = Trail(store, accounting.name, clock)

    def sync(self, event: AccountingEvent) -> ChangeOutcome:
        """A notified change: the record is read back in its current state, then handled."""
        return self._sync(event, None)

    def sync_record(self, customer: AccountingCustomer) -> ChangeOutcome:
        """A polled change: the record as the poll read it (no second read)."""
        event = AccountingEvent(
            system=self.accounting.name,
            resource="customer",
            resource_id=customer.id,
            kind="changed",
            occurred_at=self.clock(),
            dedupe_key=f"poll:{self.accounting.name}:customer:{customer.id}",
        )
        return self._sync(event, customer)

    def _sync(self, event: AccountingEvent, record: AccountingCustomer | None) -> ChangeOutcome:
        try:
            return self._apply(event, record)
        except FatalError as exc:
            return self._failed(event, exc)

    def _failed(self, event: AccountingEvent, exc: FatalError) -> ChangeOutcome:
        """Keep a change that failed for good as the linked CRM record's failed sync (the report lists it)."""
        ref = self.store.find_ref(self.accounting.name, event.resource_id)
        error_type = type(exc).__name__
        logger.error(
            "accounting change failed",
            extra={"id": event.resource_id, "ref": str(ref or ""), "error_type": error_type, "error": str(exc)},
        )
        if ref is not None:
            reason = f"change from {self.accounting.name} {event.resource} {event.resource_id} not applied: {exc}"
            self.trail.fail(ref, None, reason, error_type, source=event.dedupe_key)
        return ChangeOutcome(event.resource_id, "failed", ref, detail=f"{error_type}: {exc}")

    def _apply(self, event: AccountingEvent, record: AccountingCustomer | None) -> ChangeOutcome:
        found = self._linked(event, record)
        if isinstance(found, ChangeOutcome):
            return found
        ref, mapping, fields = found
        changed = [f for f in CUSTOMER_FIELDS if fields.get(f, "") != mapping.snapshot.get(ACCOUNTING_VIEW + f, "")]
        if not changed:
            return ChangeOutcome(event.resource_id, "unchanged", ref, detail="our own write, or nothing followed")
        return self._handle(event, ref, mapping, fields, changed)

    def _linked(
        self, event: AccountingEvent, record: AccountingCustomer | None
    ) -> tuple[CrmRef, IdMapping, dict[str, str]] | ChangeOutcome:
        """The CRM record, its mapping and the accounting values now; or why there is nothing to do."""
        if event.resource != "customer":
            # Invoices and payments come back through the payment poller's change feed.
            return ChangeOutcome(event.resource_id, "skipped", detail=f"{event.resource} changes are polled")
        if self.rules.direction("customer") == "off":
            return ChangeOutcome(event.resource_id, "ignored", detail="customer sync is off")
        system = self.accounting.name
        ref = self.store.find_ref(system, event.resource_id)
        if ref is None:
            return ChangeOutcome(event.resource_id, "skipped", detail="not linked to a CRM record")
        mapping = self.store.get_mapping(ref, system)
        if record is not None and record.status != "ACTIVE":
            record = None  # archived: as gone as a missing one
            current = None
        else:
            current = record if record is not None else self.accounting.get_customer(event.resource_id)
        if mapping is None or current is None:
            detail = "archived or deleted in accounting: not propagated" if current is None else "mapping gone"
            return ChangeOutcome(event.resource_id, "ignored", ref, detail=detail)
        return ref, mapping, dict(current.fields)

    def _handle(
        self, event: AccountingEvent, ref: CrmRef, mapping: IdMapping, fields: dict[str, str], changed: list[str]
    ) -> ChangeOutcome:
        verdicts = {f: self.rules.verdict("customer", f, "accounting") for f in changed}
        apply = {f: fields.get(f, "") for f, v in verdicts.items() if v == "apply"}
        conflicts = [f for f, v in verdicts.items() if v == "conflict"]
        unwritable = self.crm.update_customer_fields(ref, apply) if apply else []
        applied = [f for f in apply if f not in unwritable]
        conflicts += [f for f in apply if f in unwritable]
        snapshot = dict(mapping.snapshot)
        snapshot.update({ACCOUNTING_VIEW + f: fields.get(f, "") for f in changed})
        snapshot.update({f: apply[f] for f in applied})  # the CRM now holds it: its echo is not a change
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=self.accounting.name,
                accounting_id=mapping.accounting_id,
                snapshot=snapshot,
                updated_at=self.clock(),
            )
        )
        if applied:
            changes = {f: {"before": mapping.snapshot.get(f, ""), "after": apply[f]} for f in applied}
            detail = "the accounting system owns these"
            self.trail.audit(ref, "applied_from_accounting", mapping.accounting_id, None, changes, detail)
        if conflicts:
            self._conflict(ref, mapping, fields, conflicts)
            detail = f"applied: {','.join(applied)}" if applied else ""
            return ChangeOutcome(event.resource_id, "conflict", ref, tuple(conflicts), detail=detail)
        if applied:
            return ChangeOutcome(event.resource_id, "applied", ref, tuple(applied))
        return ChangeOutcome(event.resource_id, "ignored", ref, tuple(changed), detail="fields that do not flow")

    def _conflict(self, ref: CrmRef, mapping: IdMapping, accounting: dict[str, str], fields: list[str]) -> None:
        changes = {f: {"before": mapping.snapshot.get(f, ""), "after": accounting.get(f, "")} for f in fields}
        self.trail.audit(
            ref,
            "conflict",
            mapping.accounting_id,
            None,
            changes,
            "changed in the accounting system; the CRM owns these (CRM value before, accounting value after)",
        )
        note = f"Changed in {self.accounting.name} but owned by the CRM: {', '.join(fields)} ({self.clock():%Y-%m-%d})"
        flag(self.crm, ref, note)


def handle_accounting_messages(changes: AccountingChangeSync, messages: Sequence[tuple[str, str]]) -> list[str]:
    """Apply each message's events; return the ids of the messages to retry (a retriable error, or unreadable)."""
    failed: list[str] = []
    for message_id, body in messages:
        try:
            apply_accounting_changes(changes, AccountingWorkMessage.model_validate_json(body))
        except ValidationError as exc:
            logger.error("unreadable accounting message", extra={"message_id": message_id, "error": str(exc)[:300]})
            failed.append(message_id)
        except RetriableError:
            failed.append(message_id)
    return failed


def apply_accounting_changes(changes: AccountingChangeSync, message: AccountingWorkMessage) -> None:
    """Apply one message's events (one read per record answers all its events). A record that fails for good
    is kept as a failed sync and the others go on; raises the first RetriableError (the message comes back)."""
    seen: set[tuple[str, str]] = set()
    for event in message.events:
        if (event.resource, event.resource_id) in seen:
            continue
        seen.add((event.resource, event.resource_id))
        try:
            outcome = changes.sync(event)
        except RetriableError as exc:
            logger.warning("accounting change will be retried", extra={"id": event.resource_id, "error": str(exc)})
            raise
        except FatalError as exc:
            logger.error("accounting change failed", extra={"id": event.resource_id, "error": str(exc)})
            continue
        logger.info("accounting change", extra={**asdict(outcome), "ref": str(outcome.ref or "")})
