"""The ``closeloop`` command.

    closeloop dev [--port 3000] [--host 127.0.0.1] [--param K=V ...]
        Run the whole system locally (see ``LocalStack``) until Ctrl-C or SIGTERM; while it runs,
        ``.closeloop/dev.json`` in the project root tells other commands where it is.
    closeloop run FUNCTION [--event FILE|-]
        Invoke one function once, in this process, against the resources of the running
        ``closeloop dev`` (or of the stack in ``AWS_ENDPOINT_URL``); scheduled functions get their
        schedule's Input unless --event is given. Prints the result as JSON.
    closeloop replay [--queue NAME] [--dry-run] / status [--json] / audit ID [--type T] [--show-values]
        Operate a stack: the running ``closeloop dev``, or a deployed one with --stack-name NAME (default
        AWS credentials). Implemented in ``closeloop_local.ops``, imported on use.
    closeloop upgrade webhook-keys [--stack-name NAME] [--dry-run]
        After upgrading from a release that kept the webhook keys in the credentials secret: copy them into
        the webhook keys secret (``closeloop_local.upgrade``, imported on use).
    closeloop demo [--crm CRM] [--accounting SYSTEM] / connect SYSTEM / setup CRM
        Implemented in ``closeloop_local.demo``, ``closeloop_local.connect`` and ``closeloop_local.setup``,
        imported on use. A module may define ``add_arguments(parser)`` to declare its own options. The
        systems offered are the registry's (``closeloop.vendors.registry``).

The project root is the nearest directory holding template.yaml, from the current directory up.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from closeloop_local.cli_support import CliError, attached_stack, find_project_root, read_dev_state, state_path

_LAZY_COMMANDS = {
    "backfill": "closeloop_local.backfill",
    "review": "closeloop_local.backfill",
    "demo": "closeloop_local.demo",
    "connect": "closeloop_local.connect",
    "setup": "closeloop_local.setup",
}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    partial.replace(path)


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--param wants KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


# ------------------------------------------------------------------------------------------- dev


def _print_summary(stack: Any, state_file: Path, project_root: Path) -> None:
    lines = [f"closeloop dev: local stack {stack.stack_name} up in {stack.startup_seconds:.1f} s", ""]
    lines.append(f"  API           {stack.api_url}")
    for route in stack.routes:
        lines.append(f"                {route.method} {stack.api_url}{route.path}  -> {route.function}")
    for name, value in stack.outputs.items():
        if value.startswith(stack.api_url) and value != stack.api_url:
            lines.append(f"  Webhook       {value}  ({name})")
    where = "embedded moto: state is lost on exit" if stack.embedded else "from AWS_ENDPOINT_URL"
    lines.append(f"  AWS endpoint  {stack.endpoint_url} ({where})")
    for source in stack.queue_sources:
        lines.append(
            f"  Queue         {source.queue} -> {source.function} (batch {source.batch_size}"
            f"{', partial failures' if source.report_batch_item_failures else ''}"
            f"{'' if source.enabled else ', disabled'})"
        )
    for schedule in stack.schedules:
        lines.append(
            f"  Schedule      {schedule.function}: {schedule.expression}"
            f"{' [disabled in the template]' if schedule.state == 'DISABLED' else ''}"
            f"  (never runs by itself here: closeloop run {schedule.function})"
        )
    lines.append("  Resources")
    width = max((len(name) for name in stack.resources), default=0)
    for name, physical_id in sorted(stack.resources.items()):
        lines.append(f"    {name:<{width}}  {physical_id}")
    lines.append(f"  State file    {state_file.relative_to(project_root)}")
    lines.append("")
    lines.append("Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _redacted_env(stack: Any) -> dict[str, str]:
    secret_keys = stack.credential_keys
    return {key: ("***" if key in secret_keys and value else value) for key, value in stack.env.items()}


def cmd_dev(args: argparse.Namespace) -> int:
    from closeloop_local.stack import LocalStack  # noqa: PLC0415 (heavy imports only for this command)

    project_root = find_project_root()
    running = read_dev_state(project_root)
    if running is not None:
        raise CliError(
            f"closeloop dev is already running from {project_root} (pid {running['pid']}, {running.get('api_url')})"
        )
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = LocalStack(
        project_root, port=args.port, host=args.host, parameter_overrides=_parse_params(args.param or [])
    )
    path = state_path(project_root)
    try:
        try:
            stack.start()
        except (ValueError, FileNotFoundError) as exc:  # bad --param, unresolvable template value, no code
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"could not start: {exc} (is port {args.port} in use? pass --port)") from exc
        _write_state(
            path,
            {
                "pid": os.getpid(),
                "api_url": stack.api_url,
                "endpoint_url": stack.endpoint_url,
                "stack_name": stack.stack_name,
                "region": stack.region,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "resources": stack.resources,
                "outputs": stack.outputs,
                "env": _redacted_env(stack),
            },
        )
        _print_summary(stack, path, project_root)
        while not stop_requested.wait(0.5):
            pass
        print("closeloop dev: stopping", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
                path.parent.rmdir()  # only when empty
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


# ------------------------------------------------------------------------------------------- run


def _read_event(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        return json.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read event {source}: {exc}") from exc
    except ValueError as exc:
        raise CliError(f"event {source} is not JSON: {exc}") from exc


def cmd_run(args: argparse.Namespace) -> int:
    stack = attached_stack()
    try:
        try:
            logical_id = stack.function_id(args.function)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        if args.event:
            event = _read_event(args.event)
        else:
            try:
                event = stack.schedule_input(logical_id)
            except ValueError as exc:
                raise CliError(f"{logical_id} has no schedule: pass --event FILE") from exc
        try:
            result = stack.invoke(logical_id, event)
        except Exception:
            traceback.print_exc()
            print(f"closeloop run: {logical_id} raised", file=sys.stderr)
            return 1
        print(json.dumps(result, indent=2, default=str))
        return 0
    finally:
        stack.stop()


def cmd_report(args: argparse.Namespace) -> int:
    """Reconcile a month on the running stack; the download link is the last line printed."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.month or ""):
        raise CliError(f"--month must look like 2026-10, got {args.month!r}")
    stack = attached_stack()
    try:
        try:
            result = stack.invoke("ReconcileFunction", {"month": args.month})
        except Exception:
            traceback.print_exc()
            print("closeloop report: the reconcile function raised", file=sys.stderr)
            return 1
        counts = result.get("discrepancies") or {}
        print(f"Reconciliation {args.month}: {sum(counts.values())} discrepancies")
        for kind, count in sorted(counts.items()):
            print(f"  {kind}: {count}")
        for key in result.get("keys", []):
            print(f"  s3 key: {key}")
        print(result["url"])
        return 0
    finally:
        stack.stop()


# ---------------------------------------------------------------------------------------- lazy


def _lazy_main(module_name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(module_name)
        return int(module.main(args))

    return run


# ------------------------------------------------------------------------------------------ main


def _default_pair(registry: Any) -> str:
    """The "<CRM> -> <accounting> sync" of the registry's default vendors."""
    crm, accounting = (registry.get(registry.DEFAULTS[kind]).title for kind in ("crm", "accounting"))
    return f"{crm} -> {accounting} sync"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from closeloop.vendors import registry  # noqa: PLC0415 - the vendors' specs: only when a parser is built

    parser = argparse.ArgumentParser(prog="closeloop", description=f"Closeloop: {_default_pair(registry)}, locally.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run the whole system locally (HTTP API, queues, AWS endpoint)")
    dev.add_argument("--port", type=int, default=3000, help="HTTP API port (0: any free port; default 3000)")
    dev.add_argument("--host", default="127.0.0.1", help="HTTP API address (default 127.0.0.1)")
    dev.add_argument("--param", action="append", metavar="KEY=VALUE", help="override a template parameter (repeatable)")
    dev.set_defaults(handler=cmd_dev)

    run = commands.add_parser("run", help="invoke one function once against the running closeloop dev")
    run.add_argument("function", help="logical id (PaymentPollerFunction) or function directory (payment_poller)")
    run.add_argument("--event", metavar="FILE", help="event JSON file ('-' for stdin); default: the schedule's Input")
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser("report", help="reconcile a month on the running stack and print the report link")
    report.add_argument("--month", required=True, help="the month to reconcile, YYYY-MM")
    report.set_defaults(handler=cmd_report)

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--stack-name", metavar="NAME", help="a deployed stack (default AWS credentials); default: closeloop dev"
    )
    target.add_argument("--region", help="the deployed stack's region (with --stack-name; default: the AWS default)")
    operations = _lazy_main("closeloop_local.ops")

    replay = commands.add_parser(
        "replay", parents=[target], help="move dead-lettered messages back to their work queue"
    )
    replay.add_argument("--queue", metavar="NAME", help="ContactDLQ, DealDLQ or their work queue; default: every DLQ")
    replay.add_argument("--dry-run", action="store_true", help="list what would move and change nothing")
    replay.set_defaults(handler=operations)

    status = commands.add_parser("status", parents=[target], help="queue depths, watermark, failed syncs, token health")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.set_defaults(handler=operations)

    audit = commands.add_parser("audit", parents=[target], help="one CRM record's history across both systems")
    audit.add_argument("object_id", metavar="crm-object-id", help="the CRM object's id, e.g. 1000001")
    audit.add_argument("--type", choices=["company", "contact", "deal"], help="default: every type that has one")
    audit.add_argument("--crm", help="the CRM the id belongs to (default: the stack's CrmProvider)")
    audit.add_argument("--show-values", action="store_true", help="show the last synced values, not only field names")
    audit.set_defaults(handler=operations)

    upgrade = commands.add_parser(
        "upgrade", parents=[target], help="after upgrading the stack: move what an older release kept elsewhere"
    )
    upgrade.add_argument(
        "upgrade",
        choices=["webhook-keys"],
        help="webhook-keys: copy the webhook keys from CredentialsSecret into WebhookKeysSecret (never overwrites)",
    )
    upgrade.add_argument("--dry-run", action="store_true", help="list what would be copied and change nothing")
    upgrade.set_defaults(handler=_lazy_main("closeloop_local.upgrade"))

    demo = commands.add_parser(
        "demo", help="run the whole loop offline on the local stack for a CRM x accounting pair and show the result"
    )
    demo.set_defaults(handler=_lazy_main(_LAZY_COMMANDS["demo"]))

    connect = commands.add_parser("connect", help="connect an accounting system (OAuth) and store its tokens")
    connectable = [spec.name for spec in registry.accountings() if spec.capabilities.connect]
    connect.add_argument("system", choices=connectable, help="the accounting system to connect")
    connect.add_argument("--port", type=int, default=8765, help="local OAuth callback port (default 8765)")
    connect.set_defaults(handler=_lazy_main(_LAZY_COMMANDS["connect"]))

    setup = commands.add_parser("setup", help="create the CRM properties Closeloop writes (deal and company)")
    setup.add_argument("system", choices=registry.names("crm"), help="the CRM to set up")
    setup.set_defaults(handler=_lazy_main(_LAZY_COMMANDS["setup"]))
    backfill = commands.add_parser(
        "backfill", help="link existing CRM records to existing accounting records (dry run, resume, review list)"
    )
    backfill.set_defaults(handler=_lazy_main(_LAZY_COMMANDS["backfill"]))
    review = commands.add_parser("review", help="list, accept or reject the backfill's uncertain matches")
    review.set_defaults(handler=_lazy_main(_LAZY_COMMANDS["review"]))
    return parser, {"demo": demo, "connect": connect, "setup": setup, "backfill": backfill, "review": review}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, lazy_parsers = build_parser()
    command = next((argument for argument in arguments if not argument.startswith("-")), None)
    if command in lazy_parsers:
        # Let the module declare its own options (before --help prints them), importing it only when its
        # command runs.
        try:
            module = importlib.import_module(_LAZY_COMMANDS[command])
        except ModuleNotFoundError as exc:
            if exc.name != _LAZY_COMMANDS[command]:
                raise
            print(f"closeloop: error: `closeloop {command}` is not installed ({exc.name})", file=sys.stderr)
            return 2
        add_arguments = getattr(module, f"add_{command}_arguments", None) or getattr(module, "add_arguments", None)
        if callable(add_arguments):
            add_arguments(lazy_parsers[command])
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"closeloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
