"""What `closeloop upgrade webhook-keys` copies, decided without AWS: `plan_webhook_key_copy` and its output."""

from __future__ import annotations

import pytest

from closeloop.credentials import API_KEYS, WEBHOOK_KEYS
from closeloop_local.upgrade import UpgradeError, parse_secret_document, plan_webhook_key_copy, render_plan

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
