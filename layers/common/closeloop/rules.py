"""Declarative field rules: which way each object syncs, and which system owns each field.

The rules come from YAML: ``field_rules.yaml`` ships with the package as the default, and a deployment
overrides it with the ``FIELD_RULES`` setting (each object named there replaces the default's rules for
that object whole). Per object (``customer``, ``invoice``, ``payment``, ``product``) a direction
(``crm_to_accounting | accounting_to_crm | both | off``) and a default source of truth (``crm |
accounting``), per field an optional source of truth of its own.

A field flows only from its source of truth to the other system, and only when the object's direction
allows that way; ``both`` lets each field flow its own way. For a change:
- made in the field's source of truth: ``apply`` it to the other system if the field flows;
- made in the other system to a field that flows: ``conflict`` (Closeloop maintains that side from the
  source of truth; log and flag it, never copy it back);
- otherwise (direction ``off``, or a field the direction does not carry): ``ignore``.

The YAML is read with PyYAML's safe loader, as a node tree: that keeps line numbers for error messages,
keeps scalars as written (YAML 1.1 would read a bare ``off`` as false) and reveals duplicate keys.
Unknown objects, fields or values raise ConfigurationError naming the key and its line, so a typo never
silently disables a rule.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Literal, TypeVar, get_args

import yaml

from closeloop.errors import ConfigurationError
from closeloop.models import CUSTOMER_FIELDS, DEAL_SYNC_FIELDS, PRODUCT_FIELDS, InvoiceDraft

Direction = Literal["crm_to_accounting", "accounting_to_crm", "both", "off"]
System = Literal["crm", "accounting"]
SyncObject = Literal["customer", "invoice", "payment", "product"]
Verdict = Literal["apply", "conflict", "ignore"]

DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
SYSTEMS: tuple[System, ...] = get_args(System)
OBJECTS: tuple[SyncObject, ...] = get_args(SyncObject)

#: The customer's financial summary the payment poller writes to the CRM company.
CUSTOMER_SUMMARY_FIELDS: tuple[str, ...] = (
    "closeloop_outstanding_balance",
    "closeloop_overdue_balance",
    "closeloop_total_invoiced",
    "closeloop_total_paid",
)

#: The fields each object's rules may name. ``closeloop_sync_issue`` is Closeloop's own finding, owned by
#: neither system, so no rule governs it.
OBJECT_FIELDS: Mapping[SyncObject, tuple[str, ...]] = MappingProxyType(
    {
        "customer": CUSTOMER_FIELDS,
        "invoice": tuple(InvoiceDraft.model_fields),
        "payment": (*(f for f in DEAL_SYNC_FIELDS if f != "closeloop_sync_issue"), *CUSTOMER_SUMMARY_FIELDS),
        "product": PRODUCT_FIELDS,
    }
)

DEFAULT_FILE = "field_rules.yaml"
_T = TypeVar("_T", bound=str)
_OBJECT_KEYS = ("direction", "source_of_truth", "fields")


def _other(system: System) -> System:
    return "accounting" if system == "crm" else "crm"


@dataclass(frozen=True)
class ObjectRules:
    """One object's rules: its direction, the default owner of its fields and the fields owned otherwise."""

    direction: Direction
    source_of_truth: System
    fields: Mapping[str, System]

    def owner(self, field: str) -> System:
        return self.fields.get(field, self.source_of_truth)

    def flows(self, field: str) -> bool:
        """Whether the direction carries ``field`` from its source of truth to the other system."""
        source = self.owner(field)
        return self.direction in ("both", f"{source}_to_{_other(source)}")


@dataclass(frozen=True)
class FieldRules:
    """Direction per object and source of truth per field, loaded from YAML (see the module docstring)."""

    objects: Mapping[SyncObject, ObjectRules]

    @classmethod
    def load(cls, text: str | None = None, *, source: str = "FIELD_RULES") -> FieldRules:
        """The packaged default rules, with the objects ``text`` names replaced by its rules.

        ``text`` None or blank gives the default. ``source`` names the text in error messages. Raises
        ConfigurationError naming the bad key and its line.
        """
        default = _default_rules()
        if text is None or not text.strip():
            return default
        return cls(MappingProxyType({**default.objects, **_parse(text, source)}))

    def direction(self, obj: SyncObject) -> Direction:
        """Which way ``obj`` syncs."""
        return self._object(obj).direction

    def source_of_truth(self, obj: SyncObject, field: str) -> System:
        """The system that owns ``field`` of ``obj``. Raises ValueError for a field no rule governs."""
        return self._object(obj).owner(self._field(obj, field))

    def may_write(self, obj: SyncObject, field: str, to: System) -> bool:
        """Whether Closeloop may write ``field`` of ``obj`` to ``to``: the direction allows the way there,
        and ``to`` is not the field's source of truth (a field flows from its owner to the other side only)."""
        rules = self._object(obj)
        return rules.flows(self._field(obj, field)) and rules.owner(field) != to

    def verdict(self, obj: SyncObject, field: str, changed_in: System) -> Verdict:
        """What to do with a change to ``field`` of ``obj`` made in ``changed_in``: ``apply`` it to the other
        system, treat it as a ``conflict`` (log and flag), or ``ignore`` it."""
        rules = self._object(obj)
        if not rules.flows(self._field(obj, field)):
            return "ignore"
        return "apply" if rules.owner(field) == changed_in else "conflict"

    def fields_to_write(self, obj: SyncObject, to: System) -> tuple[str, ...]:
        """The fields of ``obj`` Closeloop may write to ``to``, in the object's field order."""
        self._object(obj)
        return tuple(f for f in OBJECT_FIELDS[obj] if self.may_write(obj, f, to))

    def _object(self, obj: SyncObject) -> ObjectRules:
        try:
            return self.objects[obj]
        except KeyError:
            raise ValueError(f"no field rules for object {obj!r} (known: {', '.join(OBJECTS)})") from None

    @staticmethod
    def _field(obj: SyncObject, field: str) -> str:
        if field not in OBJECT_FIELDS[obj]:
            raise ValueError(f"no field rule governs {obj} field {field!r}")
        return field


@lru_cache(maxsize=1)
def _default_rules() -> FieldRules:
    text = resources.files("closeloop").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    objects = _parse(text, DEFAULT_FILE)
    missing = [o for o in OBJECTS if o not in objects]
    if missing:
        raise ConfigurationError(f"{DEFAULT_FILE}: no rules for {', '.join(missing)}")
    return FieldRules(MappingProxyType(objects))


# -- parsing -------------------------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 0


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "list" if isinstance(node, yaml.SequenceNode) else "plain value"


def _fail(source: str, node: yaml.Node, message: str) -> ConfigurationError:
    return ConfigurationError(f"{source} line {_line(node)}: {message}")


def _choice(source: str, node: yaml.Node, what: str, allowed: tuple[_T, ...]) -> _T:
    """The allowed value ``node`` holds, as written (a bare ``off`` stays "off")."""
    value = node.value if isinstance(node, yaml.ScalarNode) else None
    for choice in allowed:
        if value == choice:
            return choice
    shown = repr(value) if isinstance(value, str) else f"a {_kind(node)}"
    hint = difflib.get_close_matches(value, allowed, n=1) if isinstance(value, str) else []
    maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise _fail(source, node, f"{what} is {shown}{maybe}; expected one of: {', '.join(allowed)}")


def _mapping(source: str, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's entries by key (key node, value node); duplicate or non-text keys raise."""
    if not isinstance(node, yaml.MappingNode):
        raise _fail(source, node, f"{what} must be a mapping of keys to values, not a {_kind(node)}")
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _fail(source, key_node, f"{what} has a key that is not plain text")
        key = str(key_node.value)
        if key in entries:
            first = _line(entries[key][0])
            raise _fail(source, key_node, f"{what} has {key!r} twice (first on line {first})")
        entries[key] = (key_node, value_node)
    return entries


def _known(source: str, key_node: yaml.Node, key: str, what: str, allowed: tuple[_T, ...]) -> _T:
    """``key`` as one of ``allowed``; an unknown one raises, with the nearest known name."""
    for choice in allowed:
        if key == choice:
            return choice
    hint = difflib.get_close_matches(key, allowed, n=1)
    maybe = f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(allowed)}"
    raise _fail(source, key_node, f"unknown {what} {key!r}{maybe}")


def _parse(text: str, source: str) -> dict[SyncObject, ObjectRules]:
    """The objects ``text`` declares. Raises ConfigurationError naming the bad key and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigurationError(f"{source}{where}: not valid YAML: {problem}") from exc
    if root is None:
        return {}
    objects: dict[SyncObject, ObjectRules] = {}
    for name, (key_node, value_node) in _mapping(source, root, "the rules").items():
        obj = _known(source, key_node, name, "object", OBJECTS)
        objects[obj] = _object_rules(source, obj, key_node, value_node)
    return objects


def _object_rules(source: str, obj: SyncObject, key_node: yaml.Node, node: yaml.Node) -> ObjectRules:
    entries = _mapping(source, node, obj)
    for key, (k_node, _) in entries.items():
        _known(source, k_node, key, f"{obj} setting", _OBJECT_KEYS)
    for required in ("direction", "source_of_truth"):
        if required not in entries:
            raise _fail(source, key_node, f"{obj} must declare {required}")
    direction = _choice(source, entries["direction"][1], f"{obj} direction", DIRECTIONS)
    default = _choice(source, entries["source_of_truth"][1], f"{obj} source_of_truth", SYSTEMS)
    fields: dict[str, System] = {}
    if "fields" in entries:
        fields_node = entries["fields"][1]
        is_empty = isinstance(fields_node, yaml.ScalarNode) and fields_node.tag == "tag:yaml.org,2002:null"
        for field, (f_key, f_value) in ({} if is_empty else _mapping(source, fields_node, f"{obj} fields")).items():
            _known(source, f_key, field, f"{obj} field", OBJECT_FIELDS[obj])
            fields[field] = _choice(source, f_value, f"{obj} field {field}", SYSTEMS)
    return ObjectRules(direction=direction, source_of_truth=default, fields=MappingProxyType(fields))
