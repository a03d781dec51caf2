"""A revoked Xero connection: messages are kept (parked), not burnt through the DLQ; a person is alerted."""

from __future__ import annotations

import time

import pytest

from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e


def depth(loop: Loop, queue: str) -> int:
    attributes = loop.stack._client("sqs").get_queue_attributes(
        QueueUrl=loop.stack.resources[queue], AttributeNames=["All"]
    )["Attributes"]
    return sum(
        int(attributes[k])
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def test_revoked_refresh_token_parks_messages_and_alerts_instead_of_dead_lettering(loop: Loop) -> None:
    sqs = loop.stack._client("sqs")
    sns = loop.stack._client("sns")
    # (a queue subscribed to the alert topic stands in for the operator's email)
    inbox = sqs.create_queue(QueueName="operator-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=loop.stack.resources["AlertTopic"], Protocol="sqs", Endpoint=inbox_arn)
    # Given someone disconnected the app in Xero: every refresh token is revoked, access tokens expired
    loop.xero.revoke_refresh_tokens()
    loop.xero.expire_access_tokens()
    # When HubSpot delivers a new company and the workers meet the revoked connection several times
    loop.hubspot.create_object("companies", {"name": "Disconnected Ltd"})
    loop.hubspot.flush_webhooks()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        waiting = sqs.get_queue_attributes(
            QueueUrl=loop.stack.resources["ContactQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        if int(waiting["ApproximateNumberOfMessagesDelayed"]) >= 1:
            break
        time.sleep(0.2)
    # Then the message waits in the work queue (delayed), nothing reached the DLQ or Xero
    assert depth(loop, "ContactQueue") == 1
    assert depth(loop, "ContactDLQ") == 0
    assert not [c for c in loop.xero.contacts() if c["Name"] == "Disconnected Ltd"]
    # And the operator was told, once, what to do
    alerts = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(alerts) == 1
    assert "AuthRevoked" in alerts[0]["Body"]
    assert "closeloop connect xero" in alerts[0]["Body"]
    sqs.purge_queue(QueueUrl=loop.stack.resources["ContactQueue"])
