"""The operations CLI (``closeloop replay``, ``status``, ``audit``) on the local stack: template.yaml in moto,
the real handlers and SQS consumers, the HubSpot and Xero sandboxes."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from closeloop.models import CrmRef, SyncEvent, WorkMessage
from closeloop_local import cli, ops
from tests.stack_fixtures import ROOT, Loop


@pytest.fixture(scope="module")
def deployment(loop: Loop) -> Iterator[ops.Deployment]:
    deployment = ops.Deployment.from_local(loop.stack)
    yield deployment
    deployment.close()


def company(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="company", object_id=str(object_id))


def work_message(ref: CrmRef, *, actor: str) -> str:
    event = SyncEvent(
        ref=ref,
        event_id=uuid.uuid4().hex,
        kind="created",
        occurred_at=datetime.now(UTC),
        source_type="company.creation",
        change_source="CRM_UI",
        actor=actor,
        dedupe_key=f"ops-test:{ref.object_id}:{uuid.uuid4().hex}",
    )
    return WorkMessage(pipeline="contacts", events=[event]).model_dump_json()


def depths(deployment: ops.Deployment, queue: str) -> tuple[int, int]:
    """(visible, in flight) of one of the stack's queues."""
    values = deployment.queue_attributes()[queue]
    return int(values["ApproximateNumberOfMessages"]), int(values["ApproximateNumberOfMessagesNotVisible"])


def empty_queue(sqs: Any, queue_url: str) -> None:
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


# ------------------------------------------------------------------------------------------ replay


def test_replay_dry_run_lists_without_moving_then_replay_moves_and_the_worker_syncs(
    loop: Loop, deployment: ops.Deployment
) -> None:
    # Given two HubSpot companies whose work messages were dead-lettered (their webhooks never delivered)
    refs = [
        company(loop.hubspot.create_object("companies", {"name": name})["id"])
        for name in ("Dead Letter Dairy", "Redrive Rentals")
    ]
    contact_dlq = deployment.queue_url("ContactDLQ")
    for ref in refs:
        deployment.sqs.send_message(QueueUrl=contact_dlq, MessageBody=work_message(ref, actor="userId:ops-actor-77"))

    # When the operator replays every DLQ with --dry-run
    out = io.StringIO()
    moves = ops.replay(deployment, queue=None, dry_run=True, out=out, progress=io.StringIO())

    # Then each DLQ is paired with its work queue, the two messages are listed by id, pipeline and ref only,
    # and nothing moved: both are back in the DLQ at once, and neither company reached Xero
    text = out.getvalue()
    assert {m.dead_letter_queue: m.source_queue for m in moves} == {
        "ContactDLQ": "ContactQueue",
        "DealDLQ": "DealQueue",
    }
    (contact_move,) = [m for m in moves if m.dead_letter_queue == "ContactDLQ"]
    assert len(contact_move.message_ids) == 2
    for message_id in contact_move.message_ids:
        assert message_id in text
    for ref in refs:
        assert f"contacts  {ref}" in text
    assert "would move 2 message(s) from ContactDLQ to ContactQueue" in text
    assert "would move 0 message(s) from DealDLQ to DealQueue" in text
    assert "ops-actor-77" not in text
    assert "received_at" not in text
    assert depths(deployment, "ContactDLQ") == (2, 0)
    assert all(loop.store.get_mapping(ref, "xero") is None for ref in refs)

    # When the operator replays the contact pipeline (named by its work queue) for real
    out = io.StringIO()
    (move,) = ops.replay(deployment, queue="ContactQueue", out=out, progress=io.StringIO())
    loop.stack.drain(timeout=60)

    # Then both moved, the DLQ is empty, and the contact worker synced both companies into Xero
    assert out.getvalue().splitlines()[-1] == "moved 2 message(s) from ContactDLQ to ContactQueue"
    assert sorted(move.message_ids) == sorted(contact_move.message_ids)
    assert depths(deployment, "ContactDLQ") == (0, 0)
    for ref in refs:
        mapping = loop.store.get_mapping(ref, "xero")
        assert mapping is not None
        assert loop.store.list_audit(ref)[0].action == "created"


def test_replay_pairs_queues_by_redrive_policy_keeps_attributes_and_reports_progress(
    deployment: ops.Deployment,
) -> None:
    # Given a work queue (no consumer) whose RedrivePolicy names its DLQ, and 205 dead letters with attributes
    sqs = deployment.sqs
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"ops-test-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    work_url = sqs.create_queue(
        QueueName=f"ops-test-work-{suffix}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]
    target = ops.Deployment(
        "ops-test",
        {
            "WorkQueue": ops.StackResource("WorkQueue", "AWS::SQS::Queue", work_url),
            "WorkDLQ": ops.StackResource("WorkDLQ", "AWS::SQS::Queue", dlq_url),
        },
        {},
        boto3.session.Session(region_name=deployment.sqs.meta.region_name),
        deployment.endpoint_url,
    )
    for start in range(0, 205, 10):
        sqs.send_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"pipeline": "contacts", "events": [], "n": i}),
                    "MessageAttributes": {"trace": {"DataType": "String", "StringValue": f"trace-{i}"}},
                }
                for i in range(start, min(start + 10, 205))
            ],
        )
    try:
        # When the DLQ is replayed by its own name
        out, progress = io.StringIO(), io.StringIO()
        (move,) = ops.replay(target, queue="WorkDLQ", out=out, progress=progress)

        # Then all 205 moved to the work queue with their attributes, and progress came every 100 messages
        assert out.getvalue().strip() == "moved 205 message(s) from WorkDLQ to WorkQueue"
        assert move.moved == 205
        assert (move.failed, move.undeleted) == (0, 0)
        lines = progress.getvalue().splitlines()
        assert len(lines) == 2
        assert re.fullmatch(r"replay WorkDLQ -> WorkQueue: 100 message\(s\), [0-9.]+/s", lines[0])
        assert lines[1].startswith("replay WorkDLQ -> WorkQueue: 200 message(s)")
        assert depths(target, "WorkDLQ") == (0, 0)
        traces: dict[int, str] = {}
        while messages := sqs.receive_message(
            QueueUrl=work_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            for message in messages:
                traces[json.loads(message["Body"])["n"]] = message["MessageAttributes"]["trace"]["StringValue"]
                sqs.delete_message(QueueUrl=work_url, ReceiptHandle=message["ReceiptHandle"])
        assert traces == {i: f"trace-{i}" for i in range(205)}
    finally:
        sqs.delete_queue(QueueUrl=work_url)
        sqs.delete_queue(QueueUrl=dlq_url)
        target.close()


def test_replay_refuses_a_queue_without_a_source_or_unknown(deployment: ops.Deployment) -> None:
    # Given the stack's queues
    # When the operator names a Lambda DLQ (no work queue redrives into it), or no queue at all
    # Then replay refuses, naming what it can replay
    with pytest.raises(ops.DeploymentError, match=r"PaymentPollerDLQ is neither.*ContactDLQ \(or ContactQueue\)"):
        ops.replay(deployment, queue="PaymentPollerDLQ", out=io.StringIO())
    with pytest.raises(ops.DeploymentError, match="no queue 'Nope'"):
        ops.replay(deployment, queue="Nope", out=io.StringIO())


# ------------------------------------------------------------------------------------------ status


def test_status_shows_depths_watermark_failed_syncs_and_token_health_without_tokens(
    loop: Loop, deployment: ops.Deployment
) -> None:
    # Given a synced company (the workers hold a Xero token), a nameless one that failed, a parked deal
    # message and a payment watermark
    loop.hubspot.create_object("companies", {"name": "Status Quo Supplies"})
    nameless = loop.hubspot.create_object("companies", {"city": "Nowhere"})
    loop.settle()
    deal_dlq = deployment.queue_url("DealDLQ")
    deployment.sqs.send_message(QueueUrl=deal_dlq, MessageBody=json.dumps({"pipeline": "deals", "events": []}))
    loop.store.put_watermark("payments#xero", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    token = loop.store.get_token("xero")
    assert token is not None
    secrets = [token.access_token, token.refresh_token, *token.known_refresh_hashes]
    try:
        # When the operator asks for the status
        out = io.StringIO()
        ops.status(deployment, out=out)

        # Then it shows the depths, the watermark, the failed sync with its reason and the token's health,
        # and no token
        text = out.getvalue()
        assert re.search(r"DealDLQ\s+1\s+0\s+0\s+DLQ of DealQueue: closeloop replay --queue DealDLQ", text)
        assert re.search(r"ContactQueue\s+0\s+0\s+0\s+dead letters -> ContactDLQ", text)
        assert "Payment poller watermark (payments#xero): 2026-01-02T03:04:05+00:00" in text
        (failed_line,) = [line for line in text.splitlines() if f"hubspot/company/{nameless['id']}" in line]
        assert "ValidationFailed" in failed_line
        assert "no name" in failed_line
        assert re.search(
            rf"Xero token: access token expires in .*, refreshed at .*, version {token.version}$", text, re.M
        )
        assert not [secret for secret in secrets if secret and secret in text]

        # When the same is asked for machines
        out = io.StringIO()
        ops.status(deployment, as_json=True, out=out)

        # Then the JSON carries the same facts, and no token either
        report = json.loads(out.getvalue())
        queues = {queue["queue"]: queue for queue in report["queues"]}
        assert (queues["DealDLQ"]["visible"], queues["DealDLQ"]["source_queue"]) == (1, "DealQueue")
        assert queues["ContactQueue"]["dead_letter_queue"] == "ContactDLQ"
        assert report["payment_watermark"]["value"] == "2026-01-02T03:04:05+00:00"
        assert f"hubspot/company/{nameless['id']}" in [f["ref"] for f in report["failed_syncs"]]
        assert set(report["token"]) == {
            "connection",
            "stored",
            "access_expires_at",
            "access_expires_in_seconds",
            "refreshed_at",
            "version",
        }
        assert report["token"]["access_expires_in_seconds"] > 0
        assert not [secret for secret in secrets if secret and secret in out.getvalue()]
    finally:
        empty_queue(deployment.sqs, deal_dlq)


# ------------------------------------------------------------------------------------------- audit


def test_audit_of_a_synced_company_shows_its_mapping_and_each_change_with_before_and_after(
    loop: Loop, deployment: ops.Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a company created in HubSpot, synced, then moved to another city
    umbrella = loop.hubspot.create_object("companies", {"name": "Umbrella Audit Corp", "city": "Raccoon City"})
    loop.settle()
    loop.hubspot.update_object("companies", umbrella["id"], {"city": "Paris"})
    loop.settle()

    # When the operator audits the id without saying its type
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        (history,) = ops.audit(deployment, umbrella["id"], out=out)

    # Then only the company is shown: its mapping with field names only, and the created and updated records
    # with who, which event and before/after per field; no value went through logging
    text = out.getvalue()
    mapping = loop.store.get_mapping(company(umbrella["id"]), "xero")
    assert mapping is not None
    assert history.ref == company(umbrella["id"])
    assert text.startswith(f"hubspot/company/{umbrella['id']}\n  mapping: xero {mapping.accounting_id}, updated ")
    mapping_section, trail = text.split("  audit trail: ", 1)
    assert "address.city" in mapping_section
    assert "Paris" not in mapping_section
    assert "Umbrella" not in mapping_section
    assert trail.startswith("2 record(s)")
    assert re.search(rf"  created  by .*  event company\.\w+:\S+  target {mapping.accounting_id}", trail)
    assert re.search(r"  updated  by .*  event company\.propertyChange:\S+  target", trail)
    assert '      address.city: "Raccoon City" -> "Paris"' in trail
    assert "failed sync: none" in trail
    # (botocore's own DEBUG wire log is not ours: `closeloop` sets it to WARNING)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("botocore", "urllib3"))]
    assert not [message for message in ours if "Paris" in message or "Raccoon" in message]

    # When the operator asks for the values too
    out = io.StringIO()
    ops.audit(deployment, umbrella["id"], object_type="company", show_values=True, out=out)

    # Then the last synced values are listed
    assert '    address.city = "Paris"' in out.getvalue()
    assert '    name = "Umbrella Audit Corp"' in out.getvalue()


def test_audit_shows_a_failed_sync_and_says_when_nothing_is_known(loop: Loop, deployment: ops.Deployment) -> None:
    # Given a nameless company that could not sync
    nameless = loop.hubspot.create_object("companies", {"city": "Nowhere"})
    loop.settle()

    # When the operator audits it, and an id Closeloop never saw
    out = io.StringIO()
    (history,) = ops.audit(deployment, nameless["id"], object_type="company", out=out)
    unknown = io.StringIO()
    nothing = ops.audit(deployment, "987654321", out=unknown)

    # Then the first shows no mapping, a "failed" audit record and the failed sync with its reason
    text = out.getvalue()
    assert history.failed is not None
    assert "  mapping: none in xero" in text
    assert re.search(r"  failed sync: \S+  ValidationFailed: .*no name.*\(attempts 1, event ", text)
    assert "  failed  " in text
    # And the unknown id finds nothing, saying so
    assert nothing == []
    assert (
        unknown.getvalue() == f"no record of hubspot company/contact/deal 987654321 in stack {deployment.stack_name}\n"
    )


# --------------------------------------------------------------------------------------------- CLI


def test_cli_commands_run_against_a_stack_named_on_the_command_line(
    loop: Loop, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the stack's endpoint is the process's AWS endpoint (the default credentials of a deployed stack)
    assert os.environ["AWS_ENDPOINT_URL"] == loop.stack.endpoint_url
    name = loop.stack.stack_name

    # When status, a dry-run replay and an audit of an unknown id run through the CLI with --stack-name
    status_code = cli.main(["status", "--json", "--stack-name", name])
    status_out = capsys.readouterr().out
    replay_code = cli.main(["replay", "--dry-run", "--queue", "DealDLQ", "--stack-name", name])
    replay_out = capsys.readouterr().out
    audit_code = cli.main(["audit", "424242", "--type", "deal", "--stack-name", name])
    audit_out = capsys.readouterr().out
    missing_code = cli.main(["status", "--stack-name", "no-such-stack"])
    missing = capsys.readouterr()

    # Then each reads the named stack, and a missing stack is an error without a traceback
    assert status_code == 0
    assert json.loads(status_out)["stack"] == name
    assert replay_code == 0
    assert replay_out.splitlines()[-1] == "would move 0 message(s) from DealDLQ to DealQueue"
    assert audit_code == 1
    assert audit_out.startswith("no record of hubspot deal 424242")
    assert missing_code == 2
    assert missing.err.startswith("closeloop: error: cannot read stack 'no-such-stack'")
    assert "Traceback" not in missing.err


def test_cli_finds_the_running_closeloop_dev_through_its_state_file(loop: Loop, tmp_path: Path) -> None:
    # Given a synced company, and a project whose state file names this stack, as `closeloop dev` writes it
    acme = loop.hubspot.create_object("companies", {"name": "State File Stationers"})
    loop.settle()
    for name in ("template.yaml", "functions", "layers"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".closeloop").mkdir()
    state = {
        "pid": os.getpid(),
        "api_url": loop.stack.api_url,
        "endpoint_url": loop.stack.endpoint_url,
        "stack_name": loop.stack.stack_name,
        "region": loop.stack.region,
    }
    (tmp_path / ".closeloop" / "dev.json").write_text(json.dumps(state))
    environment = {key: value for key, value in os.environ.items() if key != "AWS_ENDPOINT_URL"}

    # When `closeloop audit` runs from that project in another process
    result = subprocess.run(
        [sys.executable, "-m", "closeloop_local.cli", "audit", str(acme["id"]), "--type", "company"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    # Then it attached to the running stack and printed the company's history
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"hubspot/company/{acme['id']}\n  mapping: xero ")
    assert "  created  " in result.stdout
