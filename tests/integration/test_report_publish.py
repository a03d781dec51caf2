"""Publishing the monthly report to S3 and SNS, against moto (in-process, then a moto server over HTTP)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.server import ThreadedMotoServer

from closeloop.reports.monthly import render_all
from closeloop.reports.publish import MAX_PRESIGN_SECONDS, publish_report
from closeloop.sync.reconcile import Reconciliation, reconcile
from tests.report_fakes import GENERATED_AT, MONTH, PII, TODAY, planted_scenario

BUCKET = "closeloop-reports-test"
REGION = "us-east-1"
SIGV4 = Config(signature_version="s3v4")


def planted() -> Reconciliation:
    s = planted_scenario()
    return reconcile(
        MONTH,
        crm=s.crm,  # type: ignore[arg-type]
        accounting=s.books,  # type: ignore[arg-type]
        store=s.store,  # type: ignore[arg-type]
        failed_syncs=s.failed,
        dead_letters=s.dead_letters,
        today=TODAY,
        generated_at=GENERATED_AT,
    )


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A bucket and a topic with a queue subscribed to it (to read what was published)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION, config=SIGV4)
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        topic = sns.create_topic(Name="closeloop-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="finance-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield {"s3": s3, "sns": sns, "sqs": sqs, "topic": topic, "queue": queue}


def notices(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_files_are_stored_encrypted_with_their_content_types(aws: dict[str, Any]) -> None:
    # Given the rendered report of the planted month
    rec = planted()
    files = render_all(rec)

    # When it is published
    published = publish_report(
        MONTH,
        files,
        bucket=BUCKET,
        topic_arn=aws["topic"],
        s3=aws["s3"],
        sns=aws["sns"],
        counts=rec.counts_by_type(),
    )

    # Then each file is under reports/2026-10/, encrypted, typed, and holds exactly the rendered bytes
    assert published.keys == (
        "reports/2026-10/discrepancies.csv",
        "reports/2026-10/reconciliation.xlsx",
        "reports/2026-10/summary.html",
    )
    expected_types = {
        "discrepancies.csv": "text/csv; charset=utf-8",
        "reconciliation.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "summary.html": "text/html; charset=utf-8",
    }
    for name, body in files.items():
        got = aws["s3"].get_object(Bucket=BUCKET, Key=f"reports/2026-10/{name}")
        assert got["Body"].read() == body
        assert got["ContentType"] == expected_types[name]
    head = aws["s3"].head_object(Bucket=BUCKET, Key="reports/2026-10/reconciliation.xlsx")
    assert head["ContentDisposition"] == 'attachment; filename="closeloop-2026-10-reconciliation.xlsx"'


def test_the_workbook_link_is_a_sigv4_presigned_get_for_seven_days(aws: dict[str, Any]) -> None:
    # Given the rendered report
    files = render_all(planted())

    # When it is published with the default lifetime
    published = publish_report(MONTH, files, bucket=BUCKET, topic_arn=None, s3=aws["s3"])

    # Then the link is a SigV4 GET of the workbook's key, valid 604,800 s, and the summary has one too
    url = urlsplit(published.url)
    query = parse_qs(url.query)
    assert url.scheme == "https"
    assert f"{url.netloc}{url.path}".endswith("reports/2026-10/reconciliation.xlsx")
    assert BUCKET in url.netloc + url.path
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["604800"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert "X-Amz-Signature" in query
    assert published.urls["summary.html"].split("?")[0].endswith("reports/2026-10/summary.html")
    assert "discrepancies.csv" not in published.urls
    assert published.message_id == ""  # no topic, no notice


def test_a_longer_lifetime_is_clamped_to_the_sigv4_maximum(
    aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a request for links valid 30 days
    files = render_all(planted())

    # When published
    with caplog.at_level(logging.WARNING, logger="closeloop.reports.publish"):
        published = publish_report(
            MONTH, files, bucket=BUCKET, topic_arn=None, s3=aws["s3"], expires_seconds=30 * 86_400
        )

    # Then the links last 7 days and the clamp is logged
    assert published.expires_seconds == MAX_PRESIGN_SECONDS
    assert parse_qs(urlsplit(published.url).query)["X-Amz-Expires"] == ["604800"]
    assert "clamped to 604800s" in caplog.text


def test_the_notice_has_counts_and_links_and_no_personal_data(aws: dict[str, Any]) -> None:
    # Given the planted month, whose customers carry emails and tax numbers
    rec = planted()

    # When published to the topic
    published = publish_report(
        MONTH,
        render_all(rec),
        bucket=BUCKET,
        topic_arn=aws["topic"],
        s3=aws["s3"],
        sns=aws["sns"],
        counts=rec.counts_by_type(),
    )

    # Then one notice arrives with the subject, the counts and both links, and nothing personal
    [notice] = notices(aws)
    assert notice["Subject"] == "Closeloop reconciliation 2026-10"
    assert notice["MessageId"] == published.message_id
    body = notice["Message"]
    assert body.startswith("Closeloop reconciliation for 2026-10: 12 discrepancies.")
    assert "  contact_drift: 2" in body
    assert "won_deal_without_invoice: 2" in body
    assert f"Workbook: {published.url}" in body
    assert f"Summary: {published.urls['summary.html']}" in body
    assert f"s3://{BUCKET}/reports/2026-10/" in body
    for value in PII:
        assert value not in body


@pytest.mark.parametrize(
    ("month", "files", "error"),
    [
        ("2026-13", {"summary.html": b"x"}, "month"),
        ("2026-10", {}, "no report files"),
        ("2026-10", {"../escape.html": b"x"}, "plain file name"),
        ("2026-10", {"a/b.csv": b"x"}, "plain file name"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    aws: dict[str, Any], month: str, files: dict[str, bytes], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        publish_report(month, files, bucket=BUCKET, topic_arn=None, s3=aws["s3"])
    assert aws["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_client_that_may_presign_with_sigv2_is_refused(aws: dict[str, Any]) -> None:
    legacy = boto3.client("s3", region_name=REGION)
    with pytest.raises(ValueError, match="s3v4"):
        publish_report(MONTH, {"summary.html": b"x"}, bucket=BUCKET, topic_arn=None, s3=legacy)
    assert aws["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A moto server on an ephemeral local port: presigned links are then real HTTP URLs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_the_presigned_link_downloads_the_workbook_over_http(moto_server: str) -> None:
    # Given a bucket on a moto server reached over HTTP
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server, config=SIGV4)
    s3.create_bucket(Bucket=BUCKET)
    files = render_all(planted())

    # When the report is published and its link fetched by a plain HTTP client, without AWS credentials
    published = publish_report(MONTH, files, bucket=BUCKET, topic_arn=None, s3=s3, expires_seconds=3600)
    response = httpx.get(published.url, timeout=10)

    # Then the bytes are the workbook's
    assert response.status_code == 200
    assert response.content == files["reconciliation.xlsx"]
    assert response.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert parse_qs(urlsplit(published.url).query)["X-Amz-Expires"] == ["3600"]
