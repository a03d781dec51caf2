"""The fault matrix's vendor cases for every pair: transient errors and rate limits on either side.

Each case ends with nothing lost (the record synced, no failed sync, both DLQs empty) and nothing
duplicated (one customer per company, one invoice per deal). Faults are injected in the sandboxes, so the
adapters meet them as HTTP answers, exactly as they would meet the vendor's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from closeloop.models import CrmRef
from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.base import Fault
from closeloop_local.sandboxes.drivers import DealLine

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()
WRITES = ("POST", "PUT", "PATCH")


def dead_letters(pair: Pair) -> int:
    sqs = pair.stack._client("sqs")  # the stack's own client on its AWS endpoint
    total = 0
    for dlq in ("ContactDLQ", "DealDLQ"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=pair.stack.resources[dlq],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        total += sum(int(v) for v in attributes.values())
    return total


def met(faults: list[Fault]) -> int:
    """How many injected answers the adapters actually received (a case that met none proves nothing)."""
    return sum(1 for f in faults if f.times == 0)


def one_customer(pair: Pair, ref: CrmRef, name: str) -> None:
    mapping = pair.store.get_mapping(ref, pair.books.name)
    assert mapping is not None, f"{name} was not synced: {pair.store.get_failed_sync(ref)}"
    assert [c.id for c in pair.books.customers() if c.active and c.name == name] == [mapping.accounting_id]
    assert pair.store.get_failed_sync(ref) is None


def test_accounting_5xx_on_writes_are_retried_to_one_customer_and_one_invoice(pair: Pair) -> None:
    line = DealLine("FLT-5XX", "Fault tolerant widget", Decimal(2), Decimal("10.00"))
    pair.books.seed_item(line.sku, line.name, line.unit_price)
    # Given the accounting API answers its next writes with 500, 502 and 503
    for status in (500, 502, 503):
        for method in WRITES:
            pair.books.state.faults.append(Fault("*", status, times=1, method=method))
    # When a company is created and a deal for it is won
    company = pair.crm.create_company("Resilient Rotors Ltd", email="ap@rotors.test", country="GB")
    pair.settle()
    deal = pair.crm.create_won_deal(company, [line], currency=pair.books.currency)
    pair.settle()
    assert met(pair.books.state.faults) >= 3
    pair.books.state.faults.clear()
    # Then one customer and one invoice exist, written back, and nothing waits in a DLQ
    one_customer(pair, company, "Resilient Rotors Ltd")
    key = f"{deal.crm}-deal-{deal.object_id}"
    assert len([i for i in pair.books.invoices() if i.reference.split(" ")[0] == key]) == 1
    assert pair.crm.deal_fields(deal).get("closeloop_invoice_number")
    assert dead_letters(pair) == 0


def test_an_accounting_rate_limit_storm_delays_but_never_duplicates(pair: Pair) -> None:
    # Given the accounting API rate-limits its next reads and writes (429, Retry-After 1 s)
    for method in ("GET", *WRITES):
        pair.books.state.faults.append(Fault("*", 429, times=2, method=method, headers={"Retry-After": "1"}))
    # When a company is created
    company = pair.crm.create_company("Patient Pumps Ltd", email="ap@pumps.test", country="GB")
    pair.settle()
    assert met(pair.books.state.faults) >= 2
    pair.books.state.faults.clear()
    pair.stack.drain(timeout=90)
    # Then it ends synced once
    one_customer(pair, company, "Patient Pumps Ltd")
    assert dead_letters(pair) == 0


def test_a_crm_rate_limit_on_the_write_back_still_writes_back_once(pair: Pair) -> None:
    line = DealLine("FLT-429", "Throttled widget", Decimal(1), Decimal("25.00"))
    pair.books.seed_item(line.sku, line.name, line.unit_price)
    company = pair.crm.create_company("Throttle Works Ltd", email="ap@throttle.test", country="GB")
    pair.settle()
    # Given the CRM rate-limits its next writes
    for method in WRITES:
        pair.crm.state.faults.append(Fault("*", 429, times=2, method=method, headers={"Retry-After": "1"}))
    # When a deal is won (the deal is created before the faults bite: the driver writes in-process)
    deal = pair.crm.create_won_deal(company, [line], currency=pair.books.currency)
    pair.settle()
    assert met(pair.crm.state.faults) >= 1
    pair.crm.state.faults.clear()
    pair.stack.drain(timeout=90)
    # Then one invoice, and the deal shows it
    key = f"{deal.crm}-deal-{deal.object_id}"
    assert len([i for i in pair.books.invoices() if i.reference.split(" ")[0] == key]) == 1
    assert pair.crm.deal_fields(deal).get("closeloop_invoice_number")
    assert dead_letters(pair) == 0


def test_duplicate_deliveries_and_repeated_catch_ups_leave_one_customer_and_one_invoice(pair: Pair) -> None:
    line = DealLine("DUP-1", "Duplicated widget", Decimal(4), Decimal("2.50"))
    pair.books.seed_item(line.sku, line.name, line.unit_price)
    pair.poll()  # the catch-up watermark stands before the changes below
    # Given a new company and a won deal for it, announced by webhook
    company = pair.crm.create_company("Echo Echo Ltd", email="ap@echo.test", country="GB")
    deal = pair.crm.create_won_deal(company, [line], currency=pair.books.currency)
    pair.crm.flush_webhooks()
    # When the catch-up poll queues the same changes three more times while the workers run
    for _ in range(3):
        pair.poll()
    pair.stack.drain(timeout=90)
    # Then one customer and one invoice exist, written back, and nothing failed
    one_customer(pair, company, "Echo Echo Ltd")
    key = f"{deal.crm}-deal-{deal.object_id}"
    assert len([i for i in pair.books.invoices() if i.reference.split(" ")[0] == key]) == 1
    assert pair.crm.deal_fields(deal).get("closeloop_invoice_number")
    assert pair.store.get_failed_sync(deal) is None
    assert dead_letters(pair) == 0


def test_expired_access_tokens_mid_run_are_refreshed_and_nothing_is_lost(pair: Pair) -> None:
    # Given the accounting system has expired every access token it issued (as after a long pause)
    pair.books.sandbox.expire_access_tokens()  # type: ignore[attr-defined]
    # When a company is created
    company = pair.crm.create_company("Refreshed Rivets Ltd", email="ap@rivets.test", country="GB")
    pair.settle()
    # Then the adapter refreshed and synced it once
    one_customer(pair, company, "Refreshed Rivets Ltd")
    assert dead_letters(pair) == 0


def _delayed(pair: Pair, queue: str) -> int:
    attributes = pair.stack._client("sqs").get_queue_attributes(
        QueueUrl=pair.stack.resources[queue], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def test_a_revoked_connection_parks_the_work_and_alerts_once_instead_of_dead_lettering(pair: Pair) -> None:
    # (runs last in this module: the connection stays revoked)
    sqs, sns = pair.stack._client("sqs"), pair.stack._client("sns")
    inbox = sqs.create_queue(QueueName=f"operator-inbox-{pair.crm.name}-{pair.books.name}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=pair.stack.resources["AlertTopic"], Protocol="sqs", Endpoint=inbox_arn)
    # Given someone disconnected Closeloop in the accounting system
    pair.books.sandbox.revoke_refresh_tokens()  # type: ignore[attr-defined]
    pair.books.sandbox.expire_access_tokens()  # type: ignore[attr-defined]
    # When a company is created and the workers meet the revoked connection
    pair.crm.create_company("Disconnected Dynamics Ltd", email="ap@disconnected.test", country="GB")
    pair.crm.flush_webhooks()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _delayed(pair, "ContactQueue") < 1:
        time.sleep(0.2)
    # Then the messages wait in the work queue (one per delivery: Pipedrive sends the person apart from the
    # organisation), nothing reached the DLQ or the accounting system
    assert _delayed(pair, "ContactQueue") >= 1
    assert dead_letters(pair) == 0
    assert not [c for c in pair.books.customers() if c.name == "Disconnected Dynamics Ltd"]
    # And the operator was told once
    alerts = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(alerts) == 1
    assert "AuthRevoked" in alerts[0]["Body"]
    sqs.purge_queue(QueueUrl=pair.stack.resources["ContactQueue"])
