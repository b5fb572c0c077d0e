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

RFC 9110 section 8.4 (Content-Encoding) and 12.5.3 (Accept-Encoding); the gzip
format is RFC 1952 (zlib ``wbits=31``), including concatenated members.
"""
from __future__ import annotations

import zlib

#: bodies up to this size travel as they are: gzip's 18-byte frame and the
#: header line would eat what it saves.
MIN_BYTES = 1024
LEVEL = 1
_GZIP_WBITS = 31  # zlib: gzip header and trailer (16) + 32 KiB window (15)


class ContentEncodingError(Exception):
    """A gzip body that does not decode (corrupt, truncated, trailing garbage)."""


class TooLargeError(Exception):
    """A gzip body whose decoded size is over the cap."""


def gzip_encode(data: bytes) -> bytes:
    """``data`` as one gzip member (mtime 0, no file name: the same bytes always
    encode the same way)."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return c.compress(data) + c.flush()


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
    the output would pass ``cap`` and :class:`ContentEncodingError` on corrupt input.
    """

    def __init__(self, cap: int):
        self.cap, self.size = cap, 0
        self._d = zlib.decompressobj(_GZIP_WBITS)
        self._started = False  # some input seen in the current member

    def feed(self, chunk: bytes) -> bytes:
        out = []
        data = chunk
        while data:
            if self._d.eof:  # a new member follows (RFC 1952 section 2.2)
                self._d = zlib.decompressobj(_GZIP_WBITS)
            self._started = True
            try:
                part = self._d.decompress(data, self.cap - self.size + 1)
            except zlib.error as exc:
                raise ContentEncodingError(f"gzip body does not decode: {exc}") from None
            self.size += len(part)
            if self.size > self.cap:
                raise TooLargeError(f"gzip body decodes to more than {self.cap} bytes")
            out.append(part)
            # input zlib left: unconsumed_tail (output limit reached) or unused_data
            # (past the end of this member: the next member, or garbage)
            data = self._d.unconsumed_tail or self._d.unused_data
        return b"".join(out)

    def finish(self) -> None:
        if not self._started or not self._d.eof:
            raise ContentEncodingError("gzip body is truncated")


def gunzip_capped(data: bytes, cap: int) -> bytes:
    """All of ``data`` decoded, at most ``cap`` bytes (raises as :class:`CappedGunzip`)."""
    d = CappedGunzip(cap)
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
    if accepts_gzip(accept_encoding):
        resp.set_data(gzip_encode(data))
        resp.headers["Content-Encoding"] = "gzip"
    return resp
