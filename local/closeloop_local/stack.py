"""The whole system from template.yaml, run offline in one process: ``LocalStack``.

One source of truth: the resources, routes, queue mappings, schedules and function environments all
come from the template. It is loaded with cfn-lint's YAML loader, expanded by the SAM translator, and
its data resources are created by CloudFormation in an AWS endpoint: the one in ``AWS_ENDPOINT_URL``
when set, otherwise an embedded moto server. Lambda, API Gateway, the SQS event sources and the
schedules are played in-process by ``devserver``; IAM, logs and alarms have no local meaning and are
left out.

moto's CloudFormation does not implement every property or type the template uses; the gaps it
leaves (secrets, queue and bucket policies, TTL, PITR, bucket versioning/lifecycle/public access
block/ownership) are applied here through the ordinary AWS APIs, still read from the template.
Secrets follow CloudFormation's update rule: a stored value survives a template change unless the
secret's SecretString/GenerateSecretString changed, which rewrites it as CloudFormation would.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from closeloop_local.devserver import (
    FunctionRuntime,
    FunctionSpec,
    HttpApiServer,
    QueueEventSource,
    RouteSpec,
    SqsConsumer,
)

logger = logging.getLogger("closeloop_local")

TEMPLATE_NAME = "template.yaml"
#: Stack name used in an endpoint the developer runs (``AWS_ENDPOINT_URL``), so other processes find it.
SHARED_STACK_NAME = "closeloop-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
#: CodeUri/ContentUri are rewritten to s3://LOCAL_CODE_BUCKET/<path> for the translator, then read back.
LOCAL_CODE_BUCKET = "closeloop-local-code"

#: Data resource types created through moto's CloudFormation.
CFN_DATA_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::SNS::Topic",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::SSM::Parameter",
    }
)
#: Types whose template properties are applied through the service APIs after the stack exists: moto's
#: CloudFormation does not implement the policies and skips TTL, PITR and most bucket settings. (Secrets,
#: which it does not implement either, are created by ``_create_secrets``.)
_COMPLETED_TYPES = frozenset(
    {"AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy", "AWS::DynamoDB::Table", "AWS::S3::Bucket"}
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
#: Tags on a local secret: its stack, its logical id, and a digest of the template value it was written from.
_STACK_TAG, _LOGICAL_ID_TAG, _TEMPLATE_VALUE_TAG = "closeloop:stack", "closeloop:logical-id", "closeloop:template-value"


class UnresolvableError(ValueError):
    """A template value refers to something the local stack does not provide."""


# ------------------------------------------------------------------------------------------ template


@contextmanager
def _region_env(region: str) -> Iterator[None]:
    """The SAM translator reads the region from boto3's environment; lend it one if there is none."""
    previous = os.environ.get("AWS_DEFAULT_REGION")
    if previous is None:
        os.environ["AWS_DEFAULT_REGION"] = region
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain JSON-compatible data (short-form tags expanded, YAML anchors unrolled)."""
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415 (heavy import, only when a stack is built)

    document = cfn_yaml.load(str(path))
    return json.loads(json.dumps(document))


def _local_uri(value: Any) -> Any:
    return f"s3://{LOCAL_CODE_BUCKET}/{value}" if isinstance(value, str) and not value.startswith("s3://") else value


def translate_template(
    document: Mapping[str, Any],
    *,
    parameter_values: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
) -> dict[str, Any]:
    """Expand the SAM transform offline; local CodeUri/ContentUri survive as ``s3://closeloop-local-code/…``."""
    working: dict[str, Any] = copy.deepcopy(dict(document))
    if "Transform" not in working:
        return working
    from samtranslator.metrics.method_decorator import MetricsMethodWrapperSingleton  # noqa: PLC0415
    from samtranslator.translator.transform import transform  # noqa: PLC0415 (heavy import)

    function_globals = working.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = _local_uri(function_globals["CodeUri"])
    for resource in working.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = _local_uri(properties[key])

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    with _region_env(region):
        try:
            translated = transform(working, dict(parameter_values or {}), _NoManagedPolicies())
        finally:
            # The translator counts its work for a no-op publisher; flush it, or it complains at exit.
            MetricsMethodWrapperSingleton.get_instance().publish()
    return json.loads(json.dumps(translated))


def load_translated_template(project_root: Path, *, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """``project_root/template.yaml`` as the plain CloudFormation the SAM transform produces."""
    return translate_template(load_template(project_root / TEMPLATE_NAME), region=region)


def referenced_ids(value: Any) -> set[str]:
    """Every name a value refers to through Ref, Fn::GetAtt or Fn::Sub (resources and parameters)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner.split(".", 1)[0] if isinstance(inner, str) else inner[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
                names = {match.split(".", 1)[0] for match in _SUB_VARIABLE.findall(text)}
                found |= names - set(variables)
                found |= referenced_ids(variables)
            else:
                found |= referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_ids(inner)
    return found


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule (EventBridge Scheduler or a scheduled rule) targeting a function."""

    logical_id: str
    function: str
    expression: Any
    input: str | None
    state: Any = "ENABLED"


@dataclass
class SystemModel:
    """What the translated template asks the local stack to play."""

    template: dict[str, Any]
    functions: dict[str, FunctionSpec]
    routes: list[RouteSpec]
    queue_sources: list[QueueEventSource]
    schedules: list[ScheduleSpec]

    @classmethod
    def from_template(cls, translated: dict[str, Any], template_dir: Path) -> SystemModel:
        resources: dict[str, Any] = translated.get("Resources", {})
        functions = {
            logical_id: _function_spec(logical_id, resource, resources, template_dir)
            for logical_id, resource in resources.items()
            if resource.get("Type") == "AWS::Lambda::Function"
        }
        return cls(
            template=translated,
            functions={k: v for k, v in functions.items() if v is not None},
            routes=_routes(resources),
            queue_sources=_queue_sources(resources),
            schedules=_schedules(resources),
        )


def _code_dir(code: Any, template_dir: Path) -> Path | None:
    if isinstance(code, dict) and code.get("S3Bucket") == LOCAL_CODE_BUCKET:
        return (template_dir / str(code["S3Key"])).resolve()
    return None


def _function_spec(
    logical_id: str, resource: Mapping[str, Any], resources: Mapping[str, Any], template_dir: Path
) -> FunctionSpec | None:
    properties = resource.get("Properties", {})
    code_dir = _code_dir(properties.get("Code"), template_dir)
    if code_dir is None or "Handler" not in properties:
        logger.warning("%s has no local code (CodeUri on S3, inline or image): it cannot run locally", logical_id)
        return None
    layer_dirs: list[Path] = []
    for layer in properties.get("Layers", []):
        target = layer.get("Ref") if isinstance(layer, dict) else None
        layer_resource = resources.get(target) if isinstance(target, str) else None
        if layer_resource and layer_resource.get("Type") == "AWS::Lambda::LayerVersion":
            layer_dir = _code_dir(layer_resource.get("Properties", {}).get("Content"), template_dir)
            if layer_dir is not None:
                # A pre-built layer keeps its modules under python/; a source layer built by sam is the dir.
                layer_dirs.append(layer_dir / "python" if (layer_dir / "python").is_dir() else layer_dir)
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=code_dir,
        handler=str(properties["Handler"]),
        timeout=int(properties.get("Timeout", 3)),
        memory_size=int(properties.get("MemorySize", 128)),
        environment=properties.get("Environment", {}).get("Variables", {}),
        layer_dirs=tuple(layer_dirs),
    )


def _function_in(value: Any) -> str | None:
    """The function a Fn::GetAtt/Ref/Fn::Sub integration target names (``${Fn.Arn}``)."""
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target.split(".", 1)[0] if isinstance(target, str) else target[0])
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            found = re.search(r"\$\{([A-Za-z0-9]+)\.Arn\}", text)
            return found.group(1) if found else None
    return None


def _routes(resources: Mapping[str, Any]) -> list[RouteSpec]:
    routes: list[RouteSpec] = []
    for resource in resources.values():
        if resource.get("Type") != "AWS::ApiGatewayV2::Api":
            continue
        paths = (resource.get("Properties", {}).get("Body") or {}).get("paths", {})
        for path, operations in paths.items():
            for method, operation in operations.items():
                integration = operation.get("x-amazon-apigateway-integration") if isinstance(operation, dict) else None
                if not integration:
                    continue
                function = _function_in(integration.get("uri"))
                if function is None:
                    continue
                verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                routes.append(
                    RouteSpec(
                        method=verb,
                        path="$default" if path in ("$default", "/$default") else path,
                        function=function,
                        payload_format_version=str(integration.get("payloadFormatVersion", "2.0")),
                    )
                )
    return routes


def _queue_sources(resources: Mapping[str, Any]) -> list[QueueEventSource]:
    sources: list[QueueEventSource] = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        properties = resource.get("Properties", {})
        queue = _function_in(properties.get("EventSourceArn"))
        if queue is None or resources.get(queue, {}).get("Type") != "AWS::SQS::Queue":
            continue  # streams and other sources are not played locally
        function = _function_in(properties.get("FunctionName"))
        if function is None:
            continue
        sources.append(
            QueueEventSource(
                logical_id=logical_id,
                function=function,
                queue=queue,
                batch_size=int(properties.get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                maximum_concurrency=properties.get("ScalingConfig", {}).get("MaximumConcurrency"),
                enabled=properties.get("Enabled", True) not in (False, "false", "False"),
            )
        )
    return sources


def _schedules(resources: Mapping[str, Any]) -> list[ScheduleSpec]:
    schedules: list[ScheduleSpec] = []
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Scheduler::Schedule":
            targets = [properties.get("Target", {})]
        elif resource.get("Type") == "AWS::Events::Rule" and "ScheduleExpression" in properties:
            targets = properties.get("Targets", [])
        else:
            continue
        for target in targets:
            function = _function_in(target.get("Arn"))
            if function and resources.get(function, {}).get("Type") == "AWS::Lambda::Function":
                schedules.append(
                    ScheduleSpec(
                        logical_id=logical_id,
                        function=function,
                        expression=properties.get("ScheduleExpression"),
                        input=target.get("Input"),
                        state=properties.get("State", "ENABLED"),
                    )
                )
    return schedules


# ----------------------------------------------------------------------------------- intrinsics


_NO_VALUE = object()


def resolve_parameters(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Parameter values: the template's defaults with ``overrides`` on top, checked against AllowedValues."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"unknown template parameter(s): {', '.join(unknown)} (declared: {', '.join(declared)})")
    values: dict[str, str] = {}
    for name, declaration in declared.items():
        value = overrides.get(name, declaration.get("Default"))
        if value is None:
            raise ValueError(f"template parameter {name} has no default: pass {name}=VALUE")
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        allowed = declaration.get("AllowedValues")
        if allowed and text not in [str(item) for item in allowed]:
            raise ValueError(f"parameter {name}={text!r} is not one of {allowed}")
        values[name] = text
    return values


class Resolver:
    """Evaluates the CloudFormation intrinsics the local stack meets, against local physical ids."""

    def __init__(
        self,
        *,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        refs: Mapping[str, str],
        get_att: Callable[[str, str], Any],
    ) -> None:
        self._declared = template.get("Parameters", {})
        self._conditions = template.get("Conditions", {})
        self._resources = template.get("Resources", {})
        self._parameters = parameters
        self._pseudo = pseudo
        self.refs = dict(refs)
        self._get_att = get_att
        self._condition_cache: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._condition_cache:
            self._condition_cache[name] = bool(self.resolve(self._conditions[name]))
        return self._condition_cache[name]

    def ref(self, name: str) -> Any:
        if name in self._parameters:
            value = self._parameters[name]
            kind = str(self._declared.get(name, {}).get("Type", "String"))
            return value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else value
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self.refs:
            return self.refs[name]
        kind = self._resources.get(name, {}).get("Type", "unknown")
        raise UnresolvableError(f"Ref {name} ({kind}) has no local value")

    def resolve(self, value: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 (one branch per intrinsic)
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self._get_att(logical_id, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                return str(arg[0]).join(str(item) for item in self.resolve(arg[1]))
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in arg)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise UnresolvableError(f"{key} is not supported by the local stack")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] not in self._parameters:
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute))
            return str(self.ref(name))

        substituted = _SUB_VARIABLE.sub(replace, text)
        return substituted.replace("${!", "${")


# ------------------------------------------------------------------------------------ moto server


def _start_embedded_moto(host: str) -> Any:
    """A ThreadedMotoServer on ``host`` and an ephemeral port, without a log line per AWS call."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler  # noqa: PLC0415 (heavy import)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    class _QuietMotoRequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return None  # every SQS long poll would print a line

    class _QuietThreadedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
                DomainDispatcherApplication,
                create_backend_app,
            )
            from werkzeug.serving import make_server  # noqa: PLC0415

            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=_QuietMotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.05)  # stop() returns sooner

    server = _QuietThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    return server


# ------------------------------------------------------------------------------------- the stack


def _without_tls_only(document: Mapping[str, Any], endpoint_url: str) -> dict[str, Any]:
    """The policy minus its TLS-only denials when the local endpoint speaks plain HTTP (moto enforces them,
    and every local request would be refused); kept as they are against an https endpoint."""
    if endpoint_url.startswith("https://"):
        return dict(document)
    statements = document.get("Statement", [])
    kept = [
        s
        for s in (statements if isinstance(statements, list) else [statements])
        if "aws:SecureTransport" not in json.dumps(s)
    ]
    return {**document, "Statement": kept}


class LocalStack:
    """The system of ``project_root/template.yaml``, running offline: AWS data resources in an endpoint,
    functions in this process behind a local HTTP API, SQS consumers and on-demand schedules.

    ``start()`` provisions and serves; ``attach()`` only finds an already provisioned stack (for
    one-off invocations). Either applies the resolved function environment to ``os.environ`` (plus
    ``AWS_ENDPOINT_URL``, and dummy credentials and a region when absent); ``stop()`` restores it.
    Because that environment is the process's, one LocalStack runs per process at a time.
    """

    _active: LocalStack | None = None
    _active_lock = threading.Lock()

    def __init__(
        self,
        project_root: Path,
        *,
        port: int = 3000,
        host: str = "127.0.0.1",
        endpoint_url: str | None = None,
        env_overrides: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        poll_interval: float = 0.2,
        retry_visibility_seconds: int | None = 1,
        stack_name: str | None = None,
        region: str | None = None,
    ) -> None:
        self.project_root = Path(project_root).resolve()
        self.template_path = self.project_root / TEMPLATE_NAME
        self.port = port
        self.host = host
        self.env_overrides = dict(env_overrides or {})
        self.parameter_overrides = dict(parameter_overrides or {})
        self.poll_interval = poll_interval
        self.retry_visibility_seconds = retry_visibility_seconds
        self.region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION
        self.account_id = DEFAULT_ACCOUNT_ID
        self._endpoint_arg = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.embedded = self._endpoint_arg is None
        self.stack_name = stack_name or (
            f"{SHARED_STACK_NAME}-{secrets.token_hex(3)}" if self.embedded else SHARED_STACK_NAME
        )
        self.api_id = hashlib.sha1(self.stack_name.encode()).hexdigest()[:10]  # noqa: S324 (an id, not security)

        self.api_url = ""
        self.endpoint_url = self._endpoint_arg or ""
        self.resources: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.parameters: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.model: SystemModel | None = None
        self.startup_seconds = 0.0

        self._secret_keys: set[str] = set()
        self._keys_by_secret: dict[str, set[str]] = {}
        self._resolver: Resolver | None = None
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._moto: Any = None
        self._http: HttpApiServer | None = None
        self._consumers: list[SqsConsumer] = []
        self._runtimes: dict[str, FunctionRuntime] = {}
        self._saved_env: dict[str, str | None] = {}
        self._added_paths: list[str] = []
        self._get_att_cache: dict[tuple[str, str], Any] = {}
        self._started = False

    # -- lifecycle

    def _claim_process(self) -> None:
        with LocalStack._active_lock:
            if LocalStack._active is not None and LocalStack._active is not self:
                raise RuntimeError(
                    f"local stack {LocalStack._active.stack_name} is already running in this process; "
                    "stop it first (functions share os.environ, so one stack runs per process)"
                )
            LocalStack._active = self

    def _release_process(self) -> None:
        with LocalStack._active_lock:
            if LocalStack._active is self:
                LocalStack._active = None

    def start(self) -> LocalStack:
        """Provision the data resources, apply the environment, serve the HTTP API, start the consumers."""
        if self._started:
            return self
        started = time.perf_counter()
        self._claim_process()
        self._started = True
        try:
            self._open_endpoint()
            self._load_model()
            self._provision()
            self._finish(serve=True)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        logger.info("local stack %s up in %.1f s", self.stack_name, self.startup_seconds)
        return self

    def attach(self) -> LocalStack:
        """Use the stack already provisioned in the endpoint (by ``closeloop dev``): no resources, no servers."""
        if self._started:
            return self
        if self.embedded:
            raise RuntimeError("attach() needs an endpoint_url (or AWS_ENDPOINT_URL): there is no stack to find")
        self._claim_process()
        self._started = True
        try:
            self._load_model()
            stack = self._describe_stack()
            if stack is None:
                raise RuntimeError(f"no stack {self.stack_name!r} at {self.endpoint_url}: start `closeloop dev` first")
            recorded = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
            self.parameters = resolve_parameters(
                self._template.get("Parameters", {}), {**recorded, **self.parameter_overrides}
            )
            self._read_stack_resources(stack)
            for logical_id, resource in self._template.get("Resources", {}).items():
                if resource.get("Type") == "AWS::SecretsManager::Secret" and self._resource_enabled(resource):
                    name = self._secret_name(logical_id, resource)
                    described = self._client("secretsmanager").describe_secret(SecretId=name)
                    self._add_resource(logical_id, described["ARN"])
            self._finish(serve=False)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop consumers and servers, restore ``os.environ`` and ``sys.path``. Safe to call twice."""
        busy = [consumer for consumer in self._consumers if consumer.signal_stop()]
        if self._http is not None:
            self._http.stop()
            self._http = None
        for consumer in busy:  # a batch in progress finishes with the stack's environment still in place
            consumer.join(timeout=10)
        self._consumers = []  # idle ones end when their long poll (at most 1 s) returns; nothing to wait for
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        for path in self._added_paths:
            if path in sys.path:
                sys.path.remove(path)
        self._added_paths = []
        for client in self._clients.values():
            client.close()
        self._clients = {}
        self._session = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._started = False
        self._release_process()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what callers use

    def function_id(self, name: str) -> str:
        """The logical id for ``name``: a logical id, or a function directory name when it is unambiguous."""
        model = self._require_model()
        if name in model.functions:
            return name
        matches = [spec.logical_id for spec in model.functions.values() if spec.code_dir.name == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(f"{name!r} holds several functions: {', '.join(sorted(matches))}; name one")
        raise ValueError(f"no function {name!r}; functions: {', '.join(sorted(model.functions))}")

    def invoke(self, function: str, event: dict[str, Any], context: Any = None) -> Any:
        """Invoke a function once, synchronously, in this process; its exceptions propagate."""
        if not self._started:
            raise RuntimeError("the local stack is not running (call start() or attach())")
        logical_id = self.function_id(function)
        return self._runtimes[logical_id].invoke(event, context)

    def schedule_input(self, function: str) -> dict[str, Any]:
        """The event a function's schedule sends it (its Input, or ``{}``)."""
        logical_id = self.function_id(function)
        for schedule in self._require_model().schedules:
            if schedule.function == logical_id:
                return json.loads(schedule.input) if schedule.input else {}
        raise ValueError(f"{logical_id} has no schedule")

    def run_schedule(self, function: str) -> Any:
        """Invoke a scheduled function once with its schedule's Input, as the scheduler would."""
        return self.invoke(function, self.schedule_input(function))

    def drain(self, timeout: float = 30.0) -> None:
        """Block until every consumed queue is empty and no batch is in flight; TimeoutError otherwise.

        Failed messages count as not empty until they succeed or move to their DLQ, so with
        ``retry_visibility_seconds=None`` a failure keeps ``drain`` waiting for the queue's timeout.
        """
        deadline = time.monotonic() + timeout
        sqs = self._client("sqs")
        while True:
            before = [consumer.activity() for consumer in self._consumers]
            # Read twice: moto counts visible and in-flight messages at two instants, so a message whose
            # visibility runs out between them is in neither count; the second read sees it as visible.
            idle = not any(busy for busy, _ in before) and all(
                self._queue_is_empty(sqs, consumer.queue_url) and self._queue_is_empty(sqs, consumer.queue_url)
                for consumer in self._consumers
            )
            if idle and before == [consumer.activity() for consumer in self._consumers]:
                return
            if time.monotonic() >= deadline:
                counts = {c.source.queue: self._queue_counts(sqs, c.queue_url) for c in self._consumers}
                raise TimeoutError(f"queues not drained after {timeout} s: {counts}")
            time.sleep(self.poll_interval)

    @property
    def credential_keys(self) -> frozenset[str]:
        """The keys of the template's JSON secrets (HUBSPOT_ACCESS_TOKEN, XERO_…): taken from the developer's
        environment when set there, seeded into the local secret, and never written to state files."""
        return frozenset(self._secret_keys)

    @property
    def routes(self) -> list[RouteSpec]:
        return list(self._require_model().routes)

    @property
    def schedules(self) -> list[ScheduleSpec]:
        return list(self._require_model().schedules)

    @property
    def queue_sources(self) -> list[QueueEventSource]:
        return list(self._require_model().queue_sources)

    # -- steps

    @property
    def _template(self) -> dict[str, Any]:
        return self._require_model().template

    def _require_model(self) -> SystemModel:
        if self.model is None:
            raise RuntimeError("the local stack is not started (call start() or attach())")
        return self.model

    def _open_endpoint(self) -> None:
        if self.embedded:
            self._moto = _start_embedded_moto(self.host)
            host, port = self._moto.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"

    def _load_model(self) -> None:
        if not self.template_path.is_file():
            raise FileNotFoundError(f"no {TEMPLATE_NAME} in {self.project_root}")
        document = load_template(self.template_path)
        translated = translate_template(document, region=self.region)
        self.model = SystemModel.from_template(translated, self.project_root)
        self.parameters = resolve_parameters(translated.get("Parameters", {}), self.parameter_overrides)
        self._keys_by_secret = _keys_by_secret(translated, self.model)
        self._secret_keys = set().union(*self._keys_by_secret.values())

    def _client(self, service: str) -> Any:
        with self._clients_lock:
            if service not in self._clients:
                if self._session is None:
                    import boto3  # noqa: PLC0415 (import cost only when a stack runs)

                    # One session for every client: each new session reloads botocore's data files.
                    self._session = boto3.session.Session(
                        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
                        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
                        region_name=self.region,
                    )
                self._clients[service] = self._session.client(service, endpoint_url=self.endpoint_url)
            return self._clients[service]

    def _pseudo(self) -> dict[str, str]:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def _resource_enabled(self, resource: Mapping[str, Any]) -> bool:
        condition = resource.get("Condition")
        return condition is None or self._resolver_for_conditions().condition(condition)

    def _resolver_for_conditions(self) -> Resolver:
        if self._resolver is None:
            return Resolver(
                template=self._template,
                parameters=self.parameters,
                pseudo=self._pseudo(),
                refs={},
                get_att=self._get_att,
            )
        return self._resolver

    def data_template(self) -> dict[str, Any]:
        """The data resources moto's CloudFormation creates; properties naming left-out resources dropped."""
        translated = self._template
        resources = {
            logical_id: copy.deepcopy(resource)
            for logical_id, resource in translated.get("Resources", {}).items()
            if resource.get("Type") in CFN_DATA_TYPES
        }
        left_out = set(translated.get("Resources", {})) - set(resources)
        for logical_id, resource in resources.items():
            resource.pop("Metadata", None)
            depends_on = resource.get("DependsOn")
            if depends_on is not None:
                kept = [d for d in ([depends_on] if isinstance(depends_on, str) else depends_on) if d not in left_out]
                if kept:
                    resource["DependsOn"] = kept
                else:
                    resource.pop("DependsOn")
            properties = resource.get("Properties", {})
            for key in list(properties):
                if referenced_ids(properties[key]) & left_out:
                    logger.debug("%s.%s refers to a resource the local stack plays itself: left out", logical_id, key)
                    del properties[key]
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": f"closeloop local stack (data resources of {self.template_path})",
            # Every parameter, used or not: the stack records the values `attach()` reads back.
            "Parameters": translated.get("Parameters", {}),
            "Conditions": translated.get("Conditions", {}),
            "Resources": resources,
        }

    def _describe_stack(self) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
        except ClientError:
            return None
        live = [s for s in stacks if s.get("StackStatus") != "DELETE_COMPLETE"]
        return live[0] if live else None

    def _provision(self) -> None:
        cloudformation = self._client("cloudformation")
        template = self.data_template()
        body = json.dumps(template, sort_keys=True)
        parameters = [
            {"ParameterKey": name, "ParameterValue": self.parameters[name]} for name in template["Parameters"]
        ]
        existing = self._describe_stack()
        if existing is not None:
            current = cloudformation.get_template(StackName=self.stack_name).get("TemplateBody")
            current_body = current if isinstance(current, str) else json.dumps(current)
            same = json.dumps(json.loads(current_body), sort_keys=True) == body and sorted(
                (p["ParameterKey"], p["ParameterValue"]) for p in existing.get("Parameters", [])
            ) == sorted((p["ParameterKey"], p["ParameterValue"]) for p in parameters)
            if same and str(existing.get("StackStatus", "")).endswith("_COMPLETE"):
                logger.info("reusing stack %s at %s", self.stack_name, self.endpoint_url)
            else:
                logger.warning(
                    "stack %s at %s differs from the template: recreating it", self.stack_name, self.endpoint_url
                )
                self._delete_stack()
                existing = None
        if existing is None:
            cloudformation.create_stack(StackName=self.stack_name, TemplateBody=body, Parameters=parameters)
            cloudformation.get_waiter("stack_create_complete").wait(
                StackName=self.stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        stack = self._describe_stack()
        if stack is None:
            raise RuntimeError(f"stack {self.stack_name} vanished at {self.endpoint_url}")
        self._read_stack_resources(stack)
        self._create_secrets()
        self._apply_sdk_resources()

    def _delete_stack(self) -> None:
        """Recreate the data resources for a changed template. Secrets are kept (``_create_secrets`` applies
        CloudFormation's update rule to them), except those the template no longer declares."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        secretsmanager = self._client("secretsmanager")
        declared = {
            logical_id
            for logical_id, resource in self._template.get("Resources", {}).items()
            if resource.get("Type") == "AWS::SecretsManager::Secret"
        }
        for page in secretsmanager.get_paginator("list_secrets").paginate():
            for entry in page.get("SecretList", []):
                tags = {tag["Key"]: tag["Value"] for tag in entry.get("Tags", [])}
                if tags.get(_STACK_TAG) == self.stack_name and tags.get(_LOGICAL_ID_TAG) not in declared:
                    with suppress(ClientError):
                        secretsmanager.delete_secret(SecretId=entry["ARN"], ForceDeleteWithoutRecovery=True)
        cloudformation = self._client("cloudformation")
        cloudformation.delete_stack(StackName=self.stack_name)
        cloudformation.get_waiter("stack_delete_complete").wait(
            StackName=self.stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )

    def _read_stack_resources(self, stack: Mapping[str, Any]) -> None:
        stack_id = str(stack.get("StackId", ""))
        if stack_id.startswith("arn:") and len(stack_id.split(":")) > 4:
            self.account_id = stack_id.split(":")[4]
        cloudformation = self._client("cloudformation")
        summaries: list[dict[str, Any]] = []
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=self.stack_name):
            summaries.extend(page["StackResourceSummaries"])
        sqs = self._client("sqs")
        self.resources = {}
        for summary in summaries:
            logical_id, physical_id = summary["LogicalResourceId"], summary["PhysicalResourceId"]
            if summary["ResourceType"] == "AWS::SQS::Queue":
                # The URL as this endpoint serves it (moto's physical id names the public AWS host).
                physical_id = sqs.get_queue_url(QueueName=physical_id.rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
            self.resources[logical_id] = physical_id
        self._resolver = Resolver(
            template=self._template,
            parameters=self.parameters,
            pseudo=self._pseudo(),
            refs=self._local_refs(),
            get_att=self._get_att,
        )

    def _add_resource(self, logical_id: str, physical_id: str) -> None:
        """A resource created outside CloudFormation (secrets): known to callers and to the resolver."""
        self.resources[logical_id] = physical_id
        self._require_resolver().refs[logical_id] = physical_id

    def _local_refs(self) -> dict[str, str]:
        """Refs of the data resources plus what the local stack plays (functions, the API)."""
        refs = dict(self.resources)
        for logical_id, resource in self._template.get("Resources", {}).items():
            if resource.get("Type") == "AWS::Lambda::Function":
                refs.setdefault(logical_id, self._function_name(logical_id))
            elif resource.get("Type") == "AWS::ApiGatewayV2::Api":
                refs.setdefault(logical_id, self.api_id)
        return refs

    def _function_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def _get_att(self, logical_id: str, attribute: str) -> Any:  # noqa: PLR0911 (one answer per type)
        key = (logical_id, attribute)
        if key in self._get_att_cache:
            return self._get_att_cache[key]
        kind = self._template.get("Resources", {}).get(logical_id, {}).get("Type")
        ref = self.resources.get(logical_id)
        value: Any = None
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            value = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self._function_name(logical_id)}"
        elif ref is None:
            raise UnresolvableError(f"Fn::GetAtt {logical_id}.{attribute}: {logical_id} ({kind}) is not local")
        elif kind == "AWS::SQS::Queue":
            value = {
                "Arn": lambda: self._client("sqs").get_queue_attributes(QueueUrl=ref, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"],
                "QueueName": lambda: ref.rstrip("/").rsplit("/", 1)[-1],
                "QueueUrl": lambda: ref,
            }.get(attribute, lambda: None)()
        elif kind == "AWS::DynamoDB::Table":
            table = self._client("dynamodb").describe_table(TableName=ref)["Table"]
            value = {"Arn": table.get("TableArn"), "StreamArn": table.get("LatestStreamArn")}.get(attribute)
        elif kind == "AWS::S3::Bucket":
            value = {
                "Arn": f"arn:aws:s3:::{ref}",
                "DomainName": f"{ref}.s3.amazonaws.com",
                "RegionalDomainName": f"{ref}.s3.{self.region}.amazonaws.com",
            }.get(attribute)
        elif kind == "AWS::SNS::Topic":
            value = {"TopicArn": ref, "TopicName": ref.rsplit(":", 1)[-1]}.get(attribute)
        elif kind == "AWS::SecretsManager::Secret":
            value = ref if attribute == "Id" else None
        elif kind == "AWS::KMS::Key":
            value = self._client("kms").describe_key(KeyId=ref)["KeyMetadata"]["Arn"] if attribute == "Arn" else ref
        if value is None:
            raise UnresolvableError(f"Fn::GetAtt {logical_id}.{attribute} ({kind}) has no local value")
        self._get_att_cache[key] = value
        return value

    def _secret_name(self, logical_id: str, resource: Mapping[str, Any]) -> str:
        name = resource.get("Properties", {}).get("Name")
        return str(self._resolver_for_conditions().resolve(name)) if name else f"{self.stack_name}-{logical_id}"

    def _developer_credentials(self) -> dict[str, str]:
        """Values for the template's secret keys that the developer set in the environment or overrides."""
        found = {key: os.environ[key] for key in self._secret_keys if os.environ.get(key)}
        found.update({key: value for key, value in self.env_overrides.items() if key in self._secret_keys})
        return found

    def _create_secrets(self) -> None:
        """Create the template's secrets, or keep the stored ones as a CloudFormation update would; seed each
        with the developer's values for the keys it holds."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        client = self._client("secretsmanager")
        resolver = self._require_resolver()
        credentials = self._developer_credentials()
        for logical_id, resource in self._template.get("Resources", {}).items():
            if resource.get("Type") != "AWS::SecretsManager::Secret" or not self._resource_enabled(resource):
                continue
            properties = resolver.resolve(resource.get("Properties", {}))
            name = self._secret_name(logical_id, resource)
            digest = _template_value_digest(properties)
            tags = [
                {"Key": _STACK_TAG, "Value": self.stack_name},
                {"Key": _LOGICAL_ID_TAG, "Value": logical_id},
                {"Key": _TEMPLATE_VALUE_TAG, "Value": digest},
            ]
            try:
                arn = client.create_secret(
                    Name=name,
                    Description=str(properties.get("Description", "")),
                    SecretString=self._template_secret_value(properties),
                    Tags=tags,
                )["ARN"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
                described = client.describe_secret(SecretId=name)
                arn = described["ARN"]
                recorded = {tag["Key"]: tag["Value"] for tag in described.get("Tags", [])}.get(_TEMPLATE_VALUE_TAG)
                if recorded != digest:
                    # CloudFormation rewrites a secret's value when its SecretString (or GenerateSecretString)
                    # changes in an update, and keeps it otherwise: do the same.
                    logger.warning("%s: the template changed its value, so the stored one is replaced", logical_id)
                    client.put_secret_value(SecretId=arn, SecretString=self._template_secret_value(properties))
                    client.tag_resource(SecretId=arn, Tags=tags)
            keys = self._keys_by_secret.get(logical_id, set())
            seeds = {key: value for key, value in credentials.items() if key in keys}
            if seeds:
                stored = client.get_secret_value(SecretId=arn).get("SecretString") or "{}"
                try:
                    current = json.loads(stored)
                except ValueError:
                    current = {}
                if isinstance(current, dict):
                    merged = {**current, **seeds}
                    if merged != current:
                        client.put_secret_value(SecretId=arn, SecretString=json.dumps(merged))
            self._add_resource(logical_id, arn)

    def _template_secret_value(self, properties: Mapping[str, Any]) -> str:
        secret_string = properties.get("SecretString")
        if secret_string is None and "GenerateSecretString" in properties:
            secret_string = self._generated_secret(properties["GenerateSecretString"])
        return str(secret_string or "")

    def _generated_secret(self, spec: Mapping[str, Any]) -> str:
        password = self._client("secretsmanager").get_random_password(
            PasswordLength=int(spec.get("PasswordLength", 32)),
            ExcludeCharacters=str(spec.get("ExcludeCharacters", "")),
            ExcludePunctuation=bool(spec.get("ExcludePunctuation", False)),
        )["RandomPassword"]
        template = spec.get("SecretStringTemplate")
        if template and spec.get("GenerateStringKey"):
            return json.dumps({**json.loads(template), spec["GenerateStringKey"]: password})
        return str(password)

    def _require_resolver(self) -> Resolver:
        if self._resolver is None:
            raise RuntimeError("stack resources not read yet")
        return self._resolver

    def _apply_sdk_resources(self) -> None:
        """What moto's CloudFormation leaves out, applied from the template through the service APIs."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        resolver = self._require_resolver()
        for logical_id, resource in self._template.get("Resources", {}).items():
            kind = resource.get("Type")
            if kind not in _COMPLETED_TYPES or not self._resource_enabled(resource):
                continue
            if kind in CFN_DATA_TYPES and logical_id not in self.resources:
                continue
            try:
                properties = resolver.resolve(resource.get("Properties", {}))
                if kind == "AWS::SQS::QueuePolicy":
                    for queue_url in properties.get("Queues", []):
                        self._client("sqs").set_queue_attributes(
                            QueueUrl=queue_url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])}
                        )
                elif kind == "AWS::S3::BucketPolicy":
                    document = _without_tls_only(properties["PolicyDocument"], self.endpoint_url)
                    if document.get("Statement"):
                        self._client("s3").put_bucket_policy(Bucket=properties["Bucket"], Policy=json.dumps(document))
                elif kind == "AWS::DynamoDB::Table":
                    self._complete_table(self.resources[logical_id], properties)
                elif kind == "AWS::S3::Bucket":
                    self._complete_bucket(self.resources[logical_id], properties)
            except (ClientError, UnresolvableError, KeyError) as exc:
                logger.warning("could not apply %s (%s) locally: %s", logical_id, kind, exc)

    def _complete_table(self, table: str, properties: Mapping[str, Any]) -> None:
        dynamodb = self._client("dynamodb")
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            status = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            if status.get("TimeToLiveStatus") in (None, "DISABLED"):
                dynamodb.update_time_to_live(
                    TableName=table,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        pitr = properties.get("PointInTimeRecoverySpecification")
        if pitr and str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
            dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )

    def _complete_bucket(self, bucket: str, properties: Mapping[str, Any]) -> None:
        s3 = self._client("s3")
        versioning = properties.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]})
        block = properties.get("PublicAccessBlockConfiguration")
        if block:
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={k: str(v).lower() == "true" for k, v in block.items()},
            )
        ownership = properties.get("OwnershipControls")
        if ownership:
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ownership)
        lifecycle = properties.get("LifecycleConfiguration")
        if lifecycle:
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]}
            )

    def _finish(self, *, serve: bool) -> None:
        model = self._require_model()
        self._resolve_model_values(model)
        self.env = self._resolve_environment()
        self._apply_environment()
        module_prefix = f"closeloop_fn_{self.stack_name.replace('-', '_')}"
        self._runtimes = {
            logical_id: FunctionRuntime(
                spec,
                function_name=self._function_name(logical_id),
                region=self.region,
                account_id=self.account_id,
                module_prefix=module_prefix,
            )
            for logical_id, spec in model.functions.items()
        }
        self.outputs = self._resolve_outputs()
        if not serve:
            return
        self._http = HttpApiServer(
            [route for route in model.routes if route.function in model.functions],
            self.invoke,
            host=self.host,
            port=self.port,
            api_id=self.api_id,
            account_id=self.account_id,
        )
        self._http.start()
        self.api_url = self._http.url
        self.outputs = self._resolve_outputs()
        for source in model.queue_sources:
            if not source.enabled or source.function not in model.functions:
                continue
            queue_url = self.resources[source.queue]
            consumer = SqsConsumer(
                source,
                sqs_client=self._client("sqs"),
                queue_url=queue_url,
                queue_arn=str(self._get_att(source.queue, "Arn")),
                region=self.region,
                invoke=self.invoke,
                retry_visibility_seconds=self.retry_visibility_seconds,
                poll_interval=self.poll_interval,
            )
            consumer.start()
            self._consumers.append(consumer)

    def _resolve_model_values(self, model: SystemModel) -> None:
        """Schedules' expressions and mappings' concurrency with parameters filled in (for display)."""
        resolver = self._require_resolver()
        try:
            model.schedules = [
                replace(
                    schedule,
                    expression=str(resolver.resolve(schedule.expression)),
                    state=str(resolver.resolve(schedule.state)),
                )
                for schedule in model.schedules
            ]
            model.queue_sources = [
                replace(source, maximum_concurrency=int(resolver.resolve(source.maximum_concurrency)))
                if source.maximum_concurrency is not None
                else source
                for source in model.queue_sources
            ]
        except (UnresolvableError, TypeError, ValueError) as exc:
            logger.debug("schedule or mapping values not resolvable locally: %s", exc)

    def _resolve_environment(self) -> dict[str, str]:
        """The functions' shared environment: template values, the developer's own where the template
        value is not a resource, explicit overrides, then the AWS endpoint settings."""
        resolver = self._require_resolver()
        model = self._require_model()
        environments: dict[str, dict[str, str]] = {}
        resource_bound: set[str] = set()
        resources = set(self._template.get("Resources", {}))
        for logical_id, spec in model.functions.items():
            resolved = resolver.resolve(dict(spec.environment))
            environments[logical_id] = {k: str(v) for k, v in resolved.items()}
            resource_bound |= {k for k, v in spec.environment.items() if referenced_ids(v) & resources}
        merged: dict[str, str] = {}
        for logical_id, variables in environments.items():
            for key, value in variables.items():
                if key in merged and merged[key] != value:
                    raise ValueError(
                        f"{key} differs between functions ({logical_id}): the local stack runs every function "
                        "in one process, so declare environment variables in Globals"
                    )
                merged[key] = value
        developer_keys = (set(merged) - resource_bound) | self._secret_keys
        merged.update({key: os.environ[key] for key in developer_keys if key in os.environ})
        merged.update(self.env_overrides)
        merged["AWS_ENDPOINT_URL"] = self.endpoint_url
        merged.setdefault("AWS_DEFAULT_REGION", self.region)
        merged.setdefault("AWS_REGION", self.region)
        return merged

    def _apply_environment(self) -> None:
        applied = dict(self.env)
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            applied.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106
        for key, value in applied.items():
            if key not in self._saved_env:
                self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        for spec in self._require_model().functions.values():
            for layer_dir in spec.layer_dirs:
                path = str(layer_dir)
                if path not in sys.path:
                    sys.path.insert(0, path)
                    self._added_paths.append(path)

    def _resolve_outputs(self) -> dict[str, str]:
        """Template outputs that have a local meaning, API URLs pointing at the local server."""
        resolver = self._require_resolver()
        public_api = f"https://{self.api_id}.execute-api.{self.region}.amazonaws.com"
        outputs: dict[str, str] = {}
        for name, output in self._template.get("Outputs", {}).items():
            if "Condition" in output and not resolver.condition(output["Condition"]):
                continue
            try:
                value = str(resolver.resolve(output.get("Value")))
            except UnresolvableError:
                continue
            if self.api_url and value.startswith(public_api):
                value = self.api_url + value[len(public_api) :]
            outputs[name] = value
        return outputs

    @staticmethod
    def _queue_counts(sqs: Any, queue_url: str) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        return {name: int(attributes.get(name, 0)) for name in names}

    def _queue_is_empty(self, sqs: Any, queue_url: str) -> bool:
        return not any(self._queue_counts(sqs, queue_url).values())


def _template_value_digest(properties: Mapping[str, Any]) -> str:
    """A digest of the properties CloudFormation writes a secret's value from."""
    value = {key: properties.get(key) for key in ("SecretString", "GenerateSecretString")}
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _keys_by_secret(translated: Mapping[str, Any], model: SystemModel) -> dict[str, set[str]]:
    """The credential keys each of the template's secrets holds: the keys ``closeloop.credentials`` assigns to
    the environment variable that names it (``CREDENTIALS_SECRET_ID: !Ref CredentialsSecret`` -> the API keys),
    or, for a secret the code does not know, the keys its SecretString lists."""
    from closeloop.credentials import SECRET_KEYS  # noqa: PLC0415

    secrets = {
        logical_id: resource
        for logical_id, resource in translated.get("Resources", {}).items()
        if resource.get("Type") == "AWS::SecretsManager::Secret"
    }
    found: dict[str, set[str]] = {}
    for spec in model.functions.values():
        for variable, value in spec.environment.items():
            named = value.get("Ref") if isinstance(value, dict) else None
            if named in secrets and variable in SECRET_KEYS:
                found.setdefault(str(named), set()).update(SECRET_KEYS[variable])
    for logical_id, resource in secrets.items():
        if logical_id in found:
            continue
        keys = found.setdefault(logical_id, set())
        secret_string = resource.get("Properties", {}).get("SecretString")
        if isinstance(secret_string, str):
            try:
                parsed = json.loads(secret_string)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                keys |= set(parsed)
    return found


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API."""
    shaped: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule.get("Status", "Enabled")}
    shaped["Filter"] = {"Prefix": rule["Prefix"]} if "Prefix" in rule else {"Prefix": ""}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = str(rule["ExpiredObjectDeleteMarker"]).lower() == "true"
    if expiration:
        shaped["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        shaped["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        shaped["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return shaped
