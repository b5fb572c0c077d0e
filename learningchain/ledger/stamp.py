"""The per-transaction proof-of-work stamp that prices Sybils in an open network.

A genesis with ``stamp_bits = k`` makes every tx valid only if its id (SHA-256
of the canonical body, docs/protocol.md section 3) starts with ``k`` zero bits:
about ``2^k`` hashes of the body per tx, for every key, every round. The nonce
is the body's ``timestamp``: a sender starts at its clock and counts up, so no
field is added to the tx format (the id covers the timestamp already, and
nothing else reads it). Checking costs nothing: the id is computed anyway, and
the check runs before the signature, so a flood of unstamped txs from fresh
keys costs one hash each, not a signature verification and a key-cache slot.

Grinding hashes the canonical body split around the timestamp: the bytes before
``"timestamp":`` once (a SHA-256 midstate), then the digits and the rest per try
(``weights`` sorts last, so the weights are hashed on every try: the price of a
stamp grows with the update, as its cost to relay does).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

from learningchain.core.crypto import PrivateKey
from learningchain.core.encoding import canonical_json
from learningchain.ledger.tx import UpdateTx

_SENTINEL = 2**53 - 1  # a timestamp value no real clock has; its digits are unique in the body
MAX_TIMESTAMP = 2**53 - 1


def stamp_ok(txid: bytes, bits: int | None) -> bool:
    """Does the 32-byte tx id start with ``bits`` zero bits?"""
    return not bits or int.from_bytes(txid, "big") >> (256 - bits) == 0


def stamp(tx: UpdateTx, key: PrivateKey, bits: int | None, max_tries: int = 1 << 40) -> UpdateTx:
    """``tx`` with the first timestamp at or after its own whose id meets
    ``bits``, signed by ``key``; ``tx`` itself if no stamp is asked or it already
    meets it. Raises RuntimeError after ``max_tries``."""
    if stamp_ok(tx.id_bytes, bits):
        return tx
    raw = canonical_json(replace(tx, timestamp=_SENTINEL, signature="").body())
    marker = b'"timestamp":' + str(_SENTINEL).encode()
    at = raw.index(marker) + len(b'"timestamp":')
    prefix, suffix = raw[:at], raw[at + len(str(_SENTINEL)):]
    head = hashlib.sha256(prefix)
    limit = 1 << (256 - bits)
    ts = tx.timestamp
    for _ in range(max_tries):
        h = head.copy()
        h.update(str(ts).encode() + suffix)
        if int.from_bytes(h.digest(), "big") < limit:
            out = replace(tx, timestamp=ts, signature="")
            assert out.id_bytes == h.digest()  # the split reproduces the canonical body
            return out.signed(key)
        ts += 1
        if ts > MAX_TIMESTAMP:
            ts = 0
    raise RuntimeError(f"no {bits}-bit stamp found in {max_tries} tries")
