"""Blocks: a fixed 189-byte header, the update transactions, and the round
commitment (or, in genesis, the network configuration).

Header bytes (all integers big-endian), hashed with a single SHA-256::

    version u32 | height u64 | prev_hash 32 | merkle_root 32 | commitment_hash 32
    | timestamp_ms u64 | target 32 | miner pubkey 33 (SEC1 compressed) | nonce u64

The nonce is last so a miner hashes the 181-byte prefix once and copies that
state per nonce (see :mod:`miner`). Proof of work holds iff the hash, read as a
big-endian integer, is below ``target``. A block's work is
``2**256 // (target + 1)`` (Bitcoin Core's GetBlockProof).

``merkle_root`` commits to the transaction ids; ``commitment_hash`` is
``SHA-256(canonical_json({"commitment": ..., "config": ...}))`` and so commits to
the round commitment and the genesis configuration.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from learningchain.core import crypto, errors
from learningchain.core.encoding import EncodingError, canonical_hash, canonical_json, is_hex, sha256
from learningchain.core.errors import ValidationError
from learningchain.ledger.txs import Tx, parse_tx

HEADER_VERSION = 1
HEADER_SIZE = 189
NONCE_SIZE = 8
PREFIX_SIZE = HEADER_SIZE - NONCE_SIZE
ZERO_HASH = "00" * 32
_HEADER_FIELDS = {"version", "height", "prev_hash", "merkle_root", "commitment_hash", "timestamp",
                  "target", "miner", "nonce"}
_BLOCK_FIELDS = {"header", "txs", "commitment", "config"}


def merkle_root(txids: list[bytes]) -> bytes:
    """Merkle root of 32-byte ids, RFC 6962 style so that no two id lists share a
    root: leaf = SHA-256(0x00 || id), node = SHA-256(0x01 || left || right), an odd
    last node is carried up unchanged; the empty list's root is 32 zero bytes."""
    if not txids:
        return bytes(32)
    level = [sha256(b"\x00" + t) for t in txids]
    while len(level) > 1:
        nxt = [sha256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def work_of(target: int) -> int:
    return (1 << 256) // (target + 1)


def commitment_hash_of(commitment: dict | None, config: dict | None) -> str:
    return canonical_hash({"commitment": commitment, "config": config}).hex()


def _is_uint(v: Any, bits: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


@dataclass(frozen=True)
class BlockHeader:
    height: int
    prev_hash: str
    merkle_root: str
    commitment_hash: str
    timestamp: int  # unix milliseconds
    target: int
    miner: str  # SEC1 compressed public key hex
    nonce: int = 0
    version: int = HEADER_VERSION

    def prefix(self) -> bytes:
        """The 181 header bytes before the nonce."""
        return (struct.pack(">IQ", self.version, self.height) + bytes.fromhex(self.prev_hash)
                + bytes.fromhex(self.merkle_root) + bytes.fromhex(self.commitment_hash)
                + struct.pack(">Q", self.timestamp) + self.target.to_bytes(32, "big")
                + bytes.fromhex(self.miner))

    def serialize(self) -> bytes:
        return self.prefix() + struct.pack(">Q", self.nonce)

    @cached_property
    def hash_bytes(self) -> bytes:
        return sha256(self.serialize())

    @property
    def hash(self) -> str:
        return self.hash_bytes.hex()

    def check_pow(self) -> bool:
        return int.from_bytes(self.hash_bytes, "big") < self.target

    @property
    def work(self) -> int:
        return work_of(self.target)

    def with_nonce(self, nonce: int) -> "BlockHeader":
        return replace(self, nonce=nonce)

    def to_dict(self) -> dict:
        return {"version": self.version, "height": self.height, "prev_hash": self.prev_hash,
                "merkle_root": self.merkle_root, "commitment_hash": self.commitment_hash,
                "timestamp": self.timestamp, "target": f"{self.target:064x}", "miner": self.miner,
                "nonce": self.nonce}

    @classmethod
    def parse(cls, doc: Any) -> "BlockHeader":
        def bad(detail: str) -> ValidationError:
            return ValidationError(errors.BLOCK_MALFORMED, f"header: {detail}")
        if not isinstance(doc, dict) or set(doc) != _HEADER_FIELDS:
            raise bad(f"must be an object with exactly {', '.join(sorted(_HEADER_FIELDS))}")
        if not _is_uint(doc["version"], 32) or doc["version"] != HEADER_VERSION:  # not true, not 1.0
            raise bad(f"version must be {HEADER_VERSION}")
        for name, bits in (("height", 53), ("timestamp", 53), ("nonce", 64)):
            if not _is_uint(doc[name], bits):
                raise bad(f"{name} must be an integer in [0, 2^{bits})")
        for name in ("prev_hash", "merkle_root", "commitment_hash", "target"):
            if not is_hex(doc[name], 32):
                raise bad(f"{name} must be 64 lowercase hex chars")
        try:  # a point on the curve, not just 02/03 + hex: energy and l-nearest name the miner
            crypto.check_public_key(doc["miner"])
        except crypto.InvalidKey as exc:
            raise ValidationError(errors.BLOCK_BAD_MINER_KEY, f"header: miner: {exc}") from None
        return cls(height=doc["height"], prev_hash=doc["prev_hash"], merkle_root=doc["merkle_root"],
                   commitment_hash=doc["commitment_hash"], timestamp=doc["timestamp"],
                   target=int(doc["target"], 16), miner=doc["miner"], nonce=doc["nonce"])


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[Tx, ...] = ()
    commitment: dict | None = None  # the round commitment, when this block closes a round
    config: dict | None = None  # the network configuration, genesis only

    @property
    def hash(self) -> str:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @cached_property
    def size(self) -> int:
        """``len(serialize())`` from its parts, without encoding the txs again:
        canonical JSON of an object nested in another is the same bytes as on its
        own, so ``{"commitment":C,"config":K,"header":H,"txs":[t1,t2,..]}`` counts
        each tx's own wire size."""
        parts = canonical_json({"commitment": self.commitment, "config": self.config,
                                "header": self.header.to_dict(), "txs": []})
        return len(parts) + sum(t.size for t in self.txs) + max(0, len(self.txs) - 1)

    def to_dict(self) -> dict:
        return {"header": self.header.to_dict(), "txs": [t.to_dict() for t in self.txs],
                "commitment": self.commitment, "config": self.config}

    def serialize(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def parse(cls, doc: Any) -> "Block":
        if not isinstance(doc, dict) or set(doc) != _BLOCK_FIELDS:
            raise ValidationError(errors.BLOCK_MALFORMED,
                                  f"a block must be an object with exactly {', '.join(sorted(_BLOCK_FIELDS))}")
        header = BlockHeader.parse(doc["header"])
        if not isinstance(doc["txs"], list):
            raise ValidationError(errors.BLOCK_MALFORMED, "txs must be a list")
        for name in ("commitment", "config"):
            if doc[name] is not None and not isinstance(doc[name], dict):
                raise ValidationError(errors.BLOCK_MALFORMED, f"{name} must be an object or null")
        try:
            canonical_json({"commitment": doc["commitment"], "config": doc["config"]})
        except EncodingError as exc:
            raise ValidationError(errors.BLOCK_MALFORMED, str(exc)) from None
        txs = []
        for i, t in enumerate(doc["txs"]):
            try:
                txs.append(parse_tx(t))
            except ValidationError as exc:
                raise ValidationError(errors.BLOCK_BAD_TX, f"tx {i}: {exc.code}: {exc.detail}") from None
        return cls(header=header, txs=tuple(txs), commitment=doc["commitment"], config=doc["config"])

    def computed_merkle_root(self) -> str:
        return merkle_root([t.id_bytes for t in self.txs]).hex()

    def check_structure(self) -> None:
        """Context-free checks: proof of work, merkle root, commitment hash."""
        if not self.header.check_pow():
            raise ValidationError(errors.BLOCK_BAD_POW, "header hash is not below its target")
        if self.computed_merkle_root() != self.header.merkle_root:
            raise ValidationError(errors.BLOCK_BAD_MERKLE, "merkle root does not match the transactions")
        if commitment_hash_of(self.commitment, self.config) != self.header.commitment_hash:
            raise ValidationError(errors.BLOCK_BAD_COMMITMENT_HASH,
                                  "commitment hash does not match the block's commitment and config")


def make_block(height: int, prev_hash: str, timestamp: int, target: int, miner: str,
               txs: tuple[Tx, ...] = (), commitment: dict | None = None,
               config: dict | None = None, nonce: int = 0) -> Block:
    """An unmined block (nonce as given) with its merkle root and commitment hash filled in."""
    header = BlockHeader(height=height, prev_hash=prev_hash,
                         merkle_root=merkle_root([t.id_bytes for t in txs]).hex(),
                         commitment_hash=commitment_hash_of(commitment, config), timestamp=timestamp,
                         target=target, miner=miner, nonce=nonce)
    return Block(header=header, txs=tuple(txs), commitment=commitment, config=config)
