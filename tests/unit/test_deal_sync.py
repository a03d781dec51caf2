"""DealSync: a won deal becomes exactly one invoice, traceable, checked to the cent, written back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from closeloop.models import Address, Customer, Deal, Item, LineItem
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy, invoice_reference
from closeloop.sync.tax import TaxRule
from tests.fakes import FakeBooks, FakeDealCrm, MemoryStore, events_for, ref

COMPANY = ref("company", "1")
DEAL = ref("deal", "3000001")


def won_deal(**kw: object) -> Deal:
    values: dict[str, object] = {
        "ref": DEAL,
        "name": "Big deal",
        "amount": Decimal("1234.50"),
        "currency": "NZD",
        "stage": "closedwon",
        "is_won": True,
        "close_date": date(2026, 11, 20),
        "company": COMPANY,
        "url": "https://crm.example/deal/3000001",
        "line_items": (
            LineItem(crm_id="1", name="Anvil", sku="ANV-1", quantity=Decimal(3), unit_price=Decimal("99.50")),
            LineItem(crm_id="2", name="Rocket", sku="RKT", quantity=Decimal(1), unit_price=Decimal("500.00")),
            LineItem(crm_id="3", name="Setup", sku="SVC-SETUP", quantity=Decimal("2.5"), unit_price=Decimal("176.10")),
        ),
    }
    values.update(kw)
    return Deal(**values)  # type: ignore[arg-type]


def setup(
    deal: Deal | None = None, policy: InvoicePolicy | None = None
) -> tuple[DealSync, FakeDealCrm, FakeBooks, MemoryStore]:
    crm = FakeDealCrm(customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="NZ"))})
    crm.deals[DEAL.object_id] = deal or won_deal()
    books = FakeBooks()
    for code in ("ANV-1", "ROCKET-XL", "SVC-SETUP"):
        books.items[code] = Item(code=code, name=code, tax_type="OUTPUT2")
    store = MemoryStore()
    contacts = ContactSync(crm, books, store, owner="w")
    rules = (TaxRule(countries=("NZ",), tax_type="OUTPUT2"),)
    chosen = policy or InvoicePolicy(sku_item_codes={"RKT": "ROCKET-XL"}, tax_rules=rules)
    return DealSync(crm, books, store, contacts, chosen, owner="w"), crm, books, store


def test_won_deal_with_three_lines_becomes_one_invoice_matching_to_the_cent() -> None:
    sync, crm, books, store = setup()
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created"
    (invoice,) = books.invoices.values()
    draft = books.drafts[invoice.id]
    assert [(line.item_code, line.quantity, line.unit_amount, line.tax_type) for line in draft.lines] == [
        ("ANV-1", Decimal(3), Decimal("99.50"), "OUTPUT2"),
        ("ROCKET-XL", Decimal(1), Decimal("500.00"), "OUTPUT2"),
        ("SVC-SETUP", Decimal("2.5"), Decimal("176.10"), "OUTPUT2"),
    ]
    assert invoice.sub_total == Decimal("1238.75")  # 298.50 + 500.00 + 440.25
    assert invoice.reference == "crm-deal-3000001 Big deal"
    assert draft.url == "https://crm.example/deal/3000001"
    # The CRM said 1234.50: the 4.25 difference is flagged on the deal and audited, not hidden
    issue = crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"]
    assert "4.25" in issue
    assert [a.action for a in store.list_audit(DEAL)] == ["invoiced", "flagged"]
    assert crm.deal_properties[DEAL.object_id]["closeloop_invoice_number"] == invoice.number
    assert crm.deal_properties[DEAL.object_id]["closeloop_payment_status"] == "draft"


def test_exact_amount_is_not_flagged() -> None:
    sync, crm, _, _ = setup(won_deal(amount=Decimal("1238.75")))
    sync.sync(DEAL, [])
    assert crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"] == ""


def test_duplicates_and_re_entering_won_make_no_second_invoice() -> None:
    sync, _, books, _ = setup()
    for _ in range(5):
        sync.sync(DEAL, events_for(DEAL))
    assert len(books.invoices) == 1
    assert books.calls.count("create_invoice") == 1


def test_crash_between_create_and_mapping_is_healed_by_reference_lookup() -> None:
    sync, _, books, store = setup()
    books.fail_after_create = True
    with pytest.raises(RuntimeError):
        sync.sync(DEAL, [])
    assert store.get_mapping(DEAL, books.name) is None
    outcome = sync.sync(DEAL, [])
    assert outcome.action == "matched"
    assert outcome.detail == "found by reference" or "differs" in outcome.detail or "difference" in outcome.detail
    assert len(books.invoices) == 1


def test_unknown_sku_is_a_failed_sync_naming_it_and_no_invoice() -> None:
    deal = won_deal(line_items=(LineItem(crm_id="9", name="Mystery", sku="NOPE", unit_price=Decimal(1)),))
    sync, _, books, store = setup(deal)
    outcome = sync.sync(DEAL, [])
    assert outcome.action == "failed"
    failure = store.get_failed_sync(DEAL)
    assert failure is not None
    assert "NOPE" in failure.reason
    assert books.invoices == {}


def test_open_deal_is_skipped_quietly() -> None:
    sync, _, books, store = setup(won_deal(is_won=False, stage="presentationscheduled"))
    assert sync.sync(DEAL, []).action == "skipped"
    assert books.invoices == {}
    assert store.list_audit(DEAL) == []


def test_deal_for_a_never_synced_company_creates_the_customer_first() -> None:
    sync, _, books, store = setup()
    sync.sync(DEAL, [])
    (customer,) = books.records.values()
    assert customer.name == "Acme Ltd"
    assert next(iter(books.invoices.values())).customer_id == customer.id
    assert store.get_mapping(COMPANY, books.name) is not None


def test_us_sales_tax_is_a_separate_line_and_the_amount_check_ignores_it() -> None:
    rules = (
        TaxRule(
            countries=("US",),
            regions=("CA",),
            treatment="sales_tax_line",
            tax_type="NONE",
            sales_tax_rate=Decimal("7.25"),
            sales_tax_account_code="2200",
        ),
    )
    deal = won_deal(amount=Decimal("1238.75"))
    sync, crm, books, _ = setup(deal, InvoicePolicy(sku_item_codes={"RKT": "ROCKET-XL"}, tax_rules=rules))
    crm.customers[COMPANY] = Customer(ref=COMPANY, name="Acme Inc", address=Address(country="US", region="CA"))
    sync.sync(DEAL, [])
    (invoice,) = books.invoices.values()
    tax_line = books.drafts[invoice.id].lines[-1]
    assert (tax_line.unit_amount, tax_line.account_code) == (Decimal("89.81"), "2200")  # 7.25% of 1238.75
    assert crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"] == ""


def test_write_back_creates_missing_properties_once() -> None:
    sync, crm, _, _ = setup()
    assert crm.defined == set()
    sync.sync(DEAL, [])
    assert "closeloop_invoice_number" in crm.defined


def test_reference_carries_deal_id_and_name() -> None:
    assert invoice_reference(won_deal()) == "crm-deal-3000001 Big deal"


def test_the_properties_setup_creates_are_the_ones_the_crm_adapters_read_back() -> None:
    from closeloop.models import DEAL_SYNC_FIELDS
    from closeloop.sync.invoices import DEAL_PROPERTIES

    assert [p.name for p in DEAL_PROPERTIES] == list(DEAL_SYNC_FIELDS)


def test_field_rules_that_turn_invoicing_off_make_no_invoice() -> None:
    from closeloop.rules import FieldRules  # noqa: PLC0415

    sync, _, books, store = setup()
    sync.contacts.rules = FieldRules.load("invoice: {direction: off, source_of_truth: crm}")
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "skipped"
    assert books.invoices == {}
    assert [a.action for a in store.list_audit(DEAL)] == ["ignored"]
