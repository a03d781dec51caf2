"""HubSpot's error bodies read in one place (``read_hubspot_fault`` / ``hubspot_fault``) and mapped by the shared
``typed_error``: the category names the error of a 4xx and of a batch item, the message says why (redacted)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from closeloop.errors import AuthExpired, NotFound, Unavailable, ValidationFailed
from closeloop.vendors.hubspot.adapter import HubSpotCrm


def adapter(status: int, body: dict[str, Any]) -> HubSpotCrm:
    """An adapter whose HubSpot answers every request with ``status`` and ``body``."""
    return HubSpotCrm(
        client_secret="secret",
        access_token="token",
        base_url="https://api.hubspot.test",
        transport=httpx.MockTransport(lambda _: httpx.Response(status, json=body)),
        sleep=lambda _: None,
        portal_id=1,
    )


def test_a_refused_batch_says_hubspots_category_and_message() -> None:
    # Given HubSpot refusing a batch update as invalid, naming an email in its message
    body = {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values not valid: a@b.example"}

    # When deals are updated, Then ValidationFailed carries the category and the message, the email masked
    with pytest.raises(ValidationFailed) as caught:
        adapter(400, body).update_deals({"1": {"dealname": "x"}})
    assert "[VALIDATION_ERROR] Property values not valid: <email>" in str(caught.value)
    assert "a@b.example" not in str(caught.value)


def test_the_category_names_the_error_of_a_4xx_but_not_of_a_5xx_or_an_auth_refusal() -> None:
    # Given a 400 whose category says the object is missing: NotFound, not a validation error
    with pytest.raises(NotFound):
        adapter(400, {"category": "OBJECT_NOT_FOUND", "message": "gone"}).update_deals({"1": {"dealname": "x"}})
    # Given a 503 carrying a category: still Unavailable (retried by the queue)
    with pytest.raises(Unavailable):
        adapter(503, {"category": "VALIDATION_ERROR"}).update_deals({"1": {"dealname": "x"}})
    # Given a 401 carrying a category: still AuthExpired
    with pytest.raises(AuthExpired):
        adapter(401, {"category": "VALIDATION_ERROR"}).update_deals({"1": {"dealname": "x"}})


def test_batch_item_errors_become_typed_errors_with_their_category() -> None:
    # Given a 207 batch answer reporting a rejected value on one item
    body = {"status": "COMPLETE", "results": [], "errors": [{"category": "INVALID_VALUE", "message": "bad stage"}]}

    # When deals are updated, Then ValidationFailed names the category and HubSpot's message
    with pytest.raises(ValidationFailed, match=r"rejected part of a deal batch update: \[INVALID_VALUE\] bad stage"):
        adapter(207, body).update_deals({"1": {"dealstage": "x"}})
