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
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from closeloop.errors import WebhookRejected
from closeloop.models import SyncEvent
from closeloop.ports import WebhookRequest
from closeloop.vendors.sugarcrm.mapping import LINE_MODULES, clean, parse_time, sync_event, truthy
from closeloop.wire import path_secret, webhook_json

#: web logic hook ``bean`` (bean class; module names accepted too) -> canonical object type.
HOOK_BEANS: Mapping[str, str] = {
    "Account": "company",
    "Accounts": "company",
    "Contact": "contact",
    "Contacts": "contact",
    "Opportunity": "deal",
    "Opportunities": "deal",
    # Product Catalog templates (GUESSES["web logic hooks on ProductTemplates"]).
    "ProductTemplate": "product",
    "ProductTemplates": "product",
    "Quote": "quote",
    "Quotes": "quote",
}
#: Beans that are lines of another object (quoted line items, ``Product``): a delivery is a change of the
#: object the line names (``LINE_MODULES``: its quote's ``quote_id``), keyed as the catch-up poll keys it.
LINE_BEANS: Mapping[str, str] = {
    "Product": "Products",
    "Products": "Products",
    # A revenue line item's service term or frequency, and a contract's end: changes of the opportunity.
    "RevenueLineItem": "RevenueLineItems",
    "RevenueLineItems": "RevenueLineItems",
    "Contract": "Contracts",  # see GUESSES["a contract's hook carries opportunity_id"]
    "Contracts": "Contracts",
}
#: hook event -> SyncEvent kind (``after_save`` is "created" or "changed" by ``isUpdate``).
HOOK_KINDS: Mapping[str, str] = {
    "after_delete": "deleted",
    "after_relationship_add": "associated",
    "after_relationship_delete": "associated",
}


def _sugar_datetime(value: Any) -> Any:
    """Sugar's ISO 8601 date-time string as an aware UTC datetime (``mapping.parse_time``); anything else is
    left to pydantic (an empty string then fails as no datetime)."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")  # noqa: TRY004 - pydantic reads ValueError
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError("not an ISO 8601 date-time") from None


class SugarCrmWebhookRecord(BaseModel):
    """The hook's ``data``: the saved record with every field the hook's user may read (``extra`` kept); the
    parser reads its id, modification time, deletion flag and the user who saved it."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    #: ISO 8601 with an offset (``2024-05-01T10:23:28-04:00``).
    date_modified: Annotated[datetime, BeforeValidator(_sugar_datetime)]
    #: Sugar's REST form is a boolean; "1"/"true" strings are read as true too.
    deleted: bool | int | str | None = None
    modified_user_id: str | None = None


def _synced_beans_hold_a_record(schema: dict[str, Any]) -> None:
    """The schema says what the parser checks: ``data`` is a ``SugarCrmWebhookRecord`` for the beans it syncs."""
    schema["if"] = {"properties": {"bean": {"enum": sorted({*HOOK_BEANS, *LINE_BEANS})}}, "required": ["bean"]}
    schema["then"] = {"properties": {"data": SugarCrmWebhookRecord.model_json_schema()}}


class SugarCrmWebhookDelivery(BaseModel):
    """One web logic hook delivery, as ``CreatePayload.php`` builds it and ``parse_delivery`` reads it.

    ``data`` is the saved record: read as a ``SugarCrmWebhookRecord`` when the bean is one Closeloop syncs
    (``HOOK_BEANS``), and left unread otherwise (a delivery for another module is ignored). ``event`` defaults to
    ``after_save`` and ``isUpdate`` to false (Sugar always sends both; see GUESSES["hook event and isUpdate may
    be absent"]); ``dataChanges`` is an object keyed by field name, or ``[]`` when nothing changed (PHP's empty
    array).
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_synced_beans_hold_a_record)

    bean: str = Field(min_length=1, description="the bean class (Account, Contact, Opportunity, ...)")
    event: str | None = Field(None, description="the trigger: after_save, after_delete, after_relationship_add, ...")
    isUpdate: bool | None = None  # noqa: N815 - Sugar's field name
    data: dict[str, Any]
    dataChanges: dict[str, Any] | list[Any] | None = None  # noqa: N815 - Sugar's field name


def _problems(exc: ValidationError, *where: str) -> str:
    """What is wrong with a delivery (``where``: the part validated): where and why, never the body's values."""
    problems = exc.errors(include_url=False, include_input=False)
    reasons = "; ".join(
        f"{'.'.join(str(part) for part in (*where, *p['loc'])) or 'body'}: {p['msg']}" for p in problems[:3]
    )
    return reasons + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")


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
    try:
        delivery = SugarCrmWebhookDelivery.model_validate(payload)
    except ValidationError as exc:
        raise WebhookRejected(400, _problems(exc)) from None
    object_type = HOOK_BEANS.get(delivery.bean)
    line_module = LINE_BEANS.get(delivery.bean)
    if object_type is None and line_module is None:
        return []
    try:
        data = SugarCrmWebhookRecord.model_validate(delivery.data)
    except ValidationError as exc:
        raise WebhookRejected(400, _problems(exc, "data")) from None
    bean, event, changes = delivery.bean, delivery.event or "after_save", delivery.dataChanges
    record_id, modified = data.id, data.date_modified
    kind = HOOK_KINDS.get(event, "other")
    if event == "after_save":
        kind = "changed" if delivery.isUpdate else "created"
    if truthy(data.deleted):
        kind = "deleted"
    changed = list(changes) if isinstance(changes, dict) else []
    suffix = "" if event == "after_save" else f":{event}"
    if line_module is not None:
        # A line saved, added or deleted is a change of the object it belongs to (a quote line: its quote);
        # see GUESSES["a quoted line's hook carries quote_id"].
        object_type, parent_field = LINE_MODULES[line_module]
        parent_id = clean((data.model_extra or {}).get(parent_field))
        if not parent_id:
            return []
        suffix = f":{line_module}:{record_id}{suffix}"
        record_id, kind = parent_id, "changed"
    assert object_type is not None
    if kind == "changed" and changed and (line_module is None or delivery.isUpdate):
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
            actor=clean(data.modified_user_id),
            property_name=changed[0] if len(changed) == 1 else None,
            suffix=suffix,
        )
    ]
