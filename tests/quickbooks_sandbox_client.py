"""An HTTP client of a started QuickBooks sandbox with a valid access token (``Qbo``), and answer readers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import DEFAULT_REALM_ID, DEFAULT_REFRESH_TOKEN, QuickBooksSandbox

CLIENT = ("sandbox-qbo-client-id", "sandbox-qbo-client-secret")
BASE = f"/v3/company/{DEFAULT_REALM_ID}"


class Qbo:
    """A started sandbox with an HTTP client and a valid access token."""

    def __init__(self, sandbox: QuickBooksSandbox, server: SandboxServer) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(base_url=server.url, timeout=5.0)
        self.token = ""

    def refresh(self, token: str, auth: tuple[str, str] = CLIENT) -> httpx.Response:
        return self.http.post(
            "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": token}, auth=auth
        )

    def login(self) -> Qbo:
        reply = self.refresh(DEFAULT_REFRESH_TOKEN)
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["access_token"]
        return self

    def call(self, method: str, tail: str, body: Any = None, **params: str) -> httpx.Response:
        return self.http.request(
            method,
            f"{BASE}/{tail}",
            params={"minorversion": "75", **params},
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def query(self, statement: str) -> httpx.Response:
        return self.call("GET", "query", query=statement)


def exact(response: httpx.Response) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return payload


def code_of(response: httpx.Response) -> str:
    return str(response.json()["Fault"]["Error"][0]["code"])
