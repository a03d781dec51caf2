"""template.yaml keeps its promises: read from the translated template, so changing the template breaks these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from closeloop import telemetry, webhook_api
from closeloop.config import Settings
from closeloop.credentials import API_KEYS, CREDENTIAL_KEYS, SECRET_KEYS, WEBHOOK_KEYS
from closeloop.vendors import registry
from closeloop.vendors.hubspot import HubSpotSettings
from closeloop_local.stack import load_translated_template, referenced_ids

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
    found: list[tuple[str, dict[str, Any]]] = []
    for name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            found.extend((name, s) for s in (statements if isinstance(statements, list) else [statements]))
    return found


#: Actions that take no resource of their own: IAM authorizes them on "*" only (the Service Authorization
#: Reference lists no resource type for them). X-Ray's writes, for the traced workers.
RESOURCELESS_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


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
        if set(actions) <= RESOURCELESS_ACTIONS:
            continue  # "*" is the only resource they take; a statement of their own grants nothing else
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


def test_webhooks_may_only_write_and_release_delivery_records_in_the_sync_table(template: dict[str, Any]) -> None:
    # Given each webhook function's role
    for role in ("ContactWebhookFunctionRole", "DealWebhookFunctionRole"):
        dynamodb = [s for r, s in inline_statements(template) if r == role and "dynamodb" in json.dumps(s["Action"])]
        # Then its one DynamoDB statement puts and deletes DELIVERY# items of the sync table, nothing else
        (statement,) = dynamodb
        assert sorted(statement["Action"]) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
        assert target(statement["Resource"]) == "SyncTable"
        assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["DELIVERY#*"]}}


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
        assert [param_default(template, a) for a in function["Properties"]["Architectures"]] == ["arm64"]
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


#: What CloudFormation writes a secret's value from. Changed in an update, it replaces the stored value.
SECRET_VALUE_PROPERTIES = ("SecretString", "GenerateSecretString")
#: The SecretString of each secret, frozen for every release. CredentialsSecret's is the one its earlier
#: releases created it with (changing it, even to "{}", would blank the stored credentials once).
FROZEN_SECRET_STRINGS = {
    "CredentialsSecret": (
        '{"HUBSPOT_ACCESS_TOKEN":"","HUBSPOT_CLIENT_SECRET":"", "PIPEDRIVE_API_TOKEN":"","PIPEDRIVE_WEBHOOK_USER":"",'
        '"PIPEDRIVE_WEBHOOK_PASSWORD":"", "PIPEDRIVE_WEBHOOK_PATH_SECRET":"", "SUGARCRM_USERNAME":"",'
        '"SUGARCRM_PASSWORD":"","SUGARCRM_CLIENT_ID":"","SUGARCRM_CLIENT_SECRET":"", "SUGARCRM_WEBHOOK_TOKEN":"", '
        '"XERO_CLIENT_ID":"","XERO_CLIENT_SECRET":"","XERO_REFRESH_TOKEN":"","XERO_TENANT_ID":"", '
        '"XERO_WEBHOOK_KEY":"", "QUICKBOOKS_CLIENT_ID":"","QUICKBOOKS_CLIENT_SECRET":"",'
        '"QUICKBOOKS_REFRESH_TOKEN":"", "QUICKBOOKS_REALM_ID":"","QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN":"", '
        '"ZOHO_CLIENT_ID":"","ZOHO_CLIENT_SECRET":"","ZOHO_REFRESH_TOKEN":"","ZOHO_BOOKS_ORGANIZATION_ID":""}'
    ),
    "WebhookKeysSecret": "{}",
}


def test_secrets_keep_a_value_no_release_may_change(template: dict[str, Any]) -> None:
    # Given the stack's secrets
    secrets = resources_of(template, "AWS::SecretsManager::Secret")
    assert set(secrets) == set(FROZEN_SECRET_STRINGS)
    for name, secret in secrets.items():
        value = {k: v for k, v in secret["Properties"].items() if k in SECRET_VALUE_PROPERTIES}
        # Then each is created from exactly its frozen SecretString, byte for byte, and nothing generated:
        # CloudFormation overwrites the stored credentials when this changes (a key the code adds is read as
        # unset until someone fills it, so the template never needs to name it)
        assert value == {"SecretString": FROZEN_SECRET_STRINGS[name]}, name
    # And both are JSON objects (what the code reads)
    assert all(isinstance(json.loads(text), dict) for text in FROZEN_SECRET_STRINGS.values())


def test_each_secret_holds_its_own_keys(template: dict[str, Any]) -> None:
    # Given the environment variables naming the secrets, and the keys the code reads from each
    variables = next(iter(resources_of(template, "AWS::Lambda::Function").values()))["Properties"]["Environment"]
    wiring = {variable: target(variables["Variables"][variable]) for variable in SECRET_KEYS}
    # Then the API credentials come from CredentialsSecret and the webhook keys from WebhookKeysSecret
    assert wiring == {"CREDENTIALS_SECRET_ID": "CredentialsSecret", "WEBHOOK_KEYS_SECRET_ID": "WebhookKeysSecret"}
    assert SECRET_KEYS == {"CREDENTIALS_SECRET_ID": API_KEYS, "WEBHOOK_KEYS_SECRET_ID": WEBHOOK_KEYS}
    # And every credential key lives in exactly one of them
    assert sorted(API_KEYS + WEBHOOK_KEYS) == sorted(CREDENTIAL_KEYS)
    assert set(WEBHOOK_KEYS) == {
        "HUBSPOT_CLIENT_SECRET",
        "PIPEDRIVE_WEBHOOK_USER",
        "PIPEDRIVE_WEBHOOK_PASSWORD",
        "PIPEDRIVE_WEBHOOK_PATH_SECRET",
        "SUGARCRM_WEBHOOK_TOKEN",
        "XERO_WEBHOOK_KEY",
        "QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN",
    }


def test_every_setting_the_functions_read_is_a_template_parameter(template: dict[str, Any]) -> None:
    # Given the shared environment of the functions
    function = next(iter(resources_of(template, "AWS::Lambda::Function").values()))
    variables = function["Properties"]["Environment"]["Variables"]
    # Then every vendor URL setting is there (so a deployment can point at any vendor region or host)
    models = [Settings, *(spec.settings for spec in registry.all_specs())]  # the common and each vendor's own
    fields = [f for model in models for f in model.model_fields.values()]
    settings = {str(f.alias) for f in fields if str(f.alias).endswith(("_URL", "_CENTRE"))}
    assert settings <= set(variables), settings - set(variables)
    # And each provider the runtime knows (the registry's vendors) is an allowed value of its parameter
    assert set(template["Parameters"]["CrmProvider"]["AllowedValues"]) == set(registry.names("crm"))
    assert set(template["Parameters"]["AccountingProvider"]["AllowedValues"]) == set(registry.names("accounting"))


#: Vendor settings a deployment leaves to the code: Sugar's API version is discovered from the instance.
DISCOVERED = {"SUGARCRM_API_VERSION"}


def test_every_vendor_setting_is_a_parameter_the_functions_read(template: dict[str, Any]) -> None:
    # Given the shared environment of the functions
    function = next(iter(resources_of(template, "AWS::Lambda::Function").values()))
    variables = set(function["Properties"]["Environment"]["Variables"])
    # Then every vendor's own setting reaches them (e.g. QuickBooks' item accounts), bar the discovered ones
    aliases = {str(f.alias) for spec in registry.all_specs() for f in spec.settings.model_fields.values()}
    assert aliases - variables == DISCOVERED


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
    own_queue = {"ContactWorkerFunctionRole": "ContactQueue", "DealWorkerFunctionRole": "DealQueue"}
    for role, queue in own_queue.items():
        statements = [s for r, s in inline_statements(template) if r == role]
        sqs = [s for s in statements if "sqs:" in str(s["Action"])]
        # Then every SQS action names its own work queue only, sending included (a parked message is re-sent)
        assert {a for s in sqs for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])} >= {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:SendMessage",
        }
        for statement in sqs:
            assert statement["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}, role
        # And its logs go only to its own log group
        (logs,) = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
        assert logs["Resource"]["Fn::GetAtt"][0] == role.replace("Role", "LogGroup")


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [str(a) for a in (action if isinstance(action, list) else [action])]


def resources_named(template: dict[str, Any], statement: dict[str, Any]) -> set[str]:
    """The template resources a statement's Resource refers to (through Ref, GetAtt or a Sub variable)."""
    return referenced_ids(statement.get("Resource")) & set(template["Resources"])


def test_least_exposure_of_secrets_queues_tables_and_reports(template: dict[str, Any]) -> None:
    statements = inline_statements(template)
    webhook_roles = {"ContactWebhookFunctionRole", "DealWebhookFunctionRole"}
    # Given the internet-facing webhook functions (the accounting-webhook route is the contact webhook's)
    routes = {path: op["post"] for path, op in props(template, "HttpApi")["Body"]["paths"].items()}
    accounting_route = routes["/accounting-webhooks/{system}"]["x-amazon-apigateway-integration"]["uri"]
    assert "ContactWebhookFunction" in referenced_ids(accounting_route)
    for role in webhook_roles:
        own = [s for r, s in statements if r == role]
        # Then they may read the webhook keys' secret and nothing else of Secrets Manager
        secret_statements = [s for s in own if any(a.startswith("secretsmanager:") for a in actions_of(s))]
        assert secret_statements
        for statement in secret_statements:
            assert {a for a in actions_of(statement) if a.startswith("secretsmanager:")} <= {
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
            }
            assert resources_named(template, statement) == {"WebhookKeysSecret"}
        # And nothing they may do names the vendors' API credentials
        assert not any("CredentialsSecret" in json.dumps(s) for s in own), role
    # And the webhook keys are read by the webhook functions, and by every function that builds the CRM adapter
    # (HUBSPOT_CLIENT_SECRET, a webhook key, also refreshes a HubSpot OAuth app's tokens), never written there
    readers = {r for r, s in statements if "WebhookKeysSecret" in resources_named(template, s)}
    crm_users = {"ContactWorkerFunctionRole", "DealWorkerFunctionRole", "PaymentPollerFunctionRole"}
    assert readers == webhook_roles | crm_users | {"ReconcileFunctionRole"}
    for _role, statement in statements:
        if "WebhookKeysSecret" in resources_named(template, statement):
            assert set(actions_of(statement)) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    # And each role that reads the API credentials also reads the secret that holds HUBSPOT_CLIENT_SECRET
    holder = {"CREDENTIALS_SECRET_ID": "CredentialsSecret", "WEBHOOK_KEYS_SECRET_ID": "WebhookKeysSecret"}[
        next(env for env, keys in SECRET_KEYS.items() if "HUBSPOT_CLIENT_SECRET" in keys)
    ]
    for role in {r for r, s in statements if "CredentialsSecret" in resources_named(template, s)}:
        assert any(holder in resources_named(template, s) for r, s in statements if r == role), role
    # And each function sends only to the queues it needs
    sends: dict[str, set[str]] = {}
    for role, statement in statements:
        if any(a.startswith("sqs:SendMessage") for a in actions_of(statement)):
            sends.setdefault(role, set()).update(resources_named(template, statement))
    assert sends == {
        "ContactWebhookFunctionRole": {"ContactQueue", "DealQueue"},  # a CRM batch may mix object types
        "DealWebhookFunctionRole": {"ContactQueue", "DealQueue"},
        "ContactWorkerFunctionRole": {"ContactQueue"},  # parks its own messages
        "DealWorkerFunctionRole": {"DealQueue"},
        "PaymentPollerFunctionRole": {"ContactQueue", "DealQueue", "PaymentPollerDLQ"},  # catch-up queues both
        "ReconcileFunctionRole": {"ReconcileDLQ"},
        # (SAM's: a failed asynchronous invocation or undeliverable schedule goes to the job's own DLQ)
        "PaymentPollerFunctionPollScheduleRole": {"PaymentPollerDLQ"},
        "ReconcileFunctionMonthlyScheduleRole": {"ReconcileDLQ"},
    }
    # And no role may scan a table, except the monthly report listing every deal mapping (no index serves it)
    scanners = {r for r, s in statements if any(a in ("dynamodb:Scan", "dynamodb:*") for a in actions_of(s))}
    assert scanners == {"ReconcileFunctionRole"}
    # And no role may delete reports or change the bucket's lifecycle (reports are records)
    for role, statement in statements:
        for action in actions_of(statement):
            assert not action.startswith(("s3:Delete", "s3:PutLifecycle", "s3:PutBucket")), (role, action)
    (writer,) = [(r, s) for r, s in statements if "s3:PutObject" in actions_of(s)]
    assert writer[0] == "ReconcileFunctionRole"
    assert writer[1]["Resource"] == {"Fn::Sub": "${ReportBucket.Arn}/reports/*"}


def test_webhook_5xx_and_misconfiguration_reach_the_alert_topic(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    # Given the webhook API's alarms
    api_5xx = props(template, "WebhookApi5xxAlarm")
    misconfigured = props(template, "WebhookMisconfiguredAlarm")
    assert {"WebhookApi5xxAlarm", "WebhookMisconfiguredAlarm"} <= set(alarms)
    # Then any 5xx of this HTTP API alarms
    assert (api_5xx["Namespace"], api_5xx["MetricName"]) == ("AWS/ApiGateway", "5xx")
    assert api_5xx["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    # And so does any 503 for missing configuration, on the metric the webhook API emits, with every dimension
    # it carries (Powertools adds the service name of the functions' environment)
    service = next(iter(resources_of(template, "AWS::Lambda::Function").values()))["Properties"]["Environment"][
        "Variables"
    ]["POWERTOOLS_SERVICE_NAME"]
    assert (misconfigured["Namespace"], misconfigured["MetricName"]) == (
        webhook_api.METRICS_NAMESPACE,
        webhook_api.MISCONFIGURED_METRIC,
    )
    assert misconfigured["Dimensions"] == [
        {"Name": "ApiId", "Value": {"Ref": "HttpApi"}},
        {"Name": "service", "Value": service},
    ]
    for alarm in (api_5xx, misconfigured):
        # And each fires on the first one, into the alert topic
        assert alarm["Statistic"] == "Sum"
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert [target(a) for a in alarm["AlarmActions"]] == ["AlertTopic"]


def test_hubspot_signature_minimum_is_a_parameter_that_reaches_the_webhook_functions(template: dict[str, Any]) -> None:
    from closeloop.vendors.hubspot.webhooks import SIGNATURE_VERSIONS  # noqa: PLC0415

    # Given the HubSpotSignatureMinVersion parameter
    parameter = template["Parameters"]["HubSpotSignatureMinVersion"]
    # Then it offers exactly the versions the adapter knows and defaults to the only one with a timestamp
    assert parameter["AllowedValues"] == list(SIGNATURE_VERSIONS)
    assert parameter["Default"] == "v3" == HubSpotSettings.model_fields["signature_min_version"].default
    # And both webhook functions read it as the setting the runtime reads
    alias = str(HubSpotSettings.model_fields["signature_min_version"].alias)
    for name in ("ContactWebhookFunction", "DealWebhookFunction"):
        variables = props(template, name)["Environment"]["Variables"]
        assert variables[alias] == {"Ref": "HubSpotSignatureMinVersion"}, name


def test_workers_are_traced_and_may_write_their_traces(template: dict[str, Any]) -> None:
    functions = resources_of(template, "AWS::Lambda::Function")
    for name in ("ContactWorkerFunction", "DealWorkerFunction"):
        # Given a queue worker (decorated with Powertools Tracer: closeloop.observability)
        properties = functions[name]["Properties"]
        # Then Lambda traces it with X-Ray
        assert properties["TracingConfig"] == {"Mode": "Active"}
        # And its own role (SAM adds X-Ray's policy only to the roles it makes) may send the segments
        role = target(properties["Role"])
        statements = [
            statement
            for policy in props(template, role)["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        traces = [s for s in statements if "xray:PutTraceSegments" in s["Action"]]
        assert traces, f"{role} cannot write X-Ray segments"
        assert set(traces[0]["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    for name, function in functions.items():
        # And every function's metrics land in the namespace the code and the alarms use
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == telemetry.METRICS_NAMESPACE, name


# ---------------------------------------------------------------- the template against the vendors' specs


def test_the_provider_parameters_offer_the_registry_s_vendors(template: dict[str, Any]) -> None:
    # Given the registry of vendors and the two provider parameters
    for parameter, kind in (("CrmProvider", "crm"), ("AccountingProvider", "accounting")):
        declared = template["Parameters"][parameter]
        # Then the allowed values are the registry's vendors of that kind, in its order
        assert declared["AllowedValues"] == registry.names(kind), parameter
        # And the default is the registry's default, which is also the runtime's when the variable is unset
        assert declared["Default"] == registry.DEFAULTS[kind], parameter
    assert Settings.model_fields["crm_provider"].default == ""
    assert Settings.model_fields["accounting_provider"].default == ""


def test_every_vendor_setting_the_template_passes_is_its_vendor_s(template: dict[str, Any]) -> None:
    # Given the environment every function gets, without the common settings and Powertools' own
    variables = next(iter(resources_of(template, "AWS::Lambda::Function").values()))["Properties"]["Environment"][
        "Variables"
    ]
    common = {str(f.alias) for f in Settings.model_fields.values()}
    vendor_variables = {v for v in variables if v not in common and not v.startswith(("POWERTOOLS_", "AWS_"))}
    owners = {alias: spec for spec in registry.all_specs() for alias in spec.env_vars()}
    # Then each one is a setting of exactly one vendor's settings model
    assert vendor_variables <= set(owners), vendor_variables - set(owners)
    assert len(owners) == sum(len(spec.env_vars()) for spec in registry.all_specs())
    # And a parameter's default is the model's default, so an unset variable means what the template means
    for alias in vendor_variables:
        field = next(f for f in owners[alias].settings.model_fields.values() if f.alias == alias)
        assert param_default(template, variables[alias]) == field.default, alias


def test_the_secrets_document_the_specs_credential_keys(template: dict[str, Any]) -> None:
    import fnmatch  # noqa: PLC0415
    import re  # noqa: PLC0415

    names = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*\*?")
    # Given the credential keys the vendors' specs declare
    keys, hooks = set(registry.credential_keys()), set(registry.webhook_keys())
    assert set(CREDENTIAL_KEYS) == keys and set(WEBHOOK_KEYS) == hooks
    # Then the keys listed in the credentials secret's frozen value are credential keys
    listed = set(json.loads(props(template, "CredentialsSecret")["SecretString"]))
    assert listed <= keys, listed - keys
    # And the webhook keys secret's description names every webhook key (a `PREFIX_*` covers a family) and
    # nothing else
    described = names.findall(props(template, "WebhookKeysSecret")["Description"])
    assert described
    for pattern in described:
        assert fnmatch.filter(sorted(hooks), pattern), pattern
    for key in hooks:
        assert any(fnmatch.fnmatch(key, pattern) for pattern in described), key
    # And the README's configuration table documents every credential key and every vendor setting
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Configuration") : readme.index("## Local stack")]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    settings = {alias for spec in registry.all_specs() for alias in spec.env_vars()}
    assert keys | settings <= documented, (keys | settings) - documented
