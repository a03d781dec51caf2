"""The contact worker routes messages by their first field: every work message model must declare it first."""

from __future__ import annotations

from datetime import UTC, datetime

from closeloop.models import AccountingWorkMessage, BackfillWorkMessage, CrmRef, WorkMessage, message_pipeline


def test_each_work_message_names_its_pipeline_first() -> None:
    ref = CrmRef(crm="crm", object_type="company", object_id="1")
    bodies = {
        "contacts": WorkMessage(pipeline="contacts", events=[]).model_dump_json(),
        "deals": WorkMessage(
            pipeline="deals", received_at=datetime(2026, 12, 1, tzinfo=UTC), events=[]
        ).model_dump_json(),
        "accounting": AccountingWorkMessage(events=[]).model_dump_json(),
        "backfill": BackfillWorkMessage(run_id="r", refs=[ref]).model_dump_json(),
    }
    assert {message_pipeline(body) for body in bodies.values()} == set(bodies)
    assert all(message_pipeline(body) == name for name, body in bodies.items())


def test_a_body_that_does_not_start_with_a_pipeline_is_no_pipeline() -> None:
    assert message_pipeline("{not json") == ""
    assert message_pipeline('{"events": [], "pipeline": "accounting"}') == ""
    assert message_pipeline("") == ""
