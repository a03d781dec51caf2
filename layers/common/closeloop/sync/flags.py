"""Flags on CRM records: the one property that tells sales a record needs a person's attention."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from closeloop.errors import FatalError, SetupError, ValidationFailed
from closeloop.models import CrmRef
from closeloop.ports import CrmPort, PropertyDefinition

logger = Logger(child=True)

#: The CRM property that tells sales a record needs attention (also on deals: the same name).
SYNC_ISSUE = PropertyDefinition(
    "closeloop_sync_issue",
    "Closeloop sync issue",
    "string",
    description="Why Closeloop could not sync this record as it is, e.g. a field changed in both systems",
)


def flag(crm: CrmPort, ref: CrmRef, note: str) -> bool:
    """Write ``note`` into the record's sync-issue property (created on first use). Never raises for a
    record-level or setup problem: the audit trail and the month's report already hold what happened."""
    try:
        try:
            crm.update_customers({ref: {SYNC_ISSUE.name: note}})
        except ValidationFailed:
            crm.ensure_properties(ref.object_type, [SYNC_ISSUE])
            crm.update_customers({ref: {SYNC_ISSUE.name: note}})
    except (FatalError, SetupError) as exc:
        logger.warning("could not flag the CRM record", extra={"ref": str(ref), "error": str(exc)})
        return False
    return True
