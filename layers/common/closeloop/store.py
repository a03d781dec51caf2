"""The DynamoDB repository: mappings, audit trail, failed syncs, leases and OAuth token state.

One table (``SYNC_TABLE``), single-table design. This module is the only place that builds keys:

| item          | PK                              | SK                     | GSI1PK / GSI1SK                    |
|---------------|---------------------------------|------------------------|------------------------------------|
| mapping       | ``CRM#hubspot#company#123``     | ``MAP#xero``           | ``ACC#xero#<id>`` / PK             |
| audit record  | ``CRM#hubspot#company#123``     | ``AUDIT#<iso>#<uuid>`` | –                                  |
| failed sync   | ``CRM#hubspot#company#123``     | ``FAILED``             | ``FAILED`` / ``<iso>``             |
| invoice email | ``CRM#hubspot#deal#123``        | ``EMAIL#xero``         | –                                  |
| lease         | ``LEASE#<name>``                | ``LEASE``              | –                                  |
| token state   | ``CONN#<connection>``           | ``TOKEN``              | –                                  |
| watermark     | ``WATERMARK#<name>``            | ``WATERMARK``          | –                                  |
| call schedule | ``PACE#<vendor>#<org id>``      | ``PACE``               | –                                  |
| checkpoint    | ``CHECKPOINT#<name>``           | ``CHECKPOINT``         | –                                  |
| review item   | ``CRM#hubspot#company#123``     | ``REVIEW#xero``        | ``REVIEW#xero`` / ``<status>#<iso>`` |
| cust. invoice | ``ACC#xero#customer#<id>``      | ``INV#<invoice id>``   | ``DUE#xero`` / ``<due>#<id>`` open |
| delivery      | ``DELIVERY#<sender>#<sha256>``  | ``DELIVERY``           | –                                  |

``expires_at`` is the table's TTL attribute (epoch seconds): leases and deliveries carry it so stale ones are
swept. DynamoDB deletes expired items only eventually, so conditions compare ``expires_at`` themselves.

Token state holds its access and refresh tokens only encrypted (``*_token_enc``) by the injected
``TokenCipher`` (KMS in Lambda, with the connection and field as encryption context), so reading the table
is not enough to read a token. Items written before encryption (plaintext ``access_token`` /
``refresh_token``) are still read, and are replaced by encrypted ones on the next put.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from closeloop.errors import ConfigurationError
from closeloop.models import CrmRef, Invoice
from closeloop.pacing import Booking
from closeloop.ports import AuditRecord, FailedSync, IdMapping, InvoiceEmail, ReviewItem, ReviewStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

LEASE_SWEEP_SECONDS = 86_400


def crm_key(ref: CrmRef) -> str:
    return f"CRM#{ref.crm}#{ref.object_type}#{ref.object_id}"


def ref_from_key(key: str) -> CrmRef:
    _, crm, object_type, object_id = key.split("#", 3)
    return CrmRef(crm=crm, object_type=object_type, object_id=object_id)


def accounting_key(system: str, accounting_id: str) -> str:
    return f"ACC#{system}#{accounting_id}"


DELIVERY_PREFIX = "DELIVERY#"


def delivery_key(sender: str, digest: str) -> str:
    """A queued webhook delivery (the webhook functions may write only keys with this prefix)."""
    return f"{DELIVERY_PREFIX}{sender}#{digest}"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TokenState:
    """An OAuth connection's live tokens. ``known_refresh_hashes``: recent refresh tokens we held or issued."""

    access_token: str
    access_expires_at: float
    refresh_token: str
    version: int = 0
    known_refresh_hashes: tuple[str, ...] = field(default_factory=tuple)
    refreshed_at: float = 0.0


class TokenCipher(Protocol):
    """Encrypts token strings at rest. ``context`` is bound to the ciphertext (decrypting needs the same)."""

    def encrypt(self, plaintext: str, context: dict[str, str]) -> str: ...

    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str: ...


TOKEN_FIELDS = ("access_token", "refresh_token")


class DynamoStore:
    """SyncStore and TokenStore on one DynamoDB table.

    ``cipher`` encrypts token state; without one, token state is written in plaintext (local tools that
    never write tokens) and an encrypted item cannot be read (ConfigurationError).
    """

    def __init__(
        self, table_name: str, client: DynamoDBClient | None = None, *, cipher: TokenCipher | None = None
    ) -> None:
        self.table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._cipher = cipher
        #: Per call schedule: was it busy (booked ahead) at our last look? Picks the update to try first.
        self._busy_schedules: dict[str, bool] = {}

    # -- low-level helpers -------------------------------------------------------------------------

    @staticmethod
    def _item(values: dict[str, Any]) -> dict[str, Any]:
        return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}

    @staticmethod
    def _plain(item: dict[str, Any]) -> dict[str, Any]:
        return {k: _deserializer.deserialize(v) for k, v in item.items()}

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self.table, Key=self._item({"PK": pk, "SK": sk}), ConsistentRead=True
        )
        item = response.get("Item")
        return self._plain(item) if item else None

    # -- mappings ----------------------------------------------------------------------------------

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        item = self._get(crm_key(ref), f"MAP#{system}")
        if item is None:
            return None
        return IdMapping(
            ref=ref,
            system=system,
            accounting_id=str(item["accounting_id"]),
            snapshot=json.loads(str(item.get("snapshot", "{}"))),
            updated_at=datetime.fromisoformat(str(item["updated_at"])) if item.get("updated_at") else None,
        )

    def put_mapping(self, mapping: IdMapping) -> None:
        pk = crm_key(mapping.ref)
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": pk,
                    "SK": f"MAP#{mapping.system}",
                    "GSI1PK": accounting_key(mapping.system, mapping.accounting_id),
                    "GSI1SK": pk,
                    "type": "mapping",
                    "accounting_id": mapping.accounting_id,
                    "snapshot": json.dumps(mapping.snapshot, sort_keys=True),
                    "updated_at": _iso(mapping.updated_at or datetime.now(UTC)),
                }
            ),
        )

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        response = self._client.query(
            TableName=self.table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues=self._item({":pk": accounting_key(system, accounting_id)}),
            Limit=1,
        )
        items = response.get("Items", [])
        return ref_from_key(str(self._plain(items[0])["PK"])) if items else None

    # -- audit trail -------------------------------------------------------------------------------

    def put_audit(self, record: AuditRecord) -> None:
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": crm_key(record.ref),
                    "SK": f"AUDIT#{_iso(record.at)}#{uuid.uuid4().hex[:8]}",
                    "type": "audit",
                    "at": _iso(record.at),
                    "action": record.action,
                    "system": record.system,
                    "target_id": record.target_id,
                    "actor": record.actor,
                    "source_event": record.source_event,
                    "changes": json.dumps(record.changes, sort_keys=True),
                    "detail": record.detail,
                    # Conflicts are also listed by system and time, for the month's report.
                    **(
                        {"GSI1PK": f"CONFLICT#{record.system}", "GSI1SK": _iso(record.at)}
                        if record.action == "conflict"
                        else {}
                    ),
                }
            ),
        )

    def list_conflicts(self, system: str, since: datetime, until: datetime) -> list[AuditRecord]:
        """Conflict records of ``system`` (see the field rules) in [since, until), oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk AND GSI1SK BETWEEN :since AND :until",
            "ExpressionAttributeValues": self._item(
                {":pk": f"CONFLICT#{system}", ":since": _iso(since), ":until": _iso(until)}
            ),
        }
        found: list[AuditRecord] = []
        while True:
            response = self._client.query(**kwargs)
            found.extend(self._audit(self._plain(item)) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return [r for r in found if r.at < until]
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def list_audit(self, ref: CrmRef) -> list[AuditRecord]:
        return [self._audit(i) for i in self._query_prefix(crm_key(ref), "AUDIT#")]

    @staticmethod
    def _audit(item: dict[str, Any]) -> AuditRecord:
        return AuditRecord(
            ref=ref_from_key(str(item["PK"])),
            at=datetime.fromisoformat(str(item["at"])),
            action=str(item["action"]),
            system=str(item["system"]),
            target_id=str(item.get("target_id", "")),
            actor=str(item.get("actor", "")),
            source_event=str(item.get("source_event", "")),
            changes=json.loads(str(item.get("changes", "{}"))),
            detail=str(item.get("detail", "")),
        )

    def _query_prefix(self, pk: str, sk_prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
            "ExpressionAttributeValues": self._item({":pk": pk, ":sk": sk_prefix}),
            "ConsistentRead": True,
        }
        while True:
            response = self._client.query(**kwargs)
            items.extend(self._plain(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- failed syncs ------------------------------------------------------------------------------

    def record_failed_sync(self, failure: FailedSync) -> None:
        previous = self.get_failed_sync(failure.ref)
        attempts = (previous.attempts + 1) if previous else failure.attempts
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": crm_key(failure.ref),
                    "SK": "FAILED",
                    "GSI1PK": "FAILED",
                    "GSI1SK": _iso(failure.at),
                    "type": "failed_sync",
                    "at": _iso(failure.at),
                    "reason": failure.reason,
                    "error_type": failure.error_type,
                    "source_event": failure.source_event,
                    "attempts": attempts,
                    "extra": json.dumps(failure.extra, sort_keys=True, default=str),
                }
            ),
        )

    def get_failed_sync(self, ref: CrmRef) -> FailedSync | None:
        item = self._get(crm_key(ref), "FAILED")
        return self._failed(item) if item else None

    def list_failed_syncs(self, limit: int = 50) -> list[FailedSync]:
        """The most recent failed syncs, newest first."""
        response = self._client.query(
            TableName=self.table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues=self._item({":pk": "FAILED"}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [self._failed(self._plain(i)) for i in response.get("Items", [])]

    @staticmethod
    def _failed(item: dict[str, Any]) -> FailedSync:
        return FailedSync(
            ref=ref_from_key(str(item["PK"])),
            at=datetime.fromisoformat(str(item["at"])),
            reason=str(item["reason"]),
            error_type=str(item["error_type"]),
            source_event=str(item.get("source_event", "")),
            attempts=int(item.get("attempts", 1)),
            extra=json.loads(str(item.get("extra", "{}"))),
        )

    def clear_failed_sync(self, ref: CrmRef) -> None:
        self._client.delete_item(TableName=self.table, Key=self._item({"PK": crm_key(ref), "SK": "FAILED"}))

    # -- invoice email markers ---------------------------------------------------------------------

    def get_invoice_email(self, ref: CrmRef, system: str) -> InvoiceEmail | None:
        item = self._get(crm_key(ref), f"EMAIL#{system}")
        if item is None:
            return None
        return InvoiceEmail(
            ref=ref,
            system=system,
            state=str(item["state"]),  # type: ignore[arg-type]
            invoice_id=str(item.get("invoice_id", "")),
            updated_at=datetime.fromisoformat(str(item["updated_at"])) if item.get("updated_at") else None,
        )

    def put_invoice_email(self, email: InvoiceEmail) -> None:
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": crm_key(email.ref),
                    "SK": f"EMAIL#{email.system}",
                    "type": "invoice_email",
                    "state": email.state,
                    "invoice_id": email.invoice_id,
                    "updated_at": _iso(email.updated_at or datetime.now(UTC)),
                }
            ),
        )

    # -- leases ------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, seconds: int) -> bool:
        now = time.time()
        try:
            self._client.put_item(
                TableName=self.table,
                Item=self._item(
                    {
                        "PK": f"LEASE#{name}",
                        "SK": "LEASE",
                        "type": "lease",
                        "owner": owner,
                        "lease_until": int((now + seconds) * 1000),
                        "expires_at": int(now + seconds + LEASE_SWEEP_SECONDS),
                    }
                ),
                ConditionExpression="attribute_not_exists(PK) OR lease_until < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=self._item({":now": int(now * 1000), ":owner": owner}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, name: str, owner: str) -> None:
        try:
            self._client.delete_item(
                TableName=self.table,
                Key=self._item({"PK": f"LEASE#{name}", "SK": "LEASE"}),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=self._item({":owner": owner}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    # -- webhook deliveries (replay protection) -----------------------------------------------------

    def claim_delivery(self, sender: str, digest: str, ttl_seconds: int) -> bool:
        """Record a webhook delivery for ``ttl_seconds``; False when it is already recorded and not expired.

        Uses PutItem only (and DeleteItem in ``release_delivery``): the webhook functions' role allows no more.
        """
        now = int(time.time())
        try:
            self._client.put_item(
                TableName=self.table,
                Item=self._delivery_item(sender, digest, now, ttl_seconds),
                ConditionExpression="attribute_not_exists(PK) OR expires_at < :now",
                ExpressionAttributeValues=self._item({":now": now}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def remember_delivery(self, sender: str, digest: str, ttl_seconds: int) -> None:
        """Keep delivery ``digest`` recorded for ``ttl_seconds`` from now (its messages are queued)."""
        now = int(time.time())
        self._client.put_item(TableName=self.table, Item=self._delivery_item(sender, digest, now, ttl_seconds))

    def _delivery_item(self, sender: str, digest: str, now: int, ttl_seconds: int) -> dict[str, Any]:
        return self._item(
            {
                "PK": delivery_key(sender, digest),
                "SK": "DELIVERY",
                "type": "delivery",
                "received_at": now,
                "expires_at": now + ttl_seconds,
            }
        )

    def release_delivery(self, sender: str, digest: str) -> None:
        self._client.delete_item(
            TableName=self.table, Key=self._item({"PK": delivery_key(sender, digest), "SK": "DELIVERY"})
        )

    # -- OAuth token state -------------------------------------------------------------------------

    @staticmethod
    def _token_context(connection: str, field_name: str) -> dict[str, str]:
        return {"closeloop": "token", "connection": connection, "field": field_name}

    def _token_fields(self, connection: str, state: TokenState) -> dict[str, str]:
        values = {"access_token": state.access_token, "refresh_token": state.refresh_token}
        if self._cipher is None:
            return values
        return {
            f"{name}_enc": self._cipher.encrypt(value, self._token_context(connection, name))
            for name, value in values.items()
        }

    def _read_token_field(self, connection: str, item: dict[str, Any], name: str) -> str:
        if f"{name}_enc" in item:
            if self._cipher is None:
                raise ConfigurationError(f"the token state of {connection} is encrypted and TOKEN_KEY_ID is not set")
            return self._cipher.decrypt(str(item[f"{name}_enc"]), self._token_context(connection, name))
        return str(item.get(name, ""))  # written before encryption: re-written encrypted on the next put

    def get_token(self, connection: str) -> TokenState | None:
        item = self._get(f"CONN#{connection}", "TOKEN")
        if item is None:
            return None
        return TokenState(
            access_token=self._read_token_field(connection, item, "access_token"),
            access_expires_at=float(item.get("access_expires_at", 0)),
            refresh_token=self._read_token_field(connection, item, "refresh_token"),
            version=int(item.get("version", 0)),
            known_refresh_hashes=tuple(json.loads(str(item.get("known_refresh_hashes", "[]")))),
            refreshed_at=float(item.get("refreshed_at", 0)),
        )

    def token_metadata(self, connection: str) -> TokenState | None:
        """The token state without its tokens (empty strings): for health reports, needs no key."""
        item = self._get(f"CONN#{connection}", "TOKEN")
        if item is None:
            return None
        return TokenState(
            access_token="",
            access_expires_at=float(item.get("access_expires_at", 0)),
            refresh_token="",
            version=int(item.get("version", 0)),
            refreshed_at=float(item.get("refreshed_at", 0)),
        )

    def put_token(self, connection: str, state: TokenState) -> None:
        """Store ``state`` if the stored version is still ``state.version - 1`` (or none exists)."""
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": f"CONN#{connection}",
                    "SK": "TOKEN",
                    "type": "token",
                    **self._token_fields(connection, state),
                    "access_expires_at": str(state.access_expires_at),
                    "version": state.version,
                    "known_refresh_hashes": json.dumps(list(state.known_refresh_hashes)),
                    "refreshed_at": str(state.refreshed_at),
                }
            ),
            ConditionExpression="attribute_not_exists(PK) OR version = :previous",
            ExpressionAttributeValues=self._item({":previous": state.version - 1}),
        )

    # -- call schedules (closeloop.pacing: every worker's calls to one organisation) ----------------

    def book_call_slots(self, budget: str, count: int, spacing: float, now: float, latest: float) -> Booking:
        """Book ``count`` call slots ``spacing`` s apart on ``budget``'s schedule with one conditional update.

        The item holds ``next_free``, the start of the first unbooked slot. An idle schedule (``next_free``
        passed) starts at ``now``; a busy one books from ``next_free`` on if that is not after ``latest``,
        else books nothing and answers when it is next free. Which case applies is guessed from the last
        answer, so a steady stream costs one write per booking.
        """
        span = Decimal(str(round(count * spacing, 6)))
        for _ in range(4):  # each miss means another worker moved the schedule in between: rare
            busy = self._busy_schedules.get(budget, False)
            booking, next_free = (
                self._book_busy(budget, span, now, latest) if busy else self._book_idle(budget, span, now)
            )
            if booking is not None:
                return booking
            if next_free is not None and next_free > latest:
                self._busy_schedules[budget] = True
                return Booking(booked=False, at=next_free)
            self._busy_schedules[budget] = next_free is not None and next_free > now
        return Booking(booked=False, at=now + float(span))

    def hold_call_slots(self, budget: str, until: float) -> None:
        """Move ``budget``'s next free slot to ``until`` unless it is later already (the vendor said 429)."""
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._item({"PK": f"PACE#{budget}", "SK": "PACE"}),
                UpdateExpression="SET next_free = :until, expires_at = :expires",
                ConditionExpression="attribute_not_exists(next_free) OR next_free < :until",
                ExpressionAttributeValues=self._item(
                    {":until": Decimal(str(round(until, 6))), ":expires": int(time.time()) + LEASE_SWEEP_SECONDS}
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        self._busy_schedules[budget] = True

    def _book_idle(self, budget: str, span: Decimal, now: float) -> tuple[Booking | None, float | None]:
        at = Decimal(str(round(now, 6)))
        found = self._update_schedule(
            budget,
            "SET next_free = :next, expires_at = :expires",
            "attribute_not_exists(next_free) OR next_free <= :now",
            {":next": at + span, ":now": at},
        )
        if found is None:
            return Booking(booked=True, at=float(at)), None
        return None, found

    def _book_busy(self, budget: str, span: Decimal, now: float, latest: float) -> tuple[Booking | None, float | None]:
        values = {":span": span, ":now": Decimal(str(round(now, 6))), ":latest": Decimal(str(round(latest, 6)))}
        try:
            response = self._client.update_item(
                TableName=self.table,
                Key=self._item({"PK": f"PACE#{budget}", "SK": "PACE"}),
                UpdateExpression="SET next_free = next_free + :span, expires_at = :expires",
                ConditionExpression="next_free > :now AND next_free <= :latest",
                ExpressionAttributeValues=self._item({**values, ":expires": int(time.time()) + LEASE_SWEEP_SECONDS}),
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return None, self._next_free(exc)
        booked_until = float(self._plain(response["Attributes"])["next_free"])
        return Booking(booked=True, at=booked_until - float(span)), None

    def _update_schedule(self, budget: str, update: str, condition: str, values: dict[str, Any]) -> float | None:
        """Apply a conditional update to a schedule; ``None`` when done, else the ``next_free`` it holds."""
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._item({"PK": f"PACE#{budget}", "SK": "PACE"}),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=self._item({**values, ":expires": int(time.time()) + LEASE_SWEEP_SECONDS}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._next_free(exc)
        return None

    def _next_free(self, exc: ClientError) -> float:
        response: dict[str, Any] = dict(exc.response)
        item: dict[str, Any] = response.get("Item") or {}  # ReturnValuesOnConditionCheckFailure=ALL_OLD
        return float(self._plain(item)["next_free"]) if "next_free" in item else 0.0

    # -- watermarks --------------------------------------------------------------------------------

    def get_watermark(self, name: str) -> datetime | None:
        item = self._get(f"WATERMARK#{name}", "WATERMARK")
        return datetime.fromisoformat(str(item["value"])) if item else None

    def put_watermark(self, name: str, value: datetime) -> None:
        self._client.put_item(
            TableName=self.table,
            Item=self._item({"PK": f"WATERMARK#{name}", "SK": "WATERMARK", "type": "watermark", "value": _iso(value)}),
        )

    # -- checkpoints of long operations (backfill) ------------------------------------------------

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        item = self._get(f"CHECKPOINT#{name}", "CHECKPOINT")
        return json.loads(str(item["data"])) if item else None

    def put_checkpoint(self, name: str, data: dict[str, Any]) -> None:
        self._client.put_item(
            TableName=self.table,
            Item=self._item(
                {
                    "PK": f"CHECKPOINT#{name}",
                    "SK": "CHECKPOINT",
                    "type": "checkpoint",
                    "data": json.dumps(data, sort_keys=True, default=str),
                    "updated_at": _iso(datetime.now(UTC)),
                }
            ),
        )

    def delete_checkpoint(self, name: str) -> None:
        self._client.delete_item(TableName=self.table, Key=self._item({"PK": f"CHECKPOINT#{name}", "SK": "CHECKPOINT"}))

    # -- review list (uncertain matches) ---------------------------------------------------------

    def put_review(self, item: ReviewItem) -> None:
        """Record an uncertain match; an existing decision for the same pair is kept (never re-asked)."""
        try:
            self._client.put_item(
                TableName=self.table,
                Item=self._item(self._review_item(item)),
                ConditionExpression="attribute_not_exists(PK) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=self._item({":pending": "pending"}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _review_item(self, item: ReviewItem) -> dict[str, Any]:
        at = item.decided_at or item.created_at
        return {
            "PK": crm_key(item.ref),
            "SK": f"REVIEW#{item.system}",
            "GSI1PK": f"REVIEW#{item.system}",
            "GSI1SK": f"{item.status}#{_iso(at)}",
            "type": "review",
            "candidate_id": item.candidate_id,
            "score": Decimal(str(round(item.score, 4))),
            "reasons": json.dumps(list(item.reasons)),
            "crm_name": item.crm_name,
            "candidate_name": item.candidate_name,
            "created_at": _iso(item.created_at),
            "status": item.status,
            "decided_by": item.decided_by,
            "decided_at": _iso(item.decided_at) if item.decided_at else "",
        }

    def get_review(self, ref: CrmRef, system: str) -> ReviewItem | None:
        item = self._get(crm_key(ref), f"REVIEW#{system}")
        return self._review(item) if item else None

    def list_reviews(self, system: str, status: ReviewStatus = "pending") -> list[ReviewItem]:
        items: list[ReviewItem] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :status)",
            "ExpressionAttributeValues": self._item({":pk": f"REVIEW#{system}", ":status": f"{status}#"}),
        }
        while True:
            response = self._client.query(**kwargs)
            items.extend(self._review(self._plain(i)) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def decide_review(self, ref: CrmRef, system: str, status: ReviewStatus, who: str) -> ReviewItem:
        """Accept or reject a pending item (NotFound-like KeyError when there is none pending)."""
        current = self.get_review(ref, system)
        if current is None or current.status != "pending":
            raise KeyError(f"no pending review for {ref}")
        decided = replace(current, status=status, decided_by=who, decided_at=datetime.now(UTC))
        self._client.put_item(TableName=self.table, Item=self._item(self._review_item(decided)))
        return decided

    @staticmethod
    def _review(item: dict[str, Any]) -> ReviewItem:
        decided = str(item.get("decided_at") or "")
        return ReviewItem(
            ref=ref_from_key(str(item["PK"])),
            system=str(item["SK"]).removeprefix("REVIEW#"),
            candidate_id=str(item["candidate_id"]),
            score=float(item["score"]),
            reasons=tuple(json.loads(str(item.get("reasons", "[]")))),
            crm_name=str(item.get("crm_name", "")),
            candidate_name=str(item.get("candidate_name", "")),
            created_at=datetime.fromisoformat(str(item["created_at"])),
            status=str(item["status"]),  # type: ignore[arg-type]
            decided_by=str(item.get("decided_by", "")),
            decided_at=datetime.fromisoformat(decided) if decided else None,
        )

    # -- invoices per customer (the financial summary, and due dates to watch) ----------------------

    def put_customer_invoice(self, system: str, invoice: Invoice, *, open_: bool) -> None:
        """Remember an invoice's latest amounts under its customer; ``open_`` ones are indexed by due date."""
        values: dict[str, Any] = {
            "PK": f"ACC#{system}#customer#{invoice.customer_id}",
            "SK": f"INV#{invoice.id}",
            "type": "customer_invoice",
            "invoice_id": invoice.id,
            "number": invoice.number,
            "status": invoice.status,
            "currency": invoice.currency,
            "total": invoice.total,
            "amount_due": invoice.amount_due,
            "amount_paid": invoice.amount_paid,
            "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
            "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
            "last_payment_date": invoice.last_payment_date.isoformat() if invoice.last_payment_date else None,
        }
        if open_ and invoice.due_date:
            values["GSI1PK"] = f"DUE#{system}"
            values["GSI1SK"] = f"{invoice.due_date.isoformat()}#{invoice.id}"
        self._client.put_item(TableName=self.table, Item=self._item(values))

    def list_customer_invoices(self, system: str, customer_id: str) -> list[Invoice]:
        items = self._query_prefix(f"ACC#{system}#customer#{customer_id}", "INV#")
        return [self._invoice(customer_id, i) for i in items]

    def list_open_invoices_due(self, system: str, due_from: date, due_to: date) -> list[Invoice]:
        """Open invoices whose due date is in [due_from, due_to] (they turn overdue without changing)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk AND GSI1SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": self._item(
                {":pk": f"DUE#{system}", ":lo": due_from.isoformat(), ":hi": f"{due_to.isoformat()}#~"}
            ),
        }
        while True:
            response = self._client.query(**kwargs)
            items.extend(self._plain(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return [self._invoice(str(i["PK"]).rsplit("#", 1)[-1], i) for i in items]

    @staticmethod
    def _invoice(customer_id: str, item: dict[str, Any]) -> Invoice:
        def day(key: str) -> date | None:
            return date.fromisoformat(str(item[key])) if item.get(key) else None

        return Invoice(
            id=str(item["invoice_id"]),
            number=str(item.get("number", "")),
            status=str(item.get("status", "DRAFT")),
            customer_id=customer_id,
            currency=str(item.get("currency", "")),
            total=Decimal(str(item.get("total", "0"))),
            amount_due=Decimal(str(item.get("amount_due", "0"))),
            amount_paid=Decimal(str(item.get("amount_paid", "0"))),
            issue_date=day("issue_date"),
            due_date=day("due_date"),
            last_payment_date=day("last_payment_date"),
        )

    # -- listings for reports ----------------------------------------------------------------------

    def iter_mappings(self, crm: str, object_type: str) -> list[IdMapping]:
        """Every stored mapping of one CRM object type (a paged scan: for monthly reports, not hot paths)."""
        found: list[IdMapping] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(PK, :pk) AND begins_with(SK, :sk)",
            "ExpressionAttributeValues": self._item({":pk": f"CRM#{crm}#{object_type}#", ":sk": "MAP#"}),
        }
        while True:
            response = self._client.scan(**kwargs)
            for raw in response.get("Items", []):
                item = self._plain(raw)
                found.append(
                    IdMapping(
                        ref=ref_from_key(str(item["PK"])),
                        system=str(item["SK"]).split("#", 1)[1],
                        accounting_id=str(item["accounting_id"]),
                        snapshot=json.loads(str(item.get("snapshot", "{}"))),
                        updated_at=datetime.fromisoformat(str(item["updated_at"])) if item.get("updated_at") else None,
                    )
                )
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
