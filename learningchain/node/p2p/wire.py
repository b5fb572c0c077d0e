"""HTTP content coding of the node's traffic: gzip on the wire, bounded on decode.

Compression is transport only. Ids, signatures and digests are computed over the
canonical JSON (docs/protocol.md); a gzip body decodes to exactly those bytes,
so nothing in the ledger core knows about it.

* :func:`gzip_encode` is what a node sends: request bodies to peers and reply
  bodies to clients that ask (``Accept-Encoding: gzip``), when larger than
  :data:`MIN_BYTES`. Level :data:`LEVEL` = 1: on a signed digits update (13,456 B of
  canonical JSON) level 1 gives 10,124 B in ~210 us and level 6 10,054 B in
  ~240 us (0.7 % smaller, 15 % slower); base64 and hex leave deflate little to
  find beyond their Huffman gain, so the fast level is all but free.
* :class:`CappedGunzip` decodes incrementally and never holds more than ``cap``
  bytes of output however small the input: deflate expands up to ~1,030:1, so
  a 1 MB body can claim 1 GB (a "decompression bomb"). Each step asks zlib for
  at most what is left under the cap plus one byte (``max_length``); one byte
  more than the cap is the proof that the body is over it.
* A ratio bound on top: past :data:`RATIO_FLOOR` decoded bytes, output may not
  exceed :data:`MAX_RATIO` times the whole encoded body (its Content-Length, or
  the input fed so far when the length is not declared) (:class:`RatioError`).
  A sender checks the same rule before it encodes (:func:`gzip_for_wire`) and
  sends plain what would break it, so an honest body is never refused for its
  ratio: a valid tx whose weights are all zeros compresses ~250:1, and a block
  holding it must still travel.
  Honest traffic is far below it (canonical JSON of float32 weights in base64
  compresses under 1.4:1, hex ids and hashes about 2:1), while a body of JSON
  whitespace or digits decodes ~1,000:1, and the cap alone would let 16 KB of
  gzip cost seconds of JSON parsing. The same kind of rule as Apache POI's
  ``ZipSecureFile`` minimum inflate ratio (0.01, i.e. 100:1), tightened to what
  our payloads need.

RFC 9110 section 8.4 (Content-Encoding) and 12.5.3 (Accept-Encoding); the gzip
format is RFC 1952 (zlib ``wbits=31``), including concatenated members.
"""
from __future__ import annotations

import zlib

#: bodies up to this size travel as they are: gzip's 18-byte frame and the
#: header line would eat what it saves. Above it hex ids and hashes shrink by
#: about a third: a compact block of an empty block, 515 B of JSON, sends 331 B,
#: and at several blocks a second those are most of a node's messages.
MIN_BYTES = 256
LEVEL = 1
#: decoded/encoded ratio above which a gzip body is refused, once past RATIO_FLOOR.
MAX_RATIO = 20
RATIO_FLOOR = 4 << 10
_GZIP_WBITS = 31  # zlib: gzip header and trailer (16) + 32 KiB window (15)


class ContentEncodingError(Exception):
    """A gzip body that does not decode (corrupt, truncated, trailing garbage)."""


class TooLargeError(Exception):
    """A gzip body whose decoded size is over the cap."""


class RatioError(TooLargeError):
    """A gzip body that decodes to more than :data:`MAX_RATIO` times its size."""


def gzip_encode(data: bytes) -> bytes:
    """``data`` as one gzip member (mtime 0, no file name: the same bytes always
    encode the same way)."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return c.compress(data) + c.flush()


def ratio_allows(decoded: int, encoded: int) -> bool:
    """The receivers' rule: ``decoded`` bytes from ``encoded`` bytes of gzip."""
    return decoded <= max(RATIO_FLOOR, MAX_RATIO * encoded)


def gzip_for_wire(data: bytes) -> bytes | None:
    """``data`` gzip-encoded as a node sends it, or None when it should travel plain:
    too small to gain, or so compressible that a receiver would refuse it under
    :func:`ratio_allows` (the sender applies the receivers' rule to itself)."""
    if len(data) <= MIN_BYTES:
        return None
    encoded = gzip_encode(data)
    return encoded if ratio_allows(len(data), len(encoded)) else None


def accepts_gzip(header: str | None) -> bool:
    """Does an ``Accept-Encoding`` value allow gzip? ``gzip`` or ``x-gzip`` or
    ``*`` with a q-value above 0 (RFC 9110 section 12.5.3)."""
    for part in (header or "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def is_gzip(coding: str | None) -> bool:
    return (coding or "").strip().lower() in ("gzip", "x-gzip")


def is_identity(coding: str | None) -> bool:
    return (coding or "").strip().lower() in ("", "identity")


class CappedGunzip:
    """Incremental gzip decoder that refuses to produce more than ``cap`` bytes.

    ``feed(chunk)`` returns the bytes decoded so far from the chunk; ``finish()``
    checks the stream ended cleanly. Both raise :class:`TooLargeError` as soon as
    the output would pass ``cap`` and :class:`ContentEncodingError` on corrupt input;
    with ``max_ratio``, :class:`RatioError` as soon as the output passes both
    :data:`RATIO_FLOOR` and ``max_ratio`` times the input fed so far.
    """

    def __init__(self, cap: int, max_ratio: float | None = None, encoded_size: int | None = None):
        self.cap, self.size, self.fed, self.max_ratio = cap, 0, 0, max_ratio
        #: the whole body's length when declared (Content-Length): the ratio is then
        #: judged against it, exactly as the sender judged it (gzip_for_wire).
        self.encoded_size = encoded_size
        self._d = zlib.decompressobj(_GZIP_WBITS)
        self._started = False  # some input seen in the current member

    def feed(self, chunk: bytes) -> bytes:
        out = []
        data = chunk
        self.fed += len(chunk)
        encoded = max(self.fed, self.encoded_size or 0)
        allowed = self.cap if self.max_ratio is None else max(RATIO_FLOOR, int(self.max_ratio * encoded))
        while data:
            if self._d.eof:  # a new member follows (RFC 1952 section 2.2)
                self._d = zlib.decompressobj(_GZIP_WBITS)
            self._started = True
            try:
                part = self._d.decompress(data, min(self.cap, allowed) - self.size + 1)
            except zlib.error as exc:
                raise ContentEncodingError(f"gzip body does not decode: {exc}") from None
            self.size += len(part)
            if self.size > self.cap:
                raise TooLargeError(f"gzip body decodes to more than {self.cap} bytes")
            if self.size > allowed:
                raise RatioError(f"gzip body decodes to more than {self.max_ratio:g} times its "
                                 f"{encoded} bytes (a decompression bomb?)")
            out.append(part)
            # input zlib left: unconsumed_tail (output limit reached) or unused_data
            # (past the end of this member: the next member, or garbage)
            data = self._d.unconsumed_tail or self._d.unused_data
        return b"".join(out)

    def finish(self) -> None:
        if not self._started or not self._d.eof:
            raise ContentEncodingError("gzip body is truncated")


def gunzip_capped(data: bytes, cap: int, max_ratio: float | None = None) -> bytes:
    """All of ``data`` decoded, at most ``cap`` bytes (raises as :class:`CappedGunzip`)."""
    d = CappedGunzip(cap, max_ratio)
    out = d.feed(data)
    d.finish()
    return out


#: reply media types worth compressing (PNG and other binaries are compressed already).
COMPRESSIBLE = ("application/json", "text/html", "text/plain", "text/css", "image/svg+xml")


def compress_reply(resp, accept_encoding: str | None):
    """A Flask/werkzeug response gzip-encoded when the client accepts gzip and the
    body is a buffered text type over :data:`MIN_BYTES`; ``Vary: Accept-Encoding``
    on every reply that could have been, so a cache keeps both forms apart."""
    if (resp.direct_passthrough or resp.is_streamed or "Content-Encoding" in resp.headers
            or resp.mimetype not in COMPRESSIBLE or resp.status_code in (204, 304)):
        return resp
    data = resp.get_data()
    if len(data) <= MIN_BYTES:
        return resp
    resp.vary.add("Accept-Encoding")
    encoded = gzip_for_wire(data) if accepts_gzip(accept_encoding) else None
    if encoded is not None:
        resp.set_data(encoded)
        resp.headers["Content-Encoding"] = "gzip"
    return resp
