"""Quotes run for a pair only when both systems carry them: HubSpot, SugarCRM or Pipedrive (its deal standing in)
with Xero, QuickBooks or Zoho Books today (each adapter implements the whole quote port), not a CRM or accounting
system whose spec lacks ``quote``."""

from __future__ import annotations

from typing import get_type_hints

import pytest

from closeloop import runtime
from closeloop.ports import QuoteAccounting, QuoteCrm
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import InvoicePolicy
from closeloop.sync.quotes import QuoteSync
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from tests.fakes import FakeQuoteCrm, MemoryStore


@pytest.mark.parametrize(
    ("crm", "books", "reason"),
    [
        ("hubspot", "xero", ""),
        ("pipedrive", "xero", ""),  # the deal stands in for Pipedrive's missing quotes
        ("hubspot", "quickbooks", ""),
        # SugarCRM's adapter implements the quote port (Quotes and their grouped lines) since issue 12.
        ("sugarcrm", "zohobooks", ""),
        ("sugarcrm", "xero", ""),
    ],
)
def test_quotes_are_on_only_where_both_specs_carry_them(
    monkeypatch: pytest.MonkeyPatch, crm: str, books: str, reason: str
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", crm)
    monkeypatch.setenv("ACCOUNTING_PROVIDER", books)
    runtime.reset()
    try:
        assert runtime.quotes_off_reason().startswith(reason)
        assert bool(runtime.quotes_off_reason()) == bool(reason)
    finally:
        runtime.reset()


def test_the_crm_and_accounting_adapters_that_declare_quotes_implement_the_quote_ports() -> None:
    # The protocols' methods, each present on the adapter that declares ``quote`` (no stub left out)
    pairs = ((QuoteCrm, HubSpotCrm), (QuoteCrm, PipedriveCrm), (QuoteCrm, SugarCrm), (QuoteAccounting, XeroAccounting))
    for protocol, adapter in pairs:
        wanted = {name for name in vars(protocol) if not name.startswith("_") and callable(vars(protocol)[name])}
        assert wanted and all(callable(getattr(adapter, name, None)) for name in wanted), (protocol, adapter)


@pytest.mark.parametrize("adapter", [XeroAccounting, QuickBooksAccounting, ZohoBooksAccounting])
def test_each_accounting_adapter_with_quotes_builds_a_quote_sync_and_declares_marks_invoiced_as_the_port_does(
    adapter: type[QuoteAccounting],
) -> None:
    # Given the port's own declaration of marks_invoiced: an instance attribute of type bool
    assert get_type_hints(QuoteAccounting)["marks_invoiced"] is bool
    # Then each adapter declares it the same way (a ClassVar[bool] is a class variable mypy refuses where the
    # port is expected) and has every method of the port
    declared = next(
        vars(c)["__annotations__"]["marks_invoiced"]
        for c in adapter.__mro__
        if "marks_invoiced" in vars(c).get("__annotations__", {})
    )
    assert declared in ("bool", bool), (adapter, declared)
    wanted = {
        name for name in vars(QuoteAccounting) if not name.startswith("_") and callable(vars(QuoteAccounting)[name])
    }
    assert all(callable(getattr(adapter, name, None)) for name in wanted), adapter
    # and a QuoteSync is built over an instance of it (nothing is called on the vendor)
    books = object.__new__(adapter)  # no HTTP client: the constructor would need credentials
    store = MemoryStore()
    crm = FakeQuoteCrm()
    sync = QuoteSync(crm, books, store, ContactSync(crm, books, store, owner="w"), InvoicePolicy(), owner="w")  # type: ignore[arg-type]
    assert sync.accounting is books and isinstance(books.marks_invoiced, bool)
