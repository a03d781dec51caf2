"""``closeloop demo`` (``make demo``): the HubSpot -> Xero contact loop, offline, on the local stack.

Starts the Xero and HubSpot sandboxes and the local stack (moto + the real handlers), points HubSpot's
webhooks at the stack, then plays a scenario a new user can follow, printing what happened at each step:
a company and its contact created in HubSpot appear in Xero as one contact; a company whose name already
exists in Xero is matched, not duplicated; an edit propagates only the changed field; the same signed
batch delivered five more times (HubSpot retries) changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import httpx

from closeloop.models import CrmRef
from closeloop.store import DynamoStore
from closeloop_local.sandboxes import hubspot as hubspot_sandbox
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.stack import LocalStack

SUBSCRIPTIONS = [
    "contact.creation",
    "contact.propertyChange",
    "contact.associationChange",
    "company.creation",
    "company.propertyChange",
    "deal.propertyChange:dealstage",
]


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "template.yaml").exists():
            return candidate
    raise SystemExit("run this inside the Closeloop project (no template.yaml found above the current directory)")


def sandbox_environment(xero: xero_sandbox.XeroSandbox, xero_url: str, hubspot_url: str) -> dict[str, str]:
    """Point the adapters at the sandboxes through their ordinary settings, with sandbox credentials."""
    return {
        "HUBSPOT_API_URL": hubspot_url,
        "XERO_API_URL": xero_url,
        "XERO_IDENTITY_URL": xero_url,
        "XERO_LOGIN_URL": xero_url,
        "HUBSPOT_ACCESS_TOKEN": "pat-sandbox-token",
        "HUBSPOT_CLIENT_SECRET": "sandbox-webhook-secret",
        "XERO_CLIENT_ID": "sandbox-client-id",
        "XERO_CLIENT_SECRET": "sandbox-client-secret",
        "XERO_REFRESH_TOKEN": str(xero.current_refresh_token),
        "XERO_TENANT_ID": xero.tenant_id,
    }


class Demo:
    def __init__(
        self,
        stack: LocalStack,
        xero: xero_sandbox.XeroSandbox,
        hubspot: hubspot_sandbox.HubSpotSandbox,
        hubspot_url: str,
        out: TextIO,
    ) -> None:
        self.stack = stack
        self.hubspot_url = hubspot_url
        self.xero = xero
        self.hubspot = hubspot
        self.out = out
        self.store = DynamoStore(stack.env["SYNC_TABLE"])

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def settle(self) -> None:
        """Let HubSpot deliver its webhooks and the stack's workers finish."""
        self.hubspot.flush_webhooks()
        self.stack.drain(timeout=60)

    def step(self, title: str, action: Callable[[], Any]) -> Any:
        self.say(f"\n== {title}")
        result = action()
        self.settle()
        return result

    def xero_contacts(self) -> list[dict[str, Any]]:
        return [c for c in self.xero.contacts() if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    def show_xero(self) -> None:
        self.say("   Xero contacts now:")
        for contact in sorted(self.xero_contacts(), key=lambda c: str(c.get("Name"))):
            people = len(contact.get("ContactPersons") or [])
            self.say(
                f"   - {contact.get('Name')!s:<24} number={contact.get('ContactNumber') or '-':<26}"
                f" email={contact.get('EmailAddress') or '-'}  people={people}"
            )

    def show_audit(self, ref: CrmRef) -> None:
        for record in self.store.list_audit(ref):
            fields = ", ".join(sorted(record.changes)) or "-"
            detail = f" ({record.detail})" if record.detail else ""
            self.say(f"   audit {ref}: {record.action}{detail} fields: {fields}")

    def run(self) -> bool:
        self.say(f"Local stack: API {self.stack.api_url}, AWS endpoint {self.stack.endpoint_url}")
        webhook_url = f"{self.stack.api_url}/webhooks/hubspot/contacts"
        self.hubspot.configure_webhooks(
            {"target_url": webhook_url, "signature_version": "v3", "subscriptions": SUBSCRIPTIONS}
        )
        self.say(f"HubSpot sandbox delivers signed (v3) webhooks to {webhook_url}")
        # The company's tax number lives in a custom property, created as a HubSpot admin would.
        httpx.post(
            f"{self.hubspot_url}/crm/v3/properties/companies",
            json={
                "name": "vat_number",
                "label": "VAT number",
                "type": "string",
                "fieldType": "text",
                "groupName": "companyinformation",
            },
            headers={"Authorization": "Bearer pat-sandbox-token"},
            timeout=10,
        ).raise_for_status()

        self.say("\n== Xero already knows one customer, entered by finance")
        self.xero.seed_contact(Name="Globex Corporation", EmailAddress="accounts@globex.test")
        self.show_xero()

        def create_acme() -> dict[str, Any]:
            company = self.hubspot.create_object(
                "companies",
                {
                    "name": "Acme Ltd",
                    "phone": "+44 20 7946 0000",
                    "address": "1 Long Lane",
                    "city": "London",
                    "zip": "EC1A 9HF",
                    "country": "United Kingdom",
                    "vat_number": "GB123456789",
                },
            )
            self.hubspot.create_object(
                "contacts",
                {"firstname": "Ann", "lastname": "Archer", "email": "ann@acme.test", "phone": "+44 7700 900001"},
                associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
            )
            self.hubspot.create_object(
                "contacts",
                {"firstname": "Bob", "lastname": "Baker", "email": "bob@acme.test"},
                associations=[{"to_type": "companies", "to_id": company["id"]}],
            )
            return company

        acme = self.step("A sales rep creates company Acme Ltd with contacts Ann and Bob in HubSpot", create_acme)
        acme_ref = CrmRef(crm="hubspot", object_type="company", object_id=str(acme["id"]))
        self.show_xero()
        self.show_audit(acme_ref)

        globex = self.step(
            "HubSpot gets company 'Globex Corp.' (Xero has 'Globex Corporation')",
            lambda: self.hubspot.create_object("companies", {"name": "Globex Corp.", "domain": "globex.test"}),
        )
        self.show_xero()
        self.show_audit(CrmRef(crm="hubspot", object_type="company", object_id=str(globex["id"])))

        self.step(
            "The rep changes Acme's city in HubSpot",
            lambda: self.hubspot.update_object("companies", acme["id"], {"city": "Manchester"}),
        )
        self.show_audit(acme_ref)

        def redeliver() -> int:
            first = next(d for d in self.hubspot.deliveries if d.get("ok"))
            with httpx.Client(timeout=10) as client, ThreadPoolExecutor(max_workers=5) as pool:

                def post(_: int) -> int:
                    return client.post(first["url"], content=first["body"], headers=first["headers"]).status_code

                statuses = list(pool.map(post, range(5)))
            self.say(f"   5 concurrent redeliveries answered {statuses}")
            return len(statuses)

        before = len(self.xero_contacts())
        self.step("HubSpot redelivers the first signed batch 5 more times, concurrently", redeliver)
        after = len(self.xero_contacts())
        self.say(f"   Xero contacts before: {before}, after: {after}")

        body = json.dumps(
            [
                {
                    "eventId": 1,
                    "subscriptionId": 1,
                    "portalId": 62515,
                    "occurredAt": 1,
                    "subscriptionType": "company.creation",
                    "objectId": 1,
                }
            ]
        ).encode()
        forged_headers = hubspot_sandbox.signed_batch_headers(
            "a-guessed-secret", webhook_url, body, int(time.time() * 1000), "v3"
        )
        forged = httpx.post(webhook_url, content=body, headers=forged_headers, timeout=10)
        self.say(f"\n== A forged request is refused: HTTP {forged.status_code} {forged.json().get('message')}")

        names = sorted(str(c.get("Name")) for c in self.xero_contacts())
        acme_xero = next((c for c in self.xero_contacts() if c.get("Name") == "Acme Ltd"), {})
        ok = (
            names == ["Acme Ltd", "Globex Corporation"]
            and acme_xero.get("EmailAddress") == "ann@acme.test"
            and before == after
            and forged.status_code == 401
        )
        self.say("\n== Result")
        self.show_xero()
        calls = len(self.xero.state.calls())
        self.say(f"   Xero API calls made by Closeloop: {calls}")
        self.say(
            "   OK: one Xero contact per HubSpot company, matched not duplicated."
            if ok
            else "   FAILED: the Xero sandbox does not hold what it should (see above)."
        )
        return ok


def main(args: argparse.Namespace) -> int:
    out = sys.stdout
    # The scenario's own narration is the output; the handlers' JSON logs and HTTP traces are noise here.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root = project_root()
    started = time.monotonic()
    xero, xero_server = xero_sandbox.serve()
    hubspot, hubspot_server = hubspot_sandbox.serve()
    try:
        env = sandbox_environment(xero, xero_server.url, hubspot_server.url)
        print(f"Xero sandbox {xero_server.url}, HubSpot sandbox {hubspot_server.url}", file=out)
        with LocalStack(root, port=getattr(args, "port", 0) or 0, env_overrides=env) as stack:
            ok = Demo(stack, xero, hubspot, hubspot_server.url, out).run()
    finally:
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s.", file=out)
    if getattr(args, "json", False):
        print(json.dumps({"ok": ok}))
    return 0 if ok else 1
