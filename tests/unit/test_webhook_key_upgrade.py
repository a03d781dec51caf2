"""What `closeloop upgrade webhook-keys` copies, decided without AWS: `plan_webhook_key_copy` and its output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import webhook_api
from closeloop.credentials import API_KEYS, WEBHOOK_KEYS
from closeloop_local.upgrade import UpgradeError, parse_secret_document, plan_webhook_key_copy, render_plan

EVENTS = Path(__file__).resolve().parents[2] / "events"
#: A credentials secret as a release with one secret left it: API credentials and webhook keys together.
OLD_LAYOUT = {
    "HUBSPOT_ACCESS_TOKEN": "value-of-access-token",
    "HUBSPOT_CLIENT_SECRET": "value-of-client-secret",
    "XERO_REFRESH_TOKEN": "value-of-refresh-token",
    "XERO_WEBHOOK_KEY": "value-of-webhook-key",
    "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN": "",
    "PIPEDRIVE_WEBHOOK_USER": "",
}


def test_each_webhook_key_with_a_value_is_copied_and_nothing_else() -> None:
    # Given the old layout and an empty webhook keys secret
    # When the copy is planned
    plan = plan_webhook_key_copy(OLD_LAYOUT, {})
    # Then the two webhook keys with a value are copied, in the order of WEBHOOK_KEYS, and no API credential
    assert plan.copy == ("HUBSPOT_CLIENT_SECRET", "XERO_WEBHOOK_KEY")
    assert plan.webhook_document == {
        "HUBSPOT_CLIENT_SECRET": "value-of-client-secret",
        "XERO_WEBHOOK_KEY": "value-of-webhook-key",
    }
    assert not set(plan.webhook_document) & set(API_KEYS)
    # And the webhook keys without a value anywhere (stored empty, or missing) are reported as unset
    assert set(plan.unset) == set(WEBHOOK_KEYS) - set(plan.copy)
    assert plan.present == plan.conflicts == ()


def test_a_value_already_in_the_webhook_keys_secret_is_never_replaced() -> None:
    # Given a webhook keys secret holding the same HubSpot secret, another Xero key, an empty SugarCRM token
    # (unset, as closeloop.credentials reads it) and a Pipedrive path secret set there only
    webhook_keys = {
        "HUBSPOT_CLIENT_SECRET": "value-of-client-secret",
        "XERO_WEBHOOK_KEY": "value-of-another-webhook-key",
        "SUGARCRM_WEBHOOK_TOKEN": "",
        "PIPEDRIVE_WEBHOOK_PATH_SECRET": "value-of-path-secret",
    }
    credentials = {**OLD_LAYOUT, "SUGARCRM_WEBHOOK_TOKEN": "value-of-sugarcrm-token"}
    # When the copy is planned
    plan = plan_webhook_key_copy(credentials, webhook_keys)
    # Then only the empty one is filled; the same value is present, the different one a conflict
    assert plan.copy == ("SUGARCRM_WEBHOOK_TOKEN",)
    assert plan.present == ("HUBSPOT_CLIENT_SECRET", "PIPEDRIVE_WEBHOOK_PATH_SECRET")
    assert plan.conflicts == ("XERO_WEBHOOK_KEY",)
    # And the document to write keeps every value it held
    assert plan.webhook_document == {**webhook_keys, "SUGARCRM_WEBHOOK_TOKEN": "value-of-sugarcrm-token"}


def test_the_plan_applied_once_leaves_nothing_to_do() -> None:
    # Given a copy planned and applied
    first = plan_webhook_key_copy(OLD_LAYOUT, {"UNRELATED": "kept"})
    # When it is planned again against the written document
    again = plan_webhook_key_copy(OLD_LAYOUT, first.webhook_document)
    # Then there is nothing to copy, and nothing conflicts
    assert again.copy == again.conflicts == ()
    assert again.present == first.copy
    assert again.webhook_document == first.webhook_document
    assert first.webhook_document["UNRELATED"] == "kept"


def test_the_plan_and_its_rendering_never_show_a_value() -> None:
    # Given a plan with a copy, a present key and a conflict
    plan = plan_webhook_key_copy(OLD_LAYOUT, {"HUBSPOT_CLIENT_SECRET": "value-of-other-client-secret"})
    # When it is printed (as a dataclass and as the command's lines, dry run or not)
    text = repr(plan) + "\n".join(render_plan(plan, dry_run=True) + render_plan(plan, dry_run=False))
    # Then key names appear and no value does
    assert "XERO_WEBHOOK_KEY" in text
    assert "conflict    HUBSPOT_CLIENT_SECRET" in text
    assert "value-of" not in text


def test_a_secret_that_is_not_a_json_object_stops_the_upgrade_without_quoting_it() -> None:
    # Given secret values that closeloop.credentials could not read as keys
    for text in ("value-of-a-plain-string", '["value-of-a-list"]'):
        # Then parsing refuses them, naming the secret only
        with pytest.raises(UpgradeError, match="CredentialsSecret") as caught:
            parse_secret_document(text, "CredentialsSecret")
        assert "value-of" not in str(caught.value)
    # And an empty value is an empty object, as the template creates the secrets
    assert parse_secret_document("", "WebhookKeysSecret") == parse_secret_document("{}", "WebhookKeysSecret") == {}


class _Context:
    function_name = "ContactWebhookFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ContactWebhookFunction"
    aws_request_id = "request-1"


def test_a_503_for_a_missing_webhook_key_logs_the_command_that_copies_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a HubSpot delivery to a receiver whose HUBSPOT_CLIENT_SECRET is not set
    for key in ("HUBSPOT_CLIENT_SECRET", "CREDENTIALS_SECRET_ID", "WEBHOOK_KEYS_SECRET_ID", "WEBHOOK_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRM_PROVIDER", "hubspot")
    monkeypatch.setenv("CONTACT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/contacts")
    monkeypatch.setenv("DEAL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deals")
    monkeypatch.setenv("SYNC_TABLE", "closeloop-sync")  # where replays are remembered (never reached here)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    event = json.loads((EVENTS / "webhook_contacts_v3.json").read_text())
    event["headers"]["x-hubspot-request-timestamp"] = str(int(time.time() * 1000))
    # When the webhook API answers it
    response = webhook_api.app.resolve(event, cast(LambdaContext, _Context()))
    # Then it is a 503, and the error logged names the command that copies the keys of an upgraded stack
    assert response["statusCode"] == 503
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook receiver misconfigured"]
    assert "HUBSPOT_CLIENT_SECRET" in record.__dict__["error"]
    assert "closeloop upgrade webhook-keys" in record.__dict__["fix"]
    # And the sender is told nothing about it
    assert "closeloop" not in response["body"]
