"""Canonical encoding: the one byte form of everything that is hashed or signed.

* JSON objects are serialised with sorted keys, no whitespace, UTF-8, and no
  floats at all: a float has several textual forms across languages, so hashed
  documents carry integers and strings only (metrics travel as decimal strings,
  see :func:`encode_metric`). NaN and infinities can therefore never enter.
* Weight arrays never travel as JSON float lists. An array is
  ``{"dtype": "<f4", "shape": [..], "data": base64(raw little-endian C-order bytes)}``
  and a set of named arrays is committed to by :func:`weights_digest`.

See docs/protocol.md, section "Canonical encoding".
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import sys
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from learningchain.core.errors import EncodingError

#: dtypes an array may carry on the wire (little-endian only).
WIRE_DTYPES = ("<f4", "<f8", "<i4", "<i8", "|u1", "<u4")  # |u1: uint8 (8-bit quantised updates);
# <u4: uint32, the masked inputs of secure aggregation (docs/protocol.md section 14)
#: deepest nesting accepted in a document (defends the decoder). The nesting
#: level of a value is the number of arrays and objects that contain it,
#: itself included: a scalar at top level is at level 0, ``[]`` and ``{}`` at
#: level 1, ``[[1]]`` reaches level 2. A document whose deepest level exceeds
#: MAX_DEPTH is refused, by :func:`canonical_json` and :func:`parse_json` alike
#: (docs/protocol.md section 1, "how nesting levels are counted").
MAX_DEPTH = 32
#: a metric value; always used with ``fullmatch`` (``$`` would accept a final "\n").
_METRIC_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})\.[0-9]{6}")
#: an escaped UTF-16 surrogate: the only way a decoded string can hold a lone one.
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _too_deep() -> EncodingError:
    return EncodingError(f"document nested deeper than {MAX_DEPTH} levels")


_NOT_A_KEY = object()  # marks, on the stack of _check, a dict key that is not a string


def _check(obj: Any, depth: int = 0) -> None:
    """Raise EncodingError unless ``obj`` holds only what canonical JSON encodes.
    ``depth``: the arrays and objects enclosing ``obj`` (see :data:`MAX_DEPTH`).
    Depth first, in document order (the first fault names the error), with a
    stack of its own: one loop step per value instead of one call, and the
    strings and integers that make up most of a document cost one type test."""
    stack: list = [(obj, depth)]
    pop, push = stack.pop, stack.append
    while stack:
        obj, depth = pop()
        if depth is _NOT_A_KEY:  # a key that is no string, met before its value
            raise EncodingError("object keys must be strings")
        kind = type(obj)
        if kind is str or kind is int or obj is None:  # most values: the exact types
            continue
        if isinstance(obj, (bool, str, int)):
            continue
        if isinstance(obj, float):
            raise EncodingError("floats are not canonical; use integers or decimal strings")
        if isinstance(obj, (list, tuple, dict)) and depth + 1 > MAX_DEPTH:
            raise _too_deep()
        if isinstance(obj, (list, tuple)):
            stack.extend([(item, depth + 1) for item in reversed(obj)])
        elif isinstance(obj, dict):
            for key, value in reversed(obj.items()):
                push((value, depth + 1))
                if not isinstance(key, str):
                    push((key, _NOT_A_KEY))
        else:
            raise EncodingError(f"type {type(obj).__name__} cannot be encoded canonically")


def canonical_json(obj: Any) -> bytes:
    """The unique byte encoding of a JSON document (ints, strings, bools, null,
    lists and objects only)."""
    _check(obj)
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate() from None


def _lone_surrogate() -> EncodingError:
    return EncodingError("a string holds a lone UTF-16 surrogate (not a Unicode scalar value), "
                         "which UTF-8 cannot encode")


#: bytes the nesting scan looks at per numpy pass (bounds its memory: ~60 bytes per byte).
_SCAN_CHUNK = 1 << 18


def nesting_depth(data: bytes | str) -> int:
    """The deepest nesting level (see :data:`MAX_DEPTH`) of a JSON text,
    counting only brackets outside string literals: a ``"`` ends a string
    unless an odd number of backslashes precedes it. Vectorised over the
    UTF-8 bytes (every character that matters is ASCII, and UTF-8 never puts
    an ASCII byte inside a multi-byte character), one chunk at a time, so it
    is linear whatever the text holds. For malformed text the figure is
    meaningless (the parser refuses it anyway)."""
    raw = bytes(data) if not isinstance(data, str) else data.encode("utf-8", "surrogatepass")
    deepest = depth = 0
    parity = 0  # unescaped quotes so far, mod 2: 1 = inside a string
    carry = 0   # backslashes ending the previous chunk
    for off in range(0, len(raw), _SCAN_CHUNK):
        a = np.frombuffer(raw, dtype=np.uint8, count=min(_SCAN_CHUNK, len(raw) - off), offset=off)
        idx = np.arange(a.size, dtype=np.int64)
        backslash = a == 0x5C
        last_other = np.maximum.accumulate(np.where(backslash, -1, idx))
        run = idx - last_other + np.where(last_other < 0, carry, 0)  # backslashes ending at i
        before = np.empty_like(run)
        before[0], before[1:] = carry, run[:-1]
        quote = (a == 0x22) & (before % 2 == 0)
        quotes = np.cumsum(quote, dtype=np.int64) + parity
        inside = (quotes & 1).astype(bool)
        step = (((a == 0x5B) | (a == 0x7B)).astype(np.int64) - ((a == 0x5D) | (a == 0x7D))) * ~inside
        level = np.cumsum(step) + depth
        deepest = max(deepest, int(level.max()))
        if deepest > MAX_DEPTH:
            return deepest
        carry, parity, depth = int(run[-1]), int(quotes[-1]) & 1, int(level[-1])
    return deepest


def canonical_hash(obj: Any) -> bytes:
    """SHA-256 of :func:`canonical_json`."""
    return sha256(canonical_json(obj))


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"{name} is not allowed in JSON documents")


def parse_json(data: bytes | str) -> Any:
    """Parse a JSON document from the wire, refusing NaN/Infinity and excessive
    nesting. Floats are parsed (API clients may send them) but rejected by
    :func:`canonical_json` wherever a hashed document is built."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise EncodingError(f"document is not UTF-8: {exc.reason}") from None
    # Fewer brackets than the limit cannot nest past it. Otherwise the text scan
    # (nesting_depth, ~20 ms for a 1.3 MB block) runs first only when json's
    # recursive parser could go deeper than is safe for the C stack; at the usual
    # recursion limit the parser stops with a RecursionError, so the text is parsed
    # first (~1 ms) and the depth measured on the parsed document (its containers
    # only), which for JSON text is the same figure; the scan then runs only when
    # parsing failed, so that a deep text gets the same error either way.
    deep_possible = text.count("[") + text.count("{") > MAX_DEPTH
    if deep_possible and sys.getrecursionlimit() > _SAFE_RECURSION_LIMIT and nesting_depth(data) > MAX_DEPTH:
        raise _too_deep()
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int,
                         parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        if deep_possible and nesting_depth(data) > MAX_DEPTH:
            raise _too_deep() from None
        raise EncodingError(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError, EncodingError) as exc:  # e.g. int digit limit; never a crash
        if deep_possible and nesting_depth(data) > MAX_DEPTH:
            raise _too_deep() from None
        if isinstance(exc, EncodingError):  # NaN, a number out of range, an overlong integer
            raise
        raise EncodingError(f"malformed JSON: {exc}") from None
    if deep_possible and _deeper_than_max(doc):
        raise _too_deep()
    if _SURROGATE_ESCAPE_RE.search(text):  # rare: check that every string is valid Unicode
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _lone_surrogate() from None
    return doc


#: the recursion limit up to which json's C parser is left to stop deep nesting itself
#: (RecursionError; the default limit is 1,000) before the text is scanned.
_SAFE_RECURSION_LIMIT = 4000


def _deeper_than_max(doc: Any) -> bool:
    """Does a parsed document nest deeper than :data:`MAX_DEPTH`? Walks its
    containers without recursion (the document may be ~1,000 levels deep)."""
    stack = [(doc, 0)]
    while stack:
        value, level = stack.pop()  # level: of the container holding value
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if items is None:
            continue
        if level + 1 > MAX_DEPTH:
            return True
        stack.extend((v, level + 1) for v in items if isinstance(v, (dict, list)))
    return False


#: longest integer literal accepted (protocol integers are < 2^64: 20 digits).
MAX_INT_DIGITS = 80


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise EncodingError(f"integer literal of {len(text)} characters (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise EncodingError(f"number {text[:20]} is out of range")
    return value


# --- arrays ---------------------------------------------------------------

def encode_array(arr: np.ndarray) -> dict:
    """dtype + shape + base64 of the raw little-endian C-order bytes."""
    arr = np.asarray(arr)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = np.dtype(dtype).str
    if code not in WIRE_DTYPES:
        raise EncodingError(f"dtype {arr.dtype} cannot travel; use one of {', '.join(WIRE_DTYPES)}")
    raw = np.ascontiguousarray(arr, dtype=code).tobytes()
    return {"dtype": code, "shape": [int(d) for d in arr.shape],
            "data": base64.b64encode(raw).decode("ascii")}


_ARRAY_FIELDS = {"dtype", "shape", "data"}
_ITEMSIZE = {code: np.dtype(code).itemsize for code in WIRE_DTYPES}


def _is_canonical_base64(text: bytes, raw: bytes) -> bool:
    """``text == base64.b64encode(raw)`` for a ``text`` that ``b64decode(...,
    validate=True)`` decoded to ``raw``, without encoding ``raw`` again: only the
    length and the last quad can differ. Such a text is alphabet characters with
    at most two ``=`` at its very end; if its length is the canonical one and its
    last quad the canonical one, the quads before it hold no padding and decode,
    6 bits a character, to the bytes before the last 1-3, and that encoding is
    one-to-one, so they are the canonical characters too."""
    tail = len(raw) % 3 or 3
    return (len(text) == 4 * ((len(raw) + 2) // 3)
            and (not raw or text[-4:] == binascii.b2a_base64(raw[-tail:], newline=False)))


def decode_array(doc: Any) -> np.ndarray:
    """Inverse of :func:`encode_array`; every malformed field is a named error."""
    if not isinstance(doc, dict) or doc.keys() != _ARRAY_FIELDS:
        raise EncodingError("an array must be an object with exactly dtype, shape and data")
    code, shape, data = doc["dtype"], doc["shape"], doc["data"]
    if code not in WIRE_DTYPES:
        raise EncodingError(f"dtype {code!r} is not one of {', '.join(WIRE_DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape)):
        raise EncodingError("shape must be a list of at most 8 non-negative integers")
    if not isinstance(data, str):
        raise EncodingError("array data must be a base64 string")
    try:
        text = data.encode("ascii")
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise EncodingError("array data is not valid base64") from None
    if not _is_canonical_base64(text, raw):
        raise EncodingError("array data is not canonical base64")
    count = math.prod(shape)
    if count * _ITEMSIZE[code] != len(raw):
        raise EncodingError(f"array data holds {len(raw)} bytes, shape {shape} of {code} needs "
                            f"{count * _ITEMSIZE[code]}")
    return np.frombuffer(raw, dtype=code).reshape(shape).copy()


Weights = "OrderedDict[str, np.ndarray]"


def encode_weights(weights: Mapping[str, np.ndarray]) -> dict:
    return {name: encode_array(arr) for name, arr in weights.items()}


def decode_weights(doc: Any) -> "OrderedDict[str, np.ndarray]":
    if not isinstance(doc, dict) or not doc:
        raise EncodingError("weights must be a non-empty object of named arrays")
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name in sorted(doc):
        out[name] = decode_array(doc[name])
    return out


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """Commitment to a set of named arrays: SHA-256 of the canonical JSON of
    ``{name: {"dtype", "shape", "sha256": hex(SHA-256(raw bytes))}}``. Hex string."""
    summary = {}
    for name, arr in weights.items():
        enc = np.ascontiguousarray(arr)
        code = enc.dtype.str
        summary[name] = {"dtype": code, "shape": [int(d) for d in enc.shape],
                         "sha256": hashlib.sha256(enc.tobytes()).hexdigest()}
    return canonical_hash(summary).hex()


def all_finite(weights: Mapping[str, np.ndarray]) -> bool:
    return all(bool(np.isfinite(a).all()) for a in weights.values())


# --- metrics --------------------------------------------------------------

def encode_metric(value: float) -> str:
    """A metric as a fixed six-decimal string: the only form hashed documents use."""
    value = float(value)
    if not math.isfinite(value):
        raise EncodingError("metric values must be finite")
    return f"{value:.6f}"


def decode_metric(text: Any) -> float:
    if not isinstance(text, str) or not _METRIC_RE.fullmatch(text):
        raise EncodingError("a metric must be a decimal string with six decimals, e.g. '0.953125'")
    return float(text)


def encode_metrics(metrics: Mapping[str, float]) -> dict:
    return {str(k): encode_metric(v) for k, v in metrics.items()}


_LOWER_HEX_RE = re.compile(r"[0-9a-f]*")


def is_hex(text: Any, nbytes: int) -> bool:
    """``text`` is exactly ``nbytes`` bytes as lowercase hex (one regex match: a
    character-by-character test was the largest cost of parsing a header)."""
    return (isinstance(text, str) and len(text) == 2 * nbytes
            and _LOWER_HEX_RE.fullmatch(text) is not None)
