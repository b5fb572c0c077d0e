"""What every API route reads from its request: the strictly decoded JSON body
within the route's byte cap, ids, integer query parameters and the ``X-Peer``
header, and :class:`ApiError`, the 4xx they raise.

Request bodies are decoded with :func:`learningchain.core.encoding.parse_json`
(NaN, Infinity and deep nesting refused), never ``request.json``, after
``Content-Encoding: gzip`` is undone within the body cap
(:mod:`learningchain.node.p2p.wire`). :mod:`learningchain.node.web.api` turns
:class:`ApiError` into ``{"error": text, "reason": code}``.
"""
from __future__ import annotations

import re

from flask import current_app, request

from learningchain.core.encoding import EncodingError, parse_json
from learningchain.node.p2p.peer_urls import check_peer_url
from learningchain.node.p2p.wire import (MAX_RATIO, ContentEncodingError, RatioError, TooLargeError, gunzip_capped,
                                        is_gzip, is_identity)

#: decoded body cap of POST /peers, /sync/headers, /sync/blocks (500 hashes: ~34 KB) and /mining/submit.
SMALL_BODY_BYTES = 64 << 10
#: decoded body cap of POST /inv: 1000 ids of 67 bytes each, with room.
INV_BODY_BYTES = 128 << 10
#: an integer in a path or query: ASCII digits only (str.isdigit() accepts "²" and "٣").
_DIGITS = re.compile(r"[0-9]{1,15}")


class ApiError(Exception):
    """A client error with its HTTP status (4xx) and optional reason code."""

    def __init__(self, status: int, error: str, reason: str | None = None):
        super().__init__(error)
        self.status, self.error, self.reason = status, error, reason


def body(cap: int | None = None) -> dict:
    """The request's JSON object, strictly decoded, from at most ``cap`` bytes
    (decoded; default ``MAX_CONTENT_LENGTH``, the /blocks cap)."""
    if request.mimetype != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}",
                       "bad-content-type")
    try:
        doc = parse_json(request_bytes(cap or current_app.config["MAX_CONTENT_LENGTH"]))
    except EncodingError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", "bad-json") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the JSON body must be an object", "bad-json")
    return doc


def request_bytes(cap: int) -> bytes:
    """The body as sent, or decoded from ``Content-Encoding: gzip``, at most
    ``cap`` bytes (the route's own cap: parsing JSON costs ~0.15 s per MiB, so a
    16 KB gzip body must not become 16 MiB to parse), and refused when it
    decodes to more than :data:`~learningchain.node.p2p.wire.MAX_RATIO` times its size
    (learningchain/node/p2p/wire.py)."""
    raw, coding = request.get_data(cache=True), request.headers.get("Content-Encoding")
    where = f"{request.method} {request.path}"
    if is_identity(coding):
        if len(raw) > cap:
            raise ApiError(413, f"request body of {len(raw)} bytes is over the cap of {cap} bytes for {where}",
                           "body-too-large")
        return raw
    if not is_gzip(coding):
        raise ApiError(415, f"Content-Encoding must be gzip or absent, got {coding!r}",
                       "unsupported-content-encoding")
    try:
        return gunzip_capped(raw, cap, MAX_RATIO)
    except RatioError as exc:
        raise ApiError(413, f"request body refused: {exc}", "body-compression-ratio") from None
    except TooLargeError:
        raise ApiError(413, f"request body decodes to more than the cap of {cap} bytes for {where}",
                       "body-too-large") from None
    except ContentEncodingError as exc:
        raise ApiError(400, str(exc), "bad-content-encoding") from None


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not is_number(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"query parameter {name} must be an integer in [{lo}, {hi}]", "bad-query")
    return int(raw)


def is_number(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def peer_header() -> str | None:
    url = request.headers.get("X-Peer")
    return url if url and check_peer_url(url) is None else None
