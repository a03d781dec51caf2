"""template.yaml keeps its promises: read from the translated template, so changing the template breaks these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from closeloop import runtime
from closeloop.config import Settings
from closeloop.credentials import CREDENTIAL_KEYS
from closeloop_local.stack import load_translated_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_translated_template(ROOT)


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties", {}))


def target(value: Any) -> str:
    """The logical id a Ref or Fn::GetAtt names."""
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def param_default(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter it Refs."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def sqs_mappings(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in resources_of(template, "AWS::Lambda::EventSourceMapping").values()
        if template["Resources"][target(r["Properties"]["EventSourceArn"])]["Type"] == "AWS::SQS::Queue"
    ]


def test_every_worker_queue_outlives_six_worker_timeouts(template: dict[str, Any]) -> None:
    # Given each SQS event source mapping with its queue and function
    mappings = sqs_mappings(template)
    assert len(mappings) == 2
    for mapping in mappings:
        queue = props(template, target(mapping["EventSourceArn"]))
        function = props(template, target(mapping["FunctionName"]))
        # Then the queue hides a received message for at least 6x the function timeout (Lambda's advice)
        assert int(queue["VisibilityTimeout"]) >= 6 * int(function["Timeout"])


def test_every_worker_queue_redrives_to_a_longer_lived_dlq(template: dict[str, Any]) -> None:
    for mapping in sqs_mappings(template):
        # Given a worker queue
        queue = props(template, target(mapping["EventSourceArn"]))
        redrive = queue["RedrivePolicy"]
        dlq = props(template, target(redrive["deadLetterTargetArn"]))
        # Then a message gets at least 5 tries, and its DLQ keeps it longer than the queue would
        assert int(redrive["maxReceiveCount"]) >= 5
        assert int(dlq["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"])


def test_every_sqs_event_reports_partial_failures_and_caps_concurrency(template: dict[str, Any]) -> None:
    # Given each SQS event source mapping
    for mapping in sqs_mappings(template):
        # Then failures are reported per message, batches fit one receive, and concurrency is capped
        assert "ReportBatchItemFailures" in mapping["FunctionResponseTypes"]
        assert int(param_default(template, mapping["ScalingConfig"]["MaximumConcurrency"])) >= 2
        assert int(mapping["BatchSize"]) <= 10


def test_every_queue_is_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    # Given every queue and the queue policies
    queues = resources_of(template, "AWS::SQS::Queue")
    policies = resources_of(template, "AWS::SQS::QueuePolicy").values()
    covered = {target(q) for p in policies for q in p["Properties"]["Queues"]}
    # Then each is encrypted at rest and denies non-TLS access
    for name, queue in queues.items():
        assert queue["Properties"].get("KmsMasterKeyId") or queue["Properties"].get("SqsManagedSseEnabled"), name
    assert covered == set(queues)
    for policy in policies:
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_tables_have_pitr_ttl_and_encryption(template: dict[str, Any]) -> None:
    # Given the two tables
    sync, idempotency = props(template, "SyncTable"), props(template, "IdempotencyTable")
    # Then both recover to a point in time, expire items and are encrypted, on demand
    for table in (sync, idempotency):
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["TimeToLiveSpecification"]["Enabled"] is True
        assert table["SSESpecification"]["SSEEnabled"] is True
        assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert sync["TimeToLiveSpecification"]["AttributeName"] == "expires_at"
    assert [k["AttributeName"] for k in sync["KeySchema"]] == ["PK", "SK"]
    (gsi,) = sync["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "GSI1"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["GSI1PK", "GSI1SK"]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}
    # And the idempotency table has Powertools' default schema
    assert idempotency["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert idempotency["TimeToLiveSpecification"]["AttributeName"] == "expiration"
    # And the mappings table survives a stack deletion
    assert template["Resources"]["SyncTable"]["DeletionPolicy"] == "Retain"


def test_report_bucket_is_private_encrypted_tls_only_and_expires_reports(template: dict[str, Any]) -> None:
    # Given the report bucket and its policy
    bucket = props(template, "ReportBucket")
    (policy,) = resources_of(template, "AWS::S3::BucketPolicy").values()
    # Then public access is blocked four ways, objects are owner-enforced, versioned and encrypted
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    # And the policy denies every non-TLS request to the bucket and its objects
    assert target(policy["Properties"]["Bucket"]) == "ReportBucket"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(statement["Resource"]) == 2
    # And reports expire after the retention parameter; unfinished uploads are cleaned up
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireReports"]["Prefix"] == "reports/"
    assert param_default(template, rules["ExpireReports"]["ExpirationInDays"]) == 400
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules.values())


def test_schedules_send_their_job_and_have_retries_and_a_dlq(template: dict[str, Any]) -> None:
    # Given the EventBridge Scheduler schedules
    schedules = {
        target(s["Properties"]["Target"]["Arn"]): s["Properties"]
        for s in resources_of(template, "AWS::Scheduler::Schedule").values()
    }
    # Then the poller runs every N minutes (a parameter) and the reconcile on the 1st at 02:00 UTC
    assert set(schedules) == {"PaymentPollerFunction", "ReconcileFunction"}
    assert schedules["PaymentPollerFunction"]["ScheduleExpression"] == {
        "Fn::Sub": "rate(${PaymentPollerRateMinutes} minutes)"
    }
    assert template["Parameters"]["PaymentPollerRateMinutes"]["Default"] == 15
    assert schedules["ReconcileFunction"]["ScheduleExpression"] == "cron(0 2 1 * ? *)"
    jobs = {"PaymentPollerFunction": "payment_poller", "ReconcileFunction": "reconcile"}
    for function, schedule in schedules.items():
        # And each sends an Input naming its job, retries, dead-letters, and is not named by hand
        assert json.loads(schedule["Target"]["Input"]) == {"job": jobs[function]}
        assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        assert target(schedule["Target"]["DeadLetterConfig"]["Arn"]).endswith("DLQ")
        assert "Name" not in schedule
    # And each has its own on/off switch, on by default
    assert schedules["PaymentPollerFunction"]["State"] == {"Ref": "PaymentPollerState"}
    assert schedules["ReconcileFunction"]["State"] == {"Ref": "ReconcileState"}
    assert template["Parameters"]["PaymentPollerState"]["Default"] == "ENABLED"
    assert template["Parameters"]["ReconcileState"]["Default"] == "ENABLED"


def test_every_worker_event_source_is_enabled(template: dict[str, Any]) -> None:
    for name, mapping in resources_of(template, "AWS::Lambda::EventSourceMapping").items():
        assert mapping["Properties"].get("Enabled", True) is True, name


def inline_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            found.extend((name, s) for s in (statements if isinstance(statements, list) else [statements]))
    return found


def test_no_role_allows_every_action_or_every_resource(template: dict[str, Any]) -> None:
    # Given every inline statement of every role the template creates
    statements = inline_statements(template)
    assert statements
    for role, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        # Then no statement allows "*" or "service:*", and none applies to every resource
        assert not [a for a in actions if a == "*" or a.endswith(":*")], (role, actions)
        assert "*" not in resources, (role, actions)


def test_roles_use_only_lambdas_basic_managed_policies(template: dict[str, Any]) -> None:
    # Given the managed policies SAM attaches for logging and for SQS event sources
    allowed = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    # Then no role carries anything broader
    for role in resources_of(template, "AWS::IAM::Role").values():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= allowed


def test_only_the_token_writers_may_write_the_secret(template: dict[str, Any]) -> None:
    # Given who may call secretsmanager:PutSecretValue
    writers = {
        role
        for role, statement in inline_statements(template)
        if "secretsmanager:PutSecretValue" in str(statement["Action"])
    }
    # Then only the functions that call Xero (and so may refresh its rotating token)
    assert writers == {
        "ContactWorkerFunctionRole",
        "DealWorkerFunctionRole",
        "PaymentPollerFunctionRole",
        "ReconcileFunctionRole",
    }


def test_webhooks_can_queue_both_object_types(template: dict[str, Any]) -> None:
    # Given each webhook function's role (a HubSpot batch may mix object types)
    for role in ("ContactWebhookFunctionRole", "DealWebhookFunctionRole"):
        queues = {
            s["Resource"]["Fn::Sub"][1]["queueName"]["Fn::GetAtt"][0]
            for r, s in inline_statements(template)
            if r == role and "sqs:SendMessage*" in s["Action"]
        }
        # Then it may send to both work queues
        assert queues == {"ContactQueue", "DealQueue"}


def test_every_function_shares_one_environment_and_keeps_logs_for_a_while(template: dict[str, Any]) -> None:
    # Given the functions
    functions = resources_of(template, "AWS::Lambda::Function")
    assert set(functions) == {
        "ContactWebhookFunction",
        "ContactWorkerFunction",
        "DealWebhookFunction",
        "DealWorkerFunction",
        "PaymentPollerFunction",
        "ReconcileFunction",
    }
    environments = {json.dumps(f["Properties"]["Environment"], sort_keys=True) for f in functions.values()}
    # Then one environment for all (the local stack runs them in one process)
    assert len(environments) == 1
    variables = next(iter(functions.values()))["Properties"]["Environment"]["Variables"]
    assert {"SYNC_TABLE", "IDEMPOTENCY_TABLE", "CONTACT_QUEUE_URL", "DEAL_QUEUE_URL", "CREDENTIALS_SECRET_ID"} <= set(
        variables
    )
    for name, function in functions.items():
        # And each runs python3.12 on arm64 with the common layer, logging to a group with retention
        assert function["Properties"]["Runtime"] == "python3.12"
        assert function["Properties"]["Architectures"] == ["arm64"]
        assert len(function["Properties"]["Layers"]) == 1
        log_group = props(template, target(function["Properties"]["LoggingConfig"]["LogGroup"]))
        assert "RetentionInDays" in log_group, name


def test_every_dlq_and_every_function_error_raises_an_alarm(template: dict[str, Any]) -> None:
    # Given the alarms
    alarms = resources_of(template, "AWS::CloudWatch::Alarm").values()
    watched = {target(a["Properties"]["Dimensions"][0]["Value"]) for a in alarms}
    dlqs = {name for name in resources_of(template, "AWS::SQS::Queue") if name.endswith("DLQ")}
    functions = set(resources_of(template, "AWS::Lambda::Function"))
    # Then every DLQ and every function is watched, and each alarm notifies the alert topic
    assert dlqs | functions <= watched
    assert len(dlqs) == 4
    for alarm in alarms:
        assert [target(a) for a in alarm["Properties"]["AlarmActions"]] == ["AlertTopic"]
        assert alarm["Properties"]["Threshold"] == 0


def test_alert_topic_key_lets_cloudwatch_alarms_publish(template: dict[str, Any]) -> None:
    # Given the alert topic's key (CloudWatch cannot use alias/aws/sns)
    topic = props(template, "AlertTopic")
    key = props(template, target(topic["KmsMasterKeyId"]))
    principals = [s["Principal"] for s in key["KeyPolicy"]["Statement"]]
    # Then its policy lets CloudWatch alarms use it, and it rotates
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    assert key["EnableKeyRotation"] is True


def test_webhook_api_routes_logs_and_throttles(template: dict[str, Any]) -> None:
    # Given the webhook API and its stage
    api = props(template, "HttpApi")
    (stage,) = resources_of(template, "AWS::ApiGatewayV2::Stage").values()
    # Then it serves the two webhook routes, logs access and throttles
    assert set(api["Body"]["paths"]) == {
        "/webhooks/{crm}/contacts",
        "/webhooks/{crm}/deals",
        "/webhooks/{crm}/contacts/{secret}",
        "/webhooks/{crm}/deals/{secret}",
        "/accounting-webhooks/{system}",
    }
    assert "DestinationArn" in stage["Properties"]["AccessLogSettings"]
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0


def test_credentials_secret_starts_with_every_key_empty(template: dict[str, Any]) -> None:
    # Given the credentials secret's initial value
    secret = json.loads(props(template, "CredentialsSecret")["SecretString"])
    # Then it is one JSON object with every key the functions read, all empty until the user fills them
    assert secret == dict.fromkeys(CREDENTIAL_KEYS, "")


def test_every_setting_the_functions_read_is_a_template_parameter(template: dict[str, Any]) -> None:
    # Given the shared environment of the functions
    function = next(iter(resources_of(template, "AWS::Lambda::Function").values()))
    variables = function["Properties"]["Environment"]["Variables"]
    # Then every vendor URL setting is there (so a deployment can point at any vendor region or host)
    settings = {str(f.alias) for f in Settings.model_fields.values() if str(f.alias).endswith(("_URL", "_CENTRE"))}
    assert settings <= set(variables), settings - set(variables)
    # And each provider the runtime knows is an allowed value of its parameter
    assert set(template["Parameters"]["CrmProvider"]["AllowedValues"]) == set(runtime.CRM_PROVIDERS)
    assert set(template["Parameters"]["AccountingProvider"]["AllowedValues"]) == set(runtime.ACCOUNTING_PROVIDERS)


def test_outputs_name_the_webhooks_and_the_data(template: dict[str, Any]) -> None:
    # Given the stack outputs
    outputs = template["Outputs"]
    # Then they give the webhook URLs to paste into HubSpot and the names of the data resources
    assert {
        "ContactsWebhookUrl",
        "DealsWebhookUrl",
        "SyncTableName",
        "IdempotencyTableName",
        "ReportBucketName",
        "CredentialsSecretArn",
        "AlertTopicArn",
        "ContactQueueUrl",
        "DealQueueUrl",
    } <= set(outputs)
    assert outputs["ContactsWebhookUrl"]["Value"]["Fn::Sub"].endswith("/webhooks/${CrmProvider}/contacts")
    assert outputs["DealsWebhookUrl"]["Value"]["Fn::Sub"].startswith("https://${HttpApi}.execute-api.")


def test_workers_consume_and_park_only_on_the_work_queues(template: dict[str, Any]) -> None:
    # Given the workers' roles (written out: SAM's SQS managed policy applies to every queue)
    for role in ("ContactWorkerFunctionRole", "DealWorkerFunctionRole"):
        statements = [s for r, s in inline_statements(template) if r == role]
        sqs = [s for s in statements if "sqs:" in str(s["Action"])]
        # Then every SQS action names the two work queues, sending included (a parked message is re-sent)
        assert {a for s in sqs for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])} >= {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:SendMessage",
        }
        for statement in sqs:
            assert {r["Fn::GetAtt"][0] for r in statement["Resource"]} == {"ContactQueue", "DealQueue"}
        # And its logs go only to its own log group
        (logs,) = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
        assert logs["Resource"]["Fn::GetAtt"][0] == role.replace("Role", "LogGroup")


def test_hubspot_signature_minimum_is_a_parameter_that_reaches_the_webhook_functions(template: dict[str, Any]) -> None:
    from closeloop.crm.hubspot import SIGNATURE_VERSIONS  # noqa: PLC0415

    # Given the HubSpotSignatureMinVersion parameter
    parameter = template["Parameters"]["HubSpotSignatureMinVersion"]
    # Then it offers exactly the versions the adapter knows and defaults to the only one with a timestamp
    assert parameter["AllowedValues"] == list(SIGNATURE_VERSIONS)
    assert parameter["Default"] == "v3" == Settings.model_fields["hubspot_signature_min_version"].default
    # And both webhook functions read it as the setting the runtime reads
    alias = str(Settings.model_fields["hubspot_signature_min_version"].alias)
    for name in ("ContactWebhookFunction", "DealWebhookFunction"):
        variables = props(template, name)["Environment"]["Variables"]
        assert variables[alias] == {"Ref": "HubSpotSignatureMinVersion"}, name
