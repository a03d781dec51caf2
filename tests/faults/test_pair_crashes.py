"""A crash at each step of the invoice path, and bad webhook input, for every pair.

The handlers run in this process, so a crash is an exception raised at the step (the invocation fails, its
message comes back), as a killed Lambda would leave things. Each case ends with one invoice per deal,
mapped and written back, created by one call that the accounting system accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop.models import CrmRef
from closeloop.store import DynamoStore
from closeloop.sync.invoices import DealSync
from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.drivers import DealLine

pytestmark = pytest.mark.e2e
LINE = DealLine("CRASH-1", "Crash-tested widget", Decimal(3), Decimal("7.00"))


def accounting_class(pair: Pair) -> type:
    from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting  # noqa: PLC0415
    from closeloop.vendors.xero.adapter import XeroAccounting  # noqa: PLC0415
    from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting  # noqa: PLC0415

    return {"xero": XeroAccounting, "quickbooks": QuickBooksAccounting, "zohobooks": ZohoBooksAccounting}[
        pair.books.name
    ]


def won(pair: Pair, name: str) -> CrmRef:
    pair.books.seed_item(LINE.sku, LINE.name, LINE.unit_price)
    company = pair.crm.create_company(name, email=f"ap@{name.split(maxsplit=1)[0].lower()}.test", country="GB")
    pair.settle()
    return pair.crm.create_won_deal(company, [LINE], currency=pair.books.currency)


def one_invoice_written_back(pair: Pair, deal: CrmRef) -> None:
    key = f"{deal.crm}-deal-{deal.object_id}"
    invoices = [i for i in pair.books.invoices() if i.reference.split(" ")[0] == key and i.status != "VOIDED"]
    assert len(invoices) == 1, invoices
    mapping = pair.store.get_mapping(deal, pair.books.name)
    assert mapping is not None
    assert mapping.accounting_id == invoices[0].id
    assert pair.crm.deal_fields(deal).get("closeloop_invoice_number")
    assert pair.store.get_failed_sync(deal) is None


def once(crashes: list[str], real: Callable[..., Any], when: Callable[..., bool]) -> Callable[..., Any]:
    def step(*args: Any, **kwargs: Any) -> Any:
        if not crashes and when(*args, **kwargs):
            crashes.append("crashed")
            raise RuntimeError("the Lambda was killed")
        return real(*args, **kwargs)

    return step


def test_a_crash_before_the_create_leaves_one_invoice(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = accounting_class(pair)
    crashes: list[str] = []
    monkeypatch.setattr(cls, "create_invoice", once(crashes, cls.create_invoice, lambda *a, **k: True))
    deal = won(pair, "Before Create Ltd")
    pair.settle()
    assert crashes
    one_invoice_written_back(pair, deal)


def test_a_crash_after_the_create_before_the_mapping_leaves_one_invoice(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[str] = []
    is_deal: Callable[..., bool] = lambda self, mapping: mapping.ref.object_type == "deal"  # noqa: E731
    monkeypatch.setattr(DynamoStore, "put_mapping", once(crashes, DynamoStore.put_mapping, is_deal))
    deal = won(pair, "After Create Ltd")
    pair.settle()
    assert crashes
    one_invoice_written_back(pair, deal)


def test_a_crash_after_the_mapping_before_the_write_back_writes_back_once(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[str] = []
    monkeypatch.setattr(DealSync, "_write_back", once(crashes, DealSync._write_back, lambda *a, **k: True))
    deal = won(pair, "Before Write Back Ltd")
    pair.settle()
    assert crashes
    one_invoice_written_back(pair, deal)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"an": "object"}', b"[1, 2, 3]", b"\xff\xfe" * 8, b"[" + b" " * (1024 * 1024) + b"]"],
    ids=["malformed", "wrong-shape", "wrong-types", "not-utf8", "over-1mb"],
)
def test_bad_bodies_on_an_authentic_route_get_a_clear_4xx_and_reach_no_vendor(pair: Pair, body: bytes) -> None:
    # Given a webhook the CRM really sent (its URL and headers: authentic as far as they go)
    pair.crm.create_company("Bad Input Probe Ltd", email="ap@probe.test")
    pair.settle()
    sent = pair.crm.sent_webhooks()[-1]
    before = (len(pair.crm.state.requests), len(pair.books.state.requests))
    # When the same request carries a bad body
    headers = {k: v for k, v in sent.headers.items() if k.lower() not in ("content-length", "host")}
    response = httpx.post(sent.url, content=body, headers=headers, timeout=10)
    pair.stack.drain(timeout=30)
    # Then it is refused with a message (413 too large; 400 malformed; 401 where a signature covers the body)
    assert response.status_code in (400, 401, 413), response.text
    assert response.json().get("message")
    if len(body) > 1024 * 1024:
        assert response.status_code == 413
    assert (len(pair.crm.state.requests), len(pair.books.state.requests)) == before
