"""Warm webhook ack: the real contacts webhook handler, against its floor (signature check + one SQS send).

The handler is ``functions/on_contact/app.py``'s ``webhook_handler``, imported by path with the function's
environment, called with the signed API Gateway v2 sample event (``events/webhook_contacts_v3.json``,
re-signed for now). SQS and DynamoDB are moto in-process (``mock_aws``) with the two work queues and the sync
table created here. The floor is what no implementation can skip: HubSpot's v3 signature check
(``signature_v3`` + ``compare_digest``), the replay check's two writes (a conditional ``put_item`` claims the
delivery for a minute before it is queued, a second ``put_item`` keeps it for the vendors' retry window once
it is: one long claim would lose a delivery whose function died before queueing it) and one ``send_message``
of the same body to the same queue. The two are called
alternately, after a warm-up,
so both see the same queue and the same machine.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.lambda_env import ROOT, lambda_environment
from bench.report import Row, median

TARGET_RATIO = 1.3
APP = ROOT / "functions" / "on_contact" / "app.py"


class BenchContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    function_name = "closeloop-ContactWebhookFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:closeloop-ContactWebhookFunction"
    memory_limit_in_mb = 256
    log_group_name = "/aws/lambda/closeloop-ContactWebhookFunction"
    log_stream_name = "bench"
    identity = None
    client_context = None

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


#: Settings of the developer's shell that would send boto3 past moto or change what it reads.
UNSET = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (and UNSET removed), restored afterwards."""
    saved = dict(os.environ)
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def import_by_path(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def delivery(sample: dict[str, Any], n: int) -> bytes:
    """The sample's body as HubSpot's ``n``-th delivery: its own event ids (a replayed body would be answered
    from the replay check without being queued, which is not the path measured here)."""
    events = json.loads(sample["body"])
    for index, event in enumerate(events):
        event["eventId"] = int(event["eventId"]) * 1_000_000 + n * 100 + index
    return json.dumps(events).encode()


def create_sync_table(dynamodb: Any, table: str) -> None:
    """The sync table with template.yaml's key schema (the replay check writes there)."""
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def check_every_delivery_claimed(dynamodb: Any, table: str, deliveries: int) -> None:
    """The handler took the path measured: each delivery claimed (none answered as a replay)."""
    items = dynamodb.scan(TableName=table)["Items"]
    claims = sum(1 for i in items if i["PK"]["S"].startswith("DELIVERY#"))
    if claims < deliveries:
        raise RuntimeError(f"the handler claimed {claims} of {deliveries} deliveries: not the path measured")


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def measure(calls: int = 200, warmup: int = 20) -> list[Row]:
    """Median ms per warm call of the webhook handler and of its floor, over ``calls`` alternating calls."""
    import boto3  # noqa: PLC0415 - heavy; only this measure needs it here
    from moto import mock_aws  # noqa: PLC0415

    from closeloop import runtime  # noqa: PLC0415
    from closeloop.vendors.hubspot.webhooks import signature_v3  # noqa: PLC0415
    from closeloop_local.events import SAMPLE_SECRET, load, public_uri, resign  # noqa: PLC0415

    secrets = {
        "HUBSPOT_CLIENT_SECRET": SAMPLE_SECRET,
        "HUBSPOT_ACCESS_TOKEN": "pat-bench",
        "XERO_CLIENT_ID": "bench",
        "XERO_CLIENT_SECRET": "bench",
        "XERO_REFRESH_TOKEN": "bench",
        "XERO_TENANT_ID": "bench",
    }
    handler_ms: list[float] = []
    floor_ms: list[float] = []
    with environment(lambda_environment(secrets)), mock_aws(), Path(os.devnull).open("w") as devnull:
        sqs = boto3.client("sqs")
        urls = {name: sqs.create_queue(QueueName=f"closeloop-{name}")["QueueUrl"] for name in ("contacts", "deals")}
        os.environ.update({"CONTACT_QUEUE_URL": urls["contacts"], "DEAL_QUEUE_URL": urls["deals"]})
        dynamodb = boto3.client("dynamodb")
        table = os.environ["SYNC_TABLE"]
        create_sync_table(dynamodb, table)
        runtime.reset()
        try:
            with contextlib.redirect_stdout(devnull):  # the function's JSON logs, as CloudWatch would take them
                module = import_by_path("bench_on_contact_app", str(APP))
                handler: Callable[[dict[str, Any], Any], dict[str, Any]] = module.webhook_handler
                sample = load("webhook_contacts_v3.json")
                events = [resign(sample, body=delivery(sample, n)) for n in range(1 + warmup + calls)]
                context = BenchContext()
                first = handler(events[0], context)
                if first.get("statusCode") != 200:
                    raise RuntimeError(f"the webhook handler answered {first}")
                body = sqs.receive_message(QueueUrl=urls["contacts"])["Messages"][0]["Body"]

                def floor_call(event: dict[str, Any]) -> None:
                    headers = event["headers"]
                    expected = signature_v3(
                        SAMPLE_SECRET,
                        "POST",
                        public_uri(event),
                        event["body"].encode(),
                        headers["x-hubspot-request-timestamp"],
                    )
                    if not hmac.compare_digest(expected.encode(), headers["x-hubspot-signature-v3"].encode()):
                        raise RuntimeError("the floor's signature check failed")
                    dynamodb.put_item(
                        TableName=table,
                        Item={"PK": {"S": f"FLOOR#{uuid.uuid4()}"}, "SK": {"S": "FLOOR"}},
                        ConditionExpression="attribute_not_exists(PK)",
                    )
                    sqs.send_message(QueueUrl=urls["contacts"], MessageBody=body)
                    dynamodb.put_item(TableName=table, Item={"PK": {"S": f"FLOOR#{uuid.uuid4()}"}, "SK": {"S": "KEPT"}})

                for index, event in enumerate(events[1:], start=1):
                    handled, answer = _timed(functools.partial(handler, event, context))
                    floored, _ = _timed(functools.partial(floor_call, event))
                    if answer.get("statusCode") != 200:
                        raise RuntimeError(f"the webhook handler answered {answer}")
                    if index > warmup:
                        handler_ms.append(handled)
                        floor_ms.append(floored)
            check_every_delivery_claimed(dynamodb, table, len(events))
        finally:
            runtime.reset()
            sys.modules.pop("bench_on_contact_app", None)
    return [
        Row(
            f"warm webhook ack on_contact (median of {len(handler_ms)} calls)",
            median(handler_ms),
            median(floor_ms),
            "ms",
            target=TARGET_RATIO,
            bound="ratio",
            digits=2,
            note=(
                "the handler adds the Powertools resolver and logging, event parsing and the WorkMessage model "
                "on top of the floor; SQS and DynamoDB are moto in-process, so both figures leave out the network "
                "round trips"
            ),
        )
    ]
