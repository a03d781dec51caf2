"""Canonical, vendor-free models: what the sync logic works with.

Adapters translate vendor payloads into these and back. Identifiers of CRM objects are
``CrmRef(crm, object_type, object_id)``; object types are the canonical ``contact``, ``company``, ``deal``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ObjectType = Literal["contact", "company", "deal", "line_item", "product"]
Pipeline = Literal["contacts", "deals"]

#: Which worker pipeline handles events about each object type.
PIPELINE_OF: dict[str, Pipeline] = {"contact": "contacts", "company": "contacts", "deal": "deals"}


class CrmRef(BaseModel):
    """A CRM object's identity, e.g. ``hubspot/company/1000001``."""

    model_config = ConfigDict(frozen=True)

    crm: str
    object_type: ObjectType
    object_id: str

    def __str__(self) -> str:
        return f"{self.crm}/{self.object_type}/{self.object_id}"


class SyncEvent(BaseModel):
    """One change notification from a CRM, normalised. Carries ids, never field values of people."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    event_id: str
    kind: Literal["created", "changed", "deleted", "merged", "restored", "associated", "other"]
    occurred_at: datetime
    source_type: str = Field(description="The vendor's own event type, e.g. contact.propertyChange")
    property_name: str | None = None
    change_source: str | None = None
    actor: str | None = Field(None, description="Who made the change, as the CRM reports it (e.g. userId:45678)")
    dedupe_key: str = Field(description="Stable across redeliveries of the same event")


class WorkMessage(BaseModel):
    """The body of one SQS work message: the events of one webhook delivery for one pipeline."""

    pipeline: Pipeline
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    events: list[SyncEvent]


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)

    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""

    def is_empty(self) -> bool:
        return not any((self.line1, self.line2, self.city, self.region, self.postal_code, self.country))


class Person(BaseModel):
    model_config = ConfigDict(frozen=True)

    crm_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""


class Customer(BaseModel):
    """A billable party as the CRM knows it: a company with its people, or a contact on its own."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    name: str
    email: str = ""
    phone: str = ""
    tax_number: str = ""
    first_name: str = ""
    last_name: str = ""
    address: Address = Address()
    people: tuple[Person, ...] = ()
    updated_at: datetime | None = None


class AccountingCustomer(BaseModel):
    """A customer record as the accounting system holds it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    number: str = ""
    email: str = ""
    tax_number: str = ""
    status: str = "ACTIVE"
    fields: dict[str, str] = Field(default_factory=dict, description="Comparable field values, see CUSTOMER_FIELDS")


#: Canonical customer fields that sync compares and writes, in a stable order.
CUSTOMER_FIELDS: tuple[str, ...] = (
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tax_number",
    "address.line1",
    "address.line2",
    "address.city",
    "address.region",
    "address.postal_code",
    "address.country",
    "people",
)


def customer_fields(customer: Customer) -> dict[str, str]:
    """Flatten a customer into the comparable ``CUSTOMER_FIELDS`` values (people as a stable string)."""
    address = customer.address
    people = ";".join(
        f"{p.first_name}|{p.last_name}|{p.email}" for p in sorted(customer.people, key=lambda p: p.crm_id)
    )
    return {
        "name": customer.name,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "email": customer.email,
        "phone": customer.phone,
        "tax_number": customer.tax_number,
        "address.line1": address.line1,
        "address.line2": address.line2,
        "address.city": address.city,
        "address.region": address.region,
        "address.postal_code": address.postal_code,
        "address.country": address.country,
        "people": people,
    }
