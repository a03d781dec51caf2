"""events/ is the single source of sample events: up to date, and accepted by the real handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop_local import events
from tests.stack_fixtures import Loop, loop  # noqa: F401 - the module-scoped fixture


def test_event_files_match_their_generator(tmp_path: Path) -> None:
    # Given the generator writes the samples afresh
    events.write(tmp_path)
    # Then the committed files are exactly what it writes (regenerate with python -m closeloop_local.events)
    for path in sorted(tmp_path.iterdir()):
        assert json.loads(path.read_text()) == events.load(path.name), path.name


@pytest.fixture
def resigned_for_the_stack(loop: Loop) -> Iterator[dict[str, object]]:  # noqa: F811
    event = events.load("webhook_contacts_v3.json")
    # The sample was signed for its sample host; the local stack's domain and secret sign it here.
    yield events.resign(event, secret=loop.hubspot.client_secret)


def test_v3_sample_webhook_is_accepted_and_split_by_pipeline(
    loop: Loop,  # noqa: F811
    resigned_for_the_stack: dict[str, object],
) -> None:
    response = loop.stack.invoke("ContactWebhookFunction", resigned_for_the_stack)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"accepted": {"contacts": 3}, "ignored": 0}


def test_v1_sample_webhook_stays_valid_without_a_clock(loop: Loop) -> None:  # noqa: F811
    response = loop.stack.invoke("ContactWebhookFunction", events.load("webhook_contacts_v1.json"))
    assert response["statusCode"] == 200


def test_deals_route_accepts_a_mixed_batch_and_routes_each_event(loop: Loop) -> None:  # noqa: F811
    event = events.resign(events.load("webhook_deals_v3.json"), secret=loop.hubspot.client_secret)
    response = loop.stack.invoke("DealWebhookFunction", event)
    assert json.loads(response["body"]) == {"accepted": {"deals": 1, "contacts": 1}, "ignored": 0}


def test_sqs_sample_is_processed_by_the_worker(loop: Loop) -> None:  # noqa: F811
    # The sample's company does not exist in this HubSpot: the worker skips it and reports success
    loop.stack.drain(timeout=30)  # (earlier tests queued the same objects: let the stack's own worker finish)
    response = loop.stack.invoke("ContactWorkerFunction", events.load("sqs_contact_work.json"))
    assert response == {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("function", "sample"),
    [("payment_poller", "schedule_payment_poller.json"), ("reconcile", "schedule_reconcile.json")],
)
def test_scheduled_functions_say_they_are_not_in_this_version(loop: Loop, function: str, sample: str) -> None:  # noqa: F811
    with pytest.raises(NotImplementedError, match="not available in this version"):
        loop.stack.invoke(function, events.load(sample))
