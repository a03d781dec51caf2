"""The composition root: builds the configured adapters, store and pipelines for the Lambda handlers.

Providers are looked up in the registry of vendors (``closeloop.vendors.registry``) by ``CRM_PROVIDER`` /
``ACCOUNTING_PROVIDER``, and built by their spec with what ``_Services`` lends them; the sync logic
only ever sees the ports. Everything here is built once per process and cached (warm invocations reuse
clients and tokens); tests call ``reset()``.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from aws_lambda_powertools import Logger

from closeloop.config import get_settings
from closeloop.credentials import Credentials
from closeloop.errors import ConfigurationError
from closeloop.ports import AccountingPort, CrmPort
from closeloop.vendors import registry
from closeloop.vendors.spec import Kind, oauth_app_keys

logger = Logger(child=True)


@cache
def credentials() -> Credentials:
    settings = get_settings()
    return Credentials(
        os.environ,
        settings.credentials_secret_id,
        settings.credentials_max_age_seconds,
        webhook_secret_id=settings.webhook_keys_secret_id,
    )


def _client_tokens(
    creds: Credentials,
    connection: str,
    prefix: str,
    refresh_with: Callable[[str, Callable[[], str], Callable[[], str]], Any],
    token_url: str,
    *,
    resend_within: float,
    rotates: bool = True,
) -> Any:
    """OAuth tokens of an app whose credentials are ``<PREFIX>_CLIENT_ID/_CLIENT_SECRET/_REFRESH_TOKEN``.

    ``refresh_with(token_url, client_id, client_secret)`` builds the vendor's refresh call; a rotating refresh
    token is copied back into the secret (DynamoDB holds the live one). ``resend_within``: the vendor's grace
    period for re-sending a refresh whose answer was lost (its adapter's ``REFRESH_RESEND_WITHIN_SECONDS``).
    """
    from closeloop.http import worst_case_seconds  # noqa: PLC0415
    from closeloop.oauth import RefreshingTokens  # noqa: PLC0415

    client_id, client_secret, refresh_token = oauth_app_keys(prefix)
    return RefreshingTokens(
        connection,
        lazy_store(),
        seed=lambda fresh: creds.get(refresh_token, fresh=fresh),
        refresh=refresh_with(token_url, lambda: creds.get(client_id), lambda: creds.get(client_secret)),
        write_back=_write_back(creds, refresh_token) if rotates else lambda token: False,
        resend_within=resend_within,
        refresh_seconds=worst_case_seconds(),
        invocation_ends_at=_invocation_ends_at,
    )


@cache
def clock() -> Any:
    """The clock of rate limits and delays (real time, unless CLOSELOOP_TIME_SCALE speeds it up locally)."""
    from closeloop.pacing import Clock  # noqa: PLC0415

    return Clock(get_settings().time_scale)


#: Room left after the last paced call of an invocation: that call (with its retries) and the writes after it.
DEADLINE_RESERVE_SECONDS = 20.0
_invocation = threading.local()


def _deadline() -> float | None:
    """When this invocation (this thread's) must stop sending vendor calls, on ``clock()``; None: no deadline."""
    deadline: float | None = getattr(_invocation, "deadline", None)
    return deadline


def _invocation_ends_at() -> float | None:
    """When this invocation (this thread's) ends, in real epoch seconds (``time.time()``, the clock of the
    store's leases); None: no deadline. A token refresh lease held by this thread ends soon after it."""
    ends_at: float | None = getattr(_invocation, "ends_at", None)
    return ends_at


def _pacer(vendor: str, limit: Any, organisation: Callable[[], str]) -> Any:
    """The shared call budget of one vendor organisation (every worker books from the same schedule)."""
    from dataclasses import replace  # noqa: PLC0415

    from closeloop.pacing import SharedPacer  # noqa: PLC0415

    override = get_settings().accounting_rate_limit_per_minute
    if override:  # a deployment's own figure: room left for other apps, or a limit the vendor raised
        limit = replace(limit, per_minute=override)

    return SharedPacer(
        lazy_store(), lambda: f"{vendor}#{organisation()}", limit, vendor=vendor, clock=clock(), deadline=_deadline
    )


def _write_back(creds: Credentials, key: str) -> Callable[[str], bool]:
    """Copy a rotated refresh token into the secret: True when written (False when the key lives in the
    environment); raises when Secrets Manager refuses. RefreshingTokens decides what a failure means."""

    def write_back(token: str) -> bool:
        return creds.put(key, token)

    return write_back


class _Services:
    """What the runtime lends a vendor's ``build`` (``closeloop.vendors.spec.Services``)."""

    def lazy_store(self) -> Any:
        return lazy_store()

    def clock(self) -> Any:
        return clock()

    def pacer(self, vendor: str, limit: Any, organisation: Callable[[], str]) -> Any:
        return _pacer(vendor, limit, organisation)

    def client_tokens(
        self,
        credentials: Any,
        connection: str,
        prefix: str,
        refresh_with: Callable[[str, Callable[[], str], Callable[[], str]], Any],
        token_url: str,
        *,
        resend_within: float,
        rotates: bool = True,
    ) -> Any:
        return _client_tokens(
            credentials, connection, prefix, refresh_with, token_url, resend_within=resend_within, rotates=rotates
        )

    def invocation_ends_at(self) -> float | None:
        return _invocation_ends_at()


def _provider(kind: Kind, name: str) -> Any:
    """The adapter of the configured vendor of ``kind`` (the registry's default when none is configured)."""
    spec = registry.get(name or registry.DEFAULTS[kind], kind)
    return spec.build(registry.vendor_settings(spec.name), credentials(), _Services())


@cache
def telemetry() -> Any:
    """Closeloop's metrics and traces on Powertools, installed as the process's (``closeloop.telemetry``):
    ``VendorHttp`` counts 429s and retries through it. Lambda handlers install it; the CLI does not (it
    would print embedded-metric lines among its own output)."""
    from closeloop import telemetry as port  # noqa: PLC0415
    from closeloop.observability import PowertoolsTelemetry  # noqa: PLC0415

    installed = PowertoolsTelemetry({"vendor": get_settings().accounting_provider or registry.DEFAULTS["accounting"]})
    port.install(installed)
    return installed


@cache
def crm() -> CrmPort:
    return _provider("crm", get_settings().crm_provider)  # type: ignore[no-any-return]


@cache
def accounting() -> AccountingPort:
    return _provider("accounting", get_settings().accounting_provider)  # type: ignore[no-any-return]


@cache
def store() -> Any:
    from closeloop.store import DynamoStore  # noqa: PLC0415

    settings = get_settings()
    settings.require("sync_table")
    cipher = None
    if settings.token_key_id:
        from closeloop.aws import KmsTokenCipher  # noqa: PLC0415

        cipher = KmsTokenCipher(settings.token_key_id)
    return DynamoStore(settings.sync_table, cipher=cipher)


class _StoreOnFirstUse:
    """The repository, built when one of its methods is first called rather than when it is handed over."""

    def __getattr__(self, name: str) -> Any:
        return getattr(store(), name)


def lazy_store() -> Any:
    """``store()`` for components that may never use it: the webhook routes' replay check and the adapters'
    token and call-slot stores. A request refused for its signature (anyone on the internet can send one)
    then builds no DynamoDB client: no cold-start cost, and no AWS code reached before the sender is known."""
    return _StoreOnFirstUse()


@cache
def queues() -> Any:
    from closeloop.aws import SqsQueues  # noqa: PLC0415

    settings = get_settings()
    settings.require("contact_queue_url", "deal_queue_url")
    return SqsQueues({"contacts": settings.contact_queue_url, "deals": settings.deal_queue_url})


@cache
def alerts() -> Any:
    from closeloop.aws import SnsAlerts  # noqa: PLC0415

    return SnsAlerts(get_settings().alert_topic_arn)


@cache
def idempotency_config() -> Any:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig  # noqa: PLC0415

    # CRMs redeliver for up to 24 hours (the longest window among them): remember finished work a little longer.
    return IdempotencyConfig(expires_after_seconds=25 * 3600, raise_on_no_idempotency_key=True)


def register_lambda_context(context: Any) -> None:
    """Let in-progress idempotency records expire with this invocation (a crashed worker frees its keys),
    and stop paced vendor calls in time for the invocation to re-queue what is left (see ``_deadline``);
    a token refresh lease taken in this invocation ends with it (see ``_invocation_ends_at``)."""
    idempotency_config().register_lambda_context(context)
    _invocation.ends_at = time.time() + context.get_remaining_time_in_millis() / 1000
    remaining = context.get_remaining_time_in_millis() / 1000 - DEADLINE_RESERVE_SECONDS
    _invocation.deadline = clock().now() + max(0.0, remaining) * clock().scale


@cache
def once() -> Callable[[dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]:
    """Run a unit of work at most once per key (Powertools idempotency on the idempotency table)."""
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
        DynamoDBPersistenceLayer,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import (  # noqa: PLC0415
        IdempotencyAlreadyInProgressError,
    )

    from closeloop.errors import Busy  # noqa: PLC0415

    settings = get_settings()
    settings.require("idempotency_table")
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    config = idempotency_config()

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="key", persistence_store=persistence, config=config
    )
    def run(key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return work()

    def guarded(key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = run(key=key, work=work)
        except IdempotencyAlreadyInProgressError as exc:
            raise Busy(f"{key['ref']} is being processed by another worker") from exc
        return result

    return guarded


@cache
def field_rules() -> Any:
    """The deployment's field rules (FIELD_RULES over the packaged default); a bad value fails at start."""
    from closeloop.rules import FieldRules  # noqa: PLC0415

    return FieldRules.load(get_settings().field_rules or None)


@cache
def contact_sync() -> Any:
    from closeloop.sync.contacts import ContactSync  # noqa: PLC0415

    return ContactSync(crm(), accounting(), store(), owner=uuid.uuid4().hex, rules=field_rules())


def _worker(pipeline: Any) -> Any:
    from closeloop.sync.worker import Worker  # noqa: PLC0415

    def park(pipeline_name: str, body: str, delay: int) -> None:
        # ``delay`` is on clock(): in real seconds it is the same unless a local test speeds the clock up.
        queues().send(pipeline_name, body, delay_seconds=min(delay, math.ceil(clock().real_seconds(delay))))

    def alert_due(kind: str) -> bool:
        return bool(store().acquire_lease(f"alert#{kind}", uuid.uuid4().hex, ALERT_EVERY_SECONDS))

    return Worker(pipeline, alerts(), once(), park=park, alert_due=alert_due, now=clock().now, telemetry=telemetry())


#: A disconnected account is announced at most this often, however many messages meet it.
ALERT_EVERY_SECONDS = 3600


def catalogue_off_reason() -> str:
    """Why this stack syncs no catalogue, "" when it does: the CRM or the accounting system has no catalogue
    adapter (its spec's capabilities do not list ``product``), or PRODUCT_SYNC is off."""
    lacking = not_carried("product", "products")
    if lacking:
        return lacking
    if not get_settings().product_sync:
        return "catalogue sync is off in this stack (PRODUCT_SYNC=false)"
    return ""


@cache
def product_sync() -> Any:
    """The catalogue sync, or None (``catalogue_off_reason`` says why)."""
    from closeloop.sync.products import ProductSync  # noqa: PLC0415

    if catalogue_off_reason():
        return None
    settings = get_settings()
    catalogue_crm: Any = crm()  # both declare the catalogue (capability ``product``): CatalogueCrm/-Accounting
    catalogue_books: Any = accounting()
    return ProductSync(
        catalogue_crm,
        catalogue_books,
        store(),
        owner=uuid.uuid4().hex,
        item_codes=settings.sku_item_codes,
        rules=field_rules(),
        base_currency=settings.default_currency,
    )


@cache
def contact_worker() -> Any:
    from closeloop.sync.products import WithCatalogue  # noqa: PLC0415

    return _worker(WithCatalogue(contact_sync(), product_sync()))


@cache
def contact_queue() -> Any:
    """The contacts queue's worker: CRM events, accounting changes and backfill chunks."""
    from closeloop.sync.contact_queue import ContactQueue  # noqa: PLC0415

    return ContactQueue(contact_worker(), accounting_changes, contact_backfill, park_contacts)


def invoice_policy() -> Any:
    from closeloop.sync.invoices import InvoicePolicy  # noqa: PLC0415
    from closeloop.sync.tax import parse_rules  # noqa: PLC0415

    settings = get_settings()
    try:
        rules = parse_rules(settings.tax_rules)
    except ValueError as exc:
        raise ConfigurationError(f"TAX_RULES is not a valid rule table: {exc}") from exc
    return InvoicePolicy(
        status=settings.invoice_status,
        send_email=settings.invoice_send_email,
        due_days=settings.invoice_due_days,
        default_currency=settings.default_currency,
        sku_item_codes=settings.sku_item_codes,
        tax_rules=rules,
    )


@cache
def deal_worker() -> Any:
    from closeloop.sync.invoices import DealSync  # noqa: PLC0415
    from closeloop.sync.quotes import WithQuotes  # noqa: PLC0415

    deals = DealSync(
        crm(),
        accounting(),
        store(),
        contact_sync(),
        invoice_policy(),
        owner=uuid.uuid4().hex,
        telemetry=telemetry(),
        products=product_sync(),
        flows=won_deal_flows(),
    )
    return _worker(WithQuotes(deals, quote_sync(), deals.trail))


@cache
def won_deal_flows() -> tuple[Any, ...]:
    """The work a won deal brings besides its one-off invoice, in order (see sync.invoices.WonDealFlow):
    the flows this deployment's systems carry and its settings turn on."""
    from closeloop.sync.quotes import QuoteFlow  # noqa: PLC0415

    flows: list[Any] = []
    quotes = quote_sync()
    if quotes is not None:
        flows.append(QuoteFlow(quotes))  # first: the lines it promised are what the others see
    schedules = recurring_flow()
    if schedules is not None:
        flows.append(schedules)  # before the invoice is drafted: it takes the recurring lines off it
    if not purchase_orders_off_reason():
        flows.append(purchase_order_flow())
    return tuple(flows)


def purchase_orders_off_reason() -> str:
    """Why this stack makes no purchase orders, "" when it does: PURCHASE_ORDERS is off, or the CRM or the
    accounting system does not carry them (the CRM reads a product's supplier and cost, the accounting system
    takes suppliers and purchase orders)."""
    if not get_settings().purchase_orders:
        return "purchase orders are off in this stack (PURCHASE_ORDERS=false)"
    return not_carried("purchase_order", "purchase orders")


def quotes_off_reason() -> str:
    """Why this stack syncs no quotes, "" when it does: the CRM or the accounting system has no quote adapter."""
    return not_carried("quote", "quotes")


#: The capability (``capabilities.objects``) of a vendor that carries repeating invoice schedules: a CRM's
#: recurring lines, an accounting system's repeating invoices.
REPEATING_INVOICE = "repeating_invoice"


def recurring_off_reason() -> str:
    """Why recurring lines are invoiced once like any other line, "" when they become repeating schedules:
    the CRM or the accounting system does not carry them."""
    return not_carried(REPEATING_INVOICE, "repeating invoices")


def not_carried(capability: str, what: str) -> str:
    """Why the configured systems cannot carry ``what``: the ones whose spec's capabilities.objects lack
    ``capability`` ("" when both carry it)."""
    settings = get_settings()
    specs = (
        registry.get(settings.crm_provider or registry.DEFAULTS["crm"], "crm"),
        registry.get(settings.accounting_provider or registry.DEFAULTS["accounting"], "accounting"),
    )
    lacking = [spec.title for spec in specs if capability not in spec.capabilities.objects]
    if lacking:
        return (
            f"{' and '.join(lacking)} {'do' if len(lacking) > 1 else 'does'} not carry {what} yet "
            f"(`{capability}` is not among its spec's capabilities.objects)"
        )
    return ""


def purchase_order_flow() -> Any:
    """The won deal -> purchase orders flow (both systems declare ``purchase_order``)."""
    from closeloop.sync.purchase_orders import PurchaseOrderFlow, PurchaseOrderPolicy  # noqa: PLC0415

    settings = get_settings()
    catalogue: Any = crm()  # declares ``purchase_order``: reads products (CatalogueCrm)
    purchasing: Any = accounting()  # declares ``purchase_order``: PurchasingAccounting
    policy = PurchaseOrderPolicy(default_currency=settings.default_currency, sku_item_codes=settings.sku_item_codes)
    return PurchaseOrderFlow(crm(), catalogue, purchasing, store(), policy, owner=uuid.uuid4().hex)


def _invoice_deal(deal: Any) -> None:
    """Ask for a deal's invoice (its quote was accepted, INVOICE_ON_QUOTE_ACCEPTED): one deal event on the
    deals queue, keyed by the deal alone so repeated asks coalesce into the same once-only work."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from closeloop.models import SyncEvent, WorkMessage  # noqa: PLC0415

    event = SyncEvent(
        ref=deal,
        event_id=f"quote-accepted:{deal.object_id}",
        kind="changed",
        occurred_at=datetime.now(UTC),
        source_type="closeloop.quote_accepted",
        dedupe_key=f"quote-accepted:{deal}",
    )
    queues().send("deals", WorkMessage(pipeline="deals", events=[event]).model_dump_json())


@cache
def quote_sync() -> Any:
    """The quote sync, or None (``quotes_off_reason`` says why)."""
    from closeloop.sync.quotes import QuotePolicy, QuoteSync  # noqa: PLC0415

    if quotes_off_reason():
        return None
    quote_crm: Any = crm()  # both declare quotes (capability ``quote``): QuoteCrm / QuoteAccounting
    quote_books: Any = accounting()
    return QuoteSync(
        quote_crm,
        quote_books,
        store(),
        contact_sync(),
        invoice_policy(),
        owner=uuid.uuid4().hex,
        quotes=QuotePolicy(invoice_on_accept=get_settings().invoice_on_quote_accepted),
        products=product_sync(),
        invoice_deal=_invoice_deal,
    )


class _NoQuotes:
    """The quote status poll of a stack without quotes: nothing to read."""

    def run(self) -> Any:
        from datetime import UTC, datetime  # noqa: PLC0415

        from closeloop.sync.catchup import CatchUpResult  # noqa: PLC0415

        return CatchUpResult(None, {}, datetime.now(UTC), complete=True)


@cache
def quote_status_poll() -> Any:
    """The accounting quotes' status back-flow (the scheduled poller runs it after the catch-ups)."""
    from closeloop.sync.quotes import QuoteStatusPoll  # noqa: PLC0415

    quotes = quote_sync()
    if quotes is None:
        return _NoQuotes()
    return QuoteStatusPoll(quotes.accounting, quotes, store())


@cache
def recurring_flow() -> Any:
    """The won deal's recurring lines -> repeating schedules, or None (``recurring_off_reason`` says why)."""
    from closeloop.sync.recurring import RecurringFlow, SchedulePolicy  # noqa: PLC0415

    if recurring_off_reason():
        return None
    books: Any = accounting()  # declares ``repeating_invoice``: a RecurringAccounting too
    return RecurringFlow(
        crm(),
        books,
        books,
        store(),
        SchedulePolicy(status=get_settings().recurring_schedule_status, invoices=invoice_policy()),
        owner=uuid.uuid4().hex,
    )


@cache
def events() -> Any:
    from closeloop.aws import EventBridgeEvents  # noqa: PLC0415

    return EventBridgeEvents(get_settings().event_bus_name)


@cache
def payment_poller() -> Any:
    from closeloop.sync.payments import PaymentPoller  # noqa: PLC0415

    return PaymentPoller(crm(), accounting(), store(), events(), rules=field_rules())


def monthly_report(month: str) -> dict[str, Any]:
    """Reconcile ``month`` (YYYY-MM), write its CSV/XLSX/HTML under reports/YYYY-MM/, announce the link."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from closeloop.aws import dead_letter_counts  # noqa: PLC0415
    from closeloop.reports.monthly import render_all  # noqa: PLC0415
    from closeloop.reports.publish import publish_report  # noqa: PLC0415
    from closeloop.sync.reconcile import Catalogue, QuoteBook, reconcile  # noqa: PLC0415

    settings = get_settings()
    settings.require("report_bucket", "sync_table")
    repository = store()
    port = crm()
    products = product_sync()  # None: catalogue sync off, so no price drift to look for
    catalogue = (
        None
        if products is None
        else Catalogue(
            products.crm,
            products.accounting,
            repository.iter_mappings(port.name, "product"),
            products.rules,
            products.base_currency,
        )
    )
    reconciliation = reconcile(
        month,
        crm=port,
        accounting=accounting(),
        store=repository,
        failed_syncs=repository.list_failed_syncs(limit=1000),
        dead_letters=dead_letter_counts({"ContactDLQ": settings.contact_dlq_url, "DealDLQ": settings.deal_dlq_url}),
        today=datetime.now(UTC).date(),
        deal_mappings=repository.iter_mappings(port.name, "deal"),
        conflicts=repository.list_conflicts(accounting().name, *_month_span(month)),
        catalogue=catalogue,
        schedules=None if recurring_off_reason() else cast(Any, accounting()),  # declares repeating_invoice
        # Quotes on (both systems carry them): the accounting quotes against the quote sync's links.
        quotes=None
        if quotes_off_reason()
        else QuoteBook(cast(Any, accounting()), repository.iter_mappings(port.name, "quote")),
    )
    published = publish_report(
        month,
        render_all(reconciliation),
        bucket=settings.report_bucket,
        topic_arn=settings.alert_topic_arn or None,
        expires_seconds=settings.report_link_expiry_seconds,
        counts=reconciliation.counts_by_type(),
    )
    return {
        "month": month,
        "discrepancies": reconciliation.counts_by_type(),
        "keys": list(published.keys),
        "url": published.url,
    }


def reset() -> None:
    """Forget every cached component and setting (tests, or after the environment changed).

    Every ``@cache`` function of this module is cleared: none is listed by hand, so a new one cannot be
    forgotten (a component built for one local stack would otherwise serve the next one)."""
    for value in list(globals().values()):
        if getattr(value, "__module__", None) == __name__ and callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    get_settings.cache_clear()
    # The installed telemetry and the metrics Powertools keeps for the invocation's flush are per process too.
    from closeloop import telemetry as port  # noqa: PLC0415
    from closeloop.observability import metrics  # noqa: PLC0415

    port.install(port.NO_TELEMETRY)
    metrics.clear_metrics()
    registry.vendor_settings.cache_clear()
    # Powertools keeps one parameters provider (and its boto3 client, bound to an endpoint) per process.
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS  # noqa: PLC0415

    DEFAULT_PROVIDERS.clear()


@cache
def crm_catch_up() -> Any:
    from closeloop.sync.catchup import CatchUp  # noqa: PLC0415

    return CatchUp(crm(), queues(), store())


@cache
def accounting_changes() -> Any:
    from closeloop.sync.accounting_changes import AccountingChangeSync  # noqa: PLC0415

    return AccountingChangeSync(crm(), accounting(), store(), field_rules())


@cache
def accounting_catch_up() -> Any:
    from closeloop.sync.catchup import AccountingCatchUp  # noqa: PLC0415

    return AccountingCatchUp(accounting(), accounting_changes(), store())


def _month_span(month: str) -> tuple[Any, Any]:
    from datetime import UTC, datetime  # noqa: PLC0415

    from closeloop.sync.reconcile import month_bounds  # noqa: PLC0415

    start, end = month_bounds(month)
    return datetime(start.year, start.month, start.day, tzinfo=UTC), datetime(end.year, end.month, end.day, tzinfo=UTC)


@cache
def contact_backfill() -> Any:
    """The backfill as the contact worker runs its chunks (candidates read per chunk, no pauses: SQS retries)."""
    from closeloop.sync.backfill import ContactBackfill  # noqa: PLC0415
    from closeloop.sync.matching import Matcher  # noqa: PLC0415

    def no_pause(seconds: float, why: str) -> None:
        return None

    return ContactBackfill(crm(), accounting(), store(), contact_sync(), Matcher, pause=no_pause)


def park_contacts(body: str, delay: int) -> None:
    """Re-queue a contacts-queue message to be seen again after ``delay`` seconds."""
    queues().send("contacts", body, delay_seconds=delay)
