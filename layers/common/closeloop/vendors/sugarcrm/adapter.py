"""The SugarCRM CrmPort (and CatalogueCrm): customers, deals, products, the catch-up poll and write-back, over
``client`` (REST calls), ``mapping`` (record conversions) and ``webhooks`` (web logic hook deliveries).

Vendor facts this module encodes (Sugar developer guide 13/14: REST API endpoints, API exceptions, web logic
hooks; see also docs/vendors crm.md section 4):
- Every call goes to ``<instance>/rest/v11_<n>/...`` with the header ``OAuth-Token``, where v11_<n> is the
  highest version both the instance and this adapter know (each Sugar release raises its maximum, 14.0:
  v11_24, 13.3: v11_23, and refuses higher ones with 301 ``incorrect_version``): ``ApiVersion`` discovers it
  once per process, or SUGARCRM_API_VERSION fixes it. Unverified assumptions are listed in ``GUESSES``.
  Tokens come from
  ``POST /oauth2/token``: ``grant_type=password`` with ``client_id`` "sugar", an empty secret, username,
  password and ``platform``; then ``grant_type=refresh_token``. Access tokens live 1 hour, refresh tokens
  2 weeks. Sugar keeps ONE session per user and platform: a new login (or refresh) on the same platform
  invalidates the previous tokens, which is why Closeloop logs in on its own platform (``SUGARCRM_PLATFORM``,
  registered under Admin > Configure API Platforms) and shares one token pair through the token store.
- Errors are ``{"error": "<label>", "error_message": "..."}``: 401 ``invalid_grant`` (token invalid or
  expired) or ``need_login``, 404 ``not_found``, 422 ``missing_parameter``/``invalid_parameter``.
- Reads: ``GET /<module>/<id>``; batches and lists: ``POST /<module>/filter`` with ``filter``, ``fields``,
  ``max_num``, ``offset`` and ``order_by``; the answer's ``next_offset`` is -1 on the last page. Related
  records: ``GET /<module>/<id>/link/<link>`` (same paging). Values are strings; money is parsed to Decimal.
- ``PUT /<module>/<id>`` SILENTLY IGNORES fields that do not exist; custom (Studio) fields end in ``_c``.
  The answer is the saved record, so a written field missing from it means the field does not exist.
- Studio fields cannot be created through the REST API: ``ensure_properties`` reads ``GET /metadata`` and
  names what a Sugar admin must add.
- Web logic hooks POST one record per request: ``{"bean", "event", "isUpdate", "data", "dataChanges"}``,
  with no signature and NO retry (a failed delivery is lost). Authenticity is a secret last path segment;
  ``iter_changes_since`` is the catch-up poll for lost deliveries, with the same dedupe keys.
- Revenue line items (Opportunities + RLIs mode) are the deal's lines: ``discount_price`` is the unit price,
  ``likely_case`` the line total, ``discount_amount`` a total or (``discount_select``) a percentage; the SKU is
  the product template's manufacturer part number (``mft_part_num``), and ``product_template_id`` the product.
- The product catalogue is the ``ProductTemplates`` module (Product Catalog), read with the same GET and filter
  calls: ``mft_part_num`` the SKU, ``discount_price`` the unit price, ``cost_price`` the unit cost,
  ``active_status`` whether it is still sold. Its changes come from web logic hooks on the module, and from the
  catch-up poll like every module.

httpx is imported lazily (by ``client``): the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, get_args
from urllib.parse import quote

from closeloop.errors import ConfigurationError, FatalError, NotFound, ValidationFailed
from closeloop.models import (
    CUSTOMER_FIELDS,
    DEAL_SYNC_FIELDS,
    CrmRef,
    Customer,
    Deal,
    Frequency,
    LineItem,
    Product,
    SyncEvent,
)
from closeloop.paging import Page, paginate
from closeloop.ports import PropertyDefinition, WebhookRequest
from closeloop.vendors.sugarcrm.client import DISCOVER, AccessTokens, ApiVersion, SugarClient, path_segment
from closeloop.vendors.sugarcrm.mapping import (
    FREQUENCY_FIELD,
    LINE_MODULES,
    MODULES,
    SERVICE_FIELDS,
    SUPPLIER_FIELD,
    RecordWrites,
    clean,
    close_date,
    company_customer,
    contact_customer,
    contract_end,
    crm_ref,
    custom_field,
    email_list,
    ended_by_contract,
    first_day_at_or_after,
    line_item,
    parse_time,
    person_of,
    product_of,
    put_address,
    put_phone,
    put_shared_detail,
    stamp,
    sugar_number,
    sugar_time,
    sync_event,
    utc,
)
from closeloop.vendors.sugarcrm.quotes import READY_STAGES, REJECTED_STAGES, SugarQuotes
from closeloop.vendors.sugarcrm.webhooks import parse_delivery, verify_path_token

if TYPE_CHECKING:
    import httpx


#: The Studio field a service revenue line item's billing frequency is read from (``mapping.service_terms``):
#: a dropdown whose values are the canonical frequencies;
#: see GUESSES["closeloop_billing_frequency_c on RevenueLineItems"].
RECURRING_LINE_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition(
        FREQUENCY_FIELD.removesuffix("_c"),
        "Billing frequency",
        "enumeration",
        options=get_args(Frequency),
        description="How often Closeloop bills this service line (empty: billed once); its price is per period",
    ),
)


class ChangesPosition(NamedTuple):
    """Where the catch-up poll of one module stands: the records modified at or after ``since`` (a keyset on
    ``date_modified``), less the first ``offset`` of them. Sugar keeps whole seconds, so more than a page of
    records can share one ``since``: within it the poll moves by offset, and past it by the keyset again."""

    since: datetime
    offset: int

    def after(self, modified: Sequence[datetime | None]) -> ChangesPosition:
        """The position after a page whose records were modified at ``modified`` (None: unreadable)."""
        last = max((moment for moment in modified if moment is not None), default=self.since)
        return (
            ChangesPosition(last, 0) if last > self.since else ChangesPosition(self.since, self.offset + len(modified))
        )


class SugarCrm(SugarQuotes):
    """CrmPort for SugarCRM (Sell/Serve/Enterprise, REST API v11), with its quotes (``SugarQuotes``)."""

    name = "sugarcrm"
    MODULES: ClassVar[Mapping[str, str]] = MODULES
    WON_STAGES: ClassVar[tuple[str, ...]] = ("Closed Won",)
    PAGE_SIZE: ClassVar[int] = 100
    #: ids per ``$in`` filter (keeps request bodies and SQL IN lists modest).
    IN_CHUNK: ClassVar[int] = 100
    #: Contacts are ordered oldest first: the first is the company's main person (Sugar has no primary flag).
    PEOPLE_ORDER: ClassVar[str] = "date_entered:ASC,id:ASC"
    ACCOUNT_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "email",
        "email1",
        "phone_office",
        "billing_address_street",
        "billing_address_city",
        "billing_address_state",
        "billing_address_postalcode",
        "billing_address_country",
        "date_modified",
    )
    CONTACT_FIELDS: ClassVar[tuple[str, ...]] = (
        "first_name",
        "last_name",
        "email",
        "email1",
        "phone_work",
        "phone_mobile",
        "primary_address_street",
        "primary_address_city",
        "primary_address_state",
        "primary_address_postalcode",
        "primary_address_country",
        "account_id",
        "date_entered",
        "date_modified",
    )
    DEAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "amount",
        "currency_id",
        "sales_stage",
        "date_closed",
        "account_id",
        "assigned_user_id",
        "date_modified",
        *(f"{name}_c" for name in DEAL_SYNC_FIELDS),
    )
    LINE_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "product_template_id",
        "quantity",
        "discount_price",
        "discount_amount",
        "discount_select",
        "likely_case",
        *SERVICE_FIELDS,
        FREQUENCY_FIELD,  # see GUESSES["closeloop_billing_frequency_c on RevenueLineItems"]
    )
    #: The contract fields that bound a deal's recurring lines (``mapping.ended_by_contract``).
    CONTRACT_FIELDS: ClassVar[tuple[str, ...]] = ("status", "start_date", "end_date")
    PRODUCT_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "mft_part_num",
        "description",
        "discount_price",
        "cost_price",
        "currency_id",
        "active_status",
        "date_modified",
        SUPPLIER_FIELD,
    )
    #: Products are listed oldest first: a template created while the backfill pages lands after it.
    PRODUCT_ORDER: ClassVar[str] = "date_entered:ASC,id:ASC"
    CHANGE_FIELDS: ClassVar[tuple[str, ...]] = ("date_entered", "date_modified", "modified_user_id")
    #: Modules the catch-up poll skips when the instance refuses them (only the quote sync reads them).
    #: Contracts too: an instance or role without them still catches up its other changes.
    OPTIONAL_MODULES: ClassVar[frozenset[str]] = frozenset({"Quotes", "Products", "Contracts"})
    #: PropertyDefinition.type -> what to pick in Studio (and the vardef type a package declares).
    STUDIO_TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "string": ("TextField", "varchar"),
        "number": ("Decimal", "decimal"),
        "date": ("Date", "date"),
        "datetime": ("Datetime", "datetime"),
        "enumeration": ("DropDown", "enum"),
    }

    def __init__(
        self,
        *,
        instance_url: str,
        tokens: AccessTokens,
        webhook_token: str | Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        tax_number_field: str = "vat_number_c",
        api_version: str = DISCOVER,
        quote_ready_stages: Sequence[str] = READY_STAGES,
        quote_rejected_stages: Sequence[str] = REJECTED_STAGES,
    ) -> None:
        """``tax_number_field``: Sugar has no stock tax-id field; this Accounts field holds it (Studio).

        ``api_version``: SUGARCRM_API_VERSION, "discover" (default) or a fixed ``v11_<n>`` (see ApiVersion).
        ``quote_ready_stages`` / ``quote_rejected_stages``: the ``quote_stage`` values read as a quote that is
        published or agreed / turned down (SUGARCRM_QUOTE_READY_STAGES / _REJECTED_STAGES; see ``quotes``).
        """
        if not instance_url:
            raise ConfigurationError(
                "SUGARCRM_URL is not set (the SugarCRM instance, e.g. https://acme.sugarondemand.com)"
            )
        self.instance_url = instance_url.rstrip("/")
        self._tokens = tokens
        self._webhook_token = webhook_token
        self._transport = transport
        self._sleep = sleep
        self._client: SugarClient | None = None
        self.tax_number_field = tax_number_field
        self._currencies: dict[str, str] = {}
        self._version = ApiVersion(self.instance_url, api_version)
        self.quote_ready_stages = tuple(quote_ready_stages)
        self.quote_rejected_stages = tuple(quote_rejected_stages)

    # -- webhooks (web logic hooks) ----------------------------------------------------------------

    def _token(self) -> str:
        return self._webhook_token() if callable(self._webhook_token) else self._webhook_token

    def verify_webhook(self, request: WebhookRequest) -> None:
        """The URL's last path segment must equal SUGARCRM_WEBHOOK_TOKEN (compared in constant time)."""
        verify_path_token(request, self._token())

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        """One web logic hook delivery -> at most one event (modules other than ours are ignored)."""
        return parse_delivery(body)

    @property
    def client(self) -> SugarClient:
        """The HTTP client, built on first use (the webhook route never calls Sugar)."""
        if self._client is None:
            self._client = SugarClient(
                self.instance_url,
                self._tokens,
                self._version,
                page_size=self.PAGE_SIZE,
                in_chunk=self.IN_CHUNK,
                transport=self._transport,
                sleep=self._sleep,
            )
        return self._client

    # -- customers -----------------------------------------------------------------------------------

    def _account_fields(self) -> tuple[str, ...]:
        return (*self.ACCOUNT_FIELDS, self.tax_number_field) if self.tax_number_field else self.ACCOUNT_FIELDS

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        """A company with its contacts, or a contact's company (its ``account_id``), or the contact alone."""
        if ref.object_type == "company":
            return self._account_customer(ref.object_id)
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        contact = self.client.get("Contacts", ref.object_id, self.CONTACT_FIELDS)
        if contact is None:
            return None
        account_id = clean(contact.get("account_id"))
        if account_id:
            return self._account_customer(account_id)
        return contact_customer(contact)

    def _account_customer(self, account_id: str) -> Customer | None:
        account = self.client.get("Accounts", account_id, self._account_fields())
        if account is None:
            return None
        people = list(self.client.link("Accounts", account_id, "contacts", self.CONTACT_FIELDS, self.PEOPLE_ORDER))
        return company_customer(account, people, self.tax_number_field)

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """Batch reads: contacts by id, then their accounts and the requested ones, then all their people."""
        for ref in refs:
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"no customer for a {ref.object_type}")
        contacts = self.client.by_ids(
            "Contacts", [r.object_id for r in refs if r.object_type == "contact"], self.CONTACT_FIELDS
        )
        account_ids = {r.object_id for r in refs if r.object_type == "company"}
        account_ids |= {clean(c.get("account_id")) for c in contacts.values()} - {""}
        accounts = self.client.by_ids("Accounts", account_ids, self._account_fields())
        people: dict[str, list[dict[str, Any]]] = {account_id: [] for account_id in accounts}
        ids = sorted(accounts)
        for start in range(0, len(ids), self.IN_CHUNK):
            flt = [{"account_id": {"$in": ids[start : start + self.IN_CHUNK]}}]
            for person in self.client.filter("Contacts", flt, self.CONTACT_FIELDS, self.PEOPLE_ORDER):
                people.setdefault(clean(person.get("account_id")), []).append(person)
        result: dict[CrmRef, Customer | None] = {}
        for ref in refs:
            if ref.object_type == "company":
                account = accounts.get(ref.object_id)
                result[ref] = (
                    company_customer(account, people[ref.object_id], self.tax_number_field) if account else None
                )
                continue
            contact = contacts.get(ref.object_id)
            account_id = clean(contact.get("account_id")) if contact else ""
            if contact is None:
                result[ref] = None
            elif account_id:
                account = accounts.get(account_id)
                result[ref] = company_customer(account, people[account_id], self.tax_number_field) if account else None
            else:
                result[ref] = contact_customer(contact)
        return result

    # -- deals ----------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The opportunity with its revenue line items, account (or first contact) and currency resolved.

        Reads the opportunity, its ``revenuelineitems`` link (paged), the product templates of those lines
        (one filter) and, once per process, each currency. None when the opportunity does not exist.
        """
        record = self.client.get("Opportunities", deal_id, self.DEAL_FIELDS)
        if record is None:
            return None
        contact = None
        if not clean(record.get("account_id")):
            first = next(self.client.link("Opportunities", deal_id, "contacts", ("id",), self.PEOPLE_ORDER), None)
            contact = crm_ref("contact", str(first["id"])) if first else None
        deal = self._deal(record, contact=contact, line_items=self._line_items(deal_id))
        return self._within_contract(deal)

    def _within_contract(self, deal: Deal) -> Deal:
        """The deal with its recurring lines billed no later than its contracts run (``ended_by_contract``):
        read only when a line recurs, from the ``contracts`` link (an instance or role without Contracts,
        403 or 404, leaves the lines' own terms)."""
        if not any(line.recurring_frequency for line in deal.line_items):
            return deal
        deal_id = deal.ref.object_id
        try:
            contracts = list(self.client.link("Opportunities", deal_id, "contracts", self.CONTRACT_FIELDS, "id:ASC"))
        except FatalError as exc:
            if exc.status not in (403, 404):
                raise
            return deal
        ends = contract_end(contracts, deal_id)
        if ends is None:
            return deal
        lines = tuple(ended_by_contract(line, ends, deal.close_date) for line in deal.line_items)
        return deal.model_copy(update={"line_items": lines})

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Closed Won opportunities whose ``date_closed`` (a date: its UTC midnight) is in the range, paged.

        Without line items or contact: reconcile compares amounts and currencies only.
        """
        start, end = first_day_at_or_after(closed_from), first_day_at_or_after(closed_before)
        if start >= end:
            return
        flt: list[dict[str, Any]] = [
            {"sales_stage": {"$in": list(self.WON_STAGES)}},
            {"date_closed": {"$gte": start.isoformat()}},
            {"date_closed": {"$lt": end.isoformat()}},
        ]
        seen: set[str] = set()
        for record in self.client.filter("Opportunities", flt, self.DEAL_FIELDS, "date_closed:ASC,id:ASC"):
            if str(record["id"]) not in seen:
                seen.add(str(record["id"]))
                yield self._deal(record)

    def _deal(
        self, record: Mapping[str, Any], *, contact: CrmRef | None = None, line_items: tuple[LineItem, ...] = ()
    ) -> Deal:
        deal_id = str(record["id"])
        stage = clean(record.get("sales_stage"))
        account_id = clean(record.get("account_id"))
        return Deal(
            ref=crm_ref("deal", deal_id),
            name=clean(record.get("name")),
            amount=sugar_number(record.get("amount"), f"opportunity {deal_id} amount"),
            currency=self._currency(clean(record.get("currency_id"))),
            stage=stage,
            is_won=stage in self.WON_STAGES,
            close_date=close_date(record.get("date_closed"), deal_id),
            owner_id=clean(record.get("assigned_user_id")),
            company=crm_ref("company", account_id) if account_id else None,
            contact=contact,
            line_items=line_items,
            url=f"{self.instance_url}/#Opportunities/{quote(deal_id, safe='')}",
            updated_at=parse_time(record.get("date_modified")),
            synced={
                name: clean(record.get(f"{name}_c")) for name in DEAL_SYNC_FIELDS if record.get(f"{name}_c") is not None
            },
        )

    def _currency(self, currency_id: str) -> str:
        """The ISO code of a Sugar currency id ("-99" is the system currency), cached for the process."""
        if not currency_id:
            return ""
        if currency_id not in self._currencies:
            record = self.client.get("Currencies", currency_id, ("iso4217",))
            iso = clean(record.get("iso4217")).upper() if record else ""
            if not iso:
                raise ValidationFailed(f"SugarCRM currency {currency_id} has no ISO code", vendor=self.name)
            self._currencies[currency_id] = iso
        return self._currencies[currency_id]

    def _line_items(self, deal_id: str) -> tuple[LineItem, ...]:
        lines = list(
            self.client.link("Opportunities", deal_id, "revenuelineitems", self.LINE_FIELDS, "date_entered:ASC,id:ASC")
        )
        template_ids = {clean(line.get("product_template_id")) for line in lines} - {""}
        products = (
            self.client.by_ids("ProductTemplates", template_ids, ("name", "mft_part_num")) if template_ids else {}
        )
        return tuple(line_item(line, products) for line in lines)

    # -- product catalogue (CatalogueCrm) ----------------------------------------------------------------

    def get_product(self, product_id: str) -> Product | None:
        """``GET /ProductTemplates/<id>``; None when it does not exist or was deleted (404).

        Raises ValidationFailed for a price, cost or currency Sugar holds unreadably, IntegrationError subclasses.
        """
        template = self.client.get(self.MODULES["product"], product_id, self.PRODUCT_FIELDS)
        if template is None:
            return None
        return product_of(template, self._currency(clean(template.get("currency_id"))))

    def iter_products(self) -> Iterator[Product]:
        """Every template of the Product Catalog, inactive ones included (``archived``), oldest first, paged by
        ``POST /ProductTemplates/filter`` (deleted templates are never listed)."""
        for template in self.client.filter(self.MODULES["product"], [], self.PRODUCT_FIELDS, self.PRODUCT_ORDER):
            yield product_of(template, self._currency(clean(template.get("currency_id"))))

    # -- catch-up --------------------------------------------------------------------------------------

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Accounts, Contacts, Opportunities, ProductTemplates and Quotes with ``date_modified >= since``, oldest
        first, per module (products too: a catalogue change whose hook was lost, or that has no hook, is caught
        up); then quoted lines (Products), each reported as a change of its quote (``LINE_MODULES``). Quotes
        and Products are skipped when Sugar refuses them (403 or 404): the other modules still catch up.

        Pages by the modification time itself (keyset), not by a growing offset, so records modified while
        we page are not skipped; an offset is used only within one second holding more than a page. Sugar's
        filter API does not return deleted records: a deletion whose hook was lost is not caught up here.
        """
        floor = utc(since).replace(microsecond=0)
        scans = [(object_type, module, "") for object_type, module in self.MODULES.items()]
        scans += [(object_type, module, parent) for module, (object_type, parent) in LINE_MODULES.items()]
        for object_type, module, parent_field in scans:
            try:
                yield from self._changes(object_type, module, floor, parent_field)
            except FatalError as exc:
                # Only the quote sync needs Quotes and their lines: an instance or role without them (403
                # not_authorized, 404 for a module the instance lacks) still has its other changes caught up;
                # see GUESSES["a refused module answers 403 or 404"].
                if module not in self.OPTIONAL_MODULES or exc.status not in (403, 404):
                    raise

    def _changes(self, object_type: str, module: str, since: datetime, parent_field: str = "") -> Iterator[SyncEvent]:
        """``module``'s records modified at or after ``since``; with ``parent_field``, each as a change of the
        ``object_type`` record it names there (a line of it; lines naming none are skipped)."""
        body = {
            "fields": ",".join((*self.CHANGE_FIELDS, parent_field) if parent_field else self.CHANGE_FIELDS),
            "max_num": self.client.page_size,
            "order_by": "date_modified:ASC,id:ASC",
        }

        def fetch(position: ChangesPosition) -> Page[tuple[dict[str, Any], datetime | None], ChangesPosition]:
            filtered = {**body, "filter": [{"date_modified": {"$gte": sugar_time(position.since)}}]}
            page = self.client.page(f"/{module}/filter", method="POST", body=filtered, offset=position.offset)
            rows = [(record, parse_time(record.get("date_modified"))) for record in page.items]
            return Page(rows, None if page.next is None else position.after([modified for _, modified in rows]))

        seen: set[tuple[str, str]] = set()
        start = ChangesPosition(since, 0)
        for record, modified in paginate(fetch, start, vendor=self.name, what=f"{module} changes since"):
            if modified is None:
                continue
            key = (str(record["id"]), stamp(modified))
            if key in seen:
                continue
            seen.add(key)
            created = parse_time(record.get("date_entered")) == modified
            target, suffix = key[0], ""
            if parent_field:
                target, suffix = clean(record.get(parent_field)), f":{module}:{key[0]}"
                if not target:
                    continue
            yield sync_event(
                object_type,
                target,
                modified,
                kind="created" if created and not parent_field else "changed",
                source_type=f"{module}.date_modified",
                change_source="CATCH_UP_POLL",
                actor=clean(record.get("modified_user_id")),
                suffix=suffix,
            )

    # -- writes ---------------------------------------------------------------------------------------

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """``PUT /Opportunities/<id>`` per deal with Closeloop's ``_c`` fields; "" clears (null).

        Every deal is written even when one fails; then the first fatal failure is raised: NotFound for a
        missing opportunity, ValidationFailed for a refused value or for fields the instance does not have
        (Sugar ignores those silently, so the saved record is checked). Retriable errors raise at once.
        """
        self._raise_first([e for deal_id, values in updates.items() if (e := self._put("deal", deal_id, values))])

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """``PUT /Accounts/<id>`` or ``/Contacts/<id>`` per customer, as ``update_deals``."""
        for ref in updates:
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"{ref} is not a customer (company or contact)")
        self._raise_first(
            [e for ref, values in updates.items() if (e := self._put(ref.object_type, ref.object_id, values))]
        )

    @staticmethod
    def _raise_first(errors: Sequence[FatalError]) -> None:
        if errors:
            raise errors[0]

    def _put(self, object_type: str, record_id: str, values: Mapping[str, str]) -> FatalError | None:
        module = self.MODULES[object_type]
        body = {custom_field(name): (value if value != "" else None) for name, value in values.items()}
        if not body:
            return None
        try:
            saved = self.client.request("PUT", f"/{module}/{path_segment(record_id)}", json=body).json()
        except NotFound:
            return NotFound(f"SugarCRM has no {module} record {record_id}", vendor=self.name, status=404)
        except FatalError as exc:
            return exc
        missing = sorted(name for name in body if not isinstance(saved, dict) or name not in saved)
        if missing:
            return ValidationFailed(
                f"SugarCRM {module} has no field(s) {', '.join(missing)}: the values were not saved",
                vendor=self.name,
                status=200,
            )
        return None

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer fields where ``resolve_customer`` reads them; return those it cannot hold.

        A contact with an account is written as that account (the billable customer). On an account: name,
        billing address and tax number (``tax_number_field``) on it; first and last name on its main (oldest)
        contact, returned when it has none; email and phone where they are read from (the main contact's when
        it has one, else the account's; "" clears both). On a contact billed alone: its own fields and
        primary address; its name is first + last name (returned unless it already equals that), and it
        holds no tax number. Street lines share one field, so a second line without a first is returned.
        Emails replace the primary address of Sugar's ``email`` list and keep the others. Fields the saved
        record lacks (Sugar ignores unknown fields, e.g. a missing tax field) are returned. "people" is
        always returned. One ``PUT`` per record written (at most two). Raises NotFound when the record is
        gone, ValueError for an unknown field name or a deal ref, IntegrationError subclasses.
        """
        unknown = sorted(set(values) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(f"not customer fields: {', '.join(unknown)}")
        if ref.object_type not in ("company", "contact"):
            raise ValueError(f"no customer for a {ref.object_type}")
        account_id, contact = ref.object_id, None
        if ref.object_type == "contact":
            contact = self.client.get("Contacts", ref.object_id, self.CONTACT_FIELDS)
            if contact is None:
                raise NotFound(f"SugarCRM has no Contacts record {ref.object_id}", vendor=self.name, status=404)
            account_id = clean(contact.get("account_id"))
        writes: dict[tuple[str, str], dict[str, Any]] = {}
        origin: dict[tuple[str, str, str], str] = {}  # (module, id, Sugar field) -> canonical name
        if account_id:
            unwritable = self._account_writes(account_id, values, writes, origin)
        else:
            assert contact is not None
            unwritable = self._contact_writes(contact, values, writes, origin)
        for (module, record_id), body in writes.items():
            if not body:
                continue
            try:
                saved = self.client.request("PUT", f"/{module}/{path_segment(record_id)}", json=body).json()
            except NotFound as exc:
                raise NotFound(f"SugarCRM has no {module} record {record_id}", vendor=self.name, status=404) from exc
            ignored = [f for f in body if not isinstance(saved, dict) or f not in saved]
            unwritable += [origin[(module, record_id, f)] for f in ignored if (module, record_id, f) in origin]
        return [n for n in values if n in unwritable]

    def _account_writes(
        self,
        account_id: str,
        values: Mapping[str, str],
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
    ) -> list[str]:
        account = self.client.get("Accounts", account_id, self._account_fields())
        if account is None:
            raise NotFound(f"SugarCRM has no Accounts record {account_id}", vendor=self.name, status=404)
        main = next(
            iter(self.client.link("Accounts", account_id, "contacts", self.CONTACT_FIELDS, self.PEOPLE_ORDER)), None
        )
        company = RecordWrites(writes, origin, "Accounts", account_id)
        people = RecordWrites(writes, origin, "Contacts", str(main["id"])) if main is not None else None
        unwritable: list[str] = []
        for name, value in values.items():
            if name == "name":
                company.put(name, "name", value)
            elif name == "tax_number" and self.tax_number_field:
                company.put(name, self.tax_number_field, value)
            elif name in ("first_name", "last_name") and people is not None:
                people.put(name, name, value)
            elif name in ("email", "phone"):
                put_shared_detail(name, value, account, main, company, people)
            elif not name.startswith("address."):
                unwritable.append(name)
        return unwritable + put_address(company, account, "billing_address", values)

    def _contact_writes(
        self,
        contact: Mapping[str, Any],
        values: Mapping[str, str],
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
    ) -> list[str]:
        own = RecordWrites(writes, origin, "Contacts", str(contact["id"]))
        person = person_of(contact)
        first, last = values.get("first_name", person.first_name), values.get("last_name", person.last_name)
        unwritable: list[str] = []
        for name, value in values.items():
            if name in ("first_name", "last_name"):
                own.put(name, name, value)
            elif name == "email":
                own.put(name, "email", email_list(contact, value))
            elif name == "phone":
                put_phone(own, contact, value)
            elif name == "name" and value == " ".join(p.strip() for p in (first, last) if p.strip()):
                continue  # a contact's name is its first and last name: already what it will read
            elif not name.startswith("address."):
                unwritable.append(name)
        return unwritable + put_address(own, contact, "primary_address", values)

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Check the module's fields in ``GET /metadata``; Sugar's REST API cannot create Studio fields.

        Returns [] when every ``<name>_c`` exists. Otherwise raises ConfigurationError naming each missing
        field, its Studio type and how to add it. Raises ValueError for an object type without custom fields.
        """
        module = self.MODULES.get(object_type)
        if module is None:
            raise ValueError(f"no custom properties for a {object_type}")
        return self._ensure_fields(module, definitions)

    def ensure_recurring_line_properties(self) -> list[str]:
        """Check the revenue line items' billing frequency dropdown (``RECURRING_LINE_PROPERTIES``), which
        ``closeloop setup sugarcrm`` names for an admin to add in Studio: Sugar has no billing frequency of
        its own. [] when it exists; else ConfigurationError naming it, its options and where to add it."""
        return self._ensure_fields("RevenueLineItems", RECURRING_LINE_PROPERTIES)

    def _ensure_fields(self, module: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        response = self.client.request("GET", "/metadata", params={"type_filter": "modules", "module_filter": module})
        fields = ((response.json().get("modules") or {}).get(module) or {}).get("fields") or {}
        missing = [d for d in definitions if custom_field(d.name) not in fields]
        if not missing:
            return []
        described = []
        for definition in missing:
            studio, _ = self.STUDIO_TYPES.get(definition.type, ("TextField", "varchar"))
            options = f" with options {', '.join(definition.options)}" if definition.options else ""
            described.append(f"{custom_field(definition.name)} ({studio}, label {definition.label!r}{options})")
        raise ConfigurationError(
            f"SugarCRM {module} lacks Closeloop's custom fields: {'; '.join(described)}. The REST API cannot "
            f"create fields: an admin adds them in Admin > Studio > {module} > Fields > Add Field (enter the name "
            f"without _c, Sugar appends it), or installs a module loadable package with these vardefs through "
            f"Admin > Module Loader.",
            vendor=self.name,
        )
