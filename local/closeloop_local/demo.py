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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlparse

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


def finance_client(xero: xero_sandbox.XeroSandbox, base_url: str) -> httpx.Client:
    """A Xero client of finance's own: another app connection, as a person in finance would use."""
    client = httpx.Client(base_url=base_url, timeout=10)
    redirect = "http://localhost/finance"
    consent = client.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": xero.client_id,
            "redirect_uri": redirect,
            "scope": "offline_access accounting.transactions accounting.contacts",
        },
    )
    code = parse_qs(urlparse(consent.headers["location"]).query)["code"][0]
    tokens = client.post(
        "/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
        auth=(xero.client_id, xero.client_secret),
    ).json()
    client.headers.update({"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": xero.tenant_id})
    return client


def approve_and_pay(xero: xero_sandbox.XeroSandbox, base_url: str, invoice_id: str, amount: str, on: str) -> None:
    """Finance approves the invoice and records a payment against it, in Xero."""
    client = finance_client(xero, base_url)
    try:
        client.post(f"/api.xro/2.0/Invoices/{invoice_id}", json={"Status": "AUTHORISED"}).raise_for_status()
        payment = {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Date": on, "Amount": amount}
        client.put("/api.xro/2.0/Payments", json={"Payments": [payment]}).raise_for_status()
    finally:
        client.close()


DEMO_ITEMS = {"ANV-1": ("Anvil", "99.50"), "RKT-2": ("Rocket skates", "500.00")}


class Demo:
    def __init__(
        self,
        stack: LocalStack,
        xero: xero_sandbox.XeroSandbox,
        hubspot: hubspot_sandbox.HubSpotSandbox,
        hubspot_url: str,
        xero_url: str,
        out: TextIO,
    ) -> None:
        self.stack = stack
        self.hubspot_url = hubspot_url
        self.xero_url = xero_url
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
        self.say("\n== Contacts result")
        self.show_xero()
        self.say(
            "   OK: one Xero contact per HubSpot company, matched not duplicated."
            if ok
            else "   FAILED: the Xero sandbox does not hold what it should (see above)."
        )
        return self.deals(acme) and ok

    def deals(self, acme: dict[str, Any]) -> bool:
        today = datetime.now(UTC).date()
        for code, (name, price) in DEMO_ITEMS.items():
            self.xero.seed_item(
                Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
            )
        self.say("\n== Xero holds the products as items: " + ", ".join(DEMO_ITEMS))

        def sell() -> dict[str, Any]:
            deal = self.hubspot.create_object(
                "deals",
                {
                    "dealname": "Acme spring order",
                    "amount": "1296.00",
                    "dealstage": "contractsent",
                    "pipeline": "default",
                    "deal_currency_code": "NZD",
                    "closedate": today.isoformat(),
                },
                associations=[{"to_type": "companies", "to_id": acme["id"], "primary": True}],
            )
            for sku, quantity in (("ANV-1", "8"), ("RKT-2", "1")):
                name, price = DEMO_ITEMS[sku]
                self.hubspot.create_object(
                    "line_items",
                    {"name": name, "hs_sku": sku, "quantity": quantity, "price": price},
                    associations=[{"to_type": "deals", "to_id": deal["id"]}],
                )
            self.hubspot.flush_webhooks()
            self.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
            return deal

        deal = self.step("The rep wins 'Acme spring order' (8 anvils + 1 rocket skates = 1296.00 NZD + GST)", sell)
        invoices = [
            i for i in self.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal['id']} ")
        ]
        for invoice in invoices:
            self.say(
                f"   Xero invoice {invoice['InvoiceNumber']} ({invoice['Status']}): subtotal {invoice['SubTotal']}, "
                f"tax {invoice['TotalTax']}, total {invoice['Total']} {invoice['CurrencyCode']}, "
                f"reference '{invoice['Reference']}'"
            )
        self.show_deal(deal["id"])
        if len(invoices) != 1:
            self.say("   FAILED: expected exactly one invoice for the deal")
            return False
        invoice = invoices[0]

        def pay() -> None:
            approve_and_pay(self.xero, self.xero_url, invoice["InvoiceID"], "500.00", today.isoformat())
            result = self.stack.run_schedule("PaymentPollerFunction")
            self.say(
                f"   payment poller: {result['changed_invoices']} changed invoice(s), "
                f"{result['deals_updated']} deal(s) updated"
            )

        self.step("Finance approves the invoice and records a payment of 500.00 in Xero; the poller runs", pay)
        props = self.show_deal(deal["id"])
        company = self.hubspot.get_object("companies", acme["id"]) or {}
        balance = (company.get("properties") or {}).get("closeloop_outstanding_balance")
        self.say(f"   Acme's outstanding balance in HubSpot: {balance}")

        month = today.strftime("%Y-%m")
        report = self.step(
            f"Finance's monthly reconciliation for {month}",
            lambda: self.stack.invoke("ReconcileFunction", {"month": month}),
        )
        counts = {k: v for k, v in report["discrepancies"].items() if v}
        self.say(f"   discrepancies: {counts or 'none'}; files: {', '.join(report['keys'])}")
        download = httpx.get(report["url"], timeout=10)
        saved = self.stack.project_root / ".closeloop" / "demo" / f"reconciliation-{month}.xlsx"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(download.content)
        self.say(f"   the presigned link answered HTTP {download.status_code}; a copy is saved in {saved}")
        ok = props.get("closeloop_payment_status") == "partially_paid" and download.status_code == 200 and not counts
        self.say(
            "   OK: won deal -> one invoice -> payment back on the deal -> report." if ok else "   FAILED (see above)"
        )
        self.say(f"\nThe month's workbook link (it lives as long as the local stack does):\n{report['url']}")
        return ok

    def show_deal(self, deal_id: str | int) -> dict[str, str]:
        props: dict[str, str] = (self.hubspot.get_object("deals", deal_id) or {}).get("properties", {})
        shown = (
            "closeloop_invoice_number",
            "closeloop_invoice_status",
            "closeloop_payment_status",
            "closeloop_amount_due",
            "closeloop_amount_paid",
        )
        self.say(
            "   HubSpot deal now: " + ", ".join(f"{k.removeprefix('closeloop_')}={props.get(k, '')}" for k in shown)
        )
        return props


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
            ok = Demo(stack, xero, hubspot, hubspot_server.url, xero_server.url, out).run()
    finally:
        hubspot.close()
        hubspot_server.stop()
        xero_server.stop()
    print(f"\nDemo finished in {time.monotonic() - started:.1f} s.", file=out)
    if getattr(args, "json", False):
        print(json.dumps({"ok": ok}))
    return 0 if ok else 1
