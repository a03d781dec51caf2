"""``closeloop upgrade webhook-keys``: after upgrading from a release with one secret, move the webhook keys in.

    closeloop upgrade webhook-keys [--stack-name NAME [--region R]] [--dry-run]

Releases before the split kept every credential, webhook keys included, in ``CredentialsSecret``. The
release that added ``WebhookKeysSecret`` created it empty (``{}``), and the webhook functions may read only
that secret: until the keys are there, every webhook is answered 503. This command copies each webhook key
(``closeloop.credentials.WEBHOOK_KEYS``) that has a value in ``CredentialsSecret`` and none in
``WebhookKeysSecret``:

- a value already in ``WebhookKeysSecret`` is never overwritten: the same value is reported as present, a
  different one as a conflict (left as is, exit 1: someone must decide which one the vendor signs with);
- ``CredentialsSecret`` is only read, never written: nothing is deleted there, so whatever still reads a
  key from it keeps working;
- ``WebhookKeysSecret`` is written once, with ``PutSecretValue``: the new version becomes AWSCURRENT and the
  one it replaces stays readable as AWSPREVIOUS;
- a second run finds nothing to do; ``--dry-run`` says what it would copy and writes nothing.

Only key names are printed or logged, never a value. What to copy is decided by ``plan_webhook_key_copy``,
a pure function; the rest reads and writes the two secrets of the stack that ``closeloop_local.ops`` finds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from closeloop.credentials import WEBHOOK_KEYS
from closeloop_local.cli_support import CliError
from closeloop_local.ops import Deployment, DeploymentError, _aws_message, open_deployment

#: The template's two secrets (logical ids): where the keys were, and where the webhook functions read them.
CREDENTIALS_SECRET, WEBHOOK_KEYS_SECRET = "CredentialsSecret", "WebhookKeysSecret"
WEBHOOK_KEYS_UPGRADE = "webhook-keys"
COMMAND = f"closeloop upgrade {WEBHOOK_KEYS_UPGRADE}"


class UpgradeError(Exception):
    """The upgrade cannot go on as asked (printed without a traceback)."""


@dataclass(frozen=True)
class KeyCopyPlan:
    """What copying the webhook keys would do: key names by outcome, and the webhook secret's new document."""

    copy: tuple[str, ...]
    """Set in the credentials secret, unset in the webhook keys secret: to copy."""
    present: tuple[str, ...]
    """Already set in the webhook keys secret (to the credentials secret's value, or set there only)."""
    conflicts: tuple[str, ...]
    """Set in both secrets to different values: left as they are."""
    unset: tuple[str, ...]
    """Set in neither (a vendor this stack does not use)."""
    webhook_document: dict[str, Any] = field(repr=False)
    """The webhook keys secret's JSON object after the copy (every key it held, kept as it was)."""


def _value(document: Mapping[str, Any], key: str) -> str:
    # As closeloop.credentials reads a key: missing, null or empty is unset.
    return str(document.get(key) or "")


def plan_webhook_key_copy(
    credentials: Mapping[str, Any], webhook_keys: Mapping[str, Any], keys: Sequence[str] = WEBHOOK_KEYS
) -> KeyCopyPlan:
    """Decide, per key of ``keys``, whether the credentials secret's value goes into the webhook keys secret.

    ``credentials`` and ``webhook_keys`` are the two secrets' JSON objects. A value already set in
    ``webhook_keys`` is never replaced; every other entry of ``webhook_keys`` is kept unchanged.
    """
    copy: list[str] = []
    present: list[str] = []
    conflicts: list[str] = []
    unset: list[str] = []
    document = dict(webhook_keys)
    for key in keys:
        old, new = _value(credentials, key), _value(webhook_keys, key)
        if new:
            (conflicts if old and old != new else present).append(key)
        elif old:
            copy.append(key)
            document[key] = old
        else:
            unset.append(key)
    return KeyCopyPlan(tuple(copy), tuple(present), tuple(conflicts), tuple(unset), document)


def parse_secret_document(text: str | None, name: str) -> dict[str, Any]:
    """A secret's value as the JSON object ``closeloop.credentials`` reads (an empty value is ``{}``).

    Raises UpgradeError, naming the secret and never quoting its value, when it is not a JSON object.
    """
    if not text:
        return {}
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise UpgradeError(f"{name} does not hold a JSON object: fix it by hand (no value is printed here)")
    return document


def render_plan(plan: KeyCopyPlan, *, dry_run: bool) -> list[str]:
    """The plan as lines of key names (never values)."""
    lines = [f"  {'would copy' if dry_run else 'copy'}  {key}" for key in plan.copy]
    lines += [f"  present     {key}" for key in plan.present]
    lines += [
        f"  conflict    {key}: {WEBHOOK_KEYS_SECRET} holds a different value; left as is"
        f" (set the one the vendor signs with in {WEBHOOK_KEYS_SECRET} by hand)"
        for key in plan.conflicts
    ]
    if plan.unset:
        lines.append(f"  not set in either secret: {', '.join(plan.unset)}")
    return lines


def _read(deployment: Deployment, logical_id: str) -> tuple[dict[str, Any], str]:
    """The secret's JSON object and the id of the version read."""
    answer = deployment.secretsmanager.get_secret_value(SecretId=deployment.secret_arn(logical_id))
    return parse_secret_document(answer.get("SecretString"), logical_id), str(answer.get("VersionId", ""))


def upgrade_webhook_keys(deployment: Deployment, *, dry_run: bool = False, out: TextIO = sys.stdout) -> KeyCopyPlan:
    """Copy the webhook keys of ``deployment`` from its credentials secret into its webhook keys secret.

    Raises DeploymentError when the stack lacks either secret, UpgradeError when a secret is not a JSON
    object or the webhook keys secret changed while this ran, and botocore's errors from Secrets Manager.
    """
    for logical_id in (CREDENTIALS_SECRET, WEBHOOK_KEYS_SECRET):
        if logical_id not in deployment.resources:
            raise DeploymentError(
                f"stack {deployment.stack_name} has no {logical_id}: deploy this release first, then run {COMMAND}"
            )
    credentials, _ = _read(deployment, CREDENTIALS_SECRET)
    webhook_keys, read_version = _read(deployment, WEBHOOK_KEYS_SECRET)
    plan = plan_webhook_key_copy(credentials, webhook_keys)
    print(f"{COMMAND}: stack {deployment.stack_name}, {CREDENTIALS_SECRET} -> {WEBHOOK_KEYS_SECRET}", file=out)
    for line in render_plan(plan, dry_run=dry_run):
        print(line, file=out)
    if not plan.copy:
        print(f"nothing to copy; {CREDENTIALS_SECRET} and {WEBHOOK_KEYS_SECRET} were not changed", file=out)
        return plan
    if dry_run:
        print(f"would copy {len(plan.copy)} key(s) into {WEBHOOK_KEYS_SECRET}; nothing changed (--dry-run)", file=out)
        return plan
    arn = deployment.secret_arn(WEBHOOK_KEYS_SECRET)
    # Secrets Manager has no conditional write: make the window between read and write as small as it goes.
    _, current_version = _read(deployment, WEBHOOK_KEYS_SECRET)
    if current_version != read_version:
        raise UpgradeError(f"{WEBHOOK_KEYS_SECRET} changed while this ran: run {COMMAND} again")
    written = deployment.secretsmanager.put_secret_value(
        SecretId=arn, SecretString=json.dumps(plan.webhook_document), VersionStages=["AWSCURRENT"]
    )
    print(
        f"copied {len(plan.copy)} key(s) into {WEBHOOK_KEYS_SECRET} (version {written['VersionId']}; the version "
        f"it replaced, {read_version}, stays readable as AWSPREVIOUS); {CREDENTIALS_SECRET} was not changed",
        file=out,
    )
    print(
        "the webhook functions read the keys within CREDENTIALS_MAX_AGE_SECONDS (default 300 s) of their cache",
        file=out,
    )
    return plan


# -------------------------------------------------------------------------------------------- CLI


def main(args: argparse.Namespace) -> int:
    """``closeloop upgrade webhook-keys`` (registered in ``closeloop_local.cli``): 1 when a key conflicts."""
    if args.region and not args.stack_name:
        raise CliError("--region goes with --stack-name (closeloop dev has its own region)")
    if args.upgrade != WEBHOOK_KEYS_UPGRADE:
        raise CliError(f"unknown upgrade {args.upgrade!r}")
    try:
        with open_deployment(args.stack_name, args.region) as deployment:
            plan = upgrade_webhook_keys(deployment, dry_run=args.dry_run)
    except (DeploymentError, UpgradeError) as exc:
        raise CliError(str(exc)) from exc
    except ClientError as exc:
        raise CliError(f"AWS refused {exc.operation_name}: {_aws_message(exc)}") from exc
    except ParamValidationError as exc:  # its message quotes the parameters, which may hold a key's value
        raise CliError("botocore refused a request's parameters (not shown: they may hold a secret)") from exc
    except BotoCoreError as exc:
        raise CliError(str(exc)) from exc
    return 1 if plan.conflicts else 0
