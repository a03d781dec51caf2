"""The sandbox's RecurringTransaction answers held against Intuit's contract (tests/contracts/quickbooks:
RecurringInfo and RecurringScheduleInfo generated from Finance.xsd, the RecurringTransaction envelope of
IntuitRestServiceDef.xsd, the reference page's required elements): the raw requests of a schedule's life, and
the adapter's own (QuickBooksAccounting's RecurringAccounting methods), so both sides of every exchange are
checked."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from urllib.parse import unquote_plus

import httpx
import pytest

from closeloop.errors import ValidationFailed
from closeloop.models import InvoiceLine, ScheduleDraft
from closeloop_local.sandboxes.base import Exchange, WireEncoder, recording
from closeloop_local.sandboxes.quickbooks import (
    DEFAULT_REALM_ID,
    DEFAULT_REFRESH_TOKEN,
    QuickBooksDriver,
    QuickBooksSandbox,
    serve,
)
from tests.contracts.contract import load
from tests.quickbooks_adapters import adapter

BASE = f"/v3/company/{DEFAULT_REALM_ID}"


def _exchanges() -> list[Exchange]:
    """A schedule's life: create, a refused create, read, query, extend, deactivate, delete, a stale delete."""
    with recording() as recorder:
        qbo, server = serve(QuickBooksSandbox())
        try:
            http = httpx.Client(base_url=server.url, timeout=5.0)
            token = http.post(
                "/oauth2/v1/tokens/bearer",
                data={"grant_type": "refresh_token", "refresh_token": DEFAULT_REFRESH_TOKEN},
                auth=(qbo.client_id, qbo.client_secret),
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}

            def post(body: object, **params: str) -> httpx.Response:
                wire = json.loads(json.dumps(body, cls=WireEncoder))
                return http.post(f"{BASE}/recurringtransaction", json=wire, params=params, headers=headers)

            customer = qbo.seed("Customer", DisplayName="Acme")
            item = qbo.seed("Item", Name="Support", UnitPrice=Decimal(50), IncomeAccountRef={"value": "1"})
            line = {
                "DetailType": "SalesItemLineDetail",
                "Amount": 50,
                "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
            }
            schedule: dict[str, object] = {
                "IntervalType": "Monthly",
                "NumInterval": 1,
                "DayOfMonth": 1,
                "StartDate": "2026-01-01",
            }
            info: dict[str, object] = {
                "Name": "Deal 1 monthly",
                "RecurType": "Automated",
                "Active": True,
                "ScheduleInfo": schedule,
            }
            body: dict[str, object] = {
                "CustomerRef": {"value": customer["Id"]},
                "Line": [line],
                "PrivateNote": "deal 1",
                "RecurringInfo": info,
            }
            created = post({"Invoice": body}).json()["RecurringTransaction"]["Invoice"]
            assert post({"Invoice": {**body, "RecurringInfo": {**info, "RecurType": "Sometimes"}}}).status_code == 400
            http.get(f"{BASE}/recurringtransaction/{created['Id']}", headers=headers)
            http.get(f"{BASE}/recurringtransaction/999", headers=headers)
            http.get(f"{BASE}/query", params={"query": "select * from RecurringTransaction"}, headers=headers)
            end = {**schedule, "EndDate": "2027-12-31"}
            sparse = {
                "Id": created["Id"],
                "SyncToken": "0",
                "sparse": True,
                "RecurringInfo": {**info, "ScheduleInfo": end},
            }
            post({"Invoice": sparse})
            stopped = {**sparse, "SyncToken": "1", "RecurringInfo": {**info, "Active": False, "ScheduleInfo": end}}
            post({"Invoice": stopped})
            post({"Invoice": {"Id": created["Id"], "SyncToken": "0"}}, operation="delete")
            post({"Invoice": {"Id": created["Id"], "SyncToken": "2"}}, operation="delete")
            again = post({"Invoice": {**body, "RecurringInfo": {**info, "Name": "Deal 2 monthly"}}}).json()
            qbo.run_recurring(
                date.fromisoformat(
                    again["RecurringTransaction"]["Invoice"]["RecurringInfo"]["ScheduleInfo"]["NextDate"]
                )
            )
            made = http.get(f"{BASE}/query", params={"query": "select * from Invoice"}, headers=headers).json()
            assert made["QueryResponse"]["Invoice"][0]["RecurDataRef"]["name"] == "Deal 2 monthly"
            http.close()
        finally:
            server.stop()
    return [e for e in recorder.exchanges if "/v3/company/" in e.path]


def test_every_recurring_transaction_exchange_follows_intuit_s_contract() -> None:
    exchanges = _exchanges()
    contract = load("quickbooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert operations == {
        "POST /v3/company/{realmId}/recurringtransaction",
        "GET /v3/company/{realmId}/recurringtransaction/{recurringtransactionId}",
        "GET /v3/company/{realmId}/query",
    }
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    assert violations == []
    assert {e.status for e in exchanges} == {200, 400}


def test_a_template_without_recurring_info_or_of_two_types_is_a_violation() -> None:
    contract = load("quickbooks")

    def check(body: object) -> list[str]:
        exchange = Exchange(
            host="127.0.0.1:1",
            method="POST",
            path=f"{BASE}/recurringtransaction",
            query="",
            headers={"content-type": "application/json"},
            body=json.dumps(body).encode(),
            status=200,
            response_headers={"content-type": "application/json"},
            response_body=json.dumps({"RecurringTransaction": {"Invoice": {"Id": "1"}}}).encode(),
        )
        return [v.message for v in contract.check(exchange)]

    line = {"DetailType": "SalesItemLineDetail", "Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
    good = {"CustomerRef": {"value": "1"}, "Line": [line], "RecurringInfo": {"Name": "n", "RecurType": "Automated"}}
    assert check({"Invoice": good}) == []
    assert check({"Invoice": {k: v for k, v in good.items() if k != "RecurringInfo"}})
    assert check({"Invoice": good, "Bill": {}})
    assert check({"Invoice": {**good, "RecurringInfo": {"Name": "n", "Every": "month"}}})
    assert check({"Invoice": {**good, "RecurringInfo": {"Name": "n", "ScheduleInfo": {"DayOfWeek": "Funday"}}}})


def test_every_exchange_of_the_adapter_s_schedules_follows_intuit_s_contract() -> None:
    # Given the adapter's RecurringAccounting calls recorded against the sandbox: creates of every interval (a
    # discounted draft one too), a taken Name, a refusal, find over two pages, get, extend, end, and the
    # change feed reading a generated invoice
    with recording() as recorder:
        qbo, server = serve(QuickBooksSandbox())
        try:
            QuickBooksDriver(qbo).seed_item("SUP-1", "Support", Decimal("100"))
            customer = str(qbo.seed("Customer", DisplayName="Acme")["Id"])
            books = adapter(qbo, server.url)
            books.client.max_results = 2  # the templates' list in two pages
            start = date(2027, 1, 31)
            line = InvoiceLine(
                item_code="SUP-1", description="Support", quantity=Decimal(1), unit_amount=Decimal("50"), tax_type="TAX"
            )
            made = []
            for n, frequency in enumerate(("monthly", "weekly", "annual")):
                draft = ScheduleDraft(
                    customer_id=customer,
                    reference=f"crm-deal-{n}/{frequency}",
                    currency="USD",
                    lines=(line, line.model_copy(update={"discount_rate": Decimal(10)})),
                    frequency=frequency,
                    start=start,
                    end=date(2028, 1, 31),
                    status="AUTHORISED" if n else "DRAFT",
                    url="https://crm.example/deal/1",
                )
                made.append(books.create_schedule(draft, idempotency_key=f"s-{n}"))
            books.create_schedule(draft, idempotency_key="s-again")  # the Name is taken: found instead
            with pytest.raises(ValidationFailed):
                books.create_schedule(
                    draft.model_copy(update={"reference": "x", "currency": "EUR"}), idempotency_key="e"
                )
            assert books.find_schedule("crm-deal-2/annual") is not None
            books.get_schedule(made[0].id)
            books.extend_schedule(made[1], date(2029, 1, 31), idempotency_key="x")
            books.end_schedule(made[0].id, idempotency_key="end")
            QuickBooksDriver(qbo).run_recurring(date(2027, 2, 1))
            list(books.iter_invoices_changed_since(None))
        finally:
            server.stop()
    exchanges = [e for e in recorder.exchanges if "/v3/company/" in e.path]
    contract = load("quickbooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {
        "POST /v3/company/{realmId}/recurringtransaction",
        "GET /v3/company/{realmId}/recurringtransaction/{recurringtransactionId}",
        "GET /v3/company/{realmId}/query",
    } <= operations
    # When each is held against the contract, Then none departs from it
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
    assert {e.status for e in exchanges if e.path.endswith("/recurringtransaction")} == {200, 400}
    template_pages = [e for e in exchanges if "RecurringTransaction" in unquote_plus(e.query)]
    assert len(template_pages) >= 2
