"""The QuickBooks adapter's query paging and error reading, against a recorded transport (no sandbox)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from closeloop.errors import AuthExpired, Conflict, NotFound, Unavailable, ValidationFailed
from closeloop.models import CrmRef, Customer
from closeloop.oauth import RefreshingTokens
from closeloop.paging import PagingLoop
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting

REALM = "9341452391187452"


class StaticTokens:
    def access_token(self, stale: str | None = None) -> str:
        return "token"


def books(
    answer: Callable[[httpx.Request], httpx.Response], cls: type[QuickBooksAccounting] = QuickBooksAccounting
) -> QuickBooksAccounting:
    return cls(
        base_url="https://qbo.test",
        tokens=cast(RefreshingTokens, StaticTokens()),
        realm_id=lambda: REALM,
        transport=httpx.MockTransport(answer),
        sleep=lambda _: None,
    )


def statement(request: httpx.Request) -> str:
    return parse_qs(urlsplit(str(request.url)).query)["query"][0]


def customers(*ids: int) -> dict[str, Any]:
    return {"QueryResponse": {"Customer": [{"Id": str(i), "DisplayName": f"C{i}"} for i in ids]}}


class TwoPerPage(QuickBooksAccounting):
    MAX_RESULTS = 2


def test_a_query_is_paged_by_startposition_until_a_short_page() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(statement(request))
        pages = {1: customers(1, 2), 3: customers(3, 4), 5: customers(5)}
        start = int(sent[-1].split("STARTPOSITION ")[1].split()[0])
        return httpx.Response(200, json=pages[start])

    # When a name lookup matches five customers, two to a page
    found = books(answer, TwoPerPage).find_customers(name="Acme Ltd")
    # Then three pages were read, in order, each STARTPOSITION after the rows read, and the short one ended it
    assert [c.id for c in found] == ["1", "2", "3", "4", "5"]
    assert [s.split("ORDERBY Id ")[1] for s in sent] == [
        "STARTPOSITION 1 MAXRESULTS 2",
        "STARTPOSITION 3 MAXRESULTS 2",
        "STARTPOSITION 5 MAXRESULTS 2",
    ]


def test_the_same_rows_again_stop_the_paging_with_a_fatal_error() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(statement(request))
        return httpx.Response(200, json=customers(1, 2))  # STARTPOSITION ignored

    # When QBO answers every page with the first page's rows
    with pytest.raises(PagingLoop, match="same Customer rows at position 3"):
        books(answer, TwoPerPage).find_customers(name="Acme Ltd")
    # Then the second answer stopped it: no third request
    assert len(sent) == 2


def fault(status: int, *errors: tuple[str, str], lower: bool = False) -> httpx.Response:
    key, error = ("fault", "error") if lower else ("Fault", "Error")
    body = {
        key: {error: [{"Message": m, "Detail": f"{m} detail", "code": c} for c, m in errors], "type": "ValidationFault"}
    }
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"intuit_tid": "tid-1"})


def acme(name: str = "Acme Ltd") -> Customer:
    return Customer(ref=CrmRef(crm="hubspot", object_type="company", object_id="1"), name=name)


def test_a_refused_write_raises_the_error_its_fault_code_means() -> None:
    # Given QBO refusing a name taken by a vendor (6240) and a read of an unknown id (610), both as 400s
    taken = books(lambda request: fault(400, ("6240", "Duplicate Name Exists Error")))
    unknown = books(lambda request: fault(400, ("610", "Object Not Found")))
    invalid = books(lambda request: fault(400, ("2020", "Required param missing")))
    # Then the name is a Conflict carrying QBO's code, status and request id
    with pytest.raises(Conflict, match=r"\[6240\] Duplicate Name Exists Error") as conflict:
        taken.create_customer(acme(), number="n-1", idempotency_key="k-1")
    assert (conflict.value.status, conflict.value.request_id) == (400, "tid-1")
    # And the unknown id reads as absent, and another code as ValidationFailed naming it
    assert unknown.get_customer("99") is None
    with pytest.raises(ValidationFailed, match=r"\[2020\] Required param missing"):
        invalid.create_customer(acme(), number="n-1", idempotency_key="k-1")


def test_a_server_fault_stays_retriable_whatever_its_code() -> None:
    # Given a 503 whose body names 610 (not found)
    gateway = books(lambda request: fault(503, ("610", "Object Not Found")))
    # Then it is Unavailable (retried by the queue), not a NotFound read as "absent"
    with pytest.raises(Unavailable, match=r"\[610\]"):
        gateway.get_customer("7")


def test_the_gateways_lower_case_fault_is_read_too() -> None:
    refused = books(lambda request: fault(401, ("3200", "AuthenticationFailed"), lower=True))
    with pytest.raises(AuthExpired, match=r"\[3200\] AuthenticationFailed"):
        refused.get_customer("7")


def test_a_stale_synctoken_is_read_again_and_retried_once() -> None:
    posts: list[dict[str, Any]] = []

    def answer(request: httpx.Request, stale: int) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"Customer": {"Id": "7", "SyncToken": str(len(posts))}})
        posts.append(json.loads(request.content))
        if len(posts) <= stale:
            return fault(400, ("5010", "Stale Object Error"))
        return httpx.Response(200, json={"Customer": {"Id": "7", "DisplayName": "Acme Limited"}})

    # When the first update meets a stale SyncToken
    updated = books(lambda r: answer(r, stale=1)).update_customer(
        "7", acme("Acme Limited"), ["name"], number=None, idempotency_key="k-1"
    )
    # Then the record was read again and the update resent with its new SyncToken
    assert updated.name == "Acme Limited"
    assert [p["SyncToken"] for p in posts] == ["0", "1"]
    # And a second stale answer is a ValidationFailed
    posts.clear()
    with pytest.raises(ValidationFailed, match="5010"):
        books(lambda r: answer(r, stale=2)).update_customer(
            "7", acme("Acme Limited"), ["name"], number=None, idempotency_key="k-1"
        )
    assert len(posts) == 2


def test_batch_item_faults_are_typed_like_answers() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        items = [
            {"bId": "0", "Customer": {"Id": "1", "DisplayName": "Acme Ltd"}},
            {"bId": "1", "Fault": {"Error": [{"Message": "Duplicate Name Exists Error", "code": "6240"}]}},
            {"bId": "2", "Fault": {"Error": [{"Message": "Object Not Found", "code": "610"}]}},
            {"bId": "3", "Fault": {"Error": [{"Message": "Invalid Email", "code": "2170"}]}},
        ]  # bId 4: no answer at all
        return httpx.Response(200, json={"BatchItemResponse": items})

    # When five customers are created in one batch and QBO refuses three items and drops one
    results = books(answer).create_customers([(acme(f"C{i}"), f"n-{i}") for i in range(5)], idempotency_key="k")
    # Then each refused item is the error its code means, inside the 200 answer
    assert [type(r).__name__ for r in results] == [
        "AccountingCustomer",
        "Conflict",
        "NotFound",
        "ValidationFailed",
        "ValidationFailed",
    ]
    assert isinstance(results[2], NotFound)
    assert all(r.status == 200 for r in results[1:] if isinstance(r, ValidationFailed | Conflict | NotFound))
    assert "[2170] Invalid Email" in str(results[3]) and "no answer" in str(results[4])
