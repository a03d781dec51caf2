"""DealSync: a won deal becomes exactly one invoice, traceable, checked to the cent, written back."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from closeloop.errors import Unanswered, Unavailable, ValidationFailed
from closeloop.models import Address, Customer, LineItem
from closeloop.sync.invoices import InvoicePolicy, invoice_reference
from closeloop.sync.tax import TaxRule
from tests.deal_sync_support import COMPANY, DEAL, setup, won_deal
from tests.fakes import FakeBooks, events_for


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


# -- emailing the invoice: exactly once, even across crashes --------------------------------------------

MAILING = InvoicePolicy(
    status="AUTHORISED",
    send_email=True,
    sku_item_codes={"RKT": "ROCKET-XL"},
    tax_rules=(TaxRule(countries=("NZ",), tax_type="OUTPUT2"),),
)


@dataclass
class MailingBooks(FakeBooks):
    """FakeBooks whose next sends fail as scripted: (the error, whether the email went out before it)."""

    send_failures: list[tuple[BaseException, bool]] = field(default_factory=list)
    send_calls: int = 0

    def send_invoice(self, invoice_id: str) -> None:
        self.send_calls += 1
        if not self.send_failures:
            self.sent.append(invoice_id)
            return
        error, emailed = self.send_failures.pop(0)
        if emailed:
            self.sent.append(invoice_id)
        raise error


def test_an_authorised_invoice_is_emailed_once_however_often_the_deal_comes_back() -> None:
    sync, _, books, _ = setup(policy=MAILING, books=MailingBooks())
    for _ in range(3):
        sync.sync(DEAL, events_for(DEAL))
    (invoice_id,) = books.invoices
    assert books.sent == [invoice_id]


def test_a_crash_between_create_and_send_is_healed_by_one_send_on_the_next_attempt() -> None:
    # Given the worker dies right after the vendor created the invoice (nothing emailed, nothing mapped)
    sync, _, books, store = setup(policy=MAILING, books=MailingBooks())
    books.fail_after_create = True
    with pytest.raises(RuntimeError):
        sync.sync(DEAL, [])
    assert books.sent == []
    marker = store.get_invoice_email(DEAL, books.name)
    assert marker is not None and marker.state == "to_send"
    # When the message is redelivered (twice)
    first = sync.sync(DEAL, [])
    sync.sync(DEAL, [])
    # Then the invoice found by its reference is linked and emailed exactly once
    (invoice_id,) = books.invoices
    assert first.action == "matched"
    assert books.sent == [invoice_id]
    marker = store.get_invoice_email(DEAL, books.name)
    assert marker is not None and (marker.state, marker.invoice_id) == ("sent", invoice_id)


def test_a_lost_send_answer_is_a_failed_sync_to_check_and_is_never_re_sent() -> None:
    # Given the vendor emails the invoice but its answer is lost (a 5xx or timeout after sending)
    books = MailingBooks(send_failures=[(Unanswered("POST /email failed after the request was sent"), True)])
    sync, _, books, store = setup(policy=MAILING, books=books)
    outcome = sync.sync(DEAL, events_for(DEAL))
    # Then the sync fails saying the email may not have been sent, with the invoice linked all the same
    assert outcome.action == "failed"
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "may not have been sent" in failure.reason
    assert store.get_mapping(DEAL, books.name) is not None
    # And no later attempt sends it again: the person checks
    for _ in range(2):
        sync.sync(DEAL, [])
    assert books.send_calls == 1
    assert len(books.sent) == 1
    assert store.get_failed_sync(DEAL) is not None
    assert any(a.action == "flagged" and "may not have been sent" in a.detail for a in store.list_audit(DEAL))


def test_a_worker_that_died_mid_send_is_not_followed_by_a_second_send() -> None:
    # Given the worker died while the send request was in flight (the vendor emailed it)
    books = MailingBooks(send_failures=[(RuntimeError("the Lambda timed out mid-call"), True)])
    sync, _, books, store = setup(policy=MAILING, books=books)
    with pytest.raises(RuntimeError):
        sync.sync(DEAL, [])
    # When the message is redelivered
    outcome = sync.sync(DEAL, [])
    # Then nothing is re-sent; the sync is failed for a person to check
    assert (outcome.action, books.send_calls, len(books.sent)) == ("failed", 1, 1)
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "may not have been sent" in failure.reason


@pytest.mark.parametrize(
    "not_sent",
    [ValidationFailed("no email address for the customer"), Unavailable("ConnectError")],
    ids=["refused", "never-reached"],
)
def test_a_send_that_surely_did_not_go_out_stays_owed_and_is_sent_once_later(not_sent: Exception) -> None:
    # Given the vendor refused the send, or could not be reached at all
    books = MailingBooks(send_failures=[(not_sent, False)])
    sync, _, books, store = setup(policy=MAILING, books=books)
    if isinstance(not_sent, ValidationFailed):
        assert sync.sync(DEAL, []).action == "failed"
    else:
        with pytest.raises(Unavailable):  # the queue retries the message
            sync.sync(DEAL, [])
    # Then the invoice is linked, and the email still owed
    assert store.get_mapping(DEAL, books.name) is not None
    marker = store.get_invoice_email(DEAL, books.name)
    assert marker is not None and marker.state == "to_send"
    # When the deal comes back (twice), Then it is emailed exactly once
    sync.sync(DEAL, [])
    sync.sync(DEAL, [])
    assert books.sent == list(books.invoices)
    assert books.send_calls == 2


def test_a_draft_invoice_is_not_emailed_then_or_later() -> None:
    draft_policy = InvoicePolicy(
        status="DRAFT", send_email=True, sku_item_codes=MAILING.sku_item_codes, tax_rules=MAILING.tax_rules
    )
    sync, _, books, store = setup(policy=draft_policy, books=MailingBooks())
    sync.sync(DEAL, [])
    # Even once finance approves it and the deal comes back
    (invoice_id,) = books.invoices
    books.invoices[invoice_id] = books.invoices[invoice_id].model_copy(update={"status": "AUTHORISED"})
    sync.sync(DEAL, [])
    assert books.send_calls == 0
    marker = store.get_invoice_email(DEAL, books.name)
    assert marker is not None and marker.state == "skipped"
