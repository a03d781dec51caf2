"""Record matching for backfill: for each CRM customer, the best accounting candidate, a score and a verdict.

Exact evidence is confident: our external-number stamp, an equal normalised tax number, an email that only
one candidate carries, or an equal normalised name with an agreeing postcode, address or phone. Otherwise a
weighted score combines a name similarity (rarity-weighted token overlap, tolerant of typos through
Jaro-Winkler, with case, punctuation, accents, word order and legal suffixes ignored) with supporting
evidence (phone digits, postcode, city, street address, email domain or mailbox), less a little for each
field that is present on both sides and disagrees.

``verdict`` is ``confident`` (write the mapping) from ``confident`` up, ``uncertain`` (a person reviews it)
from ``review`` up; below that ``match`` answers None (create). ``match_all`` adds the one-candidate-one-
claimant rule: a candidate confidently claimed by two CRM records is uncertain for both, unless exactly one of
them carries our stamp.

Speed comes from blocking: candidates are indexed by number, tax number, email, email domain, name tokens,
a sorted-token name key, consonant skeletons of tokens, postcode, postcode + name initial and phone digits.
A CRM customer is compared only with candidates sharing a key, blocks larger than ``max_block`` never block
(so "ltd" or a common surname pulls in nothing), and only the ``max_compare`` best-voted candidates are
scored. Pure standard library; nothing here logs field values.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from closeloop.errors import ConfigurationError
from closeloop.models import AccountingCustomer, CrmRef, Customer
from closeloop.sync.contacts import LEGAL_SUFFIXES, external_number, normalise_name, normalise_tax_number

Verdict = Literal["confident", "uncertain"]

CONFIDENT = 0.8
REVIEW = 0.55
#: A blocking key shared by more candidates than this is not distinctive and pulls in nobody.
MAX_BLOCK = 50
#: Candidates scored per CRM customer: the best-voted among those sharing any key.
MAX_COMPARE = 24
#: Votes a candidate needs from shared blocking keys to be compared at all.
MIN_VOTES = 2.0
#: Two candidates this close at the top are ambiguous: neither is confident.
AMBIGUITY_MARGIN = 0.03

_STOPWORDS = frozenset({"and", "the", "of", "de", "la", "le", "der", "und", "et"})
_FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "proton.me",
        "protonmail.com",
    }
)
_ADDRESS_WORDS = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "av": "ave",
    "drive": "dr",
    "place": "pl",
    "court": "ct",
    "crescent": "cres",
    "boulevard": "blvd",
    "blv": "blvd",
    "lane": "ln",
    "highway": "hwy",
    "terrace": "tce",
    "circuit": "cct",
    "parade": "pde",
    "square": "sq",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
}
_VOWELS = re.compile(r"[aeiouy]")
#: Token similarity below this counts as no match (Jaro-Winkler of typo'd words is about 0.9 and up).
_TOKEN_MIN = 0.88
#: Weights of supporting evidence, combined as a noisy-OR (each is the chance it alone is convincing).
_SUPPORT = {"phone": 0.7, "address": 0.55, "postcode": 0.35, "domain": 0.35, "mailbox": 0.25, "city": 0.15}
_CONFLICT_PENALTY = 0.05


@dataclass(frozen=True)
class Match:
    """The best accounting candidate for one CRM customer. Ids and reason words only: safe to log."""

    candidate_id: str
    score: float
    verdict: Verdict
    reasons: tuple[str, ...] = ()


def _ascii_lower(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def name_tokens(name: str) -> tuple[str, ...]:
    """The comparable words of a name: ``normalise_name`` words less stopwords and legal suffixes anywhere."""
    words = normalise_name(name).split()
    kept = tuple(w for w in words if w not in _STOPWORDS and w not in LEGAL_SUFFIXES)
    return kept or tuple(words)


def _skeleton(token: str) -> str:
    """First letter plus consonants, doubled letters collapsed: equal for many vowel typos."""
    rest = _VOWELS.sub("", token[1:])
    return token[0] + re.sub(r"(.)\1+", r"\1", rest)


def _postcode(value: str) -> str:
    return re.sub(r"[^0-9a-z]", "", value.lower())


def _phone(value: str) -> str:
    """The last 8 digits: trunk prefixes, country codes and punctuation ignored."""
    digits = re.sub(r"\D", "", value)
    return digits[-8:] if len(digits) >= 6 else ""


def _address_tokens(value: str) -> tuple[str, ...]:
    words = re.findall(r"[a-z0-9]+", _ascii_lower(value))
    return tuple(_ADDRESS_WORDS.get(w, w) for w in words)


@lru_cache(maxsize=1 << 16)
def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler similarity in [0, 1] (prefix scale 0.1, prefix up to 4)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    taken = [False] * len(b)
    matched_a = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not taken[j] and b[j] == ch:
                taken[j] = True
                matched_a.append(ch)
                break
    m = len(matched_a)
    if not m:
        return 0.0
    matched_b = [b[j] for j in range(len(b)) if taken[j]]
    transpositions = sum(x != y for x, y in zip(matched_a, matched_b, strict=True)) / 2
    jaro = (m / len(a) + m / len(b) + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


def _token_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 2:
        return 0.0  # short words: a one-letter change is another word; typos change a length by 2 at most
    sim = jaro_winkler(a, b) if a < b else jaro_winkler(b, a)
    return sim if sim >= _TOKEN_MIN else 0.0


@dataclass(slots=True)
class _Record:
    """The comparable form of one party (an accounting candidate or a CRM customer)."""

    id: str
    number: str
    tax: str
    emails: tuple[str, ...]
    name_key: str
    tokens: tuple[str, ...]
    postcode: str
    city: str
    address: tuple[str, ...]
    phones: frozenset[str]
    domains: frozenset[str]
    mailboxes: frozenset[str]


def _record(
    id_: str, number: str, tax: str, emails: Iterable[str], name: str, fields: dict[str, str], phones: Iterable[str]
) -> _Record:
    addresses = tuple(dict.fromkeys(e.strip().lower() for e in emails if e.strip()))
    return _Record(
        id=id_,
        number=number.casefold(),
        tax=normalise_tax_number(tax),
        emails=addresses,
        name_key=normalise_name(name),
        tokens=name_tokens(name),
        postcode=_postcode(fields.get("address.postal_code", "")),
        city=" ".join(re.findall(r"[a-z0-9]+", _ascii_lower(fields.get("address.city", "")))),
        address=_address_tokens(fields.get("address.line1", "")),
        phones=frozenset(p for p in map(_phone, phones) if p),
        domains=frozenset(e.rsplit("@", 1)[1] for e in addresses if "@" in e) - _FREE_MAIL,
        mailboxes=frozenset(e.split("@", 1)[0] for e in addresses if "@" in e),
    )


def _candidate_record(candidate: AccountingCustomer) -> _Record:
    fields = candidate.fields
    name = candidate.name or f"{fields.get('first_name', '')} {fields.get('last_name', '')}"
    email = candidate.email or fields.get("email", "")
    tax = candidate.tax_number or fields.get("tax_number", "")
    return _record(candidate.id, candidate.number, tax, [email], name, fields, [fields.get("phone", "")])


def _customer_record(customer: Customer) -> _Record:
    address = customer.address
    fields = {"address.postal_code": address.postal_code, "address.city": address.city, "address.line1": address.line1}
    name = customer.name or f"{customer.first_name} {customer.last_name}"
    emails = [customer.email, *(p.email for p in customer.people)]
    phones = [customer.phone, *(p.phone for p in customer.people)]
    return _record(str(customer.ref), external_number(customer.ref), customer.tax_number, emails, name, fields, phones)


def _block_keys(record: _Record) -> Iterator[tuple[str, float]]:
    """Fuzzy blocking keys with their vote (exact identifiers are looked up separately)."""
    if record.name_key:
        yield "n:" + " ".join(sorted(record.tokens)), 4.0
        yield "j:" + "".join(sorted(record.tokens)), 2.0
    for token in set(record.tokens):
        yield "t:" + token, 2.0
        if len(token) >= 4:
            yield "s:" + _skeleton(token), 1.0
    for domain in record.domains:
        yield "d:" + domain, 1.0
    if record.postcode:
        yield "p:" + record.postcode, 1.0
        for token in set(record.tokens):
            yield f"pi:{record.postcode}:{token[0]}", 1.5
    numbers = [t for t in record.address if t.isdigit()]
    words = [t for t in record.address if not t.isdigit()]
    if numbers and words and (record.postcode or record.city):
        yield f"a:{record.postcode or record.city}:{numbers[0]}:{words[0]}", 2.0
    for phone in record.phones:
        yield "f:" + phone, 3.0


@dataclass
class _Index:
    by_number: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_tax: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_email: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    blocks: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


class Matcher:
    """Finds, for CRM customers, the best of a fixed set of accounting candidates (see the module doc).

    Raises ConfigurationError when ``review`` > ``confident`` or either lies outside [0, 1].
    """

    def __init__(
        self,
        candidates: Iterable[AccountingCustomer],
        *,
        confident: float = CONFIDENT,
        review: float = REVIEW,
        max_block: int = MAX_BLOCK,
        max_compare: int = MAX_COMPARE,
    ) -> None:
        if not 0.0 <= review <= confident <= 1.0:
            raise ConfigurationError(f"matching thresholds must satisfy 0 <= review <= confident <= 1 ({review=})")
        self.confident = confident
        self.review = review
        self.max_block = max_block
        self.max_compare = max_compare
        self._records: list[_Record] = []
        self._index = _Index()
        token_counts: Counter[str] = Counter()
        for position, candidate in enumerate(candidates):
            record = _candidate_record(candidate)
            self._records.append(record)
            token_counts.update(set(record.tokens))
            if record.number:
                self._index.by_number[record.number].append(position)
            if record.tax:
                self._index.by_tax[record.tax].append(position)
            for email in record.emails:
                self._index.by_email[email].append(position)
            for key in dict(_block_keys(record)):
                self._index.blocks[key].append(position)
        total = len(self._records) + 1
        self._weights = {t: math.log(total / (n + 0.5)) + 1.0 for t, n in token_counts.items()}
        self._unseen_weight = math.log(total / 0.5) + 1.0

    def __len__(self) -> int:
        return len(self._records)

    # -- one customer -----------------------------------------------------------------------------------

    def match(self, customer: Customer) -> Match | None:
        """The best candidate for ``customer`` with its score and verdict; None when nothing reaches ``review``."""
        record = _customer_record(customer)
        exact = self._exact(record, customer.ref)
        if exact is not None:
            return exact
        scored = sorted(
            ((self._score(record, self._records[i]), i) for i in self._shortlist(record, customer.ref)),
            key=lambda pair: (-pair[0][0], self._records[pair[1]].id),
        )
        if not scored or scored[0][0][0] < self.review:
            return None
        (score, reasons), best = scored[0]
        verdict: Verdict = "confident" if score >= self.confident else "uncertain"
        if verdict == "confident" and len(scored) > 1 and scored[1][0][0] >= score - AMBIGUITY_MARGIN:
            verdict, reasons = "uncertain", (*reasons, "ambiguous: another candidate scores as high")
        return Match(self._records[best].id, round(score, 4), verdict, reasons)

    def _owned_elsewhere(self, record: _Record, ref: CrmRef, ours: str) -> bool:
        return bool(record.number) and record.number != ours and record.number.startswith(f"{ref.crm}-".casefold())

    def _exact(self, record: _Record, ref: CrmRef) -> Match | None:
        """Our stamp, an equal tax number, or an email only one candidate has: confident at once."""
        ours = record.number
        stamped = self._index.by_number.get(ours, [])
        if stamped:
            return Match(self._records[stamped[0]].id, 1.0, "confident", ("our stamp",))
        for positions, reason, unique in (
            (self._index.by_tax.get(record.tax, []) if record.tax else [], "tax number", False),
            *((self._index.by_email.get(e, []), "email", True) for e in record.emails),
        ):
            free = [p for p in positions if not self._owned_elsewhere(self._records[p], ref, ours)]
            if not free or (unique and len(positions) > 1):
                continue  # an email several candidates share (a bookkeeper's) identifies none of them
            best = max(free, key=lambda p: (self._name_similarity(record.tokens, self._records[p].tokens), -p))
            return Match(self._records[best].id, 1.0, "confident", (reason,))
        return None

    def _shortlist(self, record: _Record, ref: CrmRef) -> list[int]:
        """Candidates sharing a small block with the customer, best-voted first, at most ``max_compare``."""
        votes: dict[int, float] = defaultdict(float)
        for key, vote in dict(_block_keys(record)).items():
            block = self._index.blocks.get(key)
            if block and len(block) <= self.max_block:
                for position in block:
                    votes[position] += vote
        for email in record.emails:
            for position in self._index.by_email.get(email, []):
                votes[position] += 4.0
        # One weak shared key (a postcode, a skeleton) is not worth a comparison.
        ranked = sorted((p for p, v in votes.items() if v >= MIN_VOTES), key=lambda p: (-votes[p], p))
        ours = record.number
        return [p for p in ranked if not self._owned_elsewhere(self._records[p], ref, ours)][: self.max_compare]

    # -- scoring ----------------------------------------------------------------------------------------

    def _weight(self, token: str) -> float:
        return self._weights.get(token, self._unseen_weight)

    def _name_similarity(self, a: Sequence[str], b: Sequence[str]) -> float:
        """Rarity-weighted soft token overlap in [0, 1]; reordered, typo'd or run-together words still agree."""
        if not a or not b:
            return 0.0
        if "".join(sorted(a)) == "".join(sorted(b)) or "".join(a) == "".join(b):
            return 1.0  # the same words, reordered or run together
        matched = 0.0
        for side, other in ((a, b), (b, a)):
            for token in side:
                best = 1.0 if token in other else max(_token_similarity(token, o) for o in other)
                matched += self._weight(token) * best
        total = sum(self._weight(t) for t in a) + sum(self._weight(t) for t in b)
        return matched / total

    def _score(self, customer: _Record, candidate: _Record) -> tuple[float, tuple[str, ...]]:
        name = self._name_similarity(customer.tokens, candidate.tokens)
        reasons = ["same name" if name == 1.0 else f"name {name:.2f}"]
        agree, conflicts = _compare_fields(customer, candidate)
        compared = bool(agree) or conflicts > 0
        if compared:
            miss = 1.0
            for evidence in agree:
                miss *= 1.0 - _SUPPORT[evidence]
            score = 0.6 * name + 0.4 * (1.0 - miss) - _CONFLICT_PENALTY * conflicts
        else:
            score = 0.75 * name  # a name alone, however equal, is for a person to confirm
        if (
            customer.name_key
            and customer.name_key == candidate.name_key
            and {"postcode", "address", "phone"} & set(agree)
        ):
            score = max(score, 0.95)
        reasons += [f"same {e}" for e in agree]
        if conflicts:
            reasons.append(f"{conflicts} field(s) differ")
        return max(0.0, min(1.0, score)), tuple(reasons)

    # -- many customers ---------------------------------------------------------------------------------

    def match_all(self, customers: Iterable[Customer]) -> dict[CrmRef, Match | None]:
        """``match`` for each customer, then one candidate, one confident claimant.

        A candidate confidently claimed by several CRM customers stays confident only for the one claiming
        it by our stamp; the other claims (all of them without a stamp) become uncertain, with the reason.
        """
        results: dict[CrmRef, Match | None] = {}
        claims: dict[str, list[CrmRef]] = defaultdict(list)
        for customer in customers:
            found = self.match(customer)
            results[customer.ref] = found
            if found is not None and found.verdict == "confident":
                claims[found.candidate_id].append(customer.ref)
        for candidate_id, refs in claims.items():
            if len(refs) < 2:
                continue
            claimed = {r: m for r in refs if (m := results[r]) is not None}
            stamped = [r for r, m in claimed.items() if "our stamp" in m.reasons]
            for claimant, previous in claimed.items():
                if stamped == [claimant]:
                    continue
                conflict = f"conflict: {len(refs) - 1} other CRM record(s) claim this candidate"
                results[claimant] = Match(candidate_id, previous.score, "uncertain", (*previous.reasons, conflict))
        return results


def _compare_fields(customer: _Record, candidate: _Record) -> tuple[list[str], int]:
    """Which supporting fields agree, and how many present on both sides disagree (email never counts against)."""
    both_addresses = bool(customer.address and candidate.address)
    compared = (
        ("phone", bool(customer.phones and candidate.phones), bool(customer.phones & candidate.phones)),
        ("postcode", bool(customer.postcode and candidate.postcode), customer.postcode == candidate.postcode),
        ("city", bool(customer.city and candidate.city), customer.city == candidate.city),
        (
            "address",
            both_addresses,
            both_addresses and _address_similarity(customer.address, candidate.address) >= 0.85,
        ),
    )
    agree = [name for name, present, same in compared if present and same]
    conflicts = sum(present and not same for _, present, same in compared)
    if customer.domains & candidate.domains:
        agree.append("domain")
    elif customer.mailboxes & candidate.mailboxes:
        agree.append("mailbox")
    return agree, conflicts


def _address_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Street address agreement: the same house number and mostly the same words (typos tolerated)."""
    numbers_a = [t for t in a if t.isdigit()]
    numbers_b = [t for t in b if t.isdigit()]
    if numbers_a and numbers_b and numbers_a[0] != numbers_b[0]:
        return 0.0
    words_a = [t for t in a if not t.isdigit()]
    words_b = [t for t in b if not t.isdigit()]
    if not words_a or not words_b:
        return 1.0 if numbers_a == numbers_b else 0.0
    hits = sum(max(_token_similarity(w, o) for o in words_b) for w in words_a)
    hits += sum(max(_token_similarity(w, o) for o in words_a) for w in words_b)
    return hits / (len(words_a) + len(words_b))
