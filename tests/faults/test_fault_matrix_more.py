"""The rest of the fault-injection matrix over the local stack (reliability.md section 6, issue 4 item 1).

Poison messages (a malformed work message; a Xero path that answers 503 for longer than maxReceiveCount
receives) end in the DLQ, show in ``closeloop status`` and replay once fixed; two execution environments
race on the DynamoDB leases (customer and deal); a worker dies between the invoice mapping and the HubSpot
write-back; Xero 5xx bursts and a request slower than the client timeout. Every case checks that nothing
is lost (each acknowledged event is synced, dead-lettered, or a failed sync with its reason) and nothing is
duplicated (one Xero contact per company, one invoice per deal).

The handlers run in this process (``LocalStack``), so a crash, a second execution environment or a short
client timeout are set up in-process; faults on the vendors go through the sandboxes' ``Fault``.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from closeloop import runtime
from closeloop.errors import Busy
from closeloop.http import RetryPolicy
from closeloop.models import CrmRef, SyncEvent, WorkMessage
from closeloop.sync.contacts import ContactSync, Outcome
from closeloop.sync.invoices import DealSync
from closeloop_local import ops
from closeloop_local.devserver import sqs_record
from closeloop_local.sandboxes.base import Fault
from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e

TODAY = datetime.now(UTC).date().isoformat()
ITEM = "MTX-1"
CONTACTS = "/api.xro/2.0/Contacts"
INVOICES = "/api.xro/2.0/Invoices"
MAX_RECEIVE_COUNT = 5  # template.yaml: ContactQueue/DealQueue RedrivePolicy
CLIENT_ATTEMPTS = RetryPolicy().max_attempts


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def deployment(loop: Loop) -> Iterator[ops.Deployment]:
    deployment = ops.Deployment.from_local(loop.stack)
    yield deployment
    deployment.close()


def company_ref(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="company", object_id=str(object_id))


def deal_ref(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="deal", object_id=str(object_id))


def named(loop: Loop, name: str) -> list[dict[str, Any]]:
    return [c for c in loop.active_xero_contacts() if c.get("Name") == name]


def invoices_for(loop: Loop, deal_id: object) -> list[dict[str, Any]]:
    return [i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal_id} ")]


def puts(loop: Loop, path: str, marker: str) -> list[Any]:
    """Every PUT on ``path`` whose body carries ``marker`` (a name or a deal reference), faulted ones too."""
    return [r for r in loop.xero.state.calls("PUT", path) if marker.encode() in r.body]


def dead_letters(deployment: ops.Deployment) -> dict[str, tuple[int, int]]:
    """(visible, in flight) of each work queue's DLQ."""
    attributes = deployment.queue_attributes()
    return {
        dlq: (
            int(attributes[dlq]["ApproximateNumberOfMessages"]),
            int(attributes[dlq]["ApproximateNumberOfMessagesNotVisible"]),
        )
        for dlq in ("ContactDLQ", "DealDLQ")
    }


NO_DEAD_LETTERS = {"ContactDLQ": (0, 0), "DealDLQ": (0, 0)}


def event(ref: CrmRef, source_type: str, kind: str = "changed") -> SyncEvent:
    return SyncEvent(
        ref=ref,
        event_id=uuid.uuid4().hex,
        kind=kind,
        occurred_at=datetime.now(UTC),
        source_type=source_type,
        property_name="dealstage" if ref.object_type == "deal" else None,
        dedupe_key=f"fault-matrix:{ref.object_id}:{uuid.uuid4().hex}",
    )


def work_message(ref: CrmRef, source_type: str, kind: str = "changed") -> str:
    pipeline = "deals" if ref.object_type == "deal" else "contacts"
    return WorkMessage(pipeline=pipeline, events=[event(ref, source_type, kind)]).model_dump_json()


def seed_item(loop: Loop) -> None:
    if ITEM not in {i["Code"] for i in loop.xero.items()}:
        loop.xero.seed_item(Code=ITEM, Name="Matrix", SalesDetails={"UnitPrice": "40.00", "AccountCode": "200"})


def company_with_deal(loop: Loop, name: str, stage: str = "contractsent") -> tuple[dict[str, Any], dict[str, Any]]:
    """A HubSpot company and its deal of one 40.00 line, created in the sandbox (webhooks not yet sent)."""
    company = loop.hubspot.create_object("companies", {"name": name})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": f"{name} deal",
            "amount": "40.00",
            "dealstage": stage,
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY,
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    loop.hubspot.create_object(
        "line_items",
        {"name": "Matrix", "hs_sku": ITEM, "quantity": "1", "price": "40.00"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    return company, deal


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll sandbox state (never a fixed sleep) until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def answered(requests: list[Any]) -> bool:
    return all(r.status for r in requests)


def assert_nothing_lost_or_duplicated(
    loop: Loop, deployment: ops.Deployment, company: dict[str, Any], deal: dict[str, Any] | None = None
) -> None:
    """The module's invariant: one Xero contact for the company (one invoice for the deal), mapped, no failed
    sync, and nothing left in a DLQ."""
    name = str(company["properties"]["name"])
    (contact,) = named(loop, name)
    mapping = loop.store.get_mapping(company_ref(company["id"]), "xero")
    assert mapping is not None
    assert mapping.accounting_id == contact["ContactID"]
    assert loop.store.get_failed_sync(company_ref(company["id"])) is None
    if deal is not None:
        (invoice,) = invoices_for(loop, deal["id"])
        deal_mapping = loop.store.get_mapping(deal_ref(deal["id"]), "xero")
        assert deal_mapping is not None
        assert deal_mapping.accounting_id == invoice["InvoiceID"]
        assert deal_mapping.snapshot["written_back"] == "yes"
        assert invoice["Contact"]["ContactID"] == contact["ContactID"]
        props = loop.hubspot.get_object("deals", deal["id"])["properties"]
        assert props["closeloop_invoice_number"] == invoice["InvoiceNumber"]
        assert loop.store.get_failed_sync(deal_ref(deal["id"])) is None
    assert dead_letters(deployment) == NO_DEAD_LETTERS


# ------------------------------------------------------------------------------- 1. poison messages


def test_a_malformed_work_message_fails_alone_then_dead_letters_and_shows_in_status(
    loop: Loop, deployment: ops.Deployment
) -> None:
    sqs = deployment.sqs
    queue_url, dlq_url = deployment.queue_url("ContactQueue"), deployment.queue_url("ContactDLQ")
    first = loop.hubspot.create_object("companies", {"name": "Batchmate One Ltd"})
    second = loop.hubspot.create_object("companies", {"name": "Batchmate Two Ltd"})
    good = work_message(company_ref(first["id"]), "company.creation", "created")
    malformed = good[: len(good) // 2]  # a truncated body: not JSON, no pipeline can make progress on it

    # When one batch holds the malformed body and a good one (the worker invoked as the event source does)
    queue_arn = deployment.queue_attributes()["ContactQueue"]["QueueArn"]
    records = [
        sqs_record(
            {"MessageId": mid, "ReceiptHandle": f"rh-{mid}", "Body": body}, queue_arn=queue_arn, region="us-east-1"
        )
        for mid, body in (("poison-1", malformed), ("good-1", good))
    ]
    result = loop.stack.invoke("ContactWorkerFunction", {"Records": records})
    # Then only the malformed record is reported failed (partial batch failure): the good one synced
    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    assert len(named(loop, "Batchmate One Ltd")) == 1

    # When the same poison travels through the queue beside another good message
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "poison", "MessageBody": malformed},
            {"Id": "good", "MessageBody": work_message(company_ref(second["id"]), "company.creation", "created")},
        ],
    )
    loop.stack.drain(timeout=60)
    # Then the good one synced once, and the poison waits in the DLQ after maxReceiveCount receives
    assert len(named(loop, "Batchmate Two Ltd")) == 1
    assert len(puts(loop, CONTACTS, "Batchmate Two")) == 1
    assert dead_letters(deployment)["ContactDLQ"] == (1, 0)

    # And `closeloop status` shows it, with the replay command to run
    report = ops.status_report(deployment, datetime.now(UTC))
    (row,) = [q for q in report["queues"] if q["queue"] == "ContactDLQ"]
    assert (row["visible"], row["source_queue"]) == (1, "ContactQueue")
    assert "closeloop replay --queue ContactDLQ" in ops.render_status(report)

    # And `closeloop replay --dry-run` lists it (without its body) and moves nothing
    out = io.StringIO()
    (move,) = ops.replay(deployment, "ContactDLQ", dry_run=True, out=out, progress=io.StringIO())
    assert len(move.message_ids) == 1
    assert f"{move.message_ids[0]}  (not a work message)" in out.getvalue()
    assert "would move 1 message(s) from ContactDLQ to ContactQueue" in out.getvalue()
    assert dead_letters(deployment)["ContactDLQ"] == (1, 0)

    # (The operator discards the unfixable message: the next cases start with empty DLQs.)
    (message,) = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
    assert message["Body"] == malformed
    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])


def test_xero_503_on_one_contact_outliving_the_receives_dead_letters_then_replays_once_fixed(
    loop: Loop, deployment: ops.Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a company already in Xero
    company = loop.hubspot.create_object("companies", {"name": "Poison Pen Ltd", "city": "Oxford"})
    loop.settle()
    (contact,) = named(loop, "Poison Pen Ltd")
    path = f"{CONTACTS}/{contact['ContactID']}"  # the update: POST /Contacts/{ContactID}
    # (the client's backoff shortened: the attempts per receive stay as they are, the test stays fast)
    monkeypatch.setattr(runtime.accounting().http, "policy", RetryPolicy(base_delay=0.01, max_delay=0.02))
    # And Xero answers 503 to every write to that contact, for longer than every receive of its update
    outage = Fault(path, 503, times=10_000, method="POST")
    loop.xero.state.faults.append(outage)
    try:
        # When the company changes in HubSpot (the webhook is acknowledged)
        loop.hubspot.update_object("companies", company["id"], {"city": "Cambridge"})
        loop.settle()
        # Then the update is neither applied nor lost: it waits in the DLQ after maxReceiveCount receives,
        # each of which tried the client's attempts
        writes = loop.xero.state.calls("POST", path)
        assert dead_letters(deployment) == {"ContactDLQ": (1, 0), "DealDLQ": (0, 0)}
        assert len(writes) == MAX_RECEIVE_COUNT * CLIENT_ATTEMPTS
        assert {r.status for r in writes} == {503}
        assert [a.action for a in loop.store.list_audit(company_ref(company["id"]))] == ["created"]
        report = ops.status_report(deployment, datetime.now(UTC))
        (row,) = [q for q in report["queues"] if q["queue"] == "ContactDLQ"]
        assert row["visible"] == 1
        assert "closeloop replay --queue ContactDLQ" in ops.render_status(report)
    finally:
        outage.times = 0  # the outage is over
    # When the operator looks first with --dry-run
    out = io.StringIO()
    (listed,) = ops.replay(deployment, "ContactQueue", dry_run=True, out=out, progress=io.StringIO())
    # Then the message is listed by id, pipeline and ref, and stays where it is
    assert len(listed.message_ids) == 1
    assert f"contacts  hubspot/company/{company['id']}" in out.getvalue()
    assert dead_letters(deployment)["ContactDLQ"] == (1, 0)
    assert len(loop.xero.state.calls("POST", path)) == len(writes)
    # When the DLQ is replayed
    out = io.StringIO()
    (moved,) = ops.replay(deployment, "ContactQueue", out=out, progress=io.StringIO())
    loop.stack.drain(timeout=60)
    # Then it moved, and the company synced exactly once: one update, one contact, nothing left over
    assert moved.message_ids == listed.message_ids
    assert out.getvalue().splitlines()[-1] == "moved 1 message(s) from ContactDLQ to ContactQueue"
    assert [r.status for r in loop.xero.state.calls("POST", path)[len(writes) :]] == [200]
    audit = loop.store.list_audit(company_ref(company["id"]))
    assert [a.action for a in audit] == ["created", "updated"]
    assert audit[1].changes == {"address.city": {"before": "Oxford", "after": "Cambridge"}}
    assert_nothing_lost_or_duplicated(loop, deployment, company)


# ------------------------------------------------------------------------- 2. conditional-check races


class Environments:
    """Separate Lambda execution environments: each its own pipelines and lease owner (in AWS each
    function runs in its own process; here every function shares ``closeloop.runtime``'s caches, so one
    owner, which would let the leases be re-entered by the other function)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []  # (environment, ref, action or exception)

    def contacts(self, name: str) -> ContactSync:
        contacts = ContactSync(runtime.crm(), runtime.accounting(), runtime.store(), owner=f"{name}-{uuid.uuid4().hex}")
        one, many = contacts.sync, getattr(contacts, "sync_many", None)

        def sync(ref: CrmRef, events: Any) -> Outcome:
            try:
                outcome = one(ref, events)
            except Busy:
                self.record(name, ref, "Busy")
                raise
            self.record(name, ref, outcome.action)
            return outcome

        def sync_many(groups: Any) -> dict[CrmRef, Any]:  # the contact worker's bulk path, where it has one
            results = many(groups)  # type: ignore[misc]
            for ref, result in results.items():
                self.record(name, ref, result.action if isinstance(result, Outcome) else type(result).__name__)
            return results  # type: ignore[no-any-return]

        contacts.sync = sync  # type: ignore[method-assign]
        if many is not None:
            contacts.sync_many = sync_many  # type: ignore[method-assign]
        return contacts

    def deals(self, name: str) -> DealSync:
        contacts = self.contacts(name)
        deals = DealSync(
            runtime.crm(),
            runtime.accounting(),
            runtime.store(),
            contacts,
            runtime.invoice_policy(),
            owner=contacts.owner,
        )
        real = deals.sync

        def recorded(ref: CrmRef, events: Any) -> Outcome:
            try:
                outcome = real(ref, events)
            except Busy as exc:
                self.record(name, ref, f"Busy: {exc.message}")
                raise
            self.record(name, ref, outcome.action)
            return outcome

        deals.sync = recorded  # type: ignore[method-assign]
        return deals

    def record(self, name: str, ref: CrmRef, what: str) -> None:
        with self.lock:
            self.seen.append((name, str(ref), what))

    def of(self, ref: CrmRef, name: str | None = None) -> list[str]:
        with self.lock:
            return [what for who, seen, what in self.seen if seen == str(ref) and name in (None, who)]


def test_contact_and_deal_workers_racing_on_one_new_customer_create_it_once(
    loop: Loop, deployment: ops.Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_item(loop)
    company, deal = company_with_deal(loop, "Photo Finish Ltd", stage="closedwon")
    customer = company_ref(company["id"])
    # Given the two queue workers in their own execution environments (own lease owners)
    envs = Environments()
    contact_worker = runtime._worker(envs.contacts("contact-env"))
    deal_worker = runtime._worker(envs.deals("deal-env"))
    monkeypatch.setattr(runtime, "contact_worker", lambda: contact_worker)
    monkeypatch.setattr(runtime, "deal_worker", lambda: deal_worker)
    # And Xero slow to create the contact (the lease holder keeps the lease for two seconds)
    loop.xero.state.faults.append(Fault(CONTACTS, 0, times=1, method="PUT", delay=2.0))
    # When the company's creation and the deal's win arrive together, one on each queue
    deployment.sqs.send_message(
        QueueUrl=deployment.queue_url("ContactQueue"),
        MessageBody=work_message(customer, "company.creation", "created"),
    )
    deployment.sqs.send_message(
        QueueUrl=deployment.queue_url("DealQueue"),
        MessageBody=work_message(deal_ref(deal["id"]), "deal.propertyChange"),
    )
    loop.stack.drain(timeout=60)
    # Then the customer lease let exactly one create through; the loser was Busy, retried, then unchanged
    seen = envs.of(customer)
    assert seen.count("created") == 1
    assert "Busy" in seen
    (loser,) = {who for who, ref, what in envs.seen if ref == str(customer) and what == "Busy"}
    assert envs.of(customer, loser)[-1] == "unchanged"
    assert len(puts(loop, CONTACTS, "Photo Finish")) == 1
    # And the HubSpot deliveries that were waiting change nothing
    loop.settle()
    assert len(puts(loop, CONTACTS, "Photo Finish")) == 1
    assert len(puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")) == 1
    assert_nothing_lost_or_duplicated(loop, deployment, company, deal)


def test_two_workers_racing_on_one_deal_make_one_invoice_and_the_loser_finds_it(
    loop: Loop, deployment: ops.Deployment
) -> None:
    seed_item(loop)
    company, deal = company_with_deal(loop, "Dead Heat Ltd")
    loop.settle()
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})  # its webhook is held back
    ref = deal_ref(deal["id"])
    # Given two deal workers in two execution environments, and Xero slow to create the invoice
    envs = Environments()
    workers = {name: runtime._worker(envs.deals(name)) for name in ("env-a", "env-b")}
    bodies = {name: work_message(ref, "deal.propertyChange") for name in workers}  # two distinct deliveries
    loop.xero.state.faults.append(Fault(INVOICES, 0, times=1, method="PUT", delay=2.0))
    start = threading.Barrier(2)

    def run(name: str) -> list[dict[str, Any]]:
        start.wait(timeout=10)
        return workers[name].handle_message(bodies[name])  # type: ignore[no-any-return]

    # When both take their message at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, name) for name in workers}
        outcomes = {name: (f.exception(timeout=60) or f.result()) for name, f in futures.items()}
    # Then one created the invoice; the other found the deal lease taken (Busy: its message is retried)
    (winner,) = [n for n, o in outcomes.items() if isinstance(o, list)]
    (loser,) = [n for n, o in outcomes.items() if isinstance(o, Busy)]
    assert [r["action"] for r in outcomes[winner]] == ["created"]
    assert "being invoiced by another worker" in str(outcomes[loser])
    # When the loser's message comes back
    retried = workers[loser].handle_message(bodies[loser])
    # Then it is a no-op: the invoice exists, once
    assert [(r["action"], r["detail"]) for r in retried] == [("unchanged", "already invoiced")]
    assert len(puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")) == 1
    assert [a.action for a in loop.store.list_audit(ref)] == ["invoiced"]
    # And the held-back webhook (a third delivery, through the stack) changes nothing
    loop.settle()
    assert len(puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")) == 1
    assert_nothing_lost_or_duplicated(loop, deployment, company, deal)


# ------------------------------------------------------------- 3. crash between mapping and write-back


def test_worker_killed_after_the_invoice_mapping_before_the_write_back_writes_back_on_redelivery(
    loop: Loop, deployment: ops.Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_item(loop)
    company, deal = company_with_deal(loop, "Half Done Ltd")
    loop.settle()
    ref = deal_ref(deal["id"])
    real_write_back = DealSync._write_back
    crashes: list[Any] = []

    def crash_once(self: DealSync, at: CrmRef, invoice: Any, issue: str) -> None:
        if at == ref and not crashes:
            crashes.append(self.store.get_mapping(at, "xero"))  # what the crash leaves behind
            raise RuntimeError("the Lambda was killed")  # unexpected: the message comes back, nothing is done
        real_write_back(self, at, invoice, issue)

    # Given the worker dies after storing the invoice mapping, before writing the invoice back to HubSpot
    monkeypatch.setattr(DealSync, "_write_back", crash_once)
    write_backs_before = len(loop.hubspot.state.calls("POST", "/crm/v3/objects/deals/batch/update"))
    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then the crash happened with the mapping stored and not written back
    (left,) = crashes
    assert left is not None
    assert left.snapshot["written_back"] == "no"
    # And the redelivery wrote it back from the mapping: one invoice, created once, written back once
    (invoice,) = invoices_for(loop, deal["id"])
    assert left.accounting_id == invoice["InvoiceID"]
    assert len(puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")) == 1
    assert [a.action for a in loop.store.list_audit(ref)] == ["invoiced"]
    write_backs = loop.hubspot.state.calls("POST", "/crm/v3/objects/deals/batch/update")[write_backs_before:]
    assert len([w for w in write_backs if str(deal["id"]).encode() in w.body]) == 1
    assert_nothing_lost_or_duplicated(loop, deployment, company, deal)


# ------------------------------------------------------------------------ 4. Xero 5xx and timeouts


def test_xero_5xx_bursts_on_both_creates_are_retried_with_the_same_key_and_leave_one_of_each(
    loop: Loop, deployment: ops.Deployment
) -> None:
    seed_item(loop)
    statuses = (500, 502, 503)  # fewer than the client's attempts
    assert len(statuses) < CLIENT_ATTEMPTS
    # Given Xero answers a burst of 5xx to the contact create
    loop.xero.state.faults.extend(Fault(CONTACTS, s, method="PUT") for s in statuses)
    company, deal = company_with_deal(loop, "Burst Pipe Ltd")
    loop.settle()
    # And another burst to the invoice create
    loop.xero.state.faults.extend(Fault(INVOICES, s, method="PUT") for s in (504, 503, 502))
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then each create was retried within the invocation, with the same Idempotency-Key, until it succeeded
    contact_puts = puts(loop, CONTACTS, "Burst Pipe")
    invoice_puts = puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")
    assert [r.status for r in contact_puts] == [500, 502, 503, 200]
    assert [r.status for r in invoice_puts] == [504, 503, 502, 200]
    for calls in (contact_puts, invoice_puts):
        assert len({r.headers["idempotency-key"] for r in calls}) == 1
    assert [f for f in loop.xero.state.faults if f.times > 0] == []
    assert_nothing_lost_or_duplicated(loop, deployment, company, deal)


def test_xero_slower_than_the_client_timeout_leaves_one_contact_and_one_invoice(
    loop: Loop, deployment: ops.Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_item(loop)
    # Given the worker's Xero client times out after one second (in AWS: 15 s; the handlers run in this
    # process, so the very client they use is shortened)
    monkeypatch.setattr(runtime.accounting().http._client, "timeout", httpx.Timeout(1.0))
    # And Xero takes 2.5 s over the first contact create and the first invoice create, then does them
    loop.xero.state.faults.append(Fault(CONTACTS, 0, times=1, method="PUT", delay=2.5))
    company, deal = company_with_deal(loop, "Slow Boat Ltd")
    loop.settle()
    loop.xero.state.faults.append(Fault(INVOICES, 0, times=1, method="PUT", delay=2.5))
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # (the timed-out originals are still being answered by the sandbox: let them land)
    contact_puts = puts(loop, CONTACTS, "Slow Boat")
    invoice_puts = puts(loop, INVOICES, f"hubspot-deal-{deal['id']} ")
    wait_for(lambda: answered(contact_puts) and answered(invoice_puts))
    # Then each create was sent twice (the timed-out one, then its retry) under one Idempotency-Key,
    # and Xero holds one contact and one invoice
    assert len(contact_puts) == 2
    assert len(invoice_puts) == 2
    for calls in (contact_puts, invoice_puts):
        assert len({r.headers["idempotency-key"] for r in calls}) == 1
    assert_nothing_lost_or_duplicated(loop, deployment, company, deal)
