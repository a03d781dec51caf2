"""Operations commands: ``closeloop replay``, ``closeloop status`` and ``closeloop audit``.

    closeloop replay [--queue NAME] [--dry-run]
        Move dead-lettered messages back to the queue they failed on (ContactDLQ -> ContactQueue, found
        from the work queues' RedrivePolicy). ``--dry-run`` lists what would move and changes nothing.
    closeloop status [--json]
        Queue and DLQ depths, the payment poller's watermark, the most recent failed syncs and the health
        of the accounting connection's token (expiry, refresh time, version; never the token).
    closeloop audit ID [--type company|contact|deal] [--crm hubspot] [--show-values]
        One CRM record's history: its mapping, every audit record with before/after per field, its failed
        sync. Values are printed for the operator who asked; nothing here logs them.

Every command works on a ``Deployment``: the stack's resources by logical id, read from CloudFormation
(``list_stack_resources`` and ``describe_stacks``), with clients for the stack's AWS endpoint. One
resolution serves both targets, which differ only in where CloudFormation is and what the stack is called:
- ``--stack-name NAME``: a deployed stack, through the default AWS credential chain and region;
- otherwise the running ``closeloop dev`` (or the stack in ``AWS_ENDPOINT_URL``), found through
  ``closeloop_local.cli_support.attached_stack()``; its endpoint holds a CloudFormation stack of the same
  data resources.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from closeloop.models import CrmRef, ObjectType
from closeloop.ports import AuditRecord, FailedSync, IdMapping
from closeloop.store import DynamoStore
from closeloop_local.cli_support import CliError, attached_stack, table

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from closeloop_local.stack import LocalStack

#: The template's contract: the table every pipeline writes, and the parameters naming the providers.
SYNC_TABLE_ID = "SyncTable"
CRM_PARAMETER, DEFAULT_CRM = "CrmProvider", "hubspot"
ACCOUNTING_PARAMETER, DEFAULT_ACCOUNTING = "AccountingProvider", "xero"
QUEUE_TYPE = "AWS::SQS::Queue"
SECRET_TYPE = "AWS::SecretsManager::Secret"

RECEIVE_BATCH = 10  # SQS's maximum per ReceiveMessage / SendMessageBatch / DeleteMessageBatch
REPLAY_VISIBILITY_SECONDS = 60
EMPTY_READS_TO_STOP = 2
PROGRESS_EVERY = 100
FAILED_SYNCS_SHOWN = 10
OBJECT_TYPES: tuple[ObjectType, ...] = ("company", "contact", "deal")
_DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


class DeploymentError(Exception):
    """The stack or one of its resources cannot be used as asked (printed without a traceback)."""


# ------------------------------------------------------------------------------------- deployment


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    type: str
    physical_id: str


class Deployment:
    """A Closeloop stack's resources by logical id, with clients for the endpoint that serves them."""

    def __init__(
        self,
        stack_name: str,
        resources: Mapping[str, StackResource],
        parameters: Mapping[str, str],
        session: boto3.session.Session,
        endpoint_url: str | None = None,
    ) -> None:
        self.stack_name = stack_name
        self.resources = dict(resources)
        self.parameters = dict(parameters)
        self.endpoint_url = endpoint_url
        self._session = session
        self._sqs: SQSClient | None = None
        self._dynamodb: DynamoDBClient | None = None
        self._secretsmanager: SecretsManagerClient | None = None
        self._queue_urls: dict[str, str] = {}

    @classmethod
    def from_cloudformation(
        cls, stack_name: str, *, session: boto3.session.Session | None = None, endpoint_url: str | None = None
    ) -> Deployment:
        """Read the stack's resources and parameters. Raises DeploymentError when the stack cannot be read."""
        try:
            session = session or boto3.session.Session()
            cloudformation: CloudFormationClient = session.client("cloudformation", endpoint_url=endpoint_url)
        except BotoCoreError as exc:  # no region, unknown profile
            raise DeploymentError(f"cannot use the AWS configuration for stack {stack_name!r}: {exc}") from exc
        try:
            # list_stack_resources pages; describe_stack_resources stops at 100 resources.
            summaries = [
                summary
                for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
                for summary in page["StackResourceSummaries"]
            ]
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            raise DeploymentError(f"cannot read stack {stack_name!r}: {_aws_message(exc)}") from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable
            raise DeploymentError(f"cannot reach CloudFormation for stack {stack_name!r}: {exc}") from exc
        finally:
            cloudformation.close()
        resources = {
            s["LogicalResourceId"]: StackResource(s["LogicalResourceId"], s["ResourceType"], s["PhysicalResourceId"])
            for s in summaries
            if s.get("PhysicalResourceId") and not str(s.get("ResourceStatus", "")).startswith("DELETE")
        }
        parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stacks[0].get("Parameters") or [])}
        return cls(stack_name, resources, parameters, session, endpoint_url)

    @classmethod
    def from_local(cls, stack: LocalStack) -> Deployment:
        """The stack a ``LocalStack`` started or attached to, read back the same way as a deployed one."""
        session = boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
            aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
            region_name=stack.region,
        )
        deployment = cls.from_cloudformation(stack.stack_name, session=session, endpoint_url=stack.endpoint_url)
        # moto's CloudFormation skips AWS::SecretsManager::Secret: the local stack creates the template's
        # secrets itself (``LocalStack._create_secrets``) and holds their ARNs with its resources.
        for logical_id, physical_id in stack.resources.items():
            if logical_id not in deployment.resources and ":secretsmanager:" in physical_id:
                deployment.resources[logical_id] = StackResource(logical_id, SECRET_TYPE, physical_id)
        return deployment

    def close(self) -> None:
        for client in (self._sqs, self._dynamodb, self._secretsmanager):
            if client is not None:
                client.close()
        self._sqs = self._dynamodb = None
        self._secretsmanager = None

    # -- what the commands use

    @property
    def crm(self) -> str:
        return self.parameters.get(CRM_PARAMETER) or DEFAULT_CRM

    @property
    def accounting(self) -> str:
        return self.parameters.get(ACCOUNTING_PARAMETER) or DEFAULT_ACCOUNTING

    @property
    def sqs(self) -> SQSClient:
        if self._sqs is None:
            self._sqs = self._session.client("sqs", endpoint_url=self.endpoint_url)
        return self._sqs

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        if self._secretsmanager is None:
            self._secretsmanager = self._session.client("secretsmanager", endpoint_url=self.endpoint_url)
        return self._secretsmanager

    def secret_arn(self, logical_id: str) -> str:
        """The ARN of the stack's secret ``logical_id``. Raises DeploymentError when the stack has none."""
        return self._physical_id(logical_id)

    def store(self) -> DynamoStore:
        if self._dynamodb is None:
            self._dynamodb = self._session.client("dynamodb", endpoint_url=self.endpoint_url)
        return DynamoStore(self._physical_id(SYNC_TABLE_ID), self._dynamodb)

    def queues(self) -> list[str]:
        """The logical ids of the stack's SQS queues."""
        return sorted(r.logical_id for r in self.resources.values() if r.type == QUEUE_TYPE)

    def queue_url(self, logical_id: str) -> str:
        """The queue's URL as this endpoint serves it (a local endpoint's physical ids name AWS's host)."""
        if logical_id not in self._queue_urls:
            name = self._physical_id(logical_id).rstrip("/").rsplit("/", 1)[-1]
            self._queue_urls[logical_id] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return self._queue_urls[logical_id]

    def queue_attributes(self) -> dict[str, dict[str, str]]:
        """Every queue's attributes (depths, ARN, RedrivePolicy), by logical id."""
        return {
            logical_id: {
                str(name): value
                for name, value in self.sqs.get_queue_attributes(
                    QueueUrl=self.queue_url(logical_id), AttributeNames=["All"]
                )["Attributes"].items()
            }
            for logical_id in self.queues()
        }

    def dead_letter_sources(self) -> dict[str, str]:
        """DLQ logical id -> the work queue whose RedrivePolicy sends it there."""
        return dead_letter_sources(self.queue_attributes())

    def _physical_id(self, logical_id: str) -> str:
        try:
            return self.resources[logical_id].physical_id
        except KeyError:
            raise DeploymentError(f"stack {self.stack_name} has no resource {logical_id}") from None


def dead_letter_sources(attributes: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """DLQ -> source queue from queues' attributes. A DLQ shared by several queues is refused: replay could
    not tell where each message came from."""
    by_arn = {values.get("QueueArn"): logical_id for logical_id, values in attributes.items()}
    sources: dict[str, list[str]] = {}
    for logical_id, values in attributes.items():
        policy = values.get("RedrivePolicy")
        if not policy:
            continue
        target = by_arn.get(json.loads(policy).get("deadLetterTargetArn"))
        if target is not None:
            sources.setdefault(target, []).append(logical_id)
    shared = {dlq: names for dlq, names in sources.items() if len(names) > 1}
    if shared:
        dlq, names = next(iter(shared.items()))
        raise DeploymentError(f"{dlq} is the dead-letter queue of {', '.join(sorted(names))}: replay needs one source")
    return {dlq: names[0] for dlq, names in sorted(sources.items())}


@contextmanager
def open_deployment(stack_name: str | None = None, region: str | None = None) -> Iterator[Deployment]:
    """The deployed stack ``stack_name`` (default AWS credentials), or else the running ``closeloop dev``."""
    if stack_name:
        deployment = Deployment.from_cloudformation(stack_name, session=_default_session(stack_name, region))
        try:
            yield deployment
        finally:
            deployment.close()
        return
    stack = attached_stack()
    try:
        deployment = Deployment.from_local(stack)
        try:
            yield deployment
        finally:
            deployment.close()
    finally:
        stack.stop()


def _default_session(stack_name: str, region: str | None) -> boto3.session.Session:
    try:
        return boto3.session.Session(region_name=region)
    except BotoCoreError as exc:  # an unknown AWS_PROFILE
        raise DeploymentError(f"cannot use the AWS configuration for stack {stack_name!r}: {exc}") from exc


def _aws_message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")


# ------------------------------------------------------------------------------------------ replay


@dataclass
class Move:
    """What one replay did (or, in a dry run, would do) for one DLQ."""

    dead_letter_queue: str
    source_queue: str
    dry_run: bool
    message_ids: list[str] = field(default_factory=list)
    failed: int = 0  # refused by the source queue: left in the DLQ
    undeleted: int = 0  # sent, but the DLQ kept its copy (it will be sent again by the next replay)

    @property
    def moved(self) -> int:
        return len(self.message_ids)

    def summary(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        line = f"{verb} {self.moved} message(s) from {self.dead_letter_queue} to {self.source_queue}"
        if self.failed:
            line += f"; {self.failed} refused by {self.source_queue}, left in {self.dead_letter_queue}"
        if self.undeleted:
            line += f"; {self.undeleted} sent but not deleted from {self.dead_letter_queue}"
        return line


class _Progress:
    """A line on ``stream`` every ``every`` messages, with the rate so far."""

    def __init__(self, label: str, stream: TextIO, every: int = PROGRESS_EVERY) -> None:
        self.label = label
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.next_at = every

    def update(self, count: int) -> None:
        if count < self.next_at:
            return
        rate = count / max(time.monotonic() - self.started, 1e-6)
        print(f"{self.label}: {count} message(s), {rate:.1f}/s", file=self.stream, flush=True)
        while self.next_at <= count:
            self.next_at += self.every


def replay(
    deployment: Deployment,
    queue: str | None = None,
    *,
    dry_run: bool = False,
    out: TextIO | None = None,
    progress: TextIO | None = None,
    wait_seconds: int = 1,
) -> list[Move]:
    """Redrive dead-lettered messages to their source queue: every DLQ that has one, or only ``queue``
    (a DLQ's or its work queue's logical id). A message leaves the DLQ only after its source queue took it.
    Raises DeploymentError for a queue that is no DLQ of a work queue."""
    out = out or sys.stdout
    moves: list[Move] = []
    for dlq, source in _replay_pairs(deployment, queue):
        move = Move(dlq, source, dry_run)
        if dry_run:
            print(f"{dlq} -> {source} (dry run: nothing moves)", file=out)
        _move(
            deployment.sqs,
            deployment.queue_url(dlq),
            deployment.queue_url(source),
            move,
            out=out,
            progress=_Progress(f"replay {dlq} -> {source}", progress or sys.stderr),
            wait_seconds=wait_seconds,
        )
        print(move.summary(), file=out, flush=True)
        moves.append(move)
    return moves


def _replay_pairs(deployment: Deployment, queue: str | None) -> list[tuple[str, str]]:
    sources = deployment.dead_letter_sources()
    if queue is None:
        if not sources:
            raise DeploymentError(f"no queue of stack {deployment.stack_name} has a dead-letter queue")
        return sorted(sources.items())
    if queue in sources:
        return [(queue, sources[queue])]
    dead_letter_queue_of = {source: dlq for dlq, source in sources.items()}
    if queue in dead_letter_queue_of:
        return [(dead_letter_queue_of[queue], queue)]
    choices = ", ".join(f"{dlq} (or {source})" for dlq, source in sorted(sources.items())) or "none"
    if queue in deployment.queues():
        raise DeploymentError(f"{queue} is neither a work queue's DLQ nor a work queue with one; replayable: {choices}")
    raise DeploymentError(f"no queue {queue!r} in stack {deployment.stack_name}; replayable: {choices}")


def _move(
    sqs: SQSClient,
    dlq_url: str,
    source_url: str,
    move: Move,
    *,
    out: TextIO,
    progress: _Progress,
    wait_seconds: int,
) -> None:
    # A dry run holds what it has listed (so each receive brings new messages) and lets it all go at the end.
    held: dict[str, str] = {}
    done: set[str] = set()  # moved already: a copy whose delete failed is not sent twice in one run
    empty_reads = 0
    try:
        while empty_reads < EMPTY_READS_TO_STOP:
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=RECEIVE_BATCH,
                VisibilityTimeout=REPLAY_VISIBILITY_SECONDS,
                WaitTimeSeconds=wait_seconds,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in held and m["MessageId"] not in done]
            if not fresh:
                empty_reads += 1
                held.update((m["MessageId"], m["ReceiptHandle"]) for m in messages if m["MessageId"] in held)
                continue
            empty_reads = 0
            if move.dry_run:
                for message in fresh:
                    print(f"  {message['MessageId']}  {describe_body(message.get('Body', ''))}", file=out)
                    move.message_ids.append(message["MessageId"])
                held.update((m["MessageId"], m["ReceiptHandle"]) for m in messages)
            else:
                _send_then_delete(sqs, dlq_url, source_url, fresh, move)
                done.update(move.message_ids[len(done) :])
            progress.update(move.moved)
    finally:
        _release(sqs, dlq_url, list(held.values()))


def _send_then_delete(
    sqs: SQSClient, dlq_url: str, source_url: str, messages: Sequence[MessageTypeDef], move: Move
) -> None:
    by_id = {str(index): message for index, message in enumerate(messages)}
    entries: list[Any] = []
    for entry_id, message in by_id.items():
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.get("Body", "")}
        attributes = _message_attributes(message)
        if attributes:
            entry["MessageAttributes"] = attributes
        system = message.get("Attributes", {})
        if "MessageGroupId" in system:  # a FIFO pair keeps its ordering group and deduplication id
            entry["MessageGroupId"] = system["MessageGroupId"]
            if "MessageDeduplicationId" in system:
                entry["MessageDeduplicationId"] = system["MessageDeduplicationId"]
        entries.append(entry)
    response = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
    move.failed += len(response.get("Failed", []))
    sent = [by_id[result["Id"]] for result in response.get("Successful", [])]
    if not sent:
        return
    deleted = sqs.delete_message_batch(
        QueueUrl=dlq_url,
        Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(sent)],
    )
    move.undeleted += len(deleted.get("Failed", []))
    move.message_ids.extend(m["MessageId"] for m in sent)


def _message_attributes(message: MessageTypeDef) -> dict[str, Any]:
    """The message's own attributes in SendMessage's shape (the reserved list values left out)."""
    shaped: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept: dict[str, Any] = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = value["BinaryValue"]
        shaped[name] = kept
    return shaped


def _release(sqs: SQSClient, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Make held messages visible again now rather than when their visibility timeout ends."""
    for start in range(0, len(receipt_handles), RECEIVE_BATCH):
        chunk = receipt_handles[start : start + RECEIVE_BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for index, handle in enumerate(chunk)
            ],
        )


def describe_body(body: str) -> str:
    """A work message's pipeline (or kind) and CRM refs, and nothing else of its body."""
    try:
        message = json.loads(body)
    except ValueError:
        return "(not a work message)"
    if not isinstance(message, dict):
        return "(not a work message)"
    refs: list[str] = []
    for event in message.get("events") or []:
        ref = event.get("ref") if isinstance(event, dict) else None
        parts = [ref.get(key) for key in ("crm", "object_type", "object_id")] if isinstance(ref, dict) else []
        if parts and all(isinstance(part, str | int) for part in parts):
            refs.append("/".join(str(part) for part in parts))
    # A CRM events message says its pipeline; the other kinds say their kind (bodies from before ``kind``: "?").
    label = message.get("pipeline") or message.get("kind")
    return f"{label if isinstance(label, str) else '?'}  {', '.join(dict.fromkeys(refs)) or '(no refs)'}"


# ------------------------------------------------------------------------------------------ status


def status(
    deployment: Deployment, *, as_json: bool = False, out: TextIO | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Print (and return) queue depths, the payment watermark, recent failed syncs and token health."""
    report = status_report(deployment, now or datetime.now(UTC))
    out = out or sys.stdout
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(render_status(report), file=out)
    return report


def status_report(deployment: Deployment, now: datetime) -> dict[str, Any]:
    attributes = deployment.queue_attributes()
    sources = dead_letter_sources(attributes)
    dead_letter_queue_of = {source: dlq for dlq, source in sources.items()}
    store = deployment.store()
    watermark_name = f"payments#{deployment.accounting}"
    watermark = store.get_watermark(watermark_name)
    return {
        "stack": deployment.stack_name,
        "crm": deployment.crm,
        "accounting": deployment.accounting,
        "queues": [
            {
                "queue": logical_id,
                **{key: int(values.get(name, "0")) for key, name in _DEPTHS.items()},
                "dead_letter_queue": dead_letter_queue_of.get(logical_id),
                "source_queue": sources.get(logical_id),
            }
            for logical_id, values in attributes.items()
        ],
        "payment_watermark": {
            "name": watermark_name,
            "value": _iso(watermark),
            "age_seconds": round((now - watermark).total_seconds()) if watermark else None,
        },
        "failed_syncs": [_failed_json(f) for f in store.list_failed_syncs(limit=FAILED_SYNCS_SHOWN)],
        "token": _token_health(store, deployment.accounting, now),
    }


def _token_health(store: DynamoStore, connection: str, now: datetime) -> dict[str, Any]:
    """Expiry, refresh time and version of a connection's token state: never the tokens themselves."""
    state = store.token_metadata(connection)  # the tokens are encrypted, and not needed here
    if state is None:
        return {"connection": connection, "stored": False}
    expires = datetime.fromtimestamp(state.access_expires_at, UTC) if state.access_expires_at else None
    return {
        "connection": connection,
        "stored": True,
        "access_expires_at": _iso(expires),
        "access_expires_in_seconds": round((expires - now).total_seconds()) if expires else None,
        "refreshed_at": _iso(datetime.fromtimestamp(state.refreshed_at, UTC)) if state.refreshed_at else None,
        "version": state.version,
    }


def _failed_json(failure: FailedSync) -> dict[str, Any]:
    return {
        "ref": str(failure.ref),
        "at": _iso(failure.at),
        "error_type": failure.error_type,
        "reason": failure.reason,
        "attempts": failure.attempts,
    }


def render_status(report: Mapping[str, Any]) -> str:
    lines = [f"Closeloop stack {report['stack']} ({report['crm']} -> {report['accounting']})", ""]
    rows = []
    for queue in report["queues"]:
        note = ""
        if queue["source_queue"]:
            note = f"DLQ of {queue['source_queue']}"
            if queue["visible"] or queue["in_flight"]:
                note += f": closeloop replay --queue {queue['queue']}"
        elif queue["dead_letter_queue"]:
            note = f"dead letters -> {queue['dead_letter_queue']}"
        rows.append([queue["queue"], str(queue["visible"]), str(queue["in_flight"]), str(queue["delayed"]), note])
    lines += table(["queue", "visible", "in flight", "delayed", ""], rows, right={1, 2, 3})
    watermark = report["payment_watermark"]
    lines.append("")
    if watermark["value"]:
        when = f"{watermark['value']} ({_ago(watermark['age_seconds'])})"
    else:
        when = "none yet (the poller has not completed a run)"
    lines.append(f"Payment poller watermark ({watermark['name']}): {when}")
    lines.append(_render_token(report["token"]))
    failed = report["failed_syncs"]
    lines.append("")
    lines.append(f"Failed syncs ({len(failed)} most recent, newest first)" if failed else "Failed syncs: none")
    lines += table(
        ["when", "ref", "error", "reason"],
        [[f["at"], f["ref"], f["error_type"], f["reason"]] for f in failed],
    )
    return "\n".join(lines)


def _render_token(token: Mapping[str, Any]) -> str:
    label = f"{token['connection'].capitalize()} token"
    if not token["stored"]:
        return f"{label}: none stored (run `closeloop connect {token['connection']}`)"
    expires_in = token["access_expires_in_seconds"]
    if expires_in is None:
        expiry = "access token expiry unknown"
    elif expires_in >= 0:
        expiry = f"access token expires in {_span(expires_in)} ({token['access_expires_at']})"
    else:
        expiry = f"access token expired {_span(-expires_in)} ago ({token['access_expires_at']}; refreshed on next use)"
    refreshed = token["refreshed_at"] or "never"
    return f"{label}: {expiry}, refreshed at {refreshed}, version {token['version']}"


# ------------------------------------------------------------------------------------------- audit


@dataclass
class RecordHistory:
    """One CRM record as Closeloop knows it."""

    ref: CrmRef
    mapping: IdMapping | None
    audit: list[AuditRecord]
    failed: FailedSync | None


def audit(
    deployment: Deployment,
    object_id: str,
    *,
    object_type: str | None = None,
    crm: str | None = None,
    show_values: bool = False,
    out: TextIO | None = None,
) -> list[RecordHistory]:
    """Print (and return) the history of each record ``object_id`` names: of ``object_type``, or of every
    type that has one. Mapped values are shown only with ``show_values``; before/after always."""
    types = OBJECT_TYPES if object_type is None else tuple(t for t in OBJECT_TYPES if t == object_type)
    if not types:
        raise DeploymentError(f"--type must be one of {', '.join(OBJECT_TYPES)}, got {object_type!r}")
    crm = crm or deployment.crm
    store = deployment.store()
    found: list[RecordHistory] = []
    for kind in types:
        ref = CrmRef(crm=crm, object_type=kind, object_id=object_id)
        history = RecordHistory(
            ref, store.get_mapping(ref, deployment.accounting), store.list_audit(ref), store.get_failed_sync(ref)
        )
        if history.mapping or history.audit or history.failed:
            found.append(history)
    out = out or sys.stdout
    if not found:
        print(f"no record of {crm} {'/'.join(types)} {object_id} in stack {deployment.stack_name}", file=out)
    for index, history in enumerate(found):
        if index:
            print("", file=out)
        print(render_history(history, deployment.accounting, show_values=show_values), file=out)
    return found


def render_history(history: RecordHistory, system: str, *, show_values: bool) -> str:
    lines = [str(history.ref), *_render_mapping(history.mapping, system, show_values=show_values)]
    lines.append(f"  audit trail: {len(history.audit)} record(s)")
    for record in history.audit:
        lines += _render_audit_record(record)
    failure = history.failed
    if failure is None:
        lines.append("  failed sync: none")
    else:
        event = f", event {failure.source_event}" if failure.source_event else ""
        lines.append(
            f"  failed sync: {_iso(failure.at)}  {failure.error_type}: {failure.reason}"
            f"  (attempts {failure.attempts}{event})"
        )
    return "\n".join(lines)


def _render_mapping(mapping: IdMapping | None, system: str, *, show_values: bool) -> list[str]:
    if mapping is None:
        return [f"  mapping: none in {system}"]
    updated = f", updated {_iso(mapping.updated_at)}" if mapping.updated_at else ""
    lines = [f"  mapping: {system} {mapping.accounting_id}{updated}"]
    if show_values:
        lines.append("  last synced values:")
        lines += [f"    {name} = {_value(mapping.snapshot[name])}" for name in sorted(mapping.snapshot)]
    else:
        names = ", ".join(sorted(mapping.snapshot)) or "(none)"
        lines.append(f"  last synced fields: {names}  (values: --show-values)")
    return lines


def _render_audit_record(record: AuditRecord) -> list[str]:
    head = f"    {_iso(record.at)}  {record.action}"
    for label, value in (("by", record.actor), ("event", record.source_event), ("target", record.target_id)):
        if value:
            head += f"  {label} {value}"
    lines = [head]
    if record.detail:
        lines.append(f"      {record.detail}")
    for name, change in sorted(record.changes.items()):
        if isinstance(change, dict) and {"before", "after"} <= set(change):
            lines.append(f"      {name}: {_value(change['before'])} -> {_value(change['after'])}")
        else:
            lines.append(f"      {name}: {_value(change)}")
    return lines


# -------------------------------------------------------------------------------------------- CLI


def main(args: argparse.Namespace) -> int:
    """``closeloop replay|status|audit`` (registered in ``closeloop_local.cli``)."""
    if args.region and not args.stack_name:
        raise CliError("--region goes with --stack-name (closeloop dev has its own region)")
    try:
        with open_deployment(args.stack_name, args.region) as deployment:
            if args.command == "replay":
                moves = replay(deployment, args.queue, dry_run=args.dry_run)
                return 1 if any(m.failed or m.undeleted for m in moves) else 0
            if args.command == "status":
                status(deployment, as_json=args.json)
                return 0
            if args.command == "audit":
                found = audit(
                    deployment, args.object_id, object_type=args.type, crm=args.crm, show_values=args.show_values
                )
                return 0 if found else 1
    except DeploymentError as exc:
        raise CliError(str(exc)) from exc
    except ClientError as exc:
        raise CliError(f"AWS refused {exc.operation_name}: {_aws_message(exc)}") from exc
    except BotoCoreError as exc:
        raise CliError(str(exc)) from exc
    raise CliError(f"unknown operations command {args.command!r}")


# ------------------------------------------------------------------------------------- formatting


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat(timespec="seconds") if at else None


def _span(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes and not days else []
    parts += [f"{seconds}s"] if not days and not hours else []
    return " ".join(parts)


def _ago(seconds: float) -> str:
    return f"{_span(seconds)} ago" if seconds >= 0 else f"{_span(-seconds)} ahead"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
