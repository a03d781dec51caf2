"""closeloop connect xero: the authorization-code flow against the Xero sandbox, tokens into the secret."""

from __future__ import annotations

import io
import json
import threading

import boto3
import httpx
import pytest
from moto import mock_aws

from closeloop_local import connect
from closeloop_local.sandboxes.xero import serve


def test_code_flow_stores_refresh_token_and_tenant_in_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    xero, server = serve()
    # The "browser": follows the consent page's redirect to our localhost callback
    monkeypatch.setattr(
        connect.webbrowser,
        "open",
        lambda url: threading.Thread(target=httpx.get, args=(url,), kwargs={"follow_redirects": True}).start(),
    )
    try:
        with mock_aws():
            secrets = boto3.client("secretsmanager", region_name="us-east-1")
            arn = secrets.create_secret(Name="creds", SecretString=json.dumps({"HUBSPOT_ACCESS_TOKEN": "keep"}))["ARN"]
            values = connect.run_flow(
                client_id=xero.client_id,
                client_secret=xero.client_secret,
                port=0,
                login_url=server.url,
                identity_url=server.url,
                api_url=server.url,
                timeout=20,
                out=io.StringIO(),
            )
            connect.store_in_secret(arn, values)
            stored = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
        # Then the secret holds a refresh token Xero accepts, the tenant, and what was there before
        assert stored["XERO_TENANT_ID"] == xero.tenant_id
        assert stored["XERO_REFRESH_TOKEN"] == xero.current_refresh_token
        assert stored["HUBSPOT_ACCESS_TOKEN"] == "keep"
    finally:
        server.stop()


def test_wrong_state_is_refused() -> None:
    callback = connect._Callback(expected_state="expected")
    server = connect._callback_server(0, callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/callback?code=abc&state=forged")
        assert response.status_code == 400
        assert "state" in callback.error
        assert callback.code == ""
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_keys_are_not_stored_in_the_credentials_secret() -> None:
    # Given a webhook verification key among the values to store
    # When they are stored in the credentials secret
    # Then it is refused before any AWS call: the webhook functions read that key from the other secret
    with pytest.raises(ValueError, match="XERO_WEBHOOK_KEY belong in the webhook keys secret"):
        connect.store_in_secret("no-such-secret", {"XERO_REFRESH_TOKEN": "t", "XERO_WEBHOOK_KEY": "k"})
