"""The AWS side of the runtime that is not the DynamoDB repository: SQS work queues and SNS alerts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3

from closeloop.models import Pipeline

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


class SqsQueues:
    """WorkQueues on SQS: one queue URL per pipeline."""

    def __init__(self, urls: Mapping[str, str], client: SQSClient | None = None) -> None:
        self._urls = dict(urls)
        self._client: SQSClient = client or boto3.client("sqs")

    def send(self, pipeline: Pipeline, body: str) -> None:
        self._client.send_message(QueueUrl=self._urls[pipeline], MessageBody=body)


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
