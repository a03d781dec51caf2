"""DynamoStore's review list, checkpoints and invoice email markers, on moto with the template's table schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from closeloop.models import CrmRef
from closeloop.ports import InvoiceEmail, ReviewItem
from closeloop.store import DynamoStore


@pytest.fixture
def store() -> Iterator[DynamoStore]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GSI1PK", "GSI1SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "GSI1",
                    "KeySchema": [
                        {"AttributeName": "GSI1PK", "KeyType": "HASH"},
                        {"AttributeName": "GSI1SK", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoStore("sync", client)


def item(object_id: str, candidate: str = "acc-1") -> ReviewItem:
    return ReviewItem(
        ref=CrmRef(crm="crm", object_type="company", object_id=object_id),
        system="books",
        candidate_id=candidate,
        score=0.7312,
        reasons=("similar name", "same postcode"),
        crm_name=f"Company {object_id}",
        candidate_name="Company Ltd",
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    )


def test_pending_reviews_are_listed_decided_once_and_never_asked_again(store: DynamoStore) -> None:
    # Given two uncertain matches
    store.put_review(item("1"))
    store.put_review(item("2"))
    assert [r.ref.object_id for r in store.list_reviews("books")] == ["1", "2"]
    # When one is accepted
    decided = store.decide_review(item("1").ref, "books", "accepted", "fin@example")
    # Then it leaves the pending list, keeps its decision, and a later backfill does not re-open it
    assert (decided.status, decided.decided_by) == ("accepted", "fin@example")
    store.put_review(item("1", candidate="acc-9"))
    again = store.get_review(item("1").ref, "books")
    assert again is not None
    assert (again.status, again.candidate_id, again.reasons) == ("accepted", "acc-1", ("similar name", "same postcode"))
    assert [r.ref.object_id for r in store.list_reviews("books")] == ["2"]
    assert [r.ref.object_id for r in store.list_reviews("books", "accepted")] == ["1"]
    # And deciding twice is refused
    with pytest.raises(KeyError):
        store.decide_review(item("1").ref, "books", "rejected", "someone")


def test_checkpoints_round_trip_and_can_be_cleared(store: DynamoStore) -> None:
    assert store.get_checkpoint("backfill-contacts") is None
    store.put_checkpoint("backfill-contacts", {"position": 300, "since": "2026-01-01"})
    assert store.get_checkpoint("backfill-contacts") == {"position": 300, "since": "2026-01-01"}
    store.delete_checkpoint("backfill-contacts")
    assert store.get_checkpoint("backfill-contacts") is None


def test_conflicts_are_listed_by_system_and_time_for_the_report(store: DynamoStore) -> None:
    from closeloop.ports import AuditRecord  # noqa: PLC0415

    def audit(action: str, day: int) -> AuditRecord:
        return AuditRecord(
            ref=CrmRef(crm="crm", object_type="company", object_id=str(day)),
            at=datetime(2026, 10, day, 9, 0, tzinfo=UTC),
            action=action,
            system="books",
            target_id="acc-1",
            actor="",
            source_event="",
            changes={"name": {"before": "A", "after": "B"}},
        )

    for action, day in (("conflict", 3), ("updated", 4), ("conflict", 20), ("conflict", 31)):
        store.put_audit(audit(action, day))
    found = store.list_conflicts("books", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC))
    assert [(c.ref.object_id, c.action, c.changes) for c in found] == [
        ("3", "conflict", {"name": {"before": "A", "after": "B"}}),
        ("20", "conflict", {"name": {"before": "A", "after": "B"}}),
    ]
    assert store.list_conflicts("other", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)) == []


def test_invoice_email_markers_round_trip_per_deal_and_system(store: DynamoStore) -> None:
    deal = CrmRef(crm="crm", object_type="deal", object_id="7")
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert store.get_invoice_email(deal, "books") is None
    # When the marker moves from owed to sent
    store.put_invoice_email(InvoiceEmail(deal, "books", "to_send", "", at))
    store.put_invoice_email(InvoiceEmail(deal, "books", "sent", "inv-1", at))
    # Then the latest state is read back, and it is the deal's and the system's own
    assert store.get_invoice_email(deal, "books") == InvoiceEmail(deal, "books", "sent", "inv-1", at)
    assert store.get_invoice_email(deal, "other") is None
    assert store.get_mapping(deal, "books") is None  # not a mapping
