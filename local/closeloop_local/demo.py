"""``closeloop demo`` (``make demo``): the whole loop, offline, on the local stack, for any CRM x accounting pair.

``closeloop demo --crm pipedrive --accounting quickbooks`` (``make demo CRM=pipedrive ACCOUNTING=quickbooks``;
defaults hubspot and xero) starts the two vendor sandboxes and the local stack (moto + the real handlers)
through ``closeloop_local.pairs``, subscribes Closeloop's webhooks in the CRM, then plays one scenario written
against the sandbox drivers, printing what happened at each step, read back from the sandboxes and the stack:
a company created in the CRM becomes one customer in the accounting system; a company finance already has
is matched, not duplicated; an edit propagates only the changed field; the first webhook delivered five
more times, concurrently, changes nothing; a forged webhook is refused; a won deal with two line items
becomes one invoice written back on the deal (before it, where both systems carry a catalogue, a product created
in the CRM becomes one item and its price change follows; and quote to cash, where the pair carries it: a quote
approved in the CRM becomes one accounting quote, accepted there and said so on the CRM quote after a poll; the deal
won with a monthly line and a supplier's line becomes one invoice from the quote's lines without the monthly one,
one repeating schedule and one draft purchase order at unit cost; a flow the pair does not carry is named with the
reason); a part payment shows on the deal after one poller run; the month's reconciliation downloads through its
presigned link.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import httpx

from closeloop import runtime
from closeloop.models import CrmRef
from closeloop.vendors import registry
from closeloop_local.pairs import ACCOUNTING, CRMS, EVERY_FLOW, TITLES, UNPACED, Pair, running_pair
from closeloop_local.sandboxes import xero as xero_sandbox
from closeloop_local.sandboxes.drivers import (
    DealLine,
    Line,
    Recurring,
    SeenCustomer,
    SeenInvoice,
    SeenItem,
    SeenPurchaseOrder,
    SeenQuote,
    SeenSchedule,
)

DEFAULT_CRM = registry.DEFAULTS["crm"]
DEFAULT_ACCOUNTING = registry.DEFAULTS["accounting"]


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "template.yaml").exists():
            return candidate
    raise SystemExit("run this inside the Closeloop project (no template.yaml found above the current directory)")


def sandbox_environment(xero: xero_sandbox.XeroSandbox, xero_url: str, hubspot_url: str) -> dict[str, str]:
    """Point the adapters at the sandboxes through their ordinary settings, with sandbox credentials."""
    return UNPACED | {
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
        "XERO_WEBHOOK_KEY": xero.webhooks.key,
    }


DEMO_LINES = (
    DealLine("ANV-1", "Anvil", Decimal(8), Decimal("99.50")),
    DealLine("RKT-2", "Rocket skates", Decimal(1), Decimal("500.00")),
)
DEAL_SHOWN = (
    "closeloop_invoice_number",
    "closeloop_invoice_status",
    "closeloop_payment_status",
    "closeloop_amount_due",
    "closeloop_amount_paid",
)


class Demo:
    """The scenario, written once against the drivers: ``pair.crm`` is the salesperson, ``pair.books`` finance."""

    def __init__(self, pair: Pair, out: TextIO) -> None:
        self.pair = pair
        self.crm = pair.crm
        self.books = pair.books
        self.stack = pair.stack
        self.store = pair.store
        self.out = out
        self.crm_title = TITLES.get(self.crm.name, self.crm.name)
        self.books_title = TITLES.get(self.books.name, self.books.name)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str, action: Callable[[], Any]) -> Any:
        self.say(f"\n== {title}")
        result = action()
        self.pair.settle()
        return result

    def customers(self) -> list[SeenCustomer]:
        return [c for c in self.books.customers() if c.active]

    def show_customers(self) -> None:
        self.say(f"   {self.books_title} customers now:")
        for customer in sorted(self.customers(), key=lambda c: c.name):
            self.say(
                f"   - {customer.name:<24} number={customer.number or '-':<28} email={customer.email or '-'}"
                f"  tax={customer.tax_number or '-'}"
            )

    def show_audit(self, ref: CrmRef) -> None:
        for record in self.store.list_audit(ref):
            fields = ", ".join(sorted(record.changes)) or "-"
            detail = f" ({record.detail})" if record.detail else ""
            self.say(f"   audit {ref}: {record.action}{detail} fields: {fields}")

    def run(self) -> bool:
        self.say(f"Local stack: API {self.stack.api_url}, AWS endpoint {self.stack.endpoint_url}")
        self.say(f"{self.crm_title} sandbox delivers its webhooks to {self.stack.api_url}/webhooks/{self.crm.name}/")

        self.say(f"\n== {self.books_title} already knows one customer, entered by finance")
        self.books.seed_customer("Globex Corporation", email="accounts@globex.test")
        self.show_customers()

        acme = self.step(
            f"A sales rep creates company Acme Ltd (accounts contact ann@acme.test) in {self.crm_title}",
            # No city/country: drivers have no street line, and the Xero adapter's to_customer ignores an address
            # without AddressLine1, so the month's reconciliation would report drift for the Xero pairs.
            lambda: self.crm.create_company("Acme Ltd", email="ann@acme.test", tax_number="GB123456789"),
        )
        self.show_customers()
        self.show_audit(acme)

        globex = self.step(
            f"{self.crm_title} gets company 'Globex Corp.' ({self.books_title} has 'Globex Corporation')",
            lambda: self.crm.create_company("Globex Corp."),
        )
        self.show_customers()
        self.show_audit(globex)

        self.step(
            f"The rep changes Acme's phone in {self.crm_title}",
            lambda: self.crm.update_company(acme, phone="+44 20 7946 0000"),
        )
        self.show_audit(acme)

        def redeliver() -> list[int]:
            sent = self.crm.sent_webhooks()
            first = next((s for s in sent if s.status is not None and 200 <= s.status < 300), None)
            if first is None:
                self.say(f"   {self.crm_title} has sent no webhook that was accepted: nothing to redeliver")
                return []
            with httpx.Client(timeout=10) as client, ThreadPoolExecutor(max_workers=5) as pool:

                def post(_: int) -> int:
                    return client.post(first.url, content=first.body, headers=dict(first.headers)).status_code

                statuses = list(pool.map(post, range(5)))
            self.say(f"   5 concurrent redeliveries of {first.url} answered {statuses}")
            return statuses

        before = len(self.customers())
        statuses = self.step(f"{self.crm_title}'s first accepted webhook arrives 5 more times, concurrently", redeliver)
        after = len(self.customers())
        self.say(f"   {self.books_title} customers before: {before}, after: {after}")

        forgery = self.crm.forged_webhook(self.stack.api_url)
        forged = httpx.post(forgery.url, content=forgery.body, headers=dict(forgery.headers), timeout=10)
        try:
            reason = str(forged.json().get("message"))
        except ValueError:
            reason = forged.text[:80]
        self.say(f"\n== A forged request to {forgery.url} is refused: HTTP {forged.status_code} {reason}")

        names = sorted(c.name for c in self.customers())
        acme_customer = next((c for c in self.customers() if c.name == "Acme Ltd"), None)
        ok = (
            names == ["Acme Ltd", "Globex Corporation"]
            and acme_customer is not None
            and acme_customer.email == "ann@acme.test"
            and bool(statuses)
            and before == after
            and forged.status_code == 401
        )
        self.say("\n== Contacts result")
        self.show_customers()
        self.say(
            f"   OK: one {self.books_title} customer per {self.crm_title} company, matched not duplicated."
            if ok
            else f"   FAILED: the {self.books_title} sandbox does not hold what it should (see above)."
        )
        catalogue = self.catalogue()
        quoted = self.quote_to_cash(acme)
        return self.deals(acme) and ok and catalogue and quoted

    def catalogue(self) -> bool:
        """A CRM product becomes one accounting item (code = SKU, its price), and a price change follows."""
        specs = (registry.get(self.crm.name, "crm"), registry.get(self.books.name, "accounting"))
        lacking = [spec.title for spec in specs if "product" not in spec.capabilities.objects]
        if lacking:
            self.say(
                f"\n== Product catalogue: not synced for this pair ({' and '.join(lacking)} carry no products yet)"
            )
            return True
        sku, name, price, changed = "DEMO-CAT-1", "Demo widget", Decimal("25.00"), Decimal("27.50")
        product = self.step(
            f"Sales adds product {name} (SKU {sku}) at {price} to the {self.crm_title} catalogue",
            lambda: self.crm.create_product(sku, name, price, Decimal("10.00")),
        )
        made = self.show_items(sku)
        self.step(
            f"Sales changes its price to {changed} in {self.crm_title}",
            lambda: self.crm.update_product(product, price=changed),
        )
        updated = self.show_items(sku)
        self.show_audit(product)
        ok = (
            len(made) == 1
            and len(updated) == 1
            and made[0].id == updated[0].id
            and (made[0].unit_price, updated[0].unit_price) == (price, changed)
        )
        self.say(
            f"   OK: one {self.books_title} item for the product; its price followed."
            if ok
            else f"   FAILED: expected one {self.books_title} item {sku} at {price}, then {changed} (see above)."
        )
        return ok

    def quote_to_cash(self, company: CrmRef) -> bool:
        """A quote approved in the CRM -> one accounting quote -> accepted there -> said on the CRM quote; the deal
        won with a monthly line and a supplier's line -> one invoice (the quote's lines without the monthly one),
        one repeating schedule, one purchase order at unit cost. A flow the pair does not carry is named, skipped."""
        off = {
            "quotes": runtime.quotes_off_reason(),
            "repeating schedules": runtime.recurring_off_reason(),
            "purchase orders": runtime.purchase_orders_off_reason(),
        }
        for what, reason in off.items():
            if reason:
                self.say(f"\n== Quote to cash: no {what} for this pair ({reason})")
        quotes, schedules, orders = (not reason for reason in off.values())
        if not (quotes or schedules or orders):
            return True
        self.pair.poll()  # the catch-up watermarks stand before the quote exists (HubSpot's quotes are polled)
        lines = self.quoted_lines(schedules=schedules, orders=orders)
        summary = " + ".join(
            f"{li.quantity} x {li.name} at {li.unit_price}" + (" monthly for 12 months" if li.recurring else "")
            for li in lines
        )
        quote: CrmRef | None = None
        if quotes:
            deal, quote = self.quote_accepted(company, lines, summary)
            if quote is None:
                return False
        else:
            deal = self.step(
                f"The rep wins a deal for Acme in {self.crm_title}: {summary}",
                lambda: self.crm.create_won_deal(company, lines, currency=self.books.currency),
            )
        ok = self.show_won(deal, lines, schedules=schedules, orders=orders)
        if quote is not None:
            ok = len(self.show_quotes(quote)) == 1 and ok
        made_here = [
            what
            for what, carried in (("one invoice", True), ("one schedule", schedules), ("one purchase order", orders))
            if carried
        ]
        self.say(
            f"   OK: {'quote -> accepted -> ' if quotes else ''}won deal -> {', '.join(made_here)}."
            if ok
            else "   FAILED: quote to cash did not make what it should (see above)."
        )
        return ok

    #: The supplier line's product: bought from this supplier at this unit cost.
    SUPPLIER, UNIT_COST = "Router Wholesale Ltd", Decimal("45.50")

    def quoted_lines(self, *, schedules: bool, orders: bool) -> list[DealLine]:
        """A one-off line, a supplier's line (its product made in the CRM catalogue where purchase orders run) and a
        monthly line for 12 months (where schedules run); their items in the accounting system."""
        lines = [DealLine("Q2C-INSTALL", "Installation", Decimal(1), Decimal("250.00"))]
        supplied = DealLine("Q2C-ROUTER", "Router", Decimal(2), Decimal("80.00"))
        if orders:
            product = self.step(
                f"Sales adds product Router (SKU {supplied.sku}) bought from {self.SUPPLIER} at {self.UNIT_COST} "
                f"to the {self.crm_title} catalogue",
                lambda: self.crm.create_supplier_product(
                    supplied.sku,
                    supplied.name,
                    Decimal("85.00"),
                    cost=self.UNIT_COST,
                    supplier=self.SUPPLIER,
                    currency=self.books.currency,
                ),
            )
            supplied = DealLine(supplied.sku, supplied.name, supplied.quantity, supplied.unit_price, product=product)
            self.show_items(supplied.sku)
        lines.append(supplied)
        if schedules:
            support = Recurring("monthly", 12, datetime.now(UTC).date())
            lines.append(DealLine("Q2C-SUPPORT", "Support", Decimal(1), Decimal("30.00"), recurring=support))
        for line in lines:
            self.books.seed_item(line.sku, line.name, line.unit_price)
        return lines

    def quote_accepted(self, company: CrmRef, lines: list[DealLine], summary: str) -> tuple[CrmRef, CrmRef | None]:
        """The quoted deal, its quote approved (-> one accounting quote) and accepted, then won: (deal, quote); the
        quote is None when the accounting quote is not there or the CRM quote does not say accepted."""
        today = datetime.now(UTC).date()
        quoted = self.step(
            f"The rep quotes Acme in {self.crm_title} ({summary}); a manager approves the quote; the poller runs",
            lambda: self.crm.create_quoted_deal(
                company, lines, currency=self.books.currency, expires=today + timedelta(days=30)
            ),
        )
        self.pair.poll()
        self.pair.settle()
        made = self.show_quotes(quoted.quote)
        self.show_quote_fields(quoted.quote)
        if len(made) != 1:
            self.say(f"   FAILED: expected one {self.books_title} quote for the {self.crm_title} quote")
            return quoted.deal, None

        def accept() -> None:
            self.books.accept_quote(made[0].id)
            self.pair.poll()

        self.step(f"Acme accepts quote {made[0].number} in {self.books_title}; the poller runs", accept)
        if self.show_quote_fields(quoted.quote).get("closeloop_quote_status") != "ACCEPTED":
            self.say(f"   FAILED: the {self.crm_title} quote does not say ACCEPTED")
            return quoted.deal, None
        self.step(f"The rep wins the deal in {self.crm_title}", lambda: self.crm.win_deal(quoted.deal))
        return quoted.deal, quoted.quote

    def show_won(self, deal: CrmRef, lines: list[DealLine], *, schedules: bool, orders: bool) -> bool:
        """Print what the won deal made; whether it is one invoice of the one-off lines, one monthly schedule and
        one purchase order of the supplier's line at unit cost (those the pair carries), with no failed sync."""
        invoices = self.invoices_of(deal)
        for invoice in invoices:
            self.show_invoice(invoice)
        one_offs = sorted((li.sku, li.quantity, li.unit_price) for li in lines if li.recurring is None)
        ok = len(invoices) == 1 and sorted(line for line in invoices[0].lines if line[0]) == one_offs
        key = f"{deal.crm}-deal-{deal.object_id}"
        if schedules:
            made_schedules = [s for s in self.books.schedules() if s.reference == f"{key}/monthly" and s.active]
            for schedule in made_schedules:
                self.show_schedule(schedule)
            ok = ok and len(made_schedules) == 1
        if orders:
            made_orders = [o for o in self.books.purchase_orders() if o.reference.startswith(f"{key}-po-")]
            for order in made_orders:
                self.show_order(order)
            supplied = next(li for li in lines if li.product is not None)
            ok = ok and [list(o.lines) for o in made_orders] == [[(supplied.sku, supplied.quantity, self.UNIT_COST)]]
        written = self.crm.deal_fields(deal)
        shown = ("closeloop_invoice_number", "closeloop_schedule_ids", "closeloop_next_invoice_date",
                 "closeloop_annual_value", "closeloop_purchase_orders")  # fmt: skip
        self.say(
            f"   {self.crm_title} deal now: "
            + ", ".join(f"{k.removeprefix('closeloop_')}={written[k]}" for k in shown if k in written)
        )
        return ok and self.store.get_failed_sync(deal) is None

    def show_quotes(self, quote: CrmRef) -> list[SeenQuote]:
        key = f"{quote.crm}-quote-{quote.object_id}"
        made = [q for q in self.books.quotes() if q.reference.split(" ")[0] == key]
        for seen in made:
            self.say(
                f"   {self.books_title} quote {seen.number} ({seen.status}): total {seen.total}, "
                f"reference '{seen.reference}', lines: {self.lines(seen.lines)}"
            )
        return made

    def show_quote_fields(self, quote: CrmRef) -> Mapping[str, str]:
        fields = self.crm.quote_fields(quote)
        self.say(
            f"   {self.crm_title} quote now: "
            + ", ".join(f"{k.removeprefix('closeloop_')}={v}" for k, v in sorted(fields.items()))
        )
        return fields

    def show_schedule(self, schedule: SeenSchedule) -> None:
        self.say(
            f"   {self.books_title} repeating schedule {schedule.id}: every {schedule.every}, "
            f"reference '{schedule.reference}', lines: {self.lines(schedule.lines)}"
        )

    def show_order(self, order: SeenPurchaseOrder) -> None:
        self.say(
            f"   {self.books_title} purchase order {order.number} to {order.supplier} ({order.status}): "
            f"total {order.total}, reference '{order.reference}', lines: {self.lines(order.lines)}"
        )

    @staticmethod
    def lines(lines: tuple[Line, ...]) -> str:
        return ", ".join(f"{code or '-'} {quantity:g} x {price}" for code, quantity, price in lines)

    def show_items(self, code: str) -> list[SeenItem]:
        items = [i for i in self.books.items() if i.code == code]
        for item in items:
            price, cost = (f"{v:.2f}" if v is not None else "-" for v in (item.unit_price, item.unit_cost))
            self.say(f"   {self.books_title} item {item.code}: {item.name}, price {price}, cost {cost}")
        if not items:
            self.say(f"   {self.books_title} has no item {code}")
        return items

    def deals(self, acme: CrmRef) -> bool:
        today = datetime.now(UTC).date()
        for line in DEMO_LINES:
            self.books.seed_item(line.sku, line.name, line.unit_price)
        self.say(f"\n== {self.books_title} holds the products as items: " + ", ".join(li.sku for li in DEMO_LINES))

        currency = self.books.currency
        net = sum((li.quantity * li.unit_price for li in DEMO_LINES), Decimal(0))
        summary = " + ".join(f"{li.quantity} x {li.name} at {li.unit_price}" for li in DEMO_LINES)
        deal = self.step(
            f"The rep wins a deal for Acme in {self.crm_title}: {summary} = {net:.2f} {currency} before tax",
            lambda: self.crm.create_won_deal(acme, DEMO_LINES, currency=currency),
        )
        invoices = self.invoices_of(deal)
        for invoice in invoices:
            self.show_invoice(invoice)
        self.show_deal(deal)
        if len(invoices) != 1:
            self.say(f"   FAILED: expected exactly one {self.books_title} invoice for the deal, found {len(invoices)}")
            return False
        invoice = invoices[0]
        paid = Decimal("500.00")

        def pay() -> None:
            self.books.approve_and_pay(invoice.id, paid, today)
            result = self.pair.poll()
            self.say(
                f"   payment poller: {result['changed_invoices']} changed invoice(s), "
                f"{result['deals_updated']} deal(s) updated"
            )

        self.step(
            f"Finance approves the invoice and records a payment of {paid} in {self.books_title}; the poller runs", pay
        )
        for seen in self.invoices_of(deal):
            self.show_invoice(seen)
        fields = self.show_deal(deal)
        company = self.crm.customer_fields(acme)
        balance = company.get("closeloop_outstanding_balance", "-")
        self.say(f"   Acme's outstanding balance in {self.crm_title}: {balance}")

        month = today.strftime("%Y-%m")
        report = self.step(
            f"Finance's monthly reconciliation for {month}",
            lambda: self.stack.invoke("ReconcileFunction", {"month": month}),
        )
        counts = {k: v for k, v in report["discrepancies"].items() if v}
        self.say(f"   discrepancies: {counts or 'none'}; files: {', '.join(report['keys'])}")
        download = httpx.get(report["url"], timeout=10)
        # The default pair keeps the name it always had; other pairs get theirs, so runs do not overwrite each other.
        default = (self.crm.name, self.books.name) == (DEFAULT_CRM, DEFAULT_ACCOUNTING)
        suffix = "" if default else f"-{self.crm.name}-{self.books.name}"
        saved = self.stack.project_root / ".closeloop" / "demo" / f"reconciliation-{month}{suffix}.xlsx"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(download.content)
        self.say(f"   the presigned link answered HTTP {download.status_code}; a copy is saved in {saved}")
        ok = fields.get("closeloop_payment_status") == "partially_paid" and download.status_code == 200 and not counts
        self.say(
            "   OK: won deal -> one invoice -> payment back on the deal -> report." if ok else "   FAILED (see above)"
        )
        self.say(f"\nThe month's workbook link (it lives as long as the local stack does):\n{report['url']}")
        return ok

    def invoices_of(self, deal: CrmRef) -> list[SeenInvoice]:
        key = f"{deal.crm}-deal-{deal.object_id}"
        return [i for i in self.books.invoices() if i.reference.split(" ")[0] == key and i.status != "VOIDED"]

    def show_invoice(self, invoice: SeenInvoice) -> None:
        lines = ", ".join(f"{code or '-'} {quantity:g} x {price}" for code, quantity, price in invoice.lines)
        self.say(
            f"   {self.books_title} invoice {invoice.id} ({invoice.status}): total {invoice.total} {invoice.currency},"
            f" due {invoice.amount_due}, reference '{invoice.reference}', lines: {lines}"
        )

    def show_deal(self, deal: CrmRef) -> Mapping[str, str]:
        fields = self.crm.deal_fields(deal)
        self.say(
            f"   {self.crm_title} deal now: "
            + ", ".join(f"{k.removeprefix('closeloop_')}={fields.get(k, '')}" for k in DEAL_SHOWN)
        )
        return fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``closeloop demo``'s options (the CLI asks for them before it parses)."""
    parser.add_argument("--crm", choices=CRMS, default=DEFAULT_CRM, help=f"the CRM (default {DEFAULT_CRM})")
    parser.add_argument(
        "--accounting",
        choices=ACCOUNTING,
        default=DEFAULT_ACCOUNTING,
        help=f"the accounting system (default {DEFAULT_ACCOUNTING})",
    )
    parser.add_argument(
        "--crm-oauth",
        action="store_true",
        help="connect to the CRM as an OAuth app (expiring access tokens, refreshed) instead of a fixed token",
    )


def main(args: argparse.Namespace) -> int:
    out = sys.stdout
    crm = getattr(args, "crm", None) or DEFAULT_CRM
    accounting = getattr(args, "accounting", None) or DEFAULT_ACCOUNTING
    # The scenario's own narration is the output; the handlers' JSON logs and HTTP traces are noise here.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root = project_root()
    started = time.monotonic()
    port = getattr(args, "port", 0) or 0
    oauth = bool(getattr(args, "crm_oauth", False))
    with running_pair(crm, accounting, root, port=port, crm_oauth=oauth, env=EVERY_FLOW) as pair:
        print(
            f"{TITLES[accounting]} sandbox {pair.books_url}, {TITLES[crm]} sandbox {pair.crm_url}", file=out, flush=True
        )
        ok = Demo(pair, out).run()
    print(f"\nDemo ({crm} + {accounting}) finished in {time.monotonic() - started:.1f} s.", file=out)
    if getattr(args, "json", False):
        print(json.dumps({"ok": ok}))
    return 0 if ok else 1
