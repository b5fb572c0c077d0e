"""Canonical encoding: one byte form per document, arrays round-trip exactly."""
import base64
import binascii
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from learningchain.core.encoding import (MAX_DEPTH, EncodingError, canonical_json, decode_array, decode_metric,
                                    decode_weights, encode_array, encode_metric, encode_weights,
                                    parse_json, weights_digest)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(json_values)
def test_canonical_json_is_a_fixed_point(doc):
    once = canonical_json(doc)
    assert canonical_json(parse_json(once)) == once


def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


@pytest.mark.parametrize("value", [1.5, math.nan, math.inf, {"x": [0.1]}])
def test_floats_nan_and_infinity_are_refused(value):
    with pytest.raises(EncodingError):
        canonical_json(value)


@pytest.mark.parametrize("text", ['{"a": NaN}', '[Infinity]', '[-Infinity]', '{"a":', '\xff'])
def test_parse_refuses_non_finite_and_malformed(text):
    with pytest.raises(EncodingError):
        parse_json(text.encode("latin-1") if text == "\xff" else text)


def test_parse_refuses_deep_nesting_without_recursion_error():
    with pytest.raises(EncodingError, match="nested"):
        parse_json("[" * 100000 + "]" * 100000)


DEEP = "[" * 33 + "1" + "]" * 33


@pytest.mark.parametrize("text, error", [
    (DEEP, "nested"), ("[" * 33 + "]" * 32, "nested"), ("[" * 33 + "NaN" + "]" * 33, "nested"),
    ("[" * 33 + "1" * 100 + "]" * 33, "nested"), ('{"a":' * 33 + "1" + "}" * 33, "nested"),
    ("[" * 1200 + "]" * 1200, "nested"), ("[" * 32 + "]" * 31, "malformed"), ("[" * 32 + "NaN" + "]" * 32, "NaN"),
    ('{"a":' * 10 + "[" + ",".join(["[" * 5 + "]" * 5] * 10) + "]" + "}" * 10, None)])
def test_parse_first_or_scan_first_refuse_alike(text, error, monkeypatch):
    """parse_json parses first and measures the depth on the document, or (when the
    recursion limit is raised) scans the text first: the same verdict and error."""
    from learningchain.core import encoding
    for limit in (10**9, 0):
        monkeypatch.setattr(encoding, "_SAFE_RECURSION_LIMIT", limit)  # 0: scan first
        if error is None:
            assert parse_json(text) == json.loads(text)
        else:
            with pytest.raises(EncodingError, match=error):
                parse_json(text)


def _nested(levels: int, inner=None):
    doc = [] if inner is None else inner
    for _ in range(levels - (1 if inner is None else 0)):
        doc = [doc]
    return doc


@pytest.mark.parametrize("levels, ok", [(32, True), (33, False)])
def test_one_nesting_definition_for_encoder_and_parser(levels, ok):
    """protocol.md section 1: a value's level is the number of arrays/objects
    containing it, itself included; above 32 is refused by both sides."""
    for doc in (_nested(levels), _nested(levels - 2, {"k": []}), _nested(levels, [1])[0]):
        text = json.dumps(doc, separators=(",", ":"))
        if ok:
            assert parse_json(canonical_json(doc)) == doc and parse_json(text) == doc
        else:
            with pytest.raises(EncodingError, match="nested"):
                canonical_json(doc)
            with pytest.raises(EncodingError, match="nested"):
                parse_json(text)


@pytest.mark.parametrize("name", ["[" * 28, "[" * 40, "{" * 40, '"' * 40, '\\[' * 20, '\\"[[' * 10,
                                  "]" * 40, "\n[\t{"])
def test_brackets_and_quotes_inside_strings_do_not_nest(name):
    """Issue 10 item 1: a metric name of 28 '[' was accepted, mined, and then
    no node could parse the block again."""
    doc = {"metrics": {name: "0.500000"}, "deep": _nested(30)}
    assert parse_json(canonical_json(doc)) == doc
    assert parse_json(canonical_json([doc] * 28)) == [doc] * 28


def test_lone_surrogates_are_an_encoding_error_not_a_crash():
    with pytest.raises(EncodingError, match="surrogate"):
        canonical_json({"\ud800": "0.5"})
    with pytest.raises(EncodingError, match="surrogate"):
        parse_json('{"a":"\\udfff"}')
    assert parse_json('"\\ud83d\\ude00"') == "\U0001F600"  # a pair is one code point


def test_nesting_scan_is_linear_on_escapes():
    nasty = '"' + '\\"' * 200_000  # unterminated: a backtracking string regex is quadratic here
    with pytest.raises(EncodingError):
        parse_json(nasty)


canonical_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    | st.text(alphabet='[]{}"\\\n', max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
                      | st.text(alphabet='[]{}"\\', max_size=30), children, max_size=4),
    max_leaves=30)


@given(canonical_values, st.integers(0, 31))
@settings(max_examples=300)
def test_parse_json_inverts_canonical_json(doc, extra_levels):
    """Whatever canonical_json encodes, parse_json gives back (issue 10 item 1)."""
    for candidate in (doc, _nested(extra_levels, doc) if extra_levels else doc):
        try:
            text = canonical_json(candidate)
        except EncodingError:
            continue  # deeper than 32 after wrapping: refused on both sides (tested above)
        assert parse_json(text) == candidate


@given(hnp.arrays(dtype=st.sampled_from(["<f4", "<f8", "<i4", "<i8"]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
@settings(max_examples=60)
def test_array_round_trip_is_exact(arr):
    back = decode_array(encode_array(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


def test_big_endian_input_travels_little_endian():
    arr = np.arange(4, dtype=">f4")
    enc = encode_array(arr)
    assert enc["dtype"] == "<f4"
    assert np.array_equal(decode_array(enc), arr)


@pytest.mark.parametrize("doc, message", [
    ({"dtype": "<f2", "shape": [1], "data": "AAA="}, "dtype"),
    ({"dtype": "<f4", "shape": [2], "data": "AAAAAA=="}, "needs"),
    ({"dtype": "<f4", "shape": [-1], "data": ""}, "shape"),
    ({"dtype": "<f4", "shape": [1], "data": "!!!!"}, "base64"),
    ({"dtype": "<f4", "shape": [1], "data": "AAAAAB=="}, "canonical base64"),
    ({"dtype": "<f4", "shape": [1]}, "exactly"),
    ("nope", "exactly"),
])
def test_malformed_arrays_are_named(doc, message):
    with pytest.raises(EncodingError, match=message):
        decode_array(doc)


def test_weights_digest_commits_to_values_shape_and_dtype():
    w = {"W0": np.ones((2, 3), np.float32), "b0": np.zeros(3, np.float32)}
    d = weights_digest(w)
    assert d == weights_digest(decode_weights(encode_weights(w)))
    changed = dict(w, b0=np.array([0, 0, 1e-7], np.float32))
    assert weights_digest(changed) != d
    assert weights_digest(dict(w, W0=w["W0"].reshape(3, 2))) != d
    assert weights_digest(dict(w, b0=w["b0"].astype(np.float64))) != d


def test_metrics_are_fixed_decimal_strings():
    assert encode_metric(0.95) == "0.950000"
    assert decode_metric("0.950000") == 0.95
    for bad in ("0.95", "1e-3", 0.5, "nan"):
        with pytest.raises(EncodingError):
            decode_metric(bad)
    with pytest.raises(EncodingError):
        encode_metric(math.nan)


def _depth(doc) -> int:
    if isinstance(doc, list):
        return 1 + max(map(_depth, doc), default=0)
    if isinstance(doc, dict):
        return 1 + max(map(_depth, doc.values()), default=0)
    return 0


@given(canonical_values, st.integers(1, 9))
@settings(max_examples=200)
def test_nesting_scan_counts_levels_exactly_across_chunks(doc, chunk):
    """The vectorised scan, with chunks of a few bytes so that strings, escapes
    and backslash runs straddle chunk edges, equals the definition."""
    from learningchain.core import encoding
    saved, encoding._SCAN_CHUNK = encoding._SCAN_CHUNK, chunk
    try:
        assert encoding.nesting_depth(json.dumps(doc, ensure_ascii=False)) == _depth(doc)
    finally:
        encoding._SCAN_CHUNK = saved


def _check_by_definition(obj, depth=0):
    """protocol.md section 1, written as directly as possible (recursive): what
    encoding._check must refuse, and which fault it names first."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return
    if isinstance(obj, float):
        raise EncodingError("floats are not canonical; use integers or decimal strings")
    if isinstance(obj, (list, tuple, dict)) and depth + 1 > MAX_DEPTH:
        raise EncodingError(f"document nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_by_definition(item, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise EncodingError("object keys must be strings")
            _check_by_definition(value, depth + 1)
    else:
        raise EncodingError(f"type {type(obj).__name__} cannot be encoded canonically")


_any_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3) | st.just(b"x") | st.just(set()),
    lambda c: st.lists(c, max_size=3) | st.tuples(c, c)
    | st.dictionaries(st.text(max_size=2) | st.integers(0, 3) | st.none() | st.booleans(), c, max_size=3),
    max_leaves=40)


@given(_any_values, st.integers(0, 33))
@settings(max_examples=200)
def test_the_check_before_encoding_refuses_as_the_definition_and_names_the_first_fault(doc, depth):
    from learningchain.core import encoding

    def verdict(check):
        try:
            check(doc, depth)
        except EncodingError as exc:
            return str(exc)
        return None
    assert verdict(encoding._check) == verdict(_check_by_definition)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@given(st.one_of(st.text(alphabet=_B64 + " \n-_é", max_size=14),
                 st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
                 st.tuples(st.binary(max_size=12), st.integers(0, 20), st.sampled_from(_B64)).map(
                     lambda t: (lambda e: e[:t[1]] + t[2] + e[t[1] + 1:])(base64.b64encode(t[0]).decode()))))
@settings(max_examples=200)
def test_array_data_is_accepted_iff_it_is_the_canonical_base64_of_its_bytes(data):
    """decode_array checks canonical base64 by length and last quad: it accepts
    exactly the texts that are b64encode of what they decode to (any text, any
    one-character change to a valid one)."""
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
        want = "ok" if base64.b64encode(raw).decode("ascii") == data else "not canonical"
    except (binascii.Error, UnicodeEncodeError):
        want = "not valid"
    doc = {"dtype": "|u1", "shape": [len(raw) if want == "ok" else 0], "data": data}
    try:
        got = "ok" if decode_array(doc).tobytes() == raw else "wrong bytes"
    except EncodingError as exc:
        got = "not canonical" if "not canonical" in str(exc) else "not valid" if "not valid" in str(exc) else str(exc)
    assert got == want
