"""The audit trail and failed-sync records every pipeline writes, in one shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from closeloop.models import CrmRef, SyncEvent
from closeloop.ports import AuditRecord, FailedSync, SyncStore


class Trail:
    """Writes who changed what, when and from which event; and what could not sync, with why."""

    def __init__(self, store: SyncStore, system: str, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.system = system
        self.clock = clock

    def audit(
        self,
        ref: CrmRef,
        action: str,
        target_id: str,
        event: SyncEvent | None,
        changes: dict[str, dict[str, str]],
        detail: str = "",
    ) -> None:
        self.store.put_audit(
            AuditRecord(
                ref=ref,
                at=self.clock(),
                action=action,
                system=self.system,
                target_id=target_id,
                actor=(event.actor or event.change_source or "") if event else "closeloop",
                source_event=f"{event.source_type}:{event.dedupe_key}" if event else "",
                changes=changes,
                detail=detail,
            )
        )

    def fail(self, ref: CrmRef, event: SyncEvent | None, reason: str, error_type: str, *, source: str = "") -> None:
        """Keep a failed sync with its reason (until a later sync succeeds) and audit it.

        ``source``: the dedupe key of the failed event when it is not a CRM event (an accounting-side change).
        """
        self.store.record_failed_sync(
            FailedSync(
                ref=ref,
                at=self.clock(),
                reason=reason,
                error_type=error_type,
                source_event=event.dedupe_key if event else source,
            )
        )
        self.audit(ref, "failed", "", event, {}, f"{error_type}: {reason}")
