"""QuickBooks Online webhooks: the signature check, the delivery body's pydantic models (the webhook API's
request-body schema is generated from ``QuickBooksWebhookBody``) and the parsing into AccountingEvents.

Vendor facts (developer.intuit.com, managing webhooks notifications): ``intuit-signature`` is
base64(HMAC-SHA256(the app's Verifier Token, raw body)); the legacy body is ``{"eventNotifications":
[{"realmId", "dataChangeEvent": {"entities": [{"name", "id", "operation", "lastUpdated"}]}}]}``, one
notification per company, entities aggregated over a window; operations Create, Update, Delete, Merge, Void,
Emailed. Intuit now sends CloudEvents instead (same signature header): a JSON array of ``{"specversion": "1.0",
"id", "source", "type": "qbo.<entity>.<action>.v1", "time", "intuitentityid", "intuitaccountid", "data"}``,
one event per change. Both shapes are accepted.

CloudEvents sources (Intuit's migration post blogs.intuit.com/2025/11/12/upcoming-change-to-webhooks-payload-
structure/, via the SDK releases that parse it: intuit/QuickBooks-V3-DotNET-SDK V14.7.0.4 and
intuit/QuickBooks-V3-PHP-SDK v6.2.2, whose test payload is ``[{"specversion": "1.0", "id": "d1a3…", "source":
"intuit.dsnB…", "type": "qbo.class.created.v1", "time": "2025-10-07T19:59:07.034359333Z", "intuitentityid":
"1234", "intuitaccountid": "310687"}]``): ``intuitaccountid`` is the realm id and ``intuitentityid`` the record
id; ``type`` names the entity in lower case. The action words are GUESSES["cloudevents_action_words"] (an
unknown one is kind "other"); ``time`` is GUESSES["cloudevents_time"] (an event without one is timed now;
events are de-duplicated on ``id``); that every event carries its ids is GUESSES["cloudevents_required_ids"].
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    RootModel,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails

from closeloop.dates import parse_utc
from closeloop.errors import ConfigurationError, WebhookRejected
from closeloop.models import AccountingEvent, AccountingResource
from closeloop.ports import WebhookRequest
from closeloop.vendors.quickbooks.client import VENDOR
from closeloop.wire import hmac_base64_matches, webhook_json

SIGNATURE_HEADER = "intuit-signature"
#: Webhook entity name -> the resource it is about; other entities are not followed.
WEBHOOK_RESOURCES: Mapping[str, AccountingResource] = {
    "Customer": "customer",
    "Invoice": "invoice",
    "Payment": "payment",
}
EventKind = Literal["created", "changed", "deleted", "other"]
WEBHOOK_KINDS: Mapping[str, EventKind] = {
    "Create": "created",
    "Update": "changed",
    "Void": "changed",
    "Delete": "deleted",
}
#: CloudEvents ``type`` = ``qbo.<entity>.<action>.v<n>``: the entity and action, lower case.
CLOUD_EVENT_TYPE = re.compile(r"^qbo\.(?P<entity>[a-z]+)\.(?P<action>[a-z]+)\.v\d+$")
#: A CloudEvents action -> the legacy operation it stands for (so both shapes make the same events).
CLOUD_EVENT_OPERATIONS: Mapping[str, str] = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}


def _digits(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A value that must say something: a string with a non-blank character.
Text = Annotated[str, StringConstraints(pattern=r"\S")]
#: An id or name: Intuit sends strings; a number is read as its digits.
Identifier = Annotated[
    Text,
    BeforeValidator(_digits),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "integer"}]}),
]


class QuickBooksEntityChange(BaseModel):
    """One changed record of a legacy notification (``lastUpdated``: a date-time with its offset)."""

    model_config = ConfigDict(extra="allow")

    name: Identifier
    id: Identifier
    operation: Identifier
    lastUpdated: Text


class QuickBooksDataChangeEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    entities: list[QuickBooksEntityChange]


class QuickBooksNotification(BaseModel):
    """One company's changes (``realmId``) in a legacy delivery."""

    model_config = ConfigDict(extra="allow")

    realmId: Identifier
    dataChangeEvent: QuickBooksDataChangeEvent


class QuickBooksLegacyPayload(BaseModel):
    """The legacy delivery: ``{"eventNotifications": [...]}``."""

    model_config = ConfigDict(extra="allow")

    eventNotifications: list[QuickBooksNotification]


class QuickBooksCloudEvent(BaseModel):
    """One CloudEvent of a delivery (``specversion``, ``source``, ``data`` and others are kept, not read)."""

    model_config = ConfigDict(extra="allow")

    type: Text
    id: Identifier
    intuitaccountid: Identifier
    intuitentityid: Identifier
    time: str | None = None


def _shape(value: Any) -> str | None:
    if isinstance(value, list):
        return "cloudevents"
    if isinstance(value, dict | QuickBooksLegacyPayload):
        return "legacy"
    return None


_NEITHER = "expected a JSON array of CloudEvents or an object with 'eventNotifications'"


class QuickBooksWebhookBody(
    RootModel[
        Annotated[
            Annotated[list[QuickBooksCloudEvent], Tag("cloudevents")]
            | Annotated[QuickBooksLegacyPayload, Tag("legacy")],
            Discriminator(_shape, custom_error_type="webhook_shape", custom_error_message=_NEITHER),
        ]
    ]
):
    """A QuickBooks delivery: a JSON array is CloudEvents, an object the legacy ``eventNotifications``."""


def verify_signature(verifier_token: str, request: WebhookRequest) -> None:
    """``intuit-signature`` must be base64(HMAC-SHA256(verifier token, raw body)), in constant time.

    Raises WebhookRejected(401) when it is missing or wrong, ConfigurationError when the token is not set.
    """
    if not verifier_token:
        raise ConfigurationError("QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN is not set", vendor=VENDOR)
    sent = next((v for k, v in request.headers.items() if k.lower() == SIGNATURE_HEADER), "").strip()
    if not hmac_base64_matches(verifier_token, request.body, sent):
        raise WebhookRejected(401, "missing or wrong intuit-signature for this verifier token")


def parse_delivery(body: bytes, realm: str, now: Callable[[], datetime]) -> list[AccountingEvent]:
    """The Customer, Invoice and Payment changes of ``realm`` in a delivery, in its order (other realms and
    entities are dropped). Raises WebhookRejected(400) naming the first malformed place."""
    payload = webhook_json(body)
    try:
        delivery = QuickBooksWebhookBody.model_validate(payload).root
    except ValidationError as exc:
        raise WebhookRejected(400, _problem(exc.errors(include_url=False, include_input=False)[0])) from None
    if isinstance(delivery, QuickBooksLegacyPayload):
        return _legacy_events(delivery, realm)
    return _cloud_events(delivery, realm, now)


#: Pydantic's error types, said the way a QuickBooks sender would understand them.
_OBJECT_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})
_VALUE_ERRORS = frozenset({"string_type", "string_pattern_mismatch", "int_type"})


def _problem(error: ErrorDetails) -> str:
    """Where (``eventNotifications[0].realmId``, ``[2].type``) and what, never the value."""
    parts = error["loc"][1:]  # [0] is the shape's tag
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")
    if error["type"] == "missing":
        message = "Field required"
    elif error["type"] in _OBJECT_ERRORS:
        message = "expected an object"
    elif error["type"] in _VALUE_ERRORS and parts and isinstance(parts[-1], str):
        message = f"expected a non-blank value for '{parts[-1]}'"
    else:
        message = error["msg"]
    return f"{where}: {message}" if where else message


def _legacy_events(delivery: QuickBooksLegacyPayload, realm: str) -> list[AccountingEvent]:
    """Legacy notifications: deduplicated on entity, id, operation and ``lastUpdated`` (the same for every
    redelivery of one change)."""
    found: list[AccountingEvent] = []
    for n, notification in enumerate(delivery.eventNotifications):
        where = f"eventNotifications[{n}].dataChangeEvent.entities"
        entities = notification.dataChangeEvent.entities
        if str(notification.realmId).strip() != realm:
            continue
        for e, entity in enumerate(entities):
            occurred = parse_utc(entity.lastUpdated)
            if occurred is None:
                raise WebhookRejected(400, f"{where}[{e}].lastUpdated: not a date-time")
            resource = WEBHOOK_RESOURCES.get(str(entity.name))
            if resource is None:
                continue
            resource_id = str(entity.id).strip()
            operation = str(entity.operation)
            found.append(
                AccountingEvent(
                    system=VENDOR,
                    resource=resource,
                    resource_id=resource_id,
                    kind=WEBHOOK_KINDS.get(operation, "other"),
                    occurred_at=occurred,
                    dedupe_key=f"{VENDOR}:{resource}:{resource_id}:{operation.lower()}:{occurred.isoformat()}",
                )
            )
    return found


def _cloud_events(
    events: Sequence[QuickBooksCloudEvent], realm: str, now: Callable[[], datetime]
) -> list[AccountingEvent]:
    """CloudEvents of our realm and followed entity types; an event of another type or realm is dropped."""
    found: list[AccountingEvent] = []
    for n, event in enumerate(events):
        matched = CLOUD_EVENT_TYPE.match(event.type.strip().lower())
        if matched is None:
            continue  # not a QuickBooks Online entity event
        resource = next((r for name, r in WEBHOOK_RESOURCES.items() if name.lower() == matched["entity"]), None)
        if resource is None or str(event.intuitaccountid).strip() != realm:
            continue
        if event.time is None:
            occurred = now()
        else:
            parsed = parse_utc(event.time)
            if parsed is None:
                raise WebhookRejected(400, f"[{n}].time: not a date-time")
            occurred = parsed
        resource_id = str(event.intuitentityid).strip()
        operation = CLOUD_EVENT_OPERATIONS.get(matched["action"], matched["action"])
        # A CloudEvent's id is unique per event (CloudEvents 1.0: source + id identify it): two changes of one
        # record within one timestamp are two events, and a redelivery of one is the same event.
        dedupe = f"{VENDOR}:{resource}:{resource_id}:{operation.lower()}:event:{str(event.id).strip()}"
        found.append(
            AccountingEvent(
                system=VENDOR,
                resource=resource,
                resource_id=resource_id,
                kind=WEBHOOK_KINDS.get(operation, "other"),
                occurred_at=occurred,
                dedupe_key=dedupe,
            )
        )
    return found
