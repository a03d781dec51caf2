"""An HTTP client of a started SugarCRM sandbox, logged in (``Sugar``), and its pytest fixture ``sugar``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.sugarcrm import SugarSandbox, serve

API = "/rest/v11_24"


class Sugar:
    """A started sandbox plus an HTTP client logged in on the ``closeloop`` platform."""

    def __init__(self, sandbox: SugarSandbox, server: SandboxServer) -> None:
        self.sandbox = sandbox
        self.url = server.url
        self.http = httpx.Client(base_url=server.url + API)
        self.token = self.login()["access_token"]

    def login(self, platform: str = "closeloop", password: str | None = None) -> Any:
        body = {"grant_type": "password", "client_id": "sugar", "client_secret": "", "platform": platform,
                "username": self.sandbox.username, "password": password or self.sandbox.password}  # fmt: skip
        return self.http.post("/oauth2/token", json=body).json()

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"OAuth-Token": token or self.token}, **kw)

    def filter(self, module: str, **body: Any) -> Any:
        response = self.call("POST", f"/{module}/filter", json=body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def sugar() -> Iterator[Sugar]:
    sandbox, server = serve()
    client = Sugar(sandbox, server)
    yield client
    client.http.close()
    server.stop()
