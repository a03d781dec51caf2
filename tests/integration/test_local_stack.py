"""The local stack: resources provisioned from the real template into an embedded moto server, and the
HTTP API, SQS consumers and schedules played against a small template with tiny handlers of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from closeloop_local.devserver import QueueEventSource, SqsConsumer, batch_outcome, sqs_record
from closeloop_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]

SMALL_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
    MemorySize: 256
    Layers: [!Ref HelpersLayer]
    Environment:
      Variables:
        GREETING: !Ref Greeting
        WORK_QUEUE_URL: !Ref WorkQueue
        ATTEMPTS_TABLE: !Ref AttemptsTable
        APP_SECRET_ID: !Ref AppSecret
Resources:
  AppSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      SecretString: '{"API_TOKEN":""}'
  HelpersLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
  Api:
    Type: AWS::Serverless::HttpApi
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/web/
      Handler: app.echo
      Events:
        Echo:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: "/echo/{name}", Method: POST}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/web/
      Handler: app.boom
      Events:
        Boom:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /boom, Method: GET}
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/web/
      Handler: app.plain
      Events:
        Plain:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /plain, Method: GET}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/worker/
      Handler: app.handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fns/tick/
      Handler: app.handler
      Events:
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(5 minutes)
            Input: '{"job":"tick"}'
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 2}
  ManualQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
  WorkDLQ:
    Type: AWS::SQS::Queue
  AttemptsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""

HANDLERS = {
    "layer/tiny_layer_helpers.py": """
        def shout(text):
            return text.upper()
    """,
    "fns/web/app.py": """
        import json
        import os

        from tiny_layer_helpers import shout


        def echo(event, context):
            return {
                "statusCode": 201,
                "headers": {"content-type": "application/json", "x-greeting": shout(os.environ["GREETING"])},
                "cookies": ["a=1; Path=/", "b=2; Path=/"],
                "body": json.dumps(
                    {
                        "event": event,
                        "function_name": context.function_name,
                        "memory": context.memory_limit_in_mb,
                        "remaining": context.get_remaining_time_in_millis(),
                    }
                ),
            }


        def boom(event, context):
            raise RuntimeError("boom")


        def plain(event, context):
            return {"hello": "world"}
    """,
    "fns/worker/app.py": """
        import json
        import os

        import boto3


        def handler(event, context):
            dynamodb = boto3.client("dynamodb")
            failures = []
            for record in event["Records"]:
                body = json.loads(record["body"])
                dynamodb.update_item(
                    TableName=os.environ["ATTEMPTS_TABLE"],
                    Key={"id": {"S": body["id"]}},
                    UpdateExpression="ADD attempts :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                if body.get("poison"):
                    failures.append({"itemIdentifier": record["messageId"]})
            dynamodb.close()
            return {"batchItemFailures": failures}
    """,
    "fns/tick/app.py": """
        import json
        import os

        import boto3


        def handler(event, context):
            secrets = boto3.client("secretsmanager")
            stored = json.loads(secrets.get_secret_value(SecretId=os.environ["APP_SECRET_ID"])["SecretString"])
            secrets.close()
            return {
                "received": event,
                "queue": os.environ["WORK_QUEUE_URL"],
                "function": context.function_name,
                "token": stored["API_TOKEN"],
            }
    """,
}


def write_small_project(root: Path) -> Path:
    (root / "template.yaml").write_text(SMALL_TEMPLATE)
    for name, source in HANDLERS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    return root


def attempts(stack: LocalStack, message_id: str) -> int:
    with closing(boto3.client("dynamodb", endpoint_url=stack.endpoint_url)) as dynamodb:
        item = dynamodb.get_item(TableName=stack.resources["AttemptsTable"], Key={"id": {"S": message_id}})
    return int(item.get("Item", {}).get("attempts", {}).get("N", 0))


# ----------------------------------------------------------------------- the real template in moto


def test_real_template_provisions_its_data_resources_with_their_properties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a developer token and webhook secret in the environment
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-dev-token")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "dev-client-secret")
    environ_before = dict(os.environ)
    # When the local stack starts from the project's template.yaml
    with LocalStack(ROOT, port=0) as stack:
        sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url)
        dynamodb = boto3.client("dynamodb", endpoint_url=stack.endpoint_url)
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url)
        secrets = boto3.client("secretsmanager", endpoint_url=stack.endpoint_url)
        sns = boto3.client("sns", endpoint_url=stack.endpoint_url)
        try:
            # Then the work queues redrive to their DLQs after 5 receives, with 6x the worker timeout
            for queue, dlq in (("ContactQueue", "ContactDLQ"), ("DealQueue", "DealDLQ")):
                attributes = sqs.get_queue_attributes(QueueUrl=stack.resources[queue], AttributeNames=["All"])[
                    "Attributes"
                ]
                dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.resources[dlq], AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
                assert attributes["VisibilityTimeout"] == "360"
                assert "aws:SecureTransport" in attributes["Policy"]
            # And the sync table has its reverse-lookup index, TTL and PITR
            table = dynamodb.describe_table(TableName=stack.resources["SyncTable"])["Table"]
            assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["GSI1"]
            ttl = dynamodb.describe_time_to_live(TableName=stack.resources["SyncTable"])["TimeToLiveDescription"]
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
            backups = dynamodb.describe_continuous_backups(TableName=stack.resources["SyncTable"])
            pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
            assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
            # And the bucket is private, versioned and expires reports (its TLS-only policy cannot apply to a
            # plain-HTTP local endpoint: moto enforces it and would refuse every request, so it is left out)
            bucket = stack.resources["ReportBucket"]
            block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert all(block.values())
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
                s3.get_bucket_policy(Bucket=bucket)
            rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
            assert {"Days": 400} in [rule.get("Expiration") for rule in rules]
            # And the secret holds every credential key, seeded with the developer's token
            secret = json.loads(secrets.get_secret_value(SecretId=stack.resources["CredentialsSecret"])["SecretString"])
            assert secret["HUBSPOT_ACCESS_TOKEN"] == "pat-dev-token"
            assert secret["XERO_REFRESH_TOKEN"] == ""
            # And the webhook keys secret (created as {}) gets the developer's webhook key, the other one does not
            assert secret["HUBSPOT_CLIENT_SECRET"] == ""
            webhook_keys = json.loads(
                secrets.get_secret_value(SecretId=stack.resources["WebhookKeysSecret"])["SecretString"]
            )
            assert webhook_keys == {"HUBSPOT_CLIENT_SECRET": "dev-client-secret"}
            assert {"HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET", "XERO_REFRESH_TOKEN"} <= stack.credential_keys
            assert sns.get_topic_attributes(TopicArn=stack.resources["AlertTopic"])["Attributes"]["KmsMasterKeyId"]
            # And the functions' environment names the local resources, applied to os.environ
            assert stack.env["SYNC_TABLE"] == stack.resources["SyncTable"] == os.environ["SYNC_TABLE"]
            assert stack.env["CONTACT_QUEUE_URL"] == stack.resources["ContactQueue"]
            assert stack.env["CREDENTIALS_SECRET_ID"] == stack.resources["CredentialsSecret"]
            assert stack.env["WEBHOOK_KEYS_SECRET_ID"] == stack.resources["WebhookKeysSecret"]
            assert stack.env["HUBSPOT_API_URL"] == "https://api.hubapi.com"
            assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
            # And the template's webhook outputs point at the local API
            assert stack.outputs["ContactsWebhookUrl"] == f"{stack.api_url}/webhooks/hubspot/contacts"
            assert {(s.function, s.input) for s in stack.schedules} == {
                ("PaymentPollerFunction", '{"job":"payment_poller"}'),
                ("ReconcileFunction", '{"job":"reconcile"}'),
            }
        finally:
            for client in (sqs, dynamodb, s3, secrets, sns):
                client.close()
    # And stopping restores the environment it found
    assert dict(os.environ) == environ_before


def test_a_second_stack_in_the_same_process_is_refused(tmp_path: Path) -> None:
    # Given a running stack
    project = write_small_project(tmp_path)
    # When another one starts in the same process
    # Then it is refused: both would share os.environ
    with LocalStack(project, port=0), pytest.raises(RuntimeError, match="already running in this process"):
        LocalStack(project, port=0).start()


# -------------------------------------------------------------------- a small template, tiny handlers


@pytest.fixture(scope="class")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One small stack for the class below (class scope: it is gone before other tests start theirs)."""
    project = write_small_project(tmp_path_factory.mktemp("small"))
    with LocalStack(project, port=0, retry_visibility_seconds=0, parameter_overrides={"Greeting": "hi"}) as stack:
        yield stack


@pytest.fixture
def http(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        yield client


class TestSmallStack:
    def test_route_invokes_its_function_with_an_http_api_v2_event(self, stack: LocalStack, http: httpx.Client) -> None:
        # Given a JSON request with a path parameter, a repeated query parameter and cookies
        # When it is posted to the route
        response = http.post(
            "/echo/alice?x=1&x=2&empty=",
            json={"hello": "world"},
            headers={"Cookie": "session=abc; theme=dark", "X-Custom": "v"},
        )
        # Then the function answered through HTTP API's response mapping
        assert response.status_code == 201
        assert response.headers["x-greeting"] == "HI"
        assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert response.headers["apigw-requestid"]
        payload = response.json()
        event = payload["event"]
        port = int(stack.api_url.rsplit(":", 1)[1])
        # And its event is a payload format 2.0 event for that route
        assert event["version"] == "2.0"
        assert event["routeKey"] == "POST /echo/{name}"
        assert event["rawPath"] == "/echo/alice"
        assert event["rawQueryString"] == "x=1&x=2&empty="
        assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
        assert event["pathParameters"] == {"name": "alice"}
        assert event["cookies"] == ["session=abc", "theme=dark"]
        assert "cookie" not in event["headers"]
        assert event["headers"]["x-custom"] == "v"
        assert event["headers"]["x-forwarded-proto"] == "http"
        assert event["headers"]["x-forwarded-port"] == str(port)
        assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert event["isBase64Encoded"] is False
        assert json.loads(event["body"]) == {"hello": "world"}
        context = event["requestContext"]
        assert context["domainName"] == f"127.0.0.1:{port}"
        assert context["http"] == {
            "method": "POST",
            "path": "/echo/alice",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": http.headers["user-agent"],
        }
        assert context["routeKey"] == "POST /echo/{name}"
        assert context["stage"] == "$default"
        assert context["requestId"] == response.headers["apigw-requestid"]
        assert abs(context["timeEpoch"] / 1000 - time.time()) < 60
        # And the Lambda context carried the function's name and memory
        assert payload["function_name"].endswith("-EchoFunction")
        assert payload["memory"] == 256
        assert 0 < payload["remaining"] <= 5000

    @pytest.mark.parametrize(
        ("content_type", "body", "base64_encoded"),
        [
            ("application/json", b"\xff\xfe not utf-8", True),
            ("application/octet-stream", b"plain ascii", True),
            ("application/x-www-form-urlencoded", b"a=1&b=2", True),
            ("text/plain; charset=utf-8", "h\u00e9llo".encode(), False),
        ],
    )
    def test_body_is_base64_encoded_unless_it_is_utf8_text(
        self, http: httpx.Client, content_type: str, body: bytes, base64_encoded: bool
    ) -> None:
        # Given a body of some content type
        # When it is posted
        event = http.post("/echo/bytes", content=body, headers={"content-type": content_type}).json()["event"]
        # Then it arrives as text only when it is UTF-8 text, as API Gateway delivers it
        assert event["isBase64Encoded"] is base64_encoded
        received = base64.b64decode(event["body"]) if base64_encoded else event["body"].encode()
        assert received == body

    def test_unknown_routes_and_methods_are_404(self, http: httpx.Client) -> None:
        # When a path no route declares, or a declared path with another method, is requested
        unknown, wrong_method = http.get("/nowhere"), http.get("/echo/alice")
        # Then both get HTTP API's 404
        for response in (unknown, wrong_method):
            assert response.status_code == 404
            assert response.json() == {"message": "Not Found"}

    def test_handler_exception_is_a_500(self, http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
        # When the route's function raises
        response = http.get("/boom")
        # Then the caller gets HTTP API's 500 and the traceback is logged
        assert response.status_code == 500
        assert response.json() == {"message": "Internal Server Error"}
        assert "RuntimeError: boom" in caplog.text

    def test_result_without_status_code_is_200_json(self, http: httpx.Client) -> None:
        # When the function returns a plain object without statusCode
        response = http.get("/plain")
        # Then API Gateway's defaults apply: 200, JSON
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"hello": "world"}

    def test_body_over_10_mb_is_413(self, http: httpx.Client) -> None:
        # When a body over API Gateway's 10 MB limit is posted
        response = http.post("/echo/big", content=b"x" * (10 * 1024 * 1024 + 1))
        # Then it is refused before the function runs
        assert response.status_code == 413

    def test_consumer_deletes_successes_and_releases_only_reported_failures(self, stack: LocalStack) -> None:
        # Given three messages, one poison, waiting in a queue no mapping consumes
        queue_url = stack.resources["ManualQueue"]
        with closing(boto3.client("sqs", endpoint_url=stack.endpoint_url)) as sqs:
            sent = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": "1", "MessageBody": json.dumps({"id": "manual-ok-1"})},
                    {"Id": "2", "MessageBody": json.dumps({"id": "manual-poison", "poison": True})},
                    {"Id": "3", "MessageBody": json.dumps({"id": "manual-ok-2"})},
                ],
            )
            assert len(sent["Successful"]) == 3
            consumer = SqsConsumer(
                QueueEventSource(
                    logical_id="Manual", function="WorkerFunction", queue="ManualQueue", report_batch_item_failures=True
                ),
                sqs_client=sqs,
                queue_url=queue_url,
                queue_arn="arn:aws:sqs:us-east-1:123456789012:manual",
                region="us-east-1",
                invoke=stack.invoke,
                retry_visibility_seconds=0,
            )
            # When the consumer takes one batch
            assert consumer.poll_once() == 3
            # Then each message was processed once, and only the reported failure is back in the queue
            assert [attempts(stack, i) for i in ("manual-ok-1", "manual-poison", "manual-ok-2")] == [1, 1, 1]
            left = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
            (message,) = left["Messages"]
            assert json.loads(message["Body"])["id"] == "manual-poison"
            assert message["Attributes"]["ApproximateReceiveCount"] == "2"
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def test_poison_message_reaches_the_dlq_after_max_receive_count(self, stack: LocalStack) -> None:
        # Given a good and a poison message sent to the consumed work queue
        with closing(boto3.client("sqs", endpoint_url=stack.endpoint_url)) as sqs:
            for body in ({"id": "work-ok"}, {"id": "work-poison", "poison": True}):
                sqs.send_message(
                    QueueUrl=stack.resources["WorkQueue"],
                    MessageBody=json.dumps(body),
                    MessageAttributes={"source": {"DataType": "String", "StringValue": "test"}},
                )
            # When the consumer drains the queue
            stack.drain(timeout=30)
            # Then the good message was processed once, the poison one maxReceiveCount times, then parked
            assert attempts(stack, "work-ok") == 1
            assert attempts(stack, "work-poison") == 2
            dead = sqs.receive_message(QueueUrl=stack.resources["WorkDLQ"], MaxNumberOfMessages=10)["Messages"]
            assert [json.loads(m["Body"])["id"] for m in dead] == ["work-poison"]

    def test_run_schedule_invokes_with_the_schedule_input(self, stack: LocalStack) -> None:
        # When the scheduled function is run, by logical id or by its directory name
        by_id, by_dir = stack.run_schedule("TickFunction"), stack.run_schedule("tick")
        # Then it receives its schedule's Input, with the environment resolved from the template
        assert by_id["received"] == by_dir["received"] == {"job": "tick"}
        assert by_id["queue"] == stack.resources["WorkQueue"]
        assert by_id["function"].endswith("-TickFunction")
        assert by_id["token"] == ""

    def test_ambiguous_directory_names_are_refused(self, stack: LocalStack) -> None:
        # When a directory holding three functions is named, Then the caller must pick one
        with pytest.raises(ValueError, match="several functions"):
            stack.invoke("web", {})

    def test_environment_comes_from_the_template_and_overrides(self, stack: LocalStack) -> None:
        # Given the stack started with Greeting=hi
        # Then the environment holds the parameter, the physical resource names and the endpoint
        assert stack.env["GREETING"] == "hi"
        assert stack.env["ATTEMPTS_TABLE"] == stack.resources["AttemptsTable"]
        assert stack.env["AWS_ENDPOINT_URL"] == stack.endpoint_url


@pytest.mark.parametrize(
    ("result", "failed", "expected"),
    [
        (None, False, (["a", "b"], [])),
        ({"batchItemFailures": []}, False, (["a", "b"], [])),
        ({}, False, (["a", "b"], [])),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, False, (["a"], ["b"])),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, False, ([], ["a", "b"])),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, False, ([], ["a", "b"])),
        ("not an object", False, ([], ["a", "b"])),
        (None, True, ([], ["a", "b"])),
    ],
)
def test_batch_outcome_reads_the_answer_as_lambda_does(
    result: Any, failed: bool, expected: tuple[list[str], list[str]]
) -> None:
    # Given a batch of two messages and the worker's answer (or its failure)
    # When the outcome is read with ReportBatchItemFailures on
    outcome = batch_outcome(["a", "b"], result, failed=failed, report_batch_item_failures=True)
    # Then successes and failures follow Lambda's rules
    assert outcome == expected


def test_sqs_record_has_the_shape_lambda_gives_it() -> None:
    # Given a message as ReceiveMessage returns it, with a string and a binary attribute
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "MD5OfBody": "body-md5",
        "Body": '{"id": "1"}',
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "MD5OfMessageAttributes": "attributes-md5",
        "MessageAttributes": {
            "source": {"StringValue": "hubspot", "DataType": "String"},
            "raw": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
        },
    }
    # When it becomes a record of a Lambda SQS event
    record = sqs_record(message, queue_arn="arn:aws:sqs:us-east-1:123456789012:work", region="us-east-1")
    # Then it has Lambda's camel-case keys and attribute shapes
    assert record == {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": '{"id": "1"}',
        "attributes": message["Attributes"],
        "messageAttributes": {
            "source": {
                "stringValue": "hubspot",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "raw": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
        },
        "md5OfBody": "body-md5",
        "md5OfMessageAttributes": "attributes-md5",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
        "awsRegion": "us-east-1",
    }


# ------------------------------------------------------------------------------------------ CLI


def test_cli_dev_and_run_share_one_stack(tmp_path: Path) -> None:
    # Given `closeloop dev` running from a project (port 0: any free port)
    project = write_small_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["API_TOKEN"] = "dev-token"  # a credential the template's secret declares, set by the developer
    command = [sys.executable, "-m", "closeloop_local.cli"]
    dev = subprocess.Popen(
        [*command, "dev", "--port", "0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state_file = project / ".closeloop" / "dev.json"
    try:
        deadline = time.monotonic() + 60
        while not state_file.exists():
            assert dev.poll() is None, dev.communicate()
            assert time.monotonic() < deadline, "closeloop dev did not start"
            time.sleep(0.1)
        state = json.loads(state_file.read_text())
        assert state["pid"] == dev.pid
        assert state["env"]["API_TOKEN"] == "***"  # credentials never reach the state file
        # When a scheduled function is run from a subdirectory, in another process
        run = subprocess.run(
            [*command, "run", "TickFunction"],
            check=False,
            cwd=project / "fns",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Then it ran against the dev stack's resources and printed its result as JSON
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["received"] == {"job": "tick"}
        assert result["queue"] == state["resources"]["WorkQueue"]
        assert result["token"] == "dev-token"  # dev seeded the local secret from the environment
        # And a function without a schedule needs an event
        no_event = subprocess.run(
            [*command, "run", "WorkerFunction"],
            check=False,
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert no_event.returncode == 2
        assert "pass --event FILE" in no_event.stderr
    finally:
        # When dev gets SIGTERM
        dev.send_signal(signal.SIGTERM)
        out, err = dev.communicate(timeout=30)
    # Then it printed its URLs, shut down cleanly and removed its state file
    assert dev.returncode == 0, err
    assert f"{state['api_url']}/echo/{{name}}" in out
    assert state["endpoint_url"] in out
    assert not state_file.exists()


def test_cli_run_without_a_dev_stack_says_what_to_do(tmp_path: Path) -> None:
    # Given a project where no `closeloop dev` runs and no AWS_ENDPOINT_URL is set
    project = write_small_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    run = subprocess.run(
        [sys.executable, "-m", "closeloop_local.cli", "run", "tick"],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then `closeloop run` says how to get one
    assert run.returncode == 2
    assert "start `closeloop dev`" in run.stderr


def test_tls_only_statements_are_kept_against_an_https_endpoint() -> None:
    from closeloop_local.stack import _without_tls_only

    tls = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    other = {"Effect": "Allow", "Principal": {"AWS": "x"}, "Action": "s3:GetObject"}
    document = {"Version": "2012-10-17", "Statement": [tls, other]}
    assert _without_tls_only(document, "https://s3.example.com")["Statement"] == [tls, other]
    assert _without_tls_only(document, "http://127.0.0.1:5000")["Statement"] == [other]
