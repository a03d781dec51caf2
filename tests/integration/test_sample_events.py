"""events/ is the single source of sample events: up to date, and accepted by the real handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop_local import events
from tests.stack_fixtures import Loop


def test_event_files_match_their_generator(tmp_path: Path) -> None:
    # Given the generator writes the samples afresh
    events.write(tmp_path)
    # Then the committed files are exactly what it writes (regenerate with python -m closeloop_local.events)
    for path in sorted(tmp_path.iterdir()):
        assert json.loads(path.read_text()) == events.load(path.name), path.name


@pytest.fixture
def resigned_for_the_stack(loop: Loop) -> Iterator[dict[str, object]]:
    event = events.load("webhook_contacts_v3.json")
    # The sample was signed for its sample host; the local stack's domain and secret sign it here.
    yield events.resign(event, secret=loop.hubspot.client_secret)


def test_v3_sample_webhook_is_accepted_and_split_by_pipeline(
    loop: Loop,
    resigned_for_the_stack: dict[str, object],
) -> None:
    response = loop.stack.invoke("ContactWebhookFunction", resigned_for_the_stack)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"accepted": {"contacts": 3}, "ignored": 0}


def test_v1_sample_webhook_is_refused_below_the_default_signature_minimum(loop: Loop) -> None:
    # v1 signatures carry no timestamp, so a captured delivery replays forever: HUBSPOT_SIGNATURE_MIN_VERSION
    # defaults to v3 (the sample still verifies when a stack opts in to v1: tests/unit/test_hubspot_webhooks.py)
    response = loop.stack.invoke("ContactWebhookFunction", events.load("webhook_contacts_v1.json"))
    assert response["statusCode"] == 401
    assert "below the configured minimum" in json.loads(response["body"])["message"]


def test_deals_route_accepts_a_mixed_batch_and_routes_each_event(loop: Loop) -> None:
    event = events.resign(events.load("webhook_deals_v3.json"), secret=loop.hubspot.client_secret)
    response = loop.stack.invoke("DealWebhookFunction", event)
    assert json.loads(response["body"]) == {"accepted": {"deals": 1, "contacts": 1}, "ignored": 0}


def test_sqs_sample_is_processed_by_the_worker(loop: Loop) -> None:
    # The sample's company does not exist in this HubSpot: the worker skips it and reports success
    loop.stack.drain(timeout=30)  # (earlier tests queued the same objects: let the stack's own worker finish)
    response = loop.stack.invoke("ContactWorkerFunction", events.load("sqs_contact_work.json"))
    assert response == {"batchItemFailures": []}


def test_sqs_deal_sample_is_processed_by_the_deals_worker(loop: Loop) -> None:
    # The sample's deal does not exist in this HubSpot: skipped, and the batch succeeds
    response = loop.stack.invoke("DealWorkerFunction", events.load("sqs_deal_work.json"))
    assert response == {"batchItemFailures": []}


def test_reconcile_sample_reports_the_month_just_ended(loop: Loop) -> None:
    result = loop.stack.invoke("reconcile", events.load("schedule_reconcile.json"))
    assert result["keys"][0].startswith(f"reports/{result['month']}/")
    assert result["url"].startswith(loop.stack.endpoint_url)


def test_payment_poller_sample_runs_a_poll(loop: Loop) -> None:
    result = loop.stack.invoke("payment_poller", events.load("schedule_payment_poller.json"))
    assert {"changed_invoices", "deals_updated", "customers_updated", "status_changes"} <= set(result)
