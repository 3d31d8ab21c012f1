"""Kubernetes label selectors: the one implementation every KubeP4 component uses.

Syntax and limits are Kubernetes' own (apimachinery ``labels`` and ``validation``):

* a label key is ``[prefix/]name``: the prefix a DNS-1123 subdomain of at most 253
  characters, the name 1-63 alphanumerics, ``-``, ``_`` or ``.``, starting and ending
  with an alphanumeric; a value is empty or a name;
* a selector is ``match_labels`` (k=v, AND) plus ``match_expressions`` with the operators
  ``In``, ``NotIn`` (at least one value), ``Exists``, ``DoesNotExist`` (no values);
* the string form is ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``,
  ``a``, ``!a``, comma-separated.

    sel = parse("tier=edge,site in (ams,fra),!draining")
    matches(sel, {"tier": "edge", "site": "ams"})          # True
    violations(sel)                                         # [] (field path, problem) pairs
    format(sel)                                             # canonical string form

``compile`` turns a selector into sorted requirements once (they are hashable: the
scheduler's index keys its plans by them) and ``match`` applies them.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

from kubep4.gen.kubep4.v1 import resources_pb2 as pb

__all__ = ["DOES_NOT_EXIST", "EXISTS", "IN", "NOT_IN", "OPERATORS", "Requirements", "SelectorError",
           "compile", "format", "from_map", "key_error", "match", "matches", "node_selector_terms", "parse",
           "validate", "value_error", "violations"]


class SelectorError(ValueError):
    """An invalid label selector (string syntax or LabelSelector message)."""


IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "In", "NotIn", "Exists", "DoesNotExist"
OPERATORS = (IN, NOT_IN, EXISTS, DOES_NOT_EXIST)
_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# A compiled requirement: (key, operator, values); match_labels k=v becomes (k, "In", {v}).
Requirement: TypeAlias = tuple[str, str, frozenset[str]]
Requirements: TypeAlias = tuple[Requirement, ...]


def _shown(text: str) -> str:
    """A label key or value as quoted in a message: at most 64 characters of it."""
    return repr(text) if len(text) <= 64 else repr(text[:64]) + "..."


def key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    shown = _shown(key)
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {shown}: prefix part must be non-empty"
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        return (f"label key {shown}: prefix part must be a DNS-1123 subdomain "
                "(lower-case alphanumerics, '-' and '.', at most 253 characters)")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        return (f"label key {shown}: name part must be 1-63 characters of alphanumerics, '-', '_' or '.', "
                "starting and ending with an alphanumeric")
    return None


def value_error(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None."""
    shown = _shown(value)
    if value and (len(value) > 63 or not _NAME_RE.match(value)):
        return (f"label value {shown}: must be empty or 1-63 characters of alphanumerics, '-', '_' "
                "or '.', starting and ending with an alphanumeric")
    return None


def compile(selector: pb.LabelSelector | None, *, strict: bool = False) -> Requirements:
    """Requirements of a selector, sorted by key (the canonical cache key)."""
    if selector is None:
        return ()
    reqs: list[Requirement] = []
    for k, v in selector.match_labels.items():
        if strict and (err := key_error(k) or value_error(v)):
            raise SelectorError(f"match_labels: {err}")
        reqs.append((k, IN, frozenset((v,))))
    for i, expr in enumerate(selector.match_expressions):
        where = f"match_expressions[{i}]"
        if strict and (err := key_error(expr.key)):
            raise SelectorError(f"{where}: {err}")
        op = expr.operator
        if op not in OPERATORS:
            raise SelectorError(f"{where}: unknown operator {op!r} (expected one of {', '.join(OPERATORS)})")
        values = frozenset(expr.values)
        if op in (IN, NOT_IN) and not values:
            raise SelectorError(f"{where}: operator {op} needs at least one value")
        if op in (EXISTS, DOES_NOT_EXIST) and values:
            raise SelectorError(f"{where}: operator {op} takes no values")
        if strict:
            for v in expr.values:
                if err := value_error(v):
                    raise SelectorError(f"{where}: {err}")
        reqs.append((expr.key, op, values))
    reqs.sort(key=lambda r: (r[0], r[1], sorted(r[2])))
    return tuple(reqs)


def match(reqs: Requirements, labels: Mapping[str, str]) -> bool:
    for key, op, values in reqs:
        v = labels.get(key)
        if op == IN:
            if v is None or v not in values:
                return False
        elif op == NOT_IN:
            if v is not None and v in values:
                return False
        elif op == EXISTS:
            if v is None:
                return False
        elif v is not None:  # DoesNotExist
            return False
    return True


def matches(selector: pb.LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every requirement must hold (AND).

    ``match_labels`` k=v: the label is present with that value. ``In``: present
    with one of the values. ``NotIn``: absent, or present with none of the
    values. ``Exists`` / ``DoesNotExist``: presence. A None or empty selector
    matches everything. Raises :class:`SelectorError` on an unknown operator or
    wrong number of values.
    """
    return match(compile(selector), labels)


def violations(selector: pb.LabelSelector | None) -> list[tuple[str, str]]:
    """Every problem of ``selector`` as (field path relative to the selector, description), in field
    order: label keys and values, operators and value counts. Empty when the selector is valid."""
    out: list[tuple[str, str]] = []
    if selector is None:
        return out
    for k, v in sorted(selector.match_labels.items()):
        if err := key_error(k):
            out.append((f"match_labels[{k[:64]}]", err))
        if err := value_error(v):
            out.append((f"match_labels[{k[:64]}]", err))
    for i, e in enumerate(selector.match_expressions):
        path = f"match_expressions[{i}]"
        if err := key_error(e.key):
            out.append((f"{path}.key", err))
        if e.operator not in OPERATORS:
            out.append((f"{path}.operator", f"unknown operator {e.operator[:64]!r} (expected one of "
                        f"{', '.join(OPERATORS)})"))
        elif e.operator in (IN, NOT_IN) and not e.values:
            out.append((f"{path}.values", f"operator {e.operator} needs at least one value"))
        elif e.operator in (EXISTS, DOES_NOT_EXIST) and e.values:
            out.append((f"{path}.values", f"operator {e.operator} takes no values"))
        for j, v in enumerate(e.values):
            if err := value_error(v):
                out.append((f"{path}.values[{j}]", err))
    return out


def from_map(labels: Mapping[str, str]) -> pb.LabelSelector:
    """The equality selector of a ``map<string, string>`` (an API list request's ``label_selector``)."""
    return pb.LabelSelector(match_labels=dict(labels))


def node_selector_terms(selector: pb.LabelSelector | None) -> list[dict]:
    """The selector as Kubernetes NodeSelectorRequirements (``match_labels`` k=v become ``In [v]``),
    in canonical order, for a pod's required node affinity."""
    out: list[dict] = []
    for key, op, values in compile(selector):
        expr: dict = {"key": key, "operator": op}
        if op in (IN, NOT_IN):
            expr["values"] = sorted(values)
        out.append(expr)
    return out


def validate(selector: pb.LabelSelector) -> None:
    """Raise :class:`SelectorError` unless ``selector`` is valid (operators, value counts,
    label key and value syntax). """
    compile(selector, strict=True)


_SPECIAL = set(" \t\n\r!=,()<>")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Tokens (kind, text, position); kinds: ident, !, =, ==, !=, ',', (, ), <, >, end."""
    toks: list[tuple[str, str, int]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "!=" and i + 1 < n and text[i + 1] == "=":
            toks.append((c + "=", c + "=", i))
            i += 2
            continue
        if c in _SPECIAL:
            toks.append((c, c, i))
            i += 1
            continue
        j = i
        while j < n and text[j] not in _SPECIAL:
            j += 1
        toks.append(("ident", text[i:j], i))
        i = j
    toks.append(("end", "", n))
    return toks


def parse(text: str) -> pb.LabelSelector:
    """Parse the Kubernetes selector string syntax into a LabelSelector.

    ``a=b`` / ``a==b`` (match_labels; a repeated key becomes an ``In``
    expression), ``a!=b`` (NotIn), ``a in (x,y)``, ``a notin (x,y)``, ``a``
    (Exists), ``!a`` (DoesNotExist), comma-separated (AND). The empty string is
    the empty selector (matches everything). ``<``/``>`` are not supported by
    LabelSelector. Raises :class:`SelectorError` (a ValueError) describing the
    problem and its position.
    """
    sel = pb.LabelSelector()
    toks = _tokenize(text)
    pos = 0

    def fail(msg: str, at: int) -> SelectorError:
        return SelectorError(f"invalid label selector {text!r}: {msg} at position {at}")

    def expect_key() -> str:
        nonlocal pos
        kind, val, at = toks[pos]
        if kind != "ident":
            raise fail(f"expected a label key, found {val or 'end of input'!r}", at)
        if err := key_error(val):
            raise fail(err, at)
        pos += 1
        return val

    def check_value(val: str, at: int) -> str:
        if err := value_error(val):
            raise fail(err, at)
        return val

    def add_expr(key: str, op: str, values: Iterable[str]) -> None:
        sel.match_expressions.add(key=key, operator=op, values=sorted(set(values)))

    if toks[0][0] == "end":
        return sel
    while True:
        kind, val, at = toks[pos]
        if kind == "!":
            pos += 1
            add_expr(expect_key(), DOES_NOT_EXIST, ())
        else:
            key = expect_key()
            kind, val, at = toks[pos]
            if kind in (",", "end"):
                add_expr(key, EXISTS, ())
            elif kind in ("=", "==", "!="):
                pos += 1
                vkind, vval, vat = toks[pos]
                if vkind == "ident":
                    pos += 1
                    value = check_value(vval, vat)
                elif vkind in (",", "end"):
                    value = ""
                else:
                    raise fail(f"expected a value after {val!r}, found {vval!r}", vat)
                if kind == "!=":
                    add_expr(key, NOT_IN, (value,))
                elif key in sel.match_labels:
                    add_expr(key, IN, (value,))
                else:
                    sel.match_labels[key] = value
            elif kind == "ident" and val in ("in", "notin"):
                pos += 1
                if toks[pos][0] != "(":
                    raise fail(f"expected '(' after {val!r}", toks[pos][2])
                pos += 1
                values: list[str] = []
                if toks[pos][0] == ")":
                    raise fail(f"the values set of {val!r} can't be empty", toks[pos][2])
                while True:
                    vkind, vval, vat = toks[pos]
                    if vkind == "ident":
                        values.append(check_value(vval, vat))
                        pos += 1
                        vkind, vval, vat = toks[pos]
                    elif vkind in (",", ")"):
                        values.append("")
                    else:
                        raise fail(f"expected a value, found {vval or 'end of input'!r}", vat)
                    if vkind == ",":
                        pos += 1
                        continue
                    if vkind == ")":
                        pos += 1
                        break
                    raise fail(f"expected ',' or ')', found {vval or 'end of input'!r}", vat)
                add_expr(key, IN if val == "in" else NOT_IN, values)
            elif kind in ("<", ">"):
                raise fail(f"operator {kind!r} is not supported by LabelSelector "
                           "(use =, ==, !=, in, notin, exists or !key)", at)
            else:
                raise fail(f"expected an operator (=, ==, !=, in, notin) or ',' after key {key!r}, "
                           f"found {val or 'end of input'!r}", at)
        kind, val, at = toks[pos]
        if kind == "end":
            return sel
        if kind != ",":
            raise fail(f"expected ',' or end of input, found {val!r}", at)
        pos += 1
        if toks[pos][0] == "end":
            raise fail("expected a requirement after ','", toks[pos][2])


def format(selector: pb.LabelSelector | None) -> str:
    """The string form of a selector (inverse of :func:`parse`, canonical order)."""
    if selector is None:
        return ""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for e in selector.match_expressions:
        vals = ",".join(sorted(e.values))
        if e.operator == IN:
            parts.append(f"{e.key} in ({vals})")
        elif e.operator == NOT_IN:
            parts.append(f"{e.key}!={vals}" if len(e.values) == 1 else f"{e.key} notin ({vals})")
        elif e.operator == EXISTS:
            parts.append(e.key)
        elif e.operator == DOES_NOT_EXIST:
            parts.append(f"!{e.key}")
        else:
            parts.append(f"{e.key} {e.operator} ({vals})")
    return ",".join(parts)


