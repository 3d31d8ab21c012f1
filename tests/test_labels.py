"""kubep4.labels: Kubernetes label-selector syntax, semantics and validation, used by admission, the
apiserver's list filter, the scheduler and the Kubernetes placement backend."""
import pytest

from kubep4 import labels
from kubep4.gen.kubep4.v1 import resources_pb2 as pb

# ----------------------------------------------------------------- selectors

LABELS = {"zone": "a", "speed": "100g", "empty": ""}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("zone=a", True),
    ("zone==a", True),
    ("zone=b", False),
    ("zone!=b", True),
    ("zone!=a", False),
    ("missing!=a", True),             # != matches an absent key
    ("zone in (a,b)", True),
    ("zone in (b, c)", False),
    ("zone notin (b,c)", True),
    ("zone notin (a)", False),
    ("missing notin (a)", True),
    ("missing in (a)", False),
    ("speed", True),
    ("empty", True),                  # Exists holds for an empty value
    ("missing", False),
    ("!missing", True),
    ("!zone", False),
    ("empty=", True),
    ("zone=a,speed=100g", True),
    ("zone=a,speed=400g", False),     # AND
    ("zone=a,zone=b", False),         # repeated key: both must hold
    (" zone = a , speed in ( 100g , 400g ) , !rack ", True),
])
def test_selector_semantics(text, expected):
    assert labels.matches(labels.parse(text), LABELS) is expected


def test_empty_and_none_selector_match_everything():
    assert labels.matches(None, {}) and labels.matches(pb.LabelSelector(), {"a": "b"})


@pytest.mark.parametrize("text, want_labels, expressions", [
    ("a=b", {"a": "b"}, []),
    ("a=b,a=c", {"a": "b"}, [("a", "In", ["c"])]),
    ("a!=b", {}, [("a", "NotIn", ["b"])]),
    ("a in (y,x,x)", {}, [("a", "In", ["x", "y"])]),
    ("a notin (z)", {}, [("a", "NotIn", ["z"])]),
    ("g,!h", {}, [("g", "Exists", []), ("h", "DoesNotExist", [])]),
    ("kubep4.io/zone=a,x.y/z_1-2.3", {"kubep4.io/zone": "a"}, [("x.y/z_1-2.3", "Exists", [])]),
    ("a=", {"a": ""}, []),
])
def test_parse(text, want_labels, expressions):
    sel = labels.parse(text)
    assert dict(sel.match_labels) == want_labels
    assert [(e.key, e.operator, list(e.values)) for e in sel.match_expressions] == expressions
    labels.validate(sel)
    assert labels.format(labels.parse(labels.format(sel))) == labels.format(sel)


@pytest.mark.parametrize("text, fragment", [
    ("a in (x", "expected ',' or ')'"),
    ("a in ()", "can't be empty"),
    ("a in x", "expected '('"),
    ("=b", "expected a label key"),
    ("a=b,", "expected a requirement after ','"),
    (",", "expected a label key"),
    ("a>1", "not supported"),
    ("a b", "expected an operator"),
    ("!a=b", "expected ',' or end of input"),
    ("a=b=c", "expected ',' or end of input"),
    ("-a=b", "label key '-a'"),
    ("a/=b", "label key 'a/'"),
    ("Bad_Prefix/a=b", "prefix part"),
    ("a=-x-", "label value '-x-'"),
    ("a=" + "x" * 64, "label value"),
    ("a in (b,(c))", "expected a value"),
    ("!", "expected a label key, found 'end of input'"),
])
def test_parse_errors(text, fragment):
    with pytest.raises(ValueError) as info:
        labels.parse(text)
    assert isinstance(info.value, labels.SelectorError)
    msg = str(info.value)
    assert f"invalid label selector {text!r}" in msg and fragment in msg and "at position" in msg


@pytest.mark.parametrize("op, values, fragment", [
    ("Gt", ["1"], "unknown operator 'Gt'"),
    ("In", [], "needs at least one value"),
    ("NotIn", [], "needs at least one value"),
    ("Exists", ["x"], "takes no values"),
    ("DoesNotExist", ["x"], "takes no values"),
])
def test_invalid_selector_messages(op, values, fragment):
    sel = pb.LabelSelector()
    sel.match_expressions.add(key="a", operator=op, values=values)
    with pytest.raises(labels.SelectorError, match=fragment):
        labels.matches(sel, {})
    with pytest.raises(labels.SelectorError, match=r"match_expressions\[0\]"):
        labels.validate(sel)


def test_validate_checks_key_and_value_syntax():
    with pytest.raises(labels.SelectorError, match="match_labels: label key"):
        labels.validate(pb.LabelSelector(match_labels={"bad key": "x"}))
    with pytest.raises(labels.SelectorError, match="label value"):
        labels.validate(pb.LabelSelector(match_labels={"k": "bad value"}))
    labels.validate(pb.LabelSelector(match_labels={"k": "v"}))


def test_violations_name_every_problem_with_its_field_path():
    sel = pb.LabelSelector(match_labels={"ok": "v", "bad key": "x", "k": "bad value"})
    sel.match_expressions.add(key="a", operator="Near", values=["x"])
    sel.match_expressions.add(key="-b", operator="In")
    sel.match_expressions.add(key="c", operator="Exists", values=["-v-"])
    found = labels.violations(sel)
    paths = [p for p, _ in found]
    assert paths == ["match_labels[bad key]", "match_labels[k]", "match_expressions[0].operator",
                     "match_expressions[1].key", "match_expressions[1].values",
                     "match_expressions[2].values", "match_expressions[2].values[0]"]
    assert "unknown operator 'Near'" in found[2][1] and "needs at least one value" in found[4][1]
    assert labels.violations(labels.parse("a=b,c in (d),!e")) == [] and labels.violations(None) == []


def test_key_and_value_limits_are_kubernetes_own():
    assert labels.key_error("a" * 63) is None and labels.key_error("a" * 64)
    assert labels.key_error("x" * 253 + "/a") is None and labels.key_error("x" * 254 + "/a")
    assert labels.value_error("") is None and labels.value_error("v" * 64)


def test_a_hostile_key_is_shortened_in_its_message():
    assert len(labels.key_error("-" * 100_000)) < 400
    assert len(labels.value_error("-" * 100_000)) < 400


def test_from_map_is_an_equality_selector():
    sel = labels.from_map({"a": "1", "b": "2"})
    assert labels.matches(sel, {"a": "1", "b": "2", "c": "3"}) and not labels.matches(sel, {"a": "1"})
    assert labels.matches(labels.from_map({}), {})


def test_node_selector_terms_are_canonical_kubernetes_requirements():
    sel = labels.parse("zone=a,rack notin (r2,r1),ssd,!draining")
    assert labels.node_selector_terms(sel) == [
        {"key": "draining", "operator": "DoesNotExist"},
        {"key": "rack", "operator": "NotIn", "values": ["r1", "r2"]},
        {"key": "ssd", "operator": "Exists"},
        {"key": "zone", "operator": "In", "values": ["a"]}]
    assert labels.node_selector_terms(None) == []
