"""``closeloop backfill contacts|deals|products`` and ``closeloop review``: migrate existing records, then decide
the doubtful.

Both run on this machine against a stack: the running ``closeloop dev`` by default, or a deployed one with
``--stack-name`` (its contact worker's configuration is read, so the same adapters, tables and secret are used,
with your AWS credentials). Progress goes to stderr (records/s, ETA); pauses for a vendor's rate limit are
announced with the time the run resumes (Ctrl-C keeps the checkpoint; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from closeloop.models import CrmRef
from closeloop.sync.backfill import ContactBackfill, Progress, plan_rows
from closeloop_local.cli_support import CliError, attached_stack, table

PLAN_ROWS_SHOWN = 50
ENVIRONMENT_SOURCE = "ContactWorkerFunction"
DEAL_ENVIRONMENT_SOURCE = "DealWorkerFunction"  # the invoice policy (status, tax rules, SKU map) lives there


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``closeloop backfill`` (the ``review`` command has its own parser, see ``add_review_arguments``)."""
    parser.add_argument(
        "what",
        choices=["contacts", "deals", "invoices", "products"],
        help="what to backfill: companies and contacts, won deals and invoices (`deals` and `invoices` run the "
        "same pairing: every won deal with its invoice, and the invoices no deal claims), or the CRM's products "
        "and the accounting items (by SKU = item code, then by name for review)",
    )
    parser.add_argument(
        "--since",
        metavar="DATE",
        help="only records changed since DATE (YYYY-MM-DD); default: all (deals: closed since DATE, default 2 years)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be linked, created or reviewed")
    parser.add_argument(
        "--create-missing",
        action="store_true",
        help="deals: invoice the won deals no invoice matches, like a live won deal (default: only list them)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument(
        "--fan-out",
        action="store_true",
        help="queue the records in chunks of 100 for the stack's contact worker instead of running them here "
        "(for backfills longer than you want to keep a terminal open; contacts only)",
    )
    _target(parser)


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "accept", "reject"], nargs="?", default="list")
    parser.add_argument("ref", nargs="?", metavar="CRM-RECORD", help="e.g. hubspot/company/1000001 (accept/reject)")
    parser.add_argument("--by", default="", help="who decides (default: your login name)")
    parser.add_argument("--export", action="store_true", help="write the pending list as CSV and XLSX to S3")
    _target(parser)


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-name", metavar="NAME", help="a deployed stack; default: the running closeloop dev")
    parser.add_argument("--region", help="the deployed stack's region (with --stack-name)")


@contextmanager
def configured(args: argparse.Namespace) -> Iterator[None]:
    """Point ``closeloop.runtime`` at the stack: the dev stack's environment, or a deployed worker's."""
    from closeloop import runtime  # noqa: PLC0415

    if args.stack_name:
        saved = dict(os.environ)
        source = DEAL_ENVIRONMENT_SOURCE if getattr(args, "what", "") in ("deals", "invoices") else ENVIRONMENT_SOURCE
        os.environ.update(_deployed_environment(args.stack_name, args.region, source))
        runtime.reset()
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            runtime.reset()
        return
    stack = attached_stack()
    runtime.reset()
    try:
        yield
    finally:
        stack.stop()
        runtime.reset()


def _deployed_environment(stack_name: str, region: str | None, source: str = ENVIRONMENT_SOURCE) -> dict[str, str]:
    import boto3  # noqa: PLC0415

    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    cloudformation = session.client("cloudformation")
    try:
        function = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=source)
        name = function["StackResourceDetail"]["PhysicalResourceId"]
        configuration = session.client("lambda").get_function_configuration(FunctionName=name)
    except Exception as exc:
        raise CliError(f"cannot read the configuration of {source} in {stack_name!r}: {exc}") from exc
    return dict((configuration.get("Environment") or {}).get("Variables") or {})


def contact_backfill(out: TextIO) -> ContactBackfill:
    from closeloop import runtime  # noqa: PLC0415
    from closeloop.sync.matching import Matcher  # noqa: PLC0415

    def pause(seconds: float, why: str) -> None:
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        print(
            f"paused: {why}; resuming at {until:%Y-%m-%d %H:%M:%S} UTC "
            "(Ctrl-C stops here; `closeloop backfill contacts --resume` continues)",
            file=out,
            flush=True,
        )
        time.sleep(seconds)

    return ContactBackfill(
        runtime.crm(),
        runtime.accounting(),
        runtime.store(),
        runtime.contact_sync(),
        Matcher,
        progress=_printer(out),
        pause=pause,
    )


def deal_backfill(out: TextIO) -> Any:
    import uuid  # noqa: PLC0415

    from closeloop import runtime  # noqa: PLC0415
    from closeloop.sync.backfill_deals import DealBackfill  # noqa: PLC0415
    from closeloop.sync.invoices import DealSync  # noqa: PLC0415

    def pause(seconds: float, why: str) -> None:
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        print(
            f"paused: {why}; resuming at {until:%Y-%m-%d %H:%M:%S} UTC "
            "(Ctrl-C stops here; `closeloop backfill deals --resume` continues)",
            file=out,
            flush=True,
        )
        time.sleep(seconds)

    store = runtime.store()
    deals = DealSync(
        runtime.crm(),
        runtime.accounting(),
        store,
        runtime.contact_sync(),
        runtime.invoice_policy(),
        owner=uuid.uuid4().hex,
    )
    return DealBackfill(runtime.crm(), runtime.accounting(), store, deals, progress=_printer(out, "deals"), pause=pause)


def run_deal_backfill(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``closeloop backfill deals``: link won deals to finance's invoices; list the rest (see backfill_deals)."""
    from closeloop.sync.backfill_deals import deal_plan_rows  # noqa: PLC0415

    since = _date(args.since) if args.since else None
    if args.resume and (args.since or args.dry_run or args.create_missing):
        raise CliError("--resume continues the interrupted run as it was: no --since, --dry-run or --create-missing")
    with configured(args):
        try:
            result = deal_backfill(err).run(
                since=since, dry_run=args.dry_run, resume=args.resume, create_missing=args.create_missing
            )
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    verb = "would be" if result.dry_run else "were"
    print(
        f"{result.total:,} won deals closed since {result.since:%Y-%m-%d} read"
        + (f" (resumed at {result.resumed_at:,})" if result.resumed_at else ""),
        file=out,
    )
    for action, words in _DEAL_ACTION_WORDS.items():
        print(
            f"  {result.counts.get(action, 0):>7,} {verb if action != 'invoice_without_deal' else ''} {words}", file=out
        )
    listed = [e for e in result.plan if e.action != "mapped" and (result.dry_run or e.action != "link")]
    _print_plan(deal_plan_rows(listed), out)
    if result.dry_run:
        print("dry run: nothing was written", file=out)
    for ref, reason in result.failures:
        print(f"  failed: {ref}: {reason}", file=out)
    if result.counts.get("review") and not result.dry_run:
        print("uncertain matches wait for a person: `closeloop review` lists them", file=out)
    return 1 if result.failures else 0


_DEAL_ACTION_WORDS = {
    "link": "linked to the invoice finance made (written back to the deal)",
    "review": "put on the review list (uncertain match)",
    "missing": "listed for finance: no invoice matches (not invoiced; --create-missing invoices them)",
    "create": "invoiced like a live won deal (--create-missing)",
    "no_customer": "not matchable: the deal's customer is not linked yet (run `backfill contacts` first)",
    "mapped": "already linked (left alone)",
    "invoice_without_deal": "invoices of the period no won deal claims (listed only)",
}


def product_backfill(out: TextIO) -> Any:
    """The catalogue backfill over the stack's ProductSync; CliError when this pair syncs no catalogue."""
    from closeloop import runtime  # noqa: PLC0415
    from closeloop.sync.backfill_products import ProductBackfill  # noqa: PLC0415

    why = runtime.catalogue_off_reason()
    if why:
        raise CliError(f"cannot backfill products: {why}")

    def pause(seconds: float, why: str) -> None:
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        print(
            f"paused: {why}; resuming at {until:%Y-%m-%d %H:%M:%S} UTC "
            "(Ctrl-C stops here; `closeloop backfill products --resume` continues)",
            file=out,
            flush=True,
        )
        time.sleep(seconds)

    return ProductBackfill(runtime.product_sync(), runtime.store(), progress=_printer(out, "products"), pause=pause)


def run_product_backfill(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``closeloop backfill products``: link the CRM's products to the items accounting has (see
    closeloop.sync.backfill_products). Runs here, not fanned out: the plan needs both whole catalogues to see a
    shared SKU or a name match, and a catalogue is thousands of records at most."""
    if args.since:
        raise CliError("--since is not for products: both catalogues are read whole")
    if args.resume and args.dry_run:
        raise CliError("--resume continues the interrupted run as it was: no --dry-run with it")
    with configured(args):
        try:
            result = product_backfill(err).run(dry_run=args.dry_run, resume=args.resume)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    report_products(result, out)
    return 1 if result.failures else 0


def report_products(result: Any, out: TextIO) -> None:
    """The counts, the plan as an aligned table (a dry run's whole plan; a real run's duplicates and invalid
    ones, which a person must fix), the failures, and where the uncertain ones wait."""
    from closeloop.sync.backfill_products import product_plan_rows  # noqa: PLC0415

    verb = "would be" if result.dry_run else "were"
    print(
        f"{result.total:,} CRM products read" + (f" (resumed at {result.resumed_at:,})" if result.resumed_at else ""),
        file=out,
    )
    for action, words in _PRODUCT_ACTION_WORDS.items():
        said = f"{verb} {words}" if action in ("link", "review", "create") else words
        print(f"  {result.counts.get(action, 0):>7,} {said}", file=out)
    shown = [
        e for e in result.plan if e.action != "mapped" and (result.dry_run or e.action in ("duplicate", "invalid"))
    ]
    if shown:
        _print_plan(product_plan_rows(shown), out)
    if result.dry_run:
        print("dry run: nothing was written", file=out)
    for ref, reason in result.failures:
        print(f"  failed: {ref}: {reason}", file=out)
    if result.counts.get("review") and not result.dry_run:
        print("uncertain matches wait for a person: `closeloop review` lists them", file=out)


_PRODUCT_ACTION_WORDS = {
    "link": "linked to the item with their SKU as its code",
    "review": "put on the review list (only the name matches: uncertain)",
    "create": "created as items (no item has their code or name)",
    "duplicate": "reported, not guessed: a SKU, an item code or a name shared (fix the catalogue, run again)",
    "invalid": "not sendable (no SKU, or a code over the limit; kept as failed syncs with their reason)",
    "archived": "archived in the CRM (left alone)",
    "mapped": "already linked (left alone)",
}


def _printer(out: TextIO, what: str = "contacts") -> Any:
    last = {"at": 0.0}

    def show(progress: Progress) -> None:
        if progress.now - last["at"] < 1.0 and progress.done < progress.total:
            return
        last["at"] = progress.now
        eta = progress.eta_seconds
        share = progress.done / progress.total if progress.total else 1.0
        print(
            f"backfill {what}: {progress.done:,}/{progress.total:,} ({share:.0%}), "
            f"{progress.rate:,.1f} records/s, ETA {_span(eta) if eta is not None else '-'}",
            file=out,
            flush=True,
        )

    return show


def _print_plan(rows: list[list[str]], out: TextIO) -> None:
    """The plan's first PLAN_ROWS_SHOWN rows (``rows[0]`` is the header) as an aligned table, and how many more."""
    header, *entries = rows
    for line in table(header, entries[:PLAN_ROWS_SHOWN]):
        print(line, file=out)
    if len(entries) > PLAN_ROWS_SHOWN:
        print(f"  ... and {len(entries) - PLAN_ROWS_SHOWN:,} more", file=out)


def _span(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _report_contacts(result: Any, out: TextIO) -> None:
    verb = "would be" if result.dry_run else "were"
    print(
        f"{result.total:,} CRM companies and contacts read"
        + (f" (resumed at {result.resumed_at:,})" if result.resumed_at else ""),
        file=out,
    )
    for action in ("link", "review", "create", "mapped", "invalid"):
        print(f"  {result.counts.get(action, 0):>7,} {verb} {_ACTION_WORDS[action]}", file=out)
    if result.dry_run:
        _print_plan(plan_rows([e for e in result.plan if e.action != "mapped"]), out)
        print("dry run: nothing was written", file=out)
    for ref, reason in result.failures:
        print(f"  failed: {ref}: {reason}", file=out)
    if result.counts.get("review") and not result.dry_run:
        print("uncertain matches wait for a person: `closeloop review` lists them (`--export` for finance)", file=out)


def run_backfill(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if args.what in ("deals", "invoices", "products") and args.fan_out:
        raise CliError("--fan-out is for `closeloop backfill contacts`")
    if args.what in ("deals", "invoices"):
        return run_deal_backfill(args, out, err)
    if args.create_missing:
        raise CliError("--create-missing is for `closeloop backfill deals`")
    if args.what == "products":
        return run_product_backfill(args, out, err)
    since = _date(args.since) if args.since else None
    if args.resume and (args.since or args.dry_run):
        raise CliError("--resume continues the interrupted run as it was: no --since or --dry-run with it")
    if args.fan_out:
        if args.dry_run or args.resume:
            raise CliError("--fan-out queues a real contacts backfill: no --dry-run or --resume with it")
        return fan_out(args, since, out)
    with configured(args):
        try:
            result = contact_backfill(err).run(since=since, dry_run=args.dry_run, resume=args.resume)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    _report_contacts(result, out)
    return 1 if result.failures else 0


_ACTION_WORDS = {
    "link": "linked to the accounting customer they match",
    "review": "put on the review list (uncertain match)",
    "create": "created in accounting (no match)",
    "mapped": "already linked (left alone)",
    "invalid": "not sendable (kept as failed syncs with their reason)",
}


def fan_out(args: argparse.Namespace, since: datetime | None, out: TextIO) -> int:
    """List the CRM records here, queue them as chunks for the contact worker, and say how to follow them."""
    import uuid  # noqa: PLC0415

    from closeloop import runtime  # noqa: PLC0415
    from closeloop.models import BackfillWorkMessage  # noqa: PLC0415
    from closeloop.sync.backfill import CHUNK  # noqa: PLC0415

    run_id = uuid.uuid4().hex[:12]
    with configured(args):
        refs = contact_backfill(sys.stderr).crm_refs(since)
        queues = runtime.queues()
        for start in range(0, len(refs), CHUNK):
            message = BackfillWorkMessage(run_id=run_id, refs=refs[start : start + CHUNK])
            queues.send("contacts", message.model_dump_json())
    chunks = (len(refs) + CHUNK - 1) // CHUNK
    print(
        f"backfill run {run_id}: {len(refs):,} CRM records queued in {chunks:,} chunks for the contact worker", file=out
    )
    print("`closeloop status` shows the queue draining; `closeloop review` lists what needs a person", file=out)
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CliError(f"--since must look like 2026-01-31, got {text!r}") from None


def run_review(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from closeloop import runtime  # noqa: PLC0415
    from closeloop.config import get_settings  # noqa: PLC0415

    with configured(args):
        store = runtime.store()
        system = runtime.accounting().name
        if args.action == "list":
            pending = store.list_reviews(system)
            header, *rows = review_rows(pending)
            for line in table(header, rows):
                print(line, file=out)
            print(f"{len(pending)} pending", file=out)
            if args.export:
                print(export_reviews(pending, get_settings().report_bucket), file=out)
            return 0
        if not args.ref:
            raise CliError(f"`closeloop review {args.action}` needs the CRM record, e.g. hubspot/company/1000001")
        ref = _ref(args.ref)
        who = args.by or getpass.getuser()
        try:
            decided = store.decide_review(ref, system, "accepted" if args.action == "accept" else "rejected", who)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from exc
        if decided.status == "accepted" and ref.object_type in ("deal", "product"):
            what = f"{ref.object_type}s"
            print(f"{ref}: accepted; `closeloop backfill {what}` links it to {decided.candidate_id}", file=out)
        elif decided.status == "accepted":
            customer = runtime.crm().resolve_customer(ref)
            if customer is None:
                raise CliError(f"{ref} no longer exists in the CRM")
            outcome = runtime.contact_sync().link(customer, decided.candidate_id, f"accepted in review by {who}")
            print(f"{ref}: {outcome.action} to {outcome.accounting_id}", file=out)
        else:
            kind = "an item" if ref.object_type == "product" else "a customer"
            print(f"{ref}: rejected; the next backfill creates it as {kind} of its own", file=out)
        return 0


def _ref(text: str) -> CrmRef:
    parts = text.split("/")
    if len(parts) != 3 or parts[1] not in ("company", "contact", "deal", "product"):
        raise CliError(f"a CRM record looks like hubspot/company/1000001, got {text!r}")
    return CrmRef.model_validate({"crm": parts[0], "object_type": parts[1], "object_id": parts[2]})


def review_rows(items: Sequence[Any]) -> list[list[str]]:
    rows = [["crm record", "crm name", "accounting id", "accounting name", "score", "why", "since"]]
    for item in items:
        rows.append(
            [
                str(item.ref),
                item.crm_name,
                item.candidate_id,
                item.candidate_name,
                f"{item.score:.2f}",
                "; ".join(item.reasons),
                item.created_at.date().isoformat(),
            ]
        )
    return rows


def export_reviews(items: Sequence[Any], bucket: str) -> str:
    """The pending list as CSV and XLSX under ``reviews/`` in the report bucket; returns the XLSX's link."""
    from closeloop.reports.xlsx import Workbook  # noqa: PLC0415

    if not bucket:
        raise CliError("the stack has no REPORT_BUCKET to export to")
    import boto3  # noqa: PLC0415

    rows = review_rows(items)
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    book = Workbook()
    sheet = book.add_sheet("Review")
    for n, row in enumerate(rows):
        sheet.append(row, bold=n == 0)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=bucket, Key=f"reviews/{stamp}/review.csv", Body=text.getvalue().encode(), ContentType="text/csv"
    )
    key = f"reviews/{stamp}/review.xlsx"
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=book.to_bytes(),
        ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    return str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7 * 86400))


def main(args: argparse.Namespace) -> int:
    if args.command == "review":
        return run_review(args)
    return run_backfill(args)
