"""SugarCRM web logic hooks: the secret path segment that authenticates a delivery, and its parsing.

Web logic hooks (Admin > Web Logic Hooks) POST one record per request, ``{"bean", "event", "isUpdate", "data",
"dataChanges"}`` (``modules/WebLogicHooks/CreatePayload.php``), queued until cron runs the "Dispatch Web Logic
Hook" job, with no signature and NO retry (a failed delivery is lost). Authenticity is a secret last path
segment (SUGARCRM_WEBHOOK_TOKEN); the catch-up poll (``SugarCrm.iter_changes_since``) finds lost deliveries
under the same dedupe keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from closeloop.errors import WebhookRejected
from closeloop.models import SyncEvent
from closeloop.ports import WebhookRequest
from closeloop.vendors.sugarcrm.mapping import clean, parse_time, sync_event, truthy
from closeloop.wire import path_secret, webhook_json

#: web logic hook ``bean`` (bean class; module names accepted too) -> canonical object type.
HOOK_BEANS: Mapping[str, str] = {
    "Account": "company",
    "Accounts": "company",
    "Contact": "contact",
    "Contacts": "contact",
    "Opportunity": "deal",
    "Opportunities": "deal",
}
#: hook event -> SyncEvent kind (``after_save`` is "created" or "changed" by ``isUpdate``).
HOOK_KINDS: Mapping[str, str] = {
    "after_delete": "deleted",
    "after_relationship_add": "associated",
    "after_relationship_delete": "associated",
}


def verify_path_token(request: WebhookRequest, token: str) -> None:
    """The URL's last path segment must equal SUGARCRM_WEBHOOK_TOKEN (compared in constant time)."""
    expected = path_secret("SUGARCRM_WEBHOOK_TOKEN", token)
    segment = unquote(urlsplit(request.uri).path.rstrip("/").rpartition("/")[2])
    if not hmac.compare_digest(segment.encode(), expected.encode()):
        raise WebhookRejected(401, "missing or wrong SugarCRM webhook token in the URL")


def parse_delivery(body: bytes) -> list[SyncEvent]:
    """One web logic hook delivery -> at most one event (modules other than ours are ignored).

    Raises WebhookRejected(400) saying what is wrong with a body that is not a delivery.
    """
    payload = webhook_json(body)
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "expected a JSON object (a SugarCRM web logic hook payload)")
    bean = payload.get("bean")
    if not isinstance(bean, str) or not bean:
        raise WebhookRejected(400, "bean: Field required")
    object_type = HOOK_BEANS.get(bean)
    if object_type is None:
        return []
    event = payload.get("event") or "after_save"
    data = payload.get("data")
    if not isinstance(event, str) or not isinstance(data, dict):
        raise WebhookRejected(400, "data: expected the record as a JSON object")
    record_id = data.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise WebhookRejected(400, "data.id: Field required")
    try:
        modified = parse_time(data.get("date_modified"))
    except ValueError as exc:
        raise WebhookRejected(400, "data.date_modified: not an ISO 8601 date-time") from exc
    if modified is None:
        raise WebhookRejected(400, "data.date_modified: Field required")
    if event == "after_save":
        kind = "changed" if truthy(payload.get("isUpdate")) else "created"
    else:
        kind = HOOK_KINDS.get(event, "other")
    if truthy(data.get("deleted")):
        kind = "deleted"
    changes = payload.get("dataChanges")
    changed = list(changes) if isinstance(changes, dict) else []
    suffix = "" if event == "after_save" else f":{event}"
    if kind == "changed" and changed:
        # Two saves within one second share date_modified: the changes' fingerprint tells them apart, so
        # the replay check and the worker's idempotency never take the second save for the first.
        suffix += ":" + hashlib.sha256(json.dumps(changes, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return [
        sync_event(
            object_type,
            record_id,
            modified,
            kind=kind,
            source_type=f"{bean}.{event}",
            change_source="WEB_LOGIC_HOOK",
            actor=clean(data.get("modified_user_id")),
            property_name=changed[0] if len(changed) == 1 else None,
            suffix=suffix,
        )
    ]
