"""The AWS side of the runtime that is not the DynamoDB repository: SQS work queues, SNS alerts, events and
the KMS cipher the repository encrypts OAuth tokens with."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import boto3

from closeloop.models import Pipeline

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


class SqsQueues:
    """WorkQueues on SQS: one queue URL per pipeline."""

    def __init__(self, urls: Mapping[str, str], client: SQSClient | None = None) -> None:
        self._urls = dict(urls)
        self._client: SQSClient | None = client  # built on first send: a refused webhook builds none

    def send(self, pipeline: Pipeline, body: str, delay_seconds: int = 0) -> None:
        if self._client is None:
            self._client = boto3.client("sqs")
        self._client.send_message(QueueUrl=self._urls[pipeline], MessageBody=body, DelaySeconds=delay_seconds)


class KmsTokenCipher:
    """TokenCipher on a KMS key: Encrypt/Decrypt of the token strings themselves (tokens are well under KMS's
    4 KB plaintext limit, so no data keys). The encryption context binds a ciphertext to its connection and
    field: a token copied to another item does not decrypt."""

    def __init__(self, key_id: str, client: Any = None) -> None:  # a boto3 KMS client (no stubs installed)
        self._key_id = key_id
        self._client = client

    def _kms(self) -> Any:
        if self._client is None:
            self._client = boto3.client("kms")
        return self._client

    def encrypt(self, plaintext: str, context: dict[str, str]) -> str:
        blob = self._kms().encrypt(KeyId=self._key_id, Plaintext=plaintext.encode(), EncryptionContext=context)
        return base64.b64encode(bytes(blob["CiphertextBlob"])).decode()

    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str:
        answer = self._kms().decrypt(
            KeyId=self._key_id, CiphertextBlob=base64.b64decode(ciphertext), EncryptionContext=context
        )
        return bytes(answer["Plaintext"]).decode()


class SnsAlerts:
    """Alerts for people (disconnected accounts, misconfiguration). Messages carry no PII."""

    def __init__(self, topic_arn: str, client: SNSClient | None = None) -> None:
        self._topic_arn = topic_arn
        self._client: SNSClient | None = client

    def alert(self, subject: str, message: str) -> None:
        if not self._topic_arn:
            return
        if self._client is None:
            self._client = boto3.client("sns")
        self._client.publish(TopicArn=self._topic_arn, Subject=subject[:100], Message=message)


class EventBridgeEvents:
    """Publishes Closeloop's events (e.g. ``closeloop.payment-status-changed``) for users to automate on."""

    SOURCE = "closeloop"
    BATCH = 10  # PutEvents takes at most 10 entries

    def __init__(self, bus_name: str = "default", client: EventBridgeClient | None = None) -> None:
        self._bus = bus_name
        self._client: EventBridgeClient | None = client

    def publish(self, detail_type: str, details: Iterable[Mapping[str, Any]]) -> None:
        if self._client is None:
            self._client = boto3.client("events")
        entries = [
            {"Source": self.SOURCE, "DetailType": detail_type, "Detail": json.dumps(d), "EventBusName": self._bus}
            for d in details
        ]
        for start in range(0, len(entries), self.BATCH):
            response = self._client.put_events(Entries=entries[start : start + self.BATCH])  # type: ignore[arg-type]
            if response.get("FailedEntryCount"):
                failed = [e.get("ErrorCode") for e in response.get("Entries", []) if e.get("ErrorCode")]
                raise RuntimeError(f"EventBridge refused {len(failed)} event(s): {sorted(set(map(str, failed)))}")


def dead_letter_counts(queue_urls: Mapping[str, str], client: SQSClient | None = None) -> dict[str, int]:
    """Messages waiting in each dead-letter queue (visible + in flight), by the queue's short name."""
    sqs: SQSClient = client or boto3.client("sqs")
    counts: dict[str, int] = {}
    for name, url in queue_urls.items():
        if not url:
            continue
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        counts[name] = sum(int(attributes.get(k, "0")) for k in attributes)
    return counts
