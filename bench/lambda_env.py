"""The environment a deployed function sees, read from template.yaml (Globals), with dummy resource names.

``!Ref`` to a parameter becomes the parameter's default; ``!Ref`` to a resource becomes a plausible physical
id for its type (a queue URL, a table name, a topic ARN, …). AWS credentials are dummies, as Lambda puts
the role's credentials in the environment: no credential lookup ever reaches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "closeloop"


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (``!Ref X``) as ``{"Ref": "X"}``-style mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _tag)


def _physical_id(logical_id: str, resource_type: str) -> str:
    name = f"{STACK}-{logical_id}"
    return {
        "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
        "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
        "AWS::S3::Bucket": name.lower(),  # bucket names are lower case
    }.get(resource_type, name)


def _document(template: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(template.read_text(), Loader=_TemplateLoader)  # noqa: S506 - our loader
    return document


def function_code_uris(template: Path = TEMPLATE) -> dict[str, str]:
    """CodeUri (without its trailing slash) -> the first function built from it, by logical id."""
    uris: dict[str, str] = {}
    for logical_id, resource in _document(template)["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            uris.setdefault(str(resource["Properties"]["CodeUri"]).rstrip("/"), logical_id)
    return uris


def function_environment(template: Path = TEMPLATE) -> dict[str, str]:
    """The Globals environment variables of ``template``, resolved to defaults and dummy resource ids."""
    document = _document(template)
    parameters: dict[str, Any] = document.get("Parameters", {})
    resources: dict[str, Any] = document.get("Resources", {})
    variables: dict[str, Any] = document["Globals"]["Function"]["Environment"]["Variables"]
    env: dict[str, str] = {}
    for key, value in variables.items():
        if isinstance(value, dict) and "Ref" in value:
            target = value["Ref"]
            if target in parameters:
                env[key] = str(parameters[target].get("Default", ""))
            else:
                env[key] = _physical_id(target, str(resources.get(target, {}).get("Type", "")))
        else:
            env[key] = str(value)
    return env


def lambda_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a function process starts with: Globals, region and (dummy) role credentials."""
    return {
        **function_environment(),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "ASIABENCHDUMMYKEY000",
        "AWS_SECRET_ACCESS_KEY": "bench-dummy-secret-access-key",  # noqa: S105 - a dummy, never used
        "AWS_SESSION_TOKEN": "bench-dummy-session-token",  # noqa: S105
        **(extra or {}),
    }
