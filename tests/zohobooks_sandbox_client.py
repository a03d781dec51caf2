"""A bare HTTP client of a started Zoho Books sandbox (``Books``), its token call and exact-decimal JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksSandbox

VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))


def token(zoho: ZohoBooksSandbox, url: str, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": zoho.initial_refresh_token,
        "client_id": zoho.client_id,
        "client_secret": zoho.client_secret,
        **overrides,
    }
    return httpx.post(f"{url}/oauth/v2/token", data=form)


class Books:
    """A bare client: the sandbox's wire behaviour, without the production adapter in between."""

    def __init__(self, zoho: ZohoBooksSandbox, url: str) -> None:
        self.zoho = zoho
        self.url = url
        self.access = token(zoho, url).json()["access_token"]

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        params = {"organization_id": self.zoho.organization_id, **kw.pop("params", {})}
        headers = {"Authorization": f"Zoho-oauthtoken {self.access}", **kw.pop("headers", {})}
        content = json.dumps(body) if body is not None else None
        return httpx.request(method, f"{self.url}/books/v3{path}", params=params, headers=headers, content=content)


def decimal_json(response: httpx.Response) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return payload
