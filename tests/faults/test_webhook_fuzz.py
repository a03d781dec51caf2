"""Schemathesis fuzzes the webhook API from its OpenAPI document, over the local stack: never a 5xx.

Each generated request goes twice: as generated (mostly unsigned: 401/404), and re-signed with the
app's real secret over its exact bytes, so malformed bodies get past the signature check and meet the
parser (400, 404 or 200 — never a server error).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet

from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.hubspot import signed_batch_headers
from closeloop_local.sandboxes.xero import xero_signature
from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e

schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_webhook_api_fail(case: schemathesis.Case, loop: Loop) -> None:
    # As generated
    response = case.call(base_url=loop.stack.api_url)
    assert response.status_code < 500, response.text
    # Signed as its sender would sign it (each vendor's route is in the document: see VendorSpec.webhook_routes)
    path = case.formatted_path
    url = f"{loop.stack.api_url}{path}"
    if isinstance(case.body, NotSet):
        body = b""
    elif isinstance(case.body, bytes):
        body = case.body
    else:
        body = json.dumps(case.body).encode()
    if path == "/accounting-webhooks/xero":  # the configured accounting system's own route: Xero's signature
        headers = {"x-xero-signature": xero_signature(loop.xero.webhooks.key, body)}
    else:
        headers = signed_batch_headers(loop.hubspot.client_secret, url, body, int(time.time() * 1000), "v3")
    headers["Content-Type"] = "application/json"
    signed = httpx.post(url, content=body, headers=headers, timeout=30)
    assert signed.status_code < 500, signed.text
    assert signed.status_code in (200, 400, 404), signed.text
