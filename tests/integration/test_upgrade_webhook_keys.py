"""`closeloop upgrade webhook-keys` on a stack upgraded from a release that kept every key in one secret.

Release N is this template as it was before the split (no WebhookKeysSecret: every function, the webhook
functions included, reads CredentialsSecret); credentials are stored through ``closeloop.credentials`` as that
release stored them. Release N+1 (this template) is deployed over it into the same moto endpoint, as in
``test_secret_upgrade.py``: CredentialsSecret keeps its values and WebhookKeysSecret is new and empty. The
upgrade then runs against that stack, found the way the operations commands find it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from closeloop import runtime
from closeloop.credentials import API_KEYS, CREDENTIAL_KEYS
from closeloop_local import ops, upgrade
from closeloop_local.stack import SHARED_STACK_NAME, LocalStack, _start_embedded_moto, load_template
from tests.stack_fixtures import project

ROOT = Path(__file__).resolve().parents[2]
#: What the one-secret release held: API credentials and webhook keys together (values are recognisable, so
#: a test can tell that none of them was printed).
STORED = {
    "XERO_REFRESH_TOKEN": "value-of-xero-refresh-token",
    "XERO_TENANT_ID": "value-of-xero-tenant",
    "HUBSPOT_ACCESS_TOKEN": "value-of-hubspot-access-token",
    "HUBSPOT_CLIENT_SECRET": "value-of-hubspot-client-secret",
    "XERO_WEBHOOK_KEY": "value-of-xero-webhook-key",
}
COPIED = ("HUBSPOT_CLIENT_SECRET", "XERO_WEBHOOK_KEY")
#: Xero's intent-to-receive delivery: a signed batch with no events, answered 200 when the key verifies it.
XERO_CHECK = json.dumps({"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "ABCDEFGH"})


def one_secret_release(template: dict[str, Any]) -> dict[str, Any]:
    """This template as released before the split: no WebhookKeysSecret, everything in CredentialsSecret."""
    released: dict[str, Any] = json.loads(
        json.dumps(template).replace('{"Ref": "WebhookKeysSecret"}', '{"Ref": "CredentialsSecret"}')
    )
    del released["Resources"]["WebhookKeysSecret"]
    del released["Outputs"]["WebhookKeysSecretArn"]
    del released["Globals"]["Function"]["Environment"]["Variables"]["WEBHOOK_KEYS_SECRET_ID"]
    return released


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack after the upgrade: release N with ``STORED`` in its one secret, then this template over it."""
    with pytest.MonkeyPatch.context() as env:
        for key in CREDENTIAL_KEYS:
            env.delenv(key, raising=False)  # values come from the secrets, not a developer's shell
        server = _start_embedded_moto("127.0.0.1")
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        tmp_path = tmp_path_factory.mktemp("webhook-keys-upgrade")
        try:
            release_n = one_secret_release(load_template(ROOT / "template.yaml"))
            with LocalStack(
                project(tmp_path, "release-n", release_n), port=0, endpoint_url=endpoint, stack_name=SHARED_STACK_NAME
            ) as old:
                assert "WebhookKeysSecret" not in old.resources
                runtime.reset()
                credentials = runtime.credentials()
                for key, value in STORED.items():
                    assert credentials.put(key, value), key
            overrides = {"CREDENTIALS_MAX_AGE_SECONDS": "0"}  # the functions see each write at once
            with LocalStack(
                project(tmp_path, "release-n+1", load_template(ROOT / "template.yaml")),
                port=0,
                endpoint_url=endpoint,
                stack_name=SHARED_STACK_NAME,
                env_overrides=overrides,
            ) as stack:
                runtime.reset()
                yield stack
        finally:
            runtime.reset()
            server.stop()


@pytest.fixture
def deployment(upgraded: LocalStack) -> Iterator[ops.Deployment]:
    """The upgraded stack as the operations commands find it, reset to just after the upgrade."""
    deployment = ops.Deployment.from_local(upgraded)
    client = deployment.secretsmanager
    client.put_secret_value(SecretId=deployment.secret_arn("CredentialsSecret"), SecretString=json.dumps(STORED))
    client.put_secret_value(SecretId=deployment.secret_arn("WebhookKeysSecret"), SecretString="{}")
    yield deployment
    deployment.close()


def secret(deployment: ops.Deployment, logical_id: str, stage: str = "AWSCURRENT") -> tuple[dict[str, Any], str]:
    """A secret's JSON object and version id."""
    answer = deployment.secretsmanager.get_secret_value(SecretId=deployment.secret_arn(logical_id), VersionStage=stage)
    return json.loads(answer["SecretString"]), answer["VersionId"]


def xero_check(stack: LocalStack) -> int:
    """Xero's intent-to-receive delivery, signed with the stack's stored key, to the stack's webhook route."""
    signature = hmac.new(STORED["XERO_WEBHOOK_KEY"].encode(), XERO_CHECK.encode(), hashlib.sha256).digest()
    answer = httpx.post(
        f"{stack.api_url}/accounting-webhooks/xero",
        content=XERO_CHECK,
        headers={"content-type": "application/json", "x-xero-signature": base64.b64encode(signature).decode()},
        timeout=30,
    )
    return answer.status_code


def assert_no_value_in(text: str) -> None:
    for value in STORED.values():
        assert value not in text


def test_the_upgrade_copies_the_webhook_keys_so_the_webhooks_verify_again(
    upgraded: LocalStack, deployment: ops.Deployment
) -> None:
    # Given the upgraded stack: its webhook functions read only the new, empty WebhookKeysSecret
    credentials_before = secret(deployment, "CredentialsSecret")
    runtime.reset()
    assert runtime.credentials().get_optional("XERO_WEBHOOK_KEY", "") == ""
    assert xero_check(upgraded) == 503  # misconfigured: the sender retries
    # When the webhook keys are upgraded
    out = io.StringIO()
    plan = upgrade.upgrade_webhook_keys(deployment, out=out)
    # Then the two webhook keys with a value were copied, and no API credential
    assert plan.copy == COPIED
    hooks, version = secret(deployment, "WebhookKeysSecret")
    assert hooks == {key: STORED[key] for key in COPIED}
    assert not set(hooks) & set(API_KEYS)
    # And CredentialsSecret is exactly as it was (same value, same version: not even rewritten)
    assert secret(deployment, "CredentialsSecret") == credentials_before
    # And the version replaced is still readable as AWSPREVIOUS
    assert secret(deployment, "WebhookKeysSecret", "AWSPREVIOUS")[0] == {}
    # And the output names the keys, never a value
    text = out.getvalue()
    for key in COPIED:
        assert f"  copy  {key}" in text
    assert f"copied 2 key(s) into WebhookKeysSecret (version {version};" in text
    assert_no_value_in(text)
    # And a webhook function reading through closeloop.credentials now finds its key and verifies the delivery
    runtime.reset()
    assert runtime.credentials().get("XERO_WEBHOOK_KEY") == STORED["XERO_WEBHOOK_KEY"]
    assert xero_check(upgraded) == 200


def test_a_second_run_has_nothing_to_do(deployment: ops.Deployment) -> None:
    # Given the keys upgraded once
    upgrade.upgrade_webhook_keys(deployment, out=io.StringIO())
    after_first = secret(deployment, "WebhookKeysSecret")
    # When the upgrade runs again
    out = io.StringIO()
    plan = upgrade.upgrade_webhook_keys(deployment, out=out)
    # Then nothing is copied and no version is written
    assert plan.copy == plan.conflicts == ()
    assert plan.present == COPIED
    assert secret(deployment, "WebhookKeysSecret") == after_first
    assert out.getvalue().splitlines()[-1] == (
        "nothing to copy; CredentialsSecret and WebhookKeysSecret were not changed"
    )


def test_a_dry_run_lists_the_keys_and_changes_nothing(deployment: ops.Deployment) -> None:
    # Given the upgraded stack
    before = {logical_id: secret(deployment, logical_id) for logical_id in ("CredentialsSecret", "WebhookKeysSecret")}
    # When the upgrade runs with --dry-run
    out = io.StringIO()
    plan = upgrade.upgrade_webhook_keys(deployment, dry_run=True, out=out)
    # Then it says what it would copy, by name, and neither secret changed
    assert plan.copy == COPIED
    text = out.getvalue()
    for key in COPIED:
        assert f"  would copy  {key}" in text
    assert text.splitlines()[-1] == "would copy 2 key(s) into WebhookKeysSecret; nothing changed (--dry-run)"
    assert_no_value_in(text)
    assert {logical_id: secret(deployment, logical_id) for logical_id in before} == before


def test_the_cli_keeps_a_differing_key_reports_the_conflict_and_exits_1(
    upgraded: LocalStack, deployment: ops.Deployment, tmp_path: Path
) -> None:
    # Given a webhook keys secret that already holds another HubSpot client secret (set by hand after the
    # upgrade) but no Xero key
    arn = deployment.secret_arn("WebhookKeysSecret")
    deployment.secretsmanager.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"HUBSPOT_CLIENT_SECRET": "value-of-the-new-client-secret"})
    )
    # When `closeloop upgrade webhook-keys` runs from the project (it finds the stack as `closeloop status`
    # does: the endpoint in AWS_ENDPOINT_URL, the shared stack name), twice
    for name in ("template.yaml", "functions", "layers"):
        (tmp_path / name).symlink_to(ROOT / name)
    assert os.environ["AWS_ENDPOINT_URL"] == upgraded.endpoint_url

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "closeloop_local.cli", "upgrade", "webhook-keys"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    first, second = run(), run()
    # Then the Xero key is copied, the differing HubSpot secret is kept and reported, and the exit code is 1
    assert first.returncode == 1, first.stderr
    assert "  copy  XERO_WEBHOOK_KEY" in first.stdout
    assert "  conflict    HUBSPOT_CLIENT_SECRET: WebhookKeysSecret holds a different value; left as is" in first.stdout
    assert secret(deployment, "WebhookKeysSecret")[0] == {
        "HUBSPOT_CLIENT_SECRET": "value-of-the-new-client-secret",
        "XERO_WEBHOOK_KEY": STORED["XERO_WEBHOOK_KEY"],
    }
    # And the second run copies nothing and still reports the conflict
    assert second.returncode == 1, second.stderr
    assert "nothing to copy;" in second.stdout
    assert "  conflict    HUBSPOT_CLIENT_SECRET" in second.stdout
    # And no value reached the output or the logs
    for answer in (first, second):
        assert_no_value_in(answer.stdout + answer.stderr)
        assert "value-of-the-new-client-secret" not in answer.stdout + answer.stderr
