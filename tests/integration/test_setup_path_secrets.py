"""`closeloop setup pipedrive|sugarcrm` makes the webhook URL secret: long, random, in the webhook keys secret."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from closeloop.credentials import Credentials
from closeloop.wire import MIN_PATH_SECRET_LENGTH
from closeloop_local.setup import PATH_SECRETS, ensure_path_secret


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key in PATH_SECRETS.values():
        monkeypatch.delenv(key, raising=False)
    with mock_aws():
        client = boto3.client("secretsmanager")
        client.create_secret(Name="creds", SecretString="{}")
        client.create_secret(Name="hooks", SecretString=json.dumps({"PIPEDRIVE_WEBHOOK_PATH_SECRET": "short"}))
        yield client


@pytest.mark.parametrize("system", sorted(PATH_SECRETS))
def test_setup_makes_a_long_random_url_secret_once_and_keeps_it(secrets_manager: object, system: str) -> None:
    key = PATH_SECRETS[system]
    client = boto3.client("secretsmanager")
    # Given a stack whose webhook keys secret holds no usable URL secret (none, or a short one)
    creds = Credentials({}, "creds", max_age=0, webhook_secret_id="hooks")
    # When setup runs twice
    first, made = ensure_path_secret(creds, key)
    again, made_again = ensure_path_secret(Credentials({}, "creds", max_age=0, webhook_secret_id="hooks"), key)
    # Then one secret of at least 32 random characters was made, stored in the webhook keys secret only, and kept
    assert made and not made_again and first == again
    assert len(first) >= MIN_PATH_SECRET_LENGTH
    assert json.loads(client.get_secret_value(SecretId="hooks")["SecretString"])[key] == first
    assert key not in json.loads(client.get_secret_value(SecretId="creds")["SecretString"])
    # And another stack gets another secret
    client.put_secret_value(SecretId="hooks", SecretString="{}")
    other, _ = ensure_path_secret(Credentials({}, "creds", max_age=0, webhook_secret_id="hooks"), key)
    assert other != first


def test_setup_refuses_to_go_on_with_a_short_secret_it_cannot_replace(secrets_manager: object) -> None:
    # Given a short URL secret set in the environment (which wins over the secret and cannot be written)
    creds = Credentials({"SUGARCRM_WEBHOOK_TOKEN": "too-short"}, "creds", max_age=0, webhook_secret_id="hooks")
    # Then setup stops and says what to do, without printing the short value
    with pytest.raises(SystemExit, match="at least 32") as caught:
        ensure_path_secret(creds, "SUGARCRM_WEBHOOK_TOKEN")
    assert "too-short" not in str(caught.value)
