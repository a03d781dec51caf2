"""The HubSpot and Xero sandboxes over real HTTP, with the production adapters pointed at them.

Rate limits are raised through the sandboxes' constructors so a burst is never throttled: these
benchmarks count calls, and a 429 would add retries that say nothing about the design.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench.memory import MemoryStore
from closeloop.oauth import RefreshingTokens
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.client import refresh_with_identity
from closeloop_local.sandboxes import hubspot, xero
from closeloop_local.sandboxes.base import LoggedRequest, SandboxServer

TOKEN_PATH = "/connect/token"


@dataclass
class Xero:
    """A running Xero sandbox, its server and the production adapter pointed at it."""

    sandbox: xero.XeroSandbox
    server: SandboxServer
    books: XeroAccounting

    def api_calls(self) -> list[LoggedRequest]:
        """Every logged request except the token endpoint (token refreshes are not API calls)."""
        return [r for r in self.sandbox.state.calls() if r.path != TOKEN_PATH]


@dataclass
class HubSpot:
    sandbox: hubspot.HubSpotSandbox
    server: SandboxServer
    crm: HubSpotCrm

    def create_property(self, object_type: str, name: str, label: str) -> None:
        """Create a custom text property, as a HubSpot admin would (e.g. the company's ``vat_number``)."""
        httpx.post(
            f"{self.server.url}/crm/v3/properties/{object_type}",
            json={
                "name": name,
                "label": label,
                "type": "string",
                "fieldType": "text",
                "groupName": "companyinformation",
            },
            headers={"Authorization": f"Bearer {self.sandbox.access_token}"},
            timeout=10,
        ).raise_for_status()


def xero_adapter(sandbox: xero.XeroSandbox, url: str, store: MemoryStore) -> XeroAccounting:
    tokens = RefreshingTokens(
        "xero",
        store,
        seed=lambda fresh: sandbox.initial_refresh_token,
        refresh=refresh_with_identity(url, lambda: sandbox.client_id, lambda: sandbox.client_secret),
        write_back=lambda token: None,
    )
    return XeroAccounting(base_url=url, tokens=tokens, tenant_id=lambda: sandbox.tenant_id)


@contextmanager
def running_xero(store: MemoryStore) -> Iterator[Xero]:
    unthrottled = xero.XeroSandbox(minute_limit=10**7, day_limit=10**8, concurrent_limit=1000, app_minute_limit=10**8)
    sandbox, server = xero.serve(unthrottled)
    try:
        yield Xero(sandbox, server, xero_adapter(sandbox, server.url, store))
    finally:
        server.stop()


@contextmanager
def running_hubspot() -> Iterator[HubSpot]:
    sandbox, server = hubspot.serve(hubspot.HubSpotSandbox(ten_second_limit=10**7, daily_limit=10**9))
    crm = HubSpotCrm(client_secret=sandbox.client_secret, access_token=sandbox.access_token, base_url=server.url)
    try:
        yield HubSpot(sandbox, server, crm)
    finally:
        sandbox.close()
        server.stop()
