"""HubSpot, the CRM port (``HubSpotCrm``): customers, deals and their line items read, properties written back,
custom properties created; the product library read (the catalogue port, ``CatalogueCrm``). Thin over
``client`` (HTTP, paging, errors), ``mapping`` (HubSpot <-> canonical) and ``webhooks`` (signatures and delivery
parsing).

- Deal stages are ids (``closedwon`` in the default pipeline, numbers in custom ones); a stage is won when
  its pipeline metadata says ``probability`` 1.0 and ``isClosed`` true (``GET /crm/v3/pipelines/deals``).
- CRM search pages to 10,000 results per query: the change scan keysets on the modification time past it,
  the won-deal search splits its close-date range.
- Products (HubSpot's products guide and ``PublicApiSpecs/CRM/Products/.../v3/products.json``): ``hs_sku``,
  ``name``, ``description``, ``price`` and the unit cost ``hs_cost_of_goods_sold``; the supplier is the custom
  product property ``closeloop_supplier`` (``closeloop setup`` creates it). A product deleted in HubSpot is
  archived (read with ``archived=true``); line items name their product by ``hs_product_id``.
- Quotes (``HubSpotQuotes``, quotes.py): read with their own line items, deal and buyers; no webhooks, found
  by the change scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from closeloop.errors import Conflict, FatalError, IntegrationError, NotFound, ValidationFailed
from closeloop.models import CUSTOMER_FIELDS, DEAL_SYNC_FIELDS, CrmRef, Customer, Deal, LineItem, Product
from closeloop.paging import Page, paginate
from closeloop.ports import PropertyDefinition
from closeloop.vendors.hubspot.changes import HubSpotChanges
from closeloop.vendors.hubspot.client import hubspot_fault, next_after
from closeloop.vendors.hubspot.mapping import (
    RECURRING_PROPERTIES,
    clean,
    close_date,
    company_customer,
    contact_customer,
    decimal,
    epoch_ms,
    id_order,
    line_item,
    parse_time,
    person,
    product,
    stage_is_won,
    stage_lookup,
)
from closeloop.vendors.hubspot.quotes import HubSpotQuotes
from closeloop.vendors.hubspot.webhooks import SIGNATURE_VERSIONS, HubSpotWebhooks

if TYPE_CHECKING:
    import httpx

    from closeloop.http import AccessTokens


class HubSpotCrm(HubSpotWebhooks, HubSpotChanges, HubSpotQuotes):
    """CrmPort for HubSpot (private-app access token or an OAuth access token)."""

    name = "hubspot"
    CONTACT_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "firstname",
        "lastname",
        "email",
        "phone",
        "mobilephone",
        "address",
        "city",
        "state",
        "zip",
        "country",
        "lastmodifieddate",
    )
    COMPANY_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "name",
        "phone",
        "address",
        "address2",
        "city",
        "state",
        "zip",
        "country",
        "hs_lastmodifieddate",
    )
    #: HubSpot has no default tax-id property; this custom company property holds it (settable per deployment).
    tax_number_property = "vat_number"

    DEAL_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "dealname",
        "amount",
        "deal_currency_code",
        "dealstage",
        "pipeline",
        "closedate",
        "hubspot_owner_id",
        "hs_lastmodifieddate",
        *DEAL_SYNC_FIELDS,
    )
    LINE_ITEM_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "name",
        "quantity",
        "price",
        "amount",
        "hs_sku",
        "hs_product_id",
        "hs_discount_percentage",
        "discount",
        *RECURRING_PROPERTIES,
    )
    #: The custom product property holding the supplier's name (created by ``closeloop setup``).
    SUPPLIER_PROPERTY: ClassVar[str] = "closeloop_supplier"
    PRODUCT_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "name",
        "description",
        "price",
        "hs_sku",
        "hs_cost_of_goods_sold",
        "hs_lastmodifieddate",
        SUPPLIER_PROPERTY,
    )
    #: v3 association "type" of a deal's primary company (the unlabeled one is ``deal_to_company_unlabeled``).
    DEAL_PRIMARY_COMPANY_TYPE: ClassVar[str] = "deal_to_company"
    #: HubSpot defines no primary label from deals to contacts: the lowest contact id is taken.
    DEAL_PRIMARY_CONTACT_TYPE: ClassVar[str | None] = None
    #: Stage metadata is re-read after this long, or at once when a deal names a stage we do not know.
    PIPELINE_CACHE_SECONDS: ClassVar[float] = 600.0
    #: Where the portal id (and the app's UI domain) come from when not configured.
    ACCOUNT_INFO_PATH: ClassVar[str] = "/account-info/v3/details"
    UI_DOMAIN: ClassVar[str] = "app.hubspot.com"
    DEAL_URL: ClassVar[str] = "https://{domain}/contacts/{portal_id}/record/0-3/{deal_id}"
    #: canonical object type -> the default property group custom properties go into.
    PROPERTY_GROUPS: ClassVar[dict[str, str]] = {
        "deal": "dealinformation",
        "company": "companyinformation",
        "contact": "contactinformation",
        # HubSpot's CRM properties overview shows product properties in the group "productinformation".
        "product": "productinformation",
        # Quote properties' default group (see GUESSES["quote_property_group"]).
        "quote": "quoteinformation",
    }
    #: PropertyDefinition.type -> HubSpot (type, fieldType); datetime values display as a date picker.
    FIELD_TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "string": ("string", "text"),
        "number": ("number", "number"),
        "date": ("date", "date"),
        "datetime": ("datetime", "date"),
        "enumeration": ("enumeration", "select"),
    }

    def __init__(
        self,
        *,
        client_secret: str | Callable[[], str],
        access_token: str | Callable[[], str] = "",
        oauth_tokens: Callable[[], AccessTokens] | None = None,
        base_url: str = "https://api.hubapi.com",
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        portal_id: str | int | None = None,
        signature_min_version: str = "v3",
    ) -> None:
        """``access_token`` is a private app's token; when it is empty, ``oauth_tokens()`` builds the OAuth
        app's refreshing tokens (called once, at the first API call). ``portal_id`` builds deal links; when
        None it is read once from the account-info API. ``signature_min_version``: the weakest webhook
        signature accepted (v1, v2 or v3); raises ValueError for another value.
        """
        if signature_min_version not in SIGNATURE_VERSIONS:
            raise ValueError(f"signature_min_version must be one of {', '.join(SIGNATURE_VERSIONS)}")
        self._client_secret = client_secret
        self._access_token = access_token
        self._oauth_tokens = oauth_tokens
        self._min_version = SIGNATURE_VERSIONS.index(signature_min_version)
        self._base_url = base_url
        self._clock = clock
        self._transport = transport
        self._sleep = sleep
        self._http = None
        self._portal_id = str(portal_id) if portal_id is not None else ""
        self._ui_domain = self.UI_DOMAIN
        self._account_known = portal_id is not None
        self._stages: dict[str, dict[str, bool]] = {}  # pipeline id -> stage id -> won
        self._stages_at: float | None = None
        self._last_search: float | None = None

    # -- CRM v3 reads ------------------------------------------------------------------------------

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        if ref.object_type == "company":
            return self._company_customer(ref.object_id)
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        contact = self._get_object("contact", ref.object_id, self.CONTACT_PROPERTIES, "companies")
        if contact is None:
            return None
        companies = self._associated(contact, "contact", "company", "contact_to_company")
        if companies:
            return self._company_customer(companies[0])
        return contact_customer(ref, contact)

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """``resolve_customer`` for many refs in batch calls: contacts and their company links, then the
        companies, their people links and those people (about 5 calls per 100 objects, not 2 per object)."""
        unique = list(dict.fromkeys(refs))
        contact_ids = [r.object_id for r in unique if r.object_type == "contact"]
        company_ids = [r.object_id for r in unique if r.object_type == "company"]
        if len(unique) != len(contact_ids) + len(company_ids):
            raise ValueError("only contacts and companies resolve to customers")
        contacts = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        company_of = {k: v[0] for k, v in self._associations("contact", "company", list(contacts)).items() if v}
        wanted = list(dict.fromkeys([*company_ids, *company_of.values()]))
        companies = self._companies(wanted)
        result: dict[CrmRef, Customer | None] = {}
        for ref in unique:
            if ref.object_type == "company":
                result[ref] = companies.get(ref.object_id)
            elif ref.object_id in company_of:
                result[ref] = companies.get(company_of[ref.object_id])
            elif ref.object_id in contacts:
                result[ref] = contact_customer(ref, contacts[ref.object_id])
            else:
                result[ref] = None
        return result

    def _companies(self, company_ids: Sequence[str]) -> dict[str, Customer]:
        properties = (*self.COMPANY_PROPERTIES, self.tax_number_property)
        companies = self._batch_read("company", company_ids, properties)
        people_of = self._associations("company", "contact", [str(c["id"]) for c in companies])
        person_ids = list(dict.fromkeys(i for ids in people_of.values() for i in ids))
        people = {str(c["id"]): c for c in self._batch_read("contact", person_ids, self.CONTACT_PROPERTIES)}
        return {
            str(c["id"]): company_customer(
                c,
                [people[i] for i in people_of.get(str(c["id"]), []) if i in people],
                tax_number_property=self.tax_number_property,
            )
            for c in companies
        }

    def _company_customer(self, company_id: str) -> Customer | None:
        company = self._get_object(
            "company", company_id, (*self.COMPANY_PROPERTIES, self.tax_number_property), "contacts"
        )
        if company is None:
            return None
        contact_ids = self._associated(company, "company", "contact", "company_to_contact")
        by_id = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        return company_customer(
            company, [by_id[i] for i in contact_ids if i in by_id], tax_number_property=self.tax_number_property
        )

    # -- deals ---------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The deal with its line items, primary company, first contact and ``is_won`` resolved.

        Reads the deal (with its company/contact associations), its line-item associations (v4, paged) and
        the line items (batch read, 100 at a time). Pipelines are cached for ``PIPELINE_CACHE_SECONDS``.
        Returns None when the deal does not exist or is archived. Raises IntegrationError subclasses, and
        ValidationFailed when a number or date HubSpot sent cannot be parsed.
        """
        deal = self._get_object("deal", deal_id, self.DEAL_PROPERTIES, "companies,contacts")
        if deal is None:
            return None
        companies = self._associated(deal, "deal", "company", self.DEAL_PRIMARY_COMPANY_TYPE)
        contacts = self._associated(deal, "deal", "contact", self.DEAL_PRIMARY_CONTACT_TYPE)
        return self._deal(
            deal,
            company=self._ref("company", companies[0]) if companies else None,
            contact=self._ref("contact", contacts[0]) if contacts else None,
            line_items=self._line_items(
                str(deal["id"]), close_date((deal.get("properties") or {}).get("closedate"), str(deal["id"]))
            ),
        )

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Won deals (any pipeline) whose close date is in [closed_from, closed_before), by CRM search.

        Naive datetimes are taken as UTC. Without line items, company or contact: search results carry
        no associations, and reconcile compares deal amounts only. A range holding more than
        ``SEARCH_RESULT_CAP`` matches is split in halves until each part fits. Search calls are kept
        ``SEARCH_MIN_INTERVAL`` apart. Raises IntegrationError subclasses; FatalError when more than the cap
        share one millisecond of close date (no split can separate them).
        """
        won_stages = sorted({s for stages in self._stage_table()[0].values() for s, won in stages.items() if won})
        if not won_stages:
            return
        yield from self._won_in(epoch_ms(closed_from), epoch_ms(closed_before), won_stages, frozenset())

    def _won_in(self, start_ms: int, end_ms: int, stages: list[str], skip: frozenset[str]) -> Iterator[Deal]:
        """One search query over [start_ms, end_ms); ``skip`` = ids already yielded by an enclosing range."""
        if start_ms >= end_ms:
            return
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "closedate", "operator": "GTE", "value": str(start_ms)},
                        {"propertyName": "closedate", "operator": "LT", "value": str(end_ms)},
                        {"propertyName": "dealstage", "operator": "IN", "values": stages},
                    ]
                }
            ],
            "properties": list(self.DEAL_PROPERTIES),
            # A unique, immutable sort key keeps offset paging stable while deals change.
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": self.SEARCH_PAGE_SIZE,
        }
        yielded: set[str] = set()
        seen = 0
        split: frozenset[str] | None = None  # the range must be split: skip these ids there (more added below)

        def fetch(after: str | None) -> Page[Any, str | None]:
            nonlocal seen, split
            page = self._search("deal", {**body, "after": after} if after is not None else body)
            if after is None and int(page.get("total") or 0) > self.SEARCH_RESULT_CAP:
                split = skip
                return Page((), None)
            results = page.get("results") or []
            seen += len(results)
            following = next_after(page)
            if following and seen >= self.SEARCH_RESULT_CAP:
                # ``total`` was absent or grew while paging: split what is left, skipping what we gave out.
                split = skip | yielded  # with this page's ids, once they are given out below
                return Page(results, None)
            return Page(results, following)

        for result in paginate(fetch, None, vendor=self.name, what="won deals search"):
            object_id = str(result["id"])
            if object_id not in skip and object_id not in yielded:
                yielded.add(object_id)
                yield self._deal(result)
        if split is not None:
            yield from self._split(start_ms, end_ms, stages, split | yielded)

    def _split(self, start_ms: int, end_ms: int, stages: list[str], skip: frozenset[str]) -> Iterator[Deal]:
        if end_ms - start_ms < 2:
            raise FatalError(
                f"more than {self.SEARCH_RESULT_CAP} won deals closed at {start_ms} ms: the search cannot page them",
                vendor=self.name,
            )
        middle = start_ms + (end_ms - start_ms) // 2
        yield from self._won_in(start_ms, middle, stages, skip)
        yield from self._won_in(middle, end_ms, stages, skip)

    def _deal(
        self,
        obj: Any,
        *,
        company: CrmRef | None = None,
        contact: CrmRef | None = None,
        line_items: tuple[LineItem, ...] = (),
    ) -> Deal:
        props = obj.get("properties") or {}
        deal_id = str(obj["id"])
        pipeline, stage = clean(props.get("pipeline")), clean(props.get("dealstage"))
        return Deal(
            ref=self._ref("deal", deal_id),
            name=clean(props.get("dealname")),
            amount=decimal(props.get("amount"), f"deal {deal_id} amount"),
            currency=clean(props.get("deal_currency_code")).upper(),
            stage=stage,
            pipeline=pipeline,
            is_won=self._is_won(pipeline, stage),
            close_date=close_date(props.get("closedate"), deal_id),
            owner_id=clean(props.get("hubspot_owner_id")),
            company=company,
            contact=contact,
            line_items=line_items,
            url=self._deal_url(deal_id),
            updated_at=parse_time(props.get("hs_lastmodifieddate") or obj.get("updatedAt")),
            synced={name: clean(props.get(name)) for name in DEAL_SYNC_FIELDS if props.get(name) is not None},
        )

    def _ref(self, object_type: str, object_id: str) -> CrmRef:
        return CrmRef.model_validate({"crm": self.name, "object_type": object_type, "object_id": object_id})

    def _line_items(self, deal_id: str, close: date | None = None) -> tuple[LineItem, ...]:
        path = f"/crm/v4/objects/{self.PATHS['deal']}/{deal_id}/associations/line_items"

        def fetch(after: str | None) -> Page[str, str | None]:
            params: dict[str, Any] = {"limit": self.ASSOCIATION_PAGE_SIZE}
            if after is not None:
                params["after"] = after
            page = self.http.request("GET", path, params=params).json()
            return Page([str(r["toObjectId"]) for r in page.get("results") or []], next_after(page))

        ids = list(paginate(fetch, None, vendor=self.name, what=f"line items of deal {deal_id}"))
        unique = sorted(set(ids), key=id_order)
        if not unique:
            return ()
        # A line item deleted between the two reads is simply absent from the batch answer (207).
        read = self._batch_read("line_item", unique, self.LINE_ITEM_PROPERTIES)
        return tuple(line_item(r, close) for r in sorted(read, key=lambda r: id_order(str(r["id"]))))

    # -- the product library (CatalogueCrm) --------------------------------------------------------------

    def get_product(self, product_id: str) -> Product | None:
        """The product by id; an archived (deleted in HubSpot, restorable) one with ``archived`` set, read
        again with ``archived=true`` only when the live read finds none. None when HubSpot has neither.
        Raises IntegrationError subclasses, ValidationFailed for a price or cost that is not a number."""
        found = self._get_object("product", product_id, self.PRODUCT_PROPERTIES, "")
        if found is None:
            found = self._get_object("product", product_id, self.PRODUCT_PROPERTIES, "", archived=True)
        return None if found is None else product(found, supplier_property=self.SUPPLIER_PROPERTY)

    def iter_products(self) -> Iterator[Product]:
        """Every product, the live ones then the archived ones (two paged list reads, 100 a page)."""
        for archived in (False, True):
            for found in self._list_objects("product", self.PRODUCT_PROPERTIES, archived=archived):
                yield product(found, supplier_property=self.SUPPLIER_PROPERTY)

    # -- pipelines and links ---------------------------------------------------------------------------

    def _stage_table(self, *, force: bool = False) -> tuple[dict[str, dict[str, bool]], bool]:
        """pipeline id -> stage id -> won, and whether it was (re)read just now."""
        now = self._clock()
        if not force and self._stages_at is not None and now - self._stages_at < self.PIPELINE_CACHE_SECONDS:
            return self._stages, False
        pipelines = self.http.request("GET", f"/crm/v3/pipelines/{self.PATHS['deal']}").json().get("results") or []
        self._stages = {
            str(p["id"]): {str(s["id"]): stage_is_won(s.get("metadata") or {}) for s in p.get("stages") or []}
            for p in pipelines
        }
        self._stages_at = now
        return self._stages, True

    def _is_won(self, pipeline: str, stage: str) -> bool:
        if not stage:
            return False
        table, fresh = self._stage_table()
        won = stage_lookup(table, pipeline, stage)
        if won is None and not fresh:  # a stage or pipeline created since we cached them
            won = stage_lookup(self._stage_table(force=True)[0], pipeline, stage)
        return bool(won)

    def _deal_url(self, deal_id: str) -> str:
        if not self._account_known:
            try:
                info = self.http.request("GET", self.ACCOUNT_INFO_PATH).json()
            except FatalError:  # not served (404) or not allowed (403): links stay empty, and we stop asking
                info = {}
            self._account_known = True
            if isinstance(info, dict) and info.get("portalId"):
                self._portal_id = str(info["portalId"])
                self._ui_domain = clean(info.get("uiDomain")) or self._ui_domain
        if not self._portal_id:
            return ""
        return self.DEAL_URL.format(domain=self._ui_domain, portal_id=self._portal_id, deal_id=deal_id)

    # -- writes ----------------------------------------------------------------------------------------

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """Write properties on deals by id, ``MAX_BATCH`` per batch update; "" clears a value.

        HubSpot validates a batch as a whole (400: nothing in it is written) but reports unknown ids per
        batch (207: the others are written). Every batch is sent even when an earlier one failed; then the
        first failure is raised: ValidationFailed (a rejected value or property), NotFound (naming the ids
        HubSpot could not find). Retriable errors (429, 5xx, 401) are raised at once; a retry is harmless.
        """
        self._raise_first(self._batch_update("deal", updates))

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """Write properties on companies and contacts (one batch update per type and ``MAX_BATCH``).

        Raises ValueError for other object types, otherwise as ``update_deals``.
        """
        by_type: dict[str, dict[str, Mapping[str, str]]] = {}
        for ref, properties in updates.items():
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"{ref} is not a customer (company or contact)")
            by_type.setdefault(ref.object_type, {})[ref.object_id] = properties
        self._raise_first([e for object_type, chunk in by_type.items() for e in self._batch_update(object_type, chunk)])

    @staticmethod
    def _raise_first(errors: Sequence[IntegrationError]) -> None:
        if errors:
            raise errors[0]

    def _batch_update(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> list[IntegrationError]:
        """Send every batch; return the fatal failures (a 400 batch, ids reported missing, other 207 errors)."""
        from closeloop.http import Fault, typed_error  # noqa: PLC0415 - keep httpx off the webhook path

        items = list(updates.items())
        errors: list[IntegrationError] = []
        missing: list[str] = []
        for start in range(0, len(items), self.MAX_BATCH):
            inputs = [{"id": i, "properties": dict(p)} for i, p in items[start : start + self.MAX_BATCH]]
            try:
                response = self.http.request(
                    "POST",
                    f"/crm/v3/objects/{self.PATHS[object_type]}/batch/update",
                    json={"inputs": inputs},
                    ok=(200, 207),
                )
            except FatalError as exc:
                errors.append(exc)
                continue
            if response.status_code != 207:
                continue
            for error in response.json().get("errors") or []:
                fault = hubspot_fault(error, default=ValidationFailed)
                if fault.error is NotFound:
                    missing.extend(str(i) for i in ((error.get("context") or {}).get("ids") or []))
                else:
                    what = f"HubSpot rejected part of a {object_type} batch update"
                    errors.append(typed_error(207, fault, what, vendor=self.name))
        if missing:
            what = f"HubSpot has no {object_type} with id(s) {', '.join(missing)}"
            errors.append(typed_error(207, Fault(code="OBJECT_NOT_FOUND", error=NotFound), what, vendor=self.name))
        return errors

    #: Canonical customer field -> the company property resolve_customer reads it from (tax: see below).
    COMPANY_FIELD_PROPERTIES: ClassVar[dict[str, str]] = {
        "name": "name",
        "address.line1": "address",
        "address.line2": "address2",
        "address.city": "city",
        "address.region": "state",
        "address.postal_code": "zip",
        "address.country": "country",
    }
    #: Canonical customer field -> the contact property it is read from (a company's primary person, or a
    #: contact billed on its own; phone is handled apart: ``phone`` wins over ``mobilephone``).
    CONTACT_FIELD_PROPERTIES: ClassVar[dict[str, str]] = {
        "first_name": "firstname",
        "last_name": "lastname",
        "email": "email",
    }
    #: A contact's own address as resolve_customer reads it (a contact has no second address line).
    CONTACT_ADDRESS_PROPERTIES: ClassVar[dict[str, str]] = {
        "address.line1": "address",
        "address.city": "city",
        "address.region": "state",
        "address.postal_code": "zip",
        "address.country": "country",
    }

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer fields where ``resolve_customer`` reads them; return those it cannot hold.

        A contact that belongs to a company is written as that company (the billable customer). On a
        company: name, address and tax number go on the company; email, first and last name on its
        primary person (returned when it has none); the phone where it is read from (the person's when it
        has one, else the company's; "" clears both). On a contact billed alone: its own properties; its
        name is first + last name (returned unless it already equals that), and it holds no tax number and
        no second address line. "people" is always returned. One PATCH per object written (at most two).
        Raises NotFound when the record is gone, ValueError for an unknown field name or a deal ref,
        IntegrationError subclasses as the API answers.
        """
        unknown = sorted(set(values) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(f"not customer fields: {', '.join(unknown)}")
        if ref.object_type not in ("company", "contact"):
            raise ValueError(f"no customer for a {ref.object_type}")
        company_id = ref.object_id if ref.object_type == "company" else None
        contact: Any = None
        if company_id is None:
            contact = self._get_object("contact", ref.object_id, self.CONTACT_PROPERTIES, "companies")
            if contact is None:
                raise NotFound(f"HubSpot has no contact {ref.object_id}", vendor=self.name, status=404)
            companies = self._associated(contact, "contact", "company", "contact_to_company")
            company_id = companies[0] if companies else None
        writes: dict[tuple[str, str], dict[str, str]] = {}
        if company_id is not None:
            unwritable = self._company_field_writes(company_id, values, writes)
        else:
            unwritable = self._contact_field_writes(contact, values, writes)
        for (object_type, object_id), properties in writes.items():
            self.http.request(
                "PATCH", f"/crm/v3/objects/{self.PATHS[object_type]}/{object_id}", json={"properties": properties}
            )
        return unwritable

    def _company_field_writes(
        self, company_id: str, values: Mapping[str, str], writes: dict[tuple[str, str], dict[str, str]]
    ) -> list[str]:
        properties = (*self.COMPANY_PROPERTIES, self.tax_number_property)
        company = self._get_object("company", company_id, properties, "contacts")
        if company is None:
            raise NotFound(f"HubSpot has no company {company_id}", vendor=self.name, status=404)
        contact_ids = self._associated(company, "company", "contact", "company_to_contact")
        people = {str(c["id"]): c for c in self._batch_read("contact", contact_ids, self.CONTACT_PROPERTIES)}
        primary = next((people[i] for i in contact_ids if i in people), None)
        company_props = writes.setdefault(("company", company_id), {})
        person_props = writes.setdefault(("contact", str(primary["id"])), {}) if primary is not None else {}
        field_properties = {**self.COMPANY_FIELD_PROPERTIES, "tax_number": self.tax_number_property}
        unwritable: list[str] = []
        for name, value in values.items():
            if name in field_properties:
                company_props[field_properties[name]] = value
            elif name in self.CONTACT_FIELD_PROPERTIES and primary is not None:
                person_props[self.CONTACT_FIELD_PROPERTIES[name]] = value
            elif name == "phone":
                person_phone = person(primary).phone if primary is not None else ""
                if person_phone:
                    self._phone_writes(primary, value, person_props)
                if not person_phone or not value:  # the company's phone is read when the person has none
                    company_props["phone"] = value
            else:
                unwritable.append(name)
        self._drop_empty(writes)
        return unwritable

    def _contact_field_writes(
        self, contact: Any, values: Mapping[str, str], writes: dict[tuple[str, str], dict[str, str]]
    ) -> list[str]:
        props = writes.setdefault(("contact", str(contact["id"])), {})
        own = person(contact)
        first, last = values.get("first_name", own.first_name), values.get("last_name", own.last_name)
        unwritable: list[str] = []
        for name, value in values.items():
            if name in self.CONTACT_FIELD_PROPERTIES:
                props[self.CONTACT_FIELD_PROPERTIES[name]] = value
            elif name in self.CONTACT_ADDRESS_PROPERTIES:
                props[self.CONTACT_ADDRESS_PROPERTIES[name]] = value
            elif name == "phone":
                self._phone_writes(contact, value, props)
            elif not (name == "name" and value == " ".join(p.strip() for p in (first, last) if p.strip())):
                unwritable.append(name)
        self._drop_empty(writes)
        return unwritable

    @staticmethod
    def _phone_writes(contact: Any, value: str, props: dict[str, str]) -> None:
        """A person's phone is ``phone``, else ``mobilephone``: clearing it clears both."""
        props["phone"] = value
        if not value and clean((contact.get("properties") or {}).get("mobilephone")):
            props["mobilephone"] = ""

    @staticmethod
    def _drop_empty(writes: dict[tuple[str, str], dict[str, str]]) -> None:
        for key in [k for k, v in writes.items() if not v]:
            del writes[key]

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the custom properties of ``object_type`` (deal, company, contact, product) that do not exist yet.

        Lists the type's properties once, then creates each missing definition in the type's default group.
        A 409 (created meanwhile by someone else) counts as existing. Returns the names created here.
        An existing property is left as it is, even if its type differs. Raises ValueError for an unknown
        object or property type, ValidationFailed when HubSpot rejects a definition.
        """
        group = self.PROPERTY_GROUPS.get(object_type)
        if group is None:
            raise ValueError(f"no custom properties for a {object_type}")
        path = f"/crm/v3/properties/{self.PATHS[object_type]}"
        existing = {str(p["name"]) for p in self.http.request("GET", path).json().get("results") or []}
        created: list[str] = []
        for definition in definitions:
            if definition.name in existing:
                continue
            try:
                self.http.request("POST", path, json=self._property_body(definition, group))
            except Conflict:
                pass
            else:
                created.append(definition.name)
            existing.add(definition.name)
        return created

    def _property_body(self, definition: PropertyDefinition, group: str) -> dict[str, Any]:
        try:
            hubspot_type, field_type = self.FIELD_TYPES[definition.type]
        except KeyError:
            raise ValueError(f"unsupported property type {definition.type!r}") from None
        body: dict[str, Any] = {
            "name": definition.name,
            "label": definition.label,
            "type": hubspot_type,
            "fieldType": field_type,
            "groupName": group,
            "description": definition.description,
        }
        if definition.type == "enumeration":
            # HubSpot's OptionInput requires label, value and hidden; displayOrder fixes the order shown.
            body["options"] = [
                {"label": option, "value": option, "displayOrder": order, "hidden": False}
                for order, option in enumerate(definition.options)
            ]
        return body
