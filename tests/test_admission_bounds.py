"""Admission's bounds as pure functions: review time, strict value syntax, text nesting."""
from __future__ import annotations

import pytest
from google.protobuf.text_format import ParseError

from kubep4.p4 import encode_value, parse_p4info
from services.admission.validation import Policy, review_deployment, review_pipeline

from .conftest import example_objects
from .test_admission import DEEP_P4INFO


def test_review_time_is_bounded():
    """Entries are converted within max_review_seconds; past it the review stops and says where."""
    pipeline, deployment = example_objects()
    pipeline, _ = review_pipeline(pipeline, Policy())
    _, out = review_deployment(deployment, pipeline, Policy(max_review_seconds=0))
    assert [v.field for v in out] == ["spec.table_entries"]
    assert "review stopped" in out[0].description and "entry 0 of 3" in out[0].description
    _, out = review_deployment(deployment, pipeline, Policy())
    assert out == []


@pytest.mark.parametrize("text,width,value", [
    ("10", 8, b"\x0a"), ("0x0a", 8, b"\x0a"), ("0XFF", 8, b"\xff"), ("10.0.1.0", 32, b"\x0a\x00\x01\x00"),
    ("00:00:00:00:01:01", 48, b"\x01\x01"), ("::1", 128, b"\x01"), ("007", 3, b"\x07")])
def test_value_forms(text, width, value):
    assert encode_value(text, width) == value


@pytest.mark.parametrize("text,width", [
    ("\u0663", 8), ("\u00b2", 8), (" 1 ", 8), ("1 ", 8), ("1_0", 8), ("0x_1", 8), ("+1", 8), ("-1", 8),
    ("::1", 32), ("10.0.1.0", 16), ("00:00:00:00:01:01", 32), ("0:0:0:0:1:1", 48), ("fe80::1%eth0", 128),
    ("01.2.3.4", 32), ("9" * 5000, 2048), ("256", 8), ("", 8)])
def test_strict_value_syntax(text, width):
    with pytest.raises(ValueError) as exc:
        encode_value(text, width)
    assert len(str(exc.value)) < 300


def test_text_p4info_nested_400_deep_is_a_parse_error_not_a_recursion_error():
    with pytest.raises(ParseError, match=r"messages nested \d+ deep; at most 64"):
        parse_p4info(DEEP_P4INFO)
    parse_p4info(example_objects()[0].spec.artifacts.p4info)  # the example still parses
