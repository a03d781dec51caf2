"""Shared fixtures: the vendor sandboxes and the local stack (template.yaml in moto, real handlers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from closeloop.store import DynamoStore
from closeloop_local.demo import sandbox_environment
from closeloop_local.sandboxes import hubspot as hubspot_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Loop:
    """Everything a loop test touches."""

    stack: LocalStack
    xero: xero_sandbox.XeroSandbox
    xero_server: SandboxServer
    hubspot: hubspot_sandbox.HubSpotSandbox
    hubspot_server: SandboxServer

    @property
    def store(self) -> DynamoStore:
        return DynamoStore(self.stack.env["SYNC_TABLE"])

    @property
    def contacts_url(self) -> str:
        return f"{self.stack.api_url}/webhooks/hubspot/contacts"

    def active_xero_contacts(self) -> list[dict[str, object]]:
        return [c for c in self.xero.contacts() if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def settle(self) -> None:
        self.hubspot.flush_webhooks()
        self.stack.drain(timeout=60)

    def finance(self) -> httpx.Client:
        """A Xero client of finance's own (another app connection, as a person in finance would use)."""
        client = httpx.Client(base_url=self.xero_server.url, timeout=10)
        consent = client.get(
            "/identity/connect/authorize",
            params={
                "response_type": "code",
                "client_id": self.xero.client_id,
                "redirect_uri": "http://localhost/finance",
                "scope": "offline_access accounting.transactions accounting.contacts",
            },
        )
        code = parse_qs(urlparse(consent.headers["location"]).query)["code"][0]
        tokens = client.post(
            "/connect/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost/finance"},
            auth=(self.xero.client_id, self.xero.client_secret),
        ).json()
        client.headers.update(
            {"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": self.xero.tenant_id}
        )
        return client

    def approve_and_pay(self, invoice_id: str, amount: str, on: str) -> None:
        """Finance approves the invoice and records a payment against it in Xero."""
        client = self.finance()
        try:
            client.post(f"/api.xro/2.0/Invoices/{invoice_id}", json={"Status": "AUTHORISED"}).raise_for_status()
            payment = {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Date": on, "Amount": amount}
            client.put("/api.xro/2.0/Payments", json={"Payments": [payment]}).raise_for_status()
        finally:
            client.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    xero, xero_server = xero_sandbox.serve()
    hubspot, hubspot_server = hubspot_sandbox.serve()
    stack = LocalStack(ROOT, port=0, env_overrides=sandbox_environment(xero, xero_server.url, hubspot_server.url))
    stack.start()
    hubspot.configure_webhooks(
        {
            "target_url": f"{stack.api_url}/webhooks/hubspot/contacts",
            "signature_version": "v3",
            "mode": "manual",
            "subscriptions": [
                "contact.creation",
                "contact.propertyChange",
                "company.creation",
                "company.propertyChange",
                "deal.creation",
                "deal.propertyChange:dealstage",
            ],
        }
    )
    try:
        yield Loop(stack, xero, xero_server, hubspot, hubspot_server)
    finally:
        stack.stop()
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()
