"""A webhook answered 503 for missing configuration is counted, so the stack's alarm reaches a person."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import webhook_api

EVENTS = Path(__file__).resolve().parents[2] / "events"


class _Context:
    function_name = "ContactWebhookFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ContactWebhookFunction"
    aws_request_id = "request-1"


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The embedded-metric-format documents among printed lines."""
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """HubSpot as the CRM, queues named, but no webhook key anywhere (no secret, nothing in the env)."""
    for key in ("HUBSPOT_CLIENT_SECRET", "CREDENTIALS_SECRET_ID", "WEBHOOK_KEYS_SECRET_ID", "WEBHOOK_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRM_PROVIDER", "hubspot")
    monkeypatch.setenv("CONTACT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/contacts")
    monkeypatch.setenv("DEAL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deals")


@pytest.mark.usefixtures("unconfigured")
def test_a_missing_webhook_key_answers_503_and_counts_the_metric(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a HubSpot delivery to an API whose HUBSPOT_CLIENT_SECRET is not set
    event = json.loads((EVENTS / "webhook_contacts_v3.json").read_text())
    # (fresh, so that the key is the first thing missing: a stale v3 timestamp is refused before any key is read)
    event["headers"]["x-hubspot-request-timestamp"] = str(int(time.time() * 1000))
    capsys.readouterr()
    # When the webhook API handles it
    response = webhook_api.app.resolve(event, cast(LambdaContext, _Context()))
    # Then the sender is told to retry
    assert response["statusCode"] == 503
    # And one WebhookMisconfigured count is emitted for this API, in the namespace the alarm watches
    (document,) = emf_lines(capsys.readouterr().out)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == webhook_api.METRICS_NAMESPACE == "Closeloop"
    assert [m["Name"] for m in directive["Metrics"]] == [webhook_api.MISCONFIGURED_METRIC]
    assert document[webhook_api.MISCONFIGURED_METRIC] in (1, [1])
    (dimensions,) = directive["Dimensions"]
    assert set(dimensions) == {"ApiId", "service"}
    assert document["ApiId"] == event["requestContext"]["apiId"]


@pytest.mark.usefixtures("unconfigured")
def test_a_rejected_signature_is_not_counted_as_misconfiguration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a configured receiver (key and queues) and a delivery signed with another key
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "not-the-signing-secret")
    monkeypatch.setenv("CONTACT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/contacts")
    monkeypatch.setenv("DEAL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deals")
    monkeypatch.setenv("SYNC_TABLE", "closeloop-sync")  # where replays are remembered (never reached here)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    event = json.loads((EVENTS / "webhook_contacts_v3.json").read_text())
    event["headers"]["x-hubspot-request-timestamp"] = str(int(time.time() * 1000))  # fresh: only the key is wrong
    capsys.readouterr()
    # When the webhook API handles it
    response = webhook_api.app.resolve(event, cast(LambdaContext, _Context()))
    # Then it is the sender's fault (4xx) and no misconfiguration is counted
    assert 400 <= response["statusCode"] < 500
    assert not emf_lines(capsys.readouterr().out)
