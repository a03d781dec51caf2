"""A webhook path secret (Pipedrive, SugarCRM) never reaches a log, even with Powertools' debug mode on."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from closeloop import runtime, webhook_api

SECRET = "path-secret-Zq8v2Lw0Xy7RkT4mN1pB6cJ9dF3hG5sA"


@pytest.fixture
def debug_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Given Powertools' debug mode on: the resolver prints every event (what POWERTOOLS_DEV switches on when
    # the resolver is built) and its own logger logs route arguments at DEBUG
    monkeypatch.setattr(webhook_api.app, "_debug", True)
    logging.getLogger("aws_lambda_powertools").setLevel(logging.DEBUG)
    monkeypatch.setenv("CRM_PROVIDER", "sugarcrm")
    monkeypatch.setenv("SUGARCRM_URL", "https://sugar.example.test")
    monkeypatch.setenv("SUGARCRM_WEBHOOK_TOKEN", SECRET)
    monkeypatch.setenv("SYNC_TABLE", "sync")
    monkeypatch.setenv("CONTACT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/contacts")
    monkeypatch.setenv("DEAL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deals")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    runtime.reset()
    with mock_aws():  # nothing is queued or remembered for a module we do not sync; no AWS call escapes
        yield importlib.import_module("functions.on_contact.app")
    runtime.reset()


def event(secret: str) -> dict[str, Any]:
    path = f"/webhooks/sugarcrm/contacts/{secret}"
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{crm}/contacts/{secret}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "hooks.example.test"},
        "requestContext": {
            "domainName": "hooks.example.test",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "stage": "$default",
        },
        "pathParameters": {"crm": "sugarcrm", "secret": secret},
        "body": json.dumps({"bean": "Notes", "event": "after_save", "data": {"id": "n1"}}),
        "isBase64Encoded": False,
    }


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "webhook", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:webhook"


@pytest.mark.parametrize("secret", [SECRET, "wrong-" + SECRET])
def test_the_path_secret_is_in_no_log_even_in_debug_mode(
    debug_app: Any, secret: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # When SugarCRM calls the route with the right secret, or someone with a wrong one
    response = debug_app.webhook_handler(event(secret), Context())
    # Then the right one is accepted (a module we do not sync: nothing queued) and the wrong one refused
    assert response["statusCode"] == (200 if secret == SECRET else 401)
    # And the debug output (stdout, stderr and every log record) never holds the secret
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "webhooks/sugarcrm/contacts" in logged  # debug mode did print the event
    assert SECRET not in logged
