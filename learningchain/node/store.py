"""Block store: the only disk I/O of the ledger.

Blocks are the only state the chain trusts: on start the node replays every
stored block through :class:`~learningchain.ledger.chain.Chain`, so a bug fixed in the
rules can never be frozen into a database, and a store is valid iff its blocks
are. Two more tables hold what the node must not keep in memory or lose on a
restart, and neither is trusted:

* ``models``: each round's global model G(r), keyed by its digest (the digest
  the round's commitment names). The chain drops the models of old rounds from
  memory and reads them back here on demand (a reorg from deep below the tip,
  ``/model`` of an old round); a model is used only if it hashes to the digest
  asked for, else it is recomputed from the blocks. A cache, content-addressed.
* ``mempool``: the txs waiting for a block, so a restarted node keeps them
  (issue 10 item 14). Re-validated against the tip on load like any new tx;
  the ledger mirrors its bounded mempool here, so the table is bounded too.

SQLite (stdlib ``sqlite3``) in WAL mode: readers never block the writer, and a
crash can lose at most the last uncommitted block, never half of one, because
one block is one SQL transaction. ``synchronous=NORMAL``: in WAL mode a
committed block survives a crash of the node process; only a power loss or an
OS crash may drop the last commits, and the node then syncs them again from
its peers. FULL would fsync every block and every mempool tx (about 5 ms each
measured here), on the path of every round at 5 to 20 blocks per second. What must
survive a power loss (the DP release journal, the secure-aggregation journal)
is fsynced in its own file before it leaves the node.

A block is written before the chain connects it in memory (chainstate.py): a
write that fails (disk full) leaves both as they were. Side-branch blocks
evicted by the chain's caps (see :mod:`learningchain.ledger.side_branches`) are deleted right
after; if that fails the store holds a few more than the caps, and the next
replay trims them. A stored block that no longer replays is moved to the
``set_aside`` table, never fatal (chainstate.py, ``_set_aside``).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

from learningchain.ledger.block import Block
from learningchain.core.encoding import (EncodingError, canonical_json, decode_weights, encode_weights, parse_json,
                                    weights_digest)
from learningchain.core.errors import ConfigError, ValidationError

FILE_NAME = "chain.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    hash        TEXT PRIMARY KEY,
    height      INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    data        TEXT NOT NULL,      -- canonical JSON of the block
    received_at INTEGER NOT NULL    -- unix ms when this node stored it
);
CREATE INDEX IF NOT EXISTS blocks_by_height ON blocks (height);
CREATE TABLE IF NOT EXISTS set_aside (  -- stored blocks a replay could not apply (chainstate.py)
    hash        TEXT PRIMARY KEY,
    height      INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    data        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    reason      TEXT NOT NULL,      -- "<code>: <detail>" of the failure
    moved_at    INTEGER NOT NULL    -- unix ms
);
CREATE TABLE IF NOT EXISTS models (
    digest      TEXT PRIMARY KEY,   -- weights_digest of the model
    data        TEXT NOT NULL       -- canonical JSON of encode_weights(model)
);
CREATE TABLE IF NOT EXISTS mempool (
    txid        TEXT PRIMARY KEY,
    data        TEXT NOT NULL,      -- canonical JSON of the tx
    added_at    INTEGER NOT NULL    -- unix ms
);
"""


def _load_own(text: str):
    """JSON this store wrote (canonical, of a validated block or model), read back
    on demand: plain ``json.loads``, without :func:`parse_json`'s per-character
    pre-scan for wire input (8 ms of a 9 ms read of a 54 KB block). Whatever it
    returns still goes through ``Block.parse`` / ``decode_weights`` and the hash or
    digest check."""
    return json.loads(text)


def store_path(path: str | os.PathLike) -> Path:
    """``path`` itself if it names a ``.sqlite3`` file, else ``path/chain.sqlite3``."""
    p = Path(path)
    return p if p.suffix == ".sqlite3" else p / FILE_NAME


class Store:
    def __init__(self, path: str | os.PathLike):
        self.path = store_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ConfigError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                              f"put the data dir on a local file system")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @property
    def journal_mode(self) -> str:
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    def put(self, block: Block | None, received_at: int | None = None, *, evict: Sequence[str] = ()) -> bool:
        """Store a block (None: none) and delete the blocks named in ``evict``, in
        one SQL transaction; False if the block was already there (or None)."""
        when = int(time.time() * 1000) if received_at is None else received_at
        with self._transaction():
            if evict:
                self._db.executemany("DELETE FROM blocks WHERE hash = ?", [(h,) for h in evict])
            if block is None:
                return False
            cur = self._db.execute(
                "INSERT OR IGNORE INTO blocks (hash, height, prev_hash, data, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (block.hash, block.height, block.header.prev_hash, block.serialize().decode("utf-8"), when))
        return cur.rowcount == 1

    def move_aside(self, failures: Sequence[tuple[str, str]]) -> None:
        """Move blocks (hash, reason) from ``blocks`` to ``set_aside``, in one SQL
        transaction: kept for inspection, never replayed again."""
        when = int(time.time() * 1000)
        with self._transaction():
            for block_hash, reason in failures:
                self._db.execute(
                    "INSERT OR REPLACE INTO set_aside (hash, height, prev_hash, data, received_at, reason, moved_at) "
                    "SELECT hash, height, prev_hash, data, received_at, ?, ? FROM blocks WHERE hash = ?",
                    (reason, when, block_hash))
                self._db.execute("DELETE FROM blocks WHERE hash = ?", (block_hash,))

    def set_aside_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0]

    def delete(self, hashes: Sequence[str]) -> None:
        """Delete blocks (evicted side branches) in one SQL transaction."""
        self.put(None, evict=hashes)

    def _transaction(self):
        db = self._db

        def rollback() -> None:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite already rolled back (e.g. after SQLITE_FULL)

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_):
                if exc_type is not None:
                    rollback()
                    return False
                try:
                    db.execute("COMMIT")
                except sqlite3.Error:  # disk full at commit: leave no transaction open
                    rollback()
                    raise
                return False
        return _Tx()

    def get_block(self, block_hash: str) -> Block | None:
        """One stored block by hash (None if absent or unreadable)."""
        row = self._db.execute("SELECT data FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        if row is None:
            return None
        try:
            block = Block.parse(_load_own(row[0]))
        except (ValidationError, EncodingError, ValueError, RecursionError):
            return None
        return block if block.hash == block_hash else None

    # --- models: a content-addressed cache of G(r) -----------------------------------
    def put_model(self, digest: str, model) -> None:
        """Store a round's model under its digest (kept if already there)."""
        data = canonical_json(encode_weights(model)).decode("utf-8")
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO models (digest, data) VALUES (?, ?)", (digest, data))

    def get_model(self, digest: str):
        """The model stored under ``digest``, only if it hashes to it (else None)."""
        row = self._db.execute("SELECT data FROM models WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            return None
        try:
            model = decode_weights(_load_own(row[0]))
        except (EncodingError, ValueError, RecursionError):
            return None
        return model if weights_digest(model) == digest else None

    def model_digests(self) -> set[str]:
        return {d for (d,) in self._db.execute("SELECT digest FROM models")}

    # --- mempool: txs waiting for a block, kept across restarts ------------------------
    def mempool_update(self, add: Sequence = (), remove: Sequence[str] = ()) -> None:
        """Mirror mempool changes (txs added, ids removed) in one SQL transaction."""
        if not add and not remove:
            return
        when = int(time.time() * 1000)
        with self._transaction():
            if remove:
                self._db.executemany("DELETE FROM mempool WHERE txid = ?", [(i,) for i in remove])
            if add:
                self._db.executemany("INSERT OR REPLACE INTO mempool (txid, data, added_at) VALUES (?, ?, ?)",
                                     [(t.id, t.serialize().decode("utf-8"), when) for t in add])

    def mempool_rows(self) -> list[tuple[str, str]]:
        """(txid, canonical JSON) of every stored mempool tx, oldest first."""
        return self._db.execute("SELECT txid, data FROM mempool ORDER BY added_at, rowid").fetchall()

    def block_hashes_from(self, prefix: str, limit: int) -> list[str]:
        """Stored block hashes starting with ``prefix`` (lowercase hex), at most
        ``limit``: a range over the primary key (``hash >= p AND hash < p || 'g'``,
        since every hex digit sorts below ``g``), never a scan (explorer prefixes)."""
        return [h for (h,) in self._db.execute("SELECT hash FROM blocks WHERE hash >= ? AND hash < ? "
                                                "ORDER BY hash LIMIT ?", (prefix, prefix + "g", limit))]

    def mempool_ids_from(self, prefix: str, limit: int) -> list[str]:
        """Stored mempool tx ids starting with ``prefix``, at most ``limit`` (as above)."""
        return [i for (i,) in self._db.execute("SELECT txid FROM mempool WHERE txid >= ? AND txid < ? "
                                                "ORDER BY txid LIMIT ?", (prefix, prefix + "g", limit))]

    def has(self, block_hash: str) -> bool:
        return self._db.execute("SELECT 1 FROM blocks WHERE hash = ?", (block_hash,)).fetchone() is not None

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]

    def iter_blocks(self) -> Iterator[Block]:
        """Every stored block in arrival order (``rowid``), so that a replay
        meets equal-work tips in the order the node first saw them and keeps the
        same tip ("first seen wins ties"; ordering by height would prefer the
        lower tip). Parents always come first: a block is stored only after the
        chain accepted it, i.e. after its parent, and a new row's rowid exceeds
        every existing one (SQLite takes max(rowid) + 1). Eviction keeps this
        true: only side *leaves* are deleted, so a kept block's parent is never
        deleted, and a parent fetched again gets a new, larger rowid before any
        child of it can be stored."""
        for (data,) in self._db.execute("SELECT data FROM blocks ORDER BY rowid"):
            yield Block.parse(parse_json(data))

    def iter_rows(self) -> Iterator[tuple[str, int, str]]:
        """(hash, height, data) of every block in arrival order (parents first), for verification."""
        yield from self._db.execute("SELECT hash, height, data FROM blocks ORDER BY rowid")

    def genesis_hash(self) -> str | None:
        row = self._db.execute("SELECT hash FROM blocks WHERE height = 0 ORDER BY rowid LIMIT 1").fetchone()
        return row[0] if row else None

    def check_genesis(self, genesis: Block) -> None:
        """Refuse a store that belongs to another network."""
        stored = self.genesis_hash()
        if stored is not None and stored != genesis.hash:
            raise ConfigError(f"{self.path} holds the chain of genesis {stored[:16]}..., but the configured "
                              f"genesis is {genesis.hash[:16]}...: use another --data-dir or the matching "
                              f"genesis file")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
