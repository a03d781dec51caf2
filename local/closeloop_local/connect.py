"""``closeloop connect xero``: the OAuth2 authorization-code flow with a localhost callback.

Opens Xero's consent page, receives the code on ``http://localhost:PORT/callback``, exchanges it for a
token set, lists the connected organisations (tenants), and stores the refresh token and tenant id in the
stack's credentials secret (merging into its JSON). Tokens are never printed unless asked for with
``--print-env`` (for a purely local setup without a secret).

Register ``http://localhost:PORT/callback`` as a redirect URI of your Xero app first.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx

SCOPES = (
    "openid profile email offline_access "
    "accounting.contacts accounting.transactions accounting.settings.read accounting.reports.read"
)


@dataclass
class _Callback:
    expected_state: str
    done: threading.Event = field(default_factory=threading.Event)
    code: str = ""
    error: str = ""


def _callback_server(port: int, callback: _Callback) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            if parsed.path != "/callback":
                self.send_error(404)
                return
            query = dict(urllib.parse.parse_qsl(parsed.query))
            if query.get("state") != callback.expected_state:
                callback.error = "the state parameter did not match: possible CSRF, try again"
            elif "error" in query:
                callback.error = f"Xero said {query['error']}"
            else:
                callback.code = query.get("code", "")
            ok = bool(callback.code)
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            message = "Closeloop is connected to Xero. You can close this tab." if ok else callback.error
            self.wfile.write(f"<html><body><p>{message}</p></body></html>".encode())
            callback.done.set()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

    return HTTPServer(("127.0.0.1", port), Handler)


def authorize_url(login_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": state,
        }
    )
    return f"{login_url.rstrip('/')}/identity/connect/authorize?{query}"


def exchange_code(identity_url: str, client_id: str, client_secret: str, code: str, redirect_uri: str) -> Any:
    response = httpx.post(
        f"{identity_url.rstrip('/')}/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        auth=(client_id, client_secret),
        timeout=30,
    )
    if response.status_code != 200:
        raise SystemExit(f"token exchange failed ({response.status_code}): {response.text[:200]}")
    return response.json()


def list_tenants(api_url: str, access_token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{api_url.rstrip('/')}/connections",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=30,
    )
    response.raise_for_status()
    return list(response.json())


def store_in_secret(secret_id: str, values: Mapping[str, str]) -> None:
    """Merge ``values`` into the stack's credentials secret (other keys kept; a key absent before is added).

    Webhook verification keys belong in the webhook keys secret, which the webhook functions read: refused
    here (ValueError, before any call) so none lands where no function looks for it.
    """
    from closeloop.credentials import WEBHOOK_KEYS  # noqa: PLC0415

    misplaced = sorted(set(values) & set(WEBHOOK_KEYS))
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} belong in the webhook keys secret (WebhookKeysSecretArn)")
    import boto3  # noqa: PLC0415

    client = boto3.client("secretsmanager")
    current = json.loads(client.get_secret_value(SecretId=secret_id).get("SecretString") or "{}")
    current.update(values)
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(current))


def run_flow(
    *,
    client_id: str,
    client_secret: str,
    port: int,
    login_url: str,
    identity_url: str,
    api_url: str,
    open_browser: bool = True,
    timeout: float = 300.0,
    tenant: str = "",
    out: Any = sys.stdout,
) -> dict[str, str]:
    """Run the flow; return the credential values to store (refresh token, tenant id)."""
    callback = _Callback(expected_state=secrets.token_urlsafe(16))
    server = _callback_server(port, callback)
    redirect_uri = f"http://localhost:{server.server_port}/callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = authorize_url(login_url, client_id, redirect_uri, callback.expected_state)
        print(f"Open this URL to connect Xero (waiting on {redirect_uri}):\n  {url}", file=out)
        if open_browser:
            webbrowser.open(url)
        if not callback.done.wait(timeout):
            raise SystemExit("no answer from Xero's consent page in time")
    finally:
        server.shutdown()
        server.server_close()
    if callback.error:
        raise SystemExit(callback.error)
    tokens = exchange_code(identity_url, client_id, client_secret, callback.code, redirect_uri)
    tenants = list_tenants(api_url, tokens["access_token"])
    if not tenants:
        raise SystemExit("the Xero user connected no organisation")
    chosen = next((t for t in tenants if tenant in (t.get("tenantId"), t.get("tenantName"))), None) if tenant else None
    chosen = chosen or tenants[0]
    for t in tenants:
        mark = "*" if t is chosen else " "
        print(f" {mark} {t.get('tenantName')} ({t.get('tenantId')})", file=out)
    return {"XERO_REFRESH_TOKEN": str(tokens["refresh_token"]), "XERO_TENANT_ID": str(chosen["tenantId"])}


def main(args: argparse.Namespace) -> int:
    if getattr(args, "system", "xero") != "xero":
        print("only `closeloop connect xero` exists in this version", file=sys.stderr)
        return 2
    env = os.environ
    secret_id = getattr(args, "secret_id", None) or env.get("CREDENTIALS_SECRET_ID", "")
    client_id = env.get("XERO_CLIENT_ID", "")
    client_secret = env.get("XERO_CLIENT_SECRET", "")
    if secret_id and not (client_id and client_secret):
        import boto3  # noqa: PLC0415

        stored = json.loads(
            boto3.client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
        )
        client_id = client_id or stored.get("XERO_CLIENT_ID", "")
        client_secret = client_secret or stored.get("XERO_CLIENT_SECRET", "")
    if not (client_id and client_secret):
        print("set XERO_CLIENT_ID and XERO_CLIENT_SECRET (environment or the stack's secret)", file=sys.stderr)
        return 2
    if not secret_id and not getattr(args, "print_env", False):
        print("name the stack's secret with --secret-id (or $CREDENTIALS_SECRET_ID), or --print-env", file=sys.stderr)
        return 2
    values = run_flow(
        client_id=client_id,
        client_secret=client_secret,
        port=getattr(args, "port", 8765),
        login_url=env.get("XERO_LOGIN_URL", "https://login.xero.com"),
        identity_url=env.get("XERO_IDENTITY_URL", "https://identity.xero.com"),
        api_url=env.get("XERO_API_URL", "https://api.xero.com"),
        open_browser=not getattr(args, "no_browser", False),
        tenant=getattr(args, "tenant", "") or "",
    )
    if secret_id:
        store_in_secret(secret_id, {"XERO_CLIENT_ID": client_id, "XERO_CLIENT_SECRET": client_secret, **values})
        print(f"Stored the Xero refresh token and tenant id in {secret_id}.")
    if getattr(args, "print_env", False):
        for key, value in values.items():
            print(f"export {key}={value}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``closeloop connect`` (the CLI may call this to register them)."""
    parser.add_argument("--secret-id", help="the stack's credentials secret (default: $CREDENTIALS_SECRET_ID)")
    parser.add_argument("--tenant", help="organisation name or tenant id when the user connects several")
    parser.add_argument("--no-browser", action="store_true", help="print the consent URL only")
    parser.add_argument("--print-env", action="store_true", help="print export lines (local use without a secret)")
