"""Upgrading the stack never blanks the credentials it holds.

CloudFormation rewrites a secret's value in an update when (and only when) the secret's SecretString or
GenerateSecretString changes. moto's CloudFormation does not implement AWS::SecretsManager::Secret at
all (it skips the type), so the local stack plays the secrets itself with that same rule (see
``LocalStack._create_secrets``). These tests deploy release N of the template, store credentials through
``closeloop.credentials``, deploy release N+1 into the same endpoint and stack, and read them back.
``tests/integration/test_template.py`` pins the other half: the secrets' SecretString is a constant
``{}`` that no release may change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from closeloop import runtime
from closeloop.credentials import CREDENTIAL_KEYS
from closeloop_local.stack import LocalStack, _start_embedded_moto, load_template
from tests.stack_fixtures import project

ROOT = Path(__file__).resolve().parents[2]
STORED = {
    "XERO_REFRESH_TOKEN": "live-refresh-token",
    "XERO_TENANT_ID": "live-tenant",
    "HUBSPOT_ACCESS_TOKEN": "live-access-token",
    "HUBSPOT_CLIENT_SECRET": "live-client-secret",
    "XERO_WEBHOOK_KEY": "live-webhook-key",
}


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """One AWS endpoint that outlives the releases deployed into it."""
    for key in CREDENTIAL_KEYS:
        monkeypatch.delenv(key, raising=False)  # values come from the secrets, not a developer's shell
    server = _start_embedded_moto("127.0.0.1")
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def next_release(template: dict[str, Any]) -> dict[str, Any]:
    """What a release does to the template: a new parameter and a new resource. (A new credential key is a
    change in ``closeloop.credentials`` only; the secrets' SecretString is frozen, see test_template.py.)"""
    released: dict[str, Any] = json.loads(json.dumps(template))
    released["Parameters"]["NewVendorApiUrl"] = {"Type": "String", "Default": "https://api.example.com"}
    released["Resources"]["NewVendorQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"KmsMasterKeyId": "alias/aws/sqs"},
    }
    return released


def release_adding_a_listed_key(template: dict[str, Any]) -> dict[str, Any]:
    """A release as they were made while the credentials secret listed every key: the new key appended."""
    released = next_release(template)
    secret = released["Resources"]["CredentialsSecret"]["Properties"]
    secret["SecretString"] = json.dumps({**json.loads(secret["SecretString"]), "NEWVENDOR_API_TOKEN": ""})
    return released


def upgrade(
    tmp_path: Path,
    endpoint: str,
    release_n: dict[str, Any],
    release: Callable[[dict[str, Any]], dict[str, Any]] = next_release,
) -> dict[str, str]:
    """Deploy ``release_n``, store ``STORED``, deploy ``release(release_n)``; the credentials read back."""
    stack_name = "closeloop-upgrade"
    with LocalStack(project(tmp_path, "release-n", release_n), port=0, endpoint_url=endpoint, stack_name=stack_name):
        runtime.reset()
        credentials = runtime.credentials()
        for key, value in STORED.items():
            assert credentials.put(key, value), key
    released = release(release_n)
    with LocalStack(
        project(tmp_path, "release-n+1", released), port=0, endpoint_url=endpoint, stack_name=stack_name
    ) as upgraded:
        assert "NewVendorQueue" in upgraded.resources  # the update really happened
        runtime.reset()
        credentials = runtime.credentials()
        read: Callable[[str], str] = lambda key: credentials.get_optional(key, "")  # noqa: E731
        return {key: read(key) for key in STORED}


def test_an_upgrade_keeps_every_stored_credential(tmp_path: Path, endpoint: str) -> None:
    # Given the stack deployed from this template, with credentials stored in its secrets
    # When the next release (new parameter, new resource, a new credential key in the code) is deployed over it
    found = upgrade(tmp_path, endpoint, load_template(ROOT / "template.yaml"))
    # Then every stored credential is still there
    assert found == STORED


def test_a_release_changing_the_secret_string_would_blank_them(tmp_path: Path, endpoint: str) -> None:
    # Given the stack deployed from this template, with credentials stored in its secrets
    # When a release appends a new key to the credentials secret's SecretString (how releases added keys)
    found = upgrade(tmp_path, endpoint, load_template(ROOT / "template.yaml"), release_adding_a_listed_key)
    # Then CloudFormation's update rule rewrites that secret: the API credentials stored in it are gone
    # (which is why test_template.py freezes every SecretString)
    assert found["XERO_REFRESH_TOKEN"] == found["HUBSPOT_ACCESS_TOKEN"] == ""
    # And the webhook keys, in their own unchanged secret, survive
    assert found["XERO_WEBHOOK_KEY"] == STORED["XERO_WEBHOOK_KEY"]
