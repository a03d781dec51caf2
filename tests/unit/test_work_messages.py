"""Work messages: one union told apart by ``kind``; bodies queued before ``kind`` existed still read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closeloop.models import (
    AccountingEvent,
    AccountingWorkMessage,
    BackfillWorkMessage,
    UnreadableMessage,
    WorkMessage,
    read_work_message,
)
from tests.fakes import events_for, ref

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def accounting_event(resource_id: str = "acc-1") -> AccountingEvent:
    return AccountingEvent(
        system="books",
        resource="customer",
        resource_id=resource_id,
        kind="changed",
        occurred_at=WHEN,
        dedupe_key=f"books:{resource_id}",
    )


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (WorkMessage(pipeline="contacts", events=list(events_for(ref("company", "1")))), "crm_events"),
        (WorkMessage(pipeline="deals", events=list(events_for(ref("deal", "1"))), not_before=1.5), "crm_events"),
        (AccountingWorkMessage(events=[accounting_event()]), "accounting_changes"),
        (BackfillWorkMessage(run_id="r", refs=[ref("company", "3")]), "backfill_chunk"),
    ],
)
def test_each_kind_of_message_names_its_kind_and_reads_back_as_itself(
    message: WorkMessage | AccountingWorkMessage | BackfillWorkMessage, kind: str
) -> None:
    # Given a message as a sender queues it
    body = message.model_dump_json()
    # Then its body names its kind, and the one reader gives the same message back
    assert f'"kind":"{kind}"' in body
    assert read_work_message(body) == message


# -- bodies queued before work messages carried ``kind`` (exactly as the previous release wrote them) --------

OLD_CRM_EVENT = (
    '{"ref":{"crm":"hubspot","object_type":"company","object_id":"1000001"},"event_id":"101","kind":"created",'
    '"occurred_at":"2025-11-24T15:59:59.101000Z","source_type":"company.creation","property_name":null,'
    '"change_source":"CRM_UI","actor":"userId:45678","dedupe_key":"2003:101:1000001:1763999999101"}'
)


def test_an_old_contacts_body_reads_as_crm_events() -> None:
    body = (
        f'{{"pipeline":"contacts","received_at":"2025-11-24T16:00:00Z","events":[{OLD_CRM_EVENT}],"not_before":null}}'
    )
    message = read_work_message(body)
    assert isinstance(message, WorkMessage)
    assert (message.kind, message.pipeline, message.not_before) == ("crm_events", "contacts", None)
    assert [str(e.ref) for e in message.events] == ["hubspot/company/1000001"]
    assert message.events[0].kind == "created"  # the event's own kind is untouched


def test_an_old_deals_body_re_queued_after_a_rate_limit_keeps_its_not_before() -> None:
    deal_event = OLD_CRM_EVENT.replace('"company"', '"deal"')
    body = f'{{"pipeline":"deals","received_at":"2025-11-24T16:00:00Z","events":[{deal_event}],"not_before":4600.0}}'
    message = read_work_message(body)
    assert isinstance(message, WorkMessage)
    assert (message.kind, message.pipeline, message.not_before) == ("crm_events", "deals", 4600.0)


def test_an_old_accounting_body_reads_as_accounting_changes() -> None:
    body = (
        '{"pipeline":"accounting","received_at":"2026-12-01T09:30:00Z","events":[{"system":"xero",'
        '"resource":"customer","resource_id":"c-1","kind":"changed","occurred_at":"2026-12-01T09:29:00Z",'
        '"dedupe_key":"xero:c-1:1"}]}'
    )
    message = read_work_message(body)
    assert isinstance(message, AccountingWorkMessage)
    assert message.kind == "accounting_changes"
    assert [(e.system, e.resource_id) for e in message.events] == [("xero", "c-1")]


def test_an_old_backfill_body_reads_as_a_backfill_chunk() -> None:
    body = (
        '{"pipeline":"backfill","run_id":"0a1b2c3d4e5f",'
        '"refs":[{"crm":"hubspot","object_type":"company","object_id":"7"}]}'
    )
    message = read_work_message(body)
    assert isinstance(message, BackfillWorkMessage)
    assert (message.kind, message.run_id, [str(r) for r in message.refs]) == (
        "backfill_chunk",
        "0a1b2c3d4e5f",
        ["hubspot/company/7"],
    )


def test_the_kind_is_read_wherever_it_stands_in_the_body() -> None:
    # Given a body whose fields are in another order (the old reader sniffed only the first field)
    body = '{"events": [], "kind": "accounting_changes"}'
    # Then it is still the message its kind says
    assert isinstance(read_work_message(body), AccountingWorkMessage)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"pipeline": "contacts", "events": [{"ref": {"cr', "Invalid JSON"),
        ('{"kind": "invoice_run", "events": []}', "'invoice_run' found using 'kind' does not match"),
        ('{"events": []}', "Unable to extract tag using discriminator 'kind'"),
        ('{"pipeline": "payments", "events": []}', "Unable to extract tag using discriminator 'kind'"),
        ('["crm_events"]', "body:"),
        ('{"kind": "crm_events", "pipeline": "contacts", "events": [{"nope": 1}]}', "crm_events.events.0.ref"),
    ],
)
def test_a_body_that_is_no_work_message_is_refused_with_its_reason(body: str, reason: str) -> None:
    with pytest.raises(UnreadableMessage, match="^not a work message: ") as refused:
        read_work_message(body)
    assert reason in str(refused.value)


def test_the_reason_never_repeats_the_body_s_values() -> None:
    # Given a body with a person's details where an id should be
    body = '{"kind": "backfill_chunk", "run_id": "r", "refs": [{"crm": "x", "object_type": "jane.doe@example.com"}]}'
    # Then the reason says where and what is wrong, without the value
    with pytest.raises(UnreadableMessage) as refused:
        read_work_message(body)
    assert "refs.0.object_type" in str(refused.value)
    assert "jane.doe" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
