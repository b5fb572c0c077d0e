"""The ledger: chain + mempool + store, wired the way a node and the simulator
use them. Thin on purpose: every rule lives in :mod:`.chain`, :mod:`.rounds`
and :mod:`.mempool`; this module only orders the calls (validate, persist,
update the mempool) and replays the store on start.

With a store, the chain keeps only the recent blocks in memory and reads older
ones (bodies, models of old rounds) back from it (:class:`Chain`, issue 10
item 12); every round's model is written to the store's ``models`` table when
its closing block arrives. The mempool is mirrored in the store's ``mempool``
table and re-validated on start, so a restarted node keeps it (item 14).
"""
from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

from learningchain.core import errors
from learningchain.ledger.block import Block
from learningchain.ledger.block_index import RETAIN_BLOCKS
from learningchain.ledger.chain import Chain
from learningchain.ledger.fork_choice import AddResult
from learningchain.ledger.side_branches import MAX_SIDE_BLOCKS, MAX_SIDE_BYTES
from learningchain.core.encoding import EncodingError, parse_json
from learningchain.core.errors import ConfigError, ValidationError
from learningchain.ledger.mempool import Mempool
from learningchain.ledger.rounds import must_close
from learningchain.node.store import Store, store_path
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.txs import parse_tx

log = logging.getLogger(__name__)

#: clock reading used when replaying stored blocks: they passed the
#: future-timestamp rule when received, and the rule is about arrival time.
REPLAY_NOW_MS = 2**62


def _best_effort(what: str, write, *args, **kwargs) -> None:
    """A store write that consensus does not depend on (a cache of models, the
    mempool mirror): on a full disk or an I/O error the node goes on and says so."""
    try:
        write(*args, **kwargs)
    except sqlite3.Error as exc:
        log.warning("store: could not %s: %s", what, exc)


class Ledger:
    def __init__(self, genesis: Block, store: Store | None = None, *, max_mempool_txs: int = 10_000,
                 max_mempool_bytes: int = 256 << 20, max_side_blocks: int | None = MAX_SIDE_BLOCKS,
                 max_side_bytes: int | None = MAX_SIDE_BYTES, retain_blocks: int | None = RETAIN_BLOCKS):
        """``retain_blocks``: main-chain blocks below the tip kept whole in memory
        when there is a store (None: keep every block, the behaviour before issue 10)."""
        sources = {}
        if store is not None and retain_blocks is not None:
            sources = dict(block_source=store.get_block, model_source=store.get_model, retain_blocks=retain_blocks)
        self._chain = Chain(genesis, max_side_blocks=max_side_blocks, max_side_bytes=max_side_bytes, **sources)
        self.evicted_on_open = 0  # side blocks over the caps found in the store at start
        self.set_aside_on_open = 0  # stored blocks that did not replay (moved aside, see _set_aside)
        self._mempool = Mempool(max_mempool_txs, max_mempool_bytes)
        self.store = store
        self.mempool_restored = self.mempool_dropped = 0  # stored mempool txs kept / dropped on open
        if store is not None:
            store.check_genesis(genesis)
            self._replay(store, genesis)
            self._load_mempool(store)

    def _replay(self, store: Store, genesis: Block) -> None:
        """Rebuild every derived structure from the stored blocks. They were fully
        validated when stored, so signatures are not checked again (``python
        node.py verify`` does that). The side-branch caps are applied once at the
        end, when fork choice has seen every block (a store written with larger
        caps is trimmed), and the evicted blocks are deleted from the store."""
        if store.genesis_hash() is None:
            store.put(genesis)
        models = store.model_digests()
        failed: list[tuple[str, str]] = []  # (hash, reason): never fatal, see below
        for block_hash, height, data in store.iter_rows():
            if height == 0:
                continue
            try:
                block = Block.parse(parse_json(data))
                self._chain.add_block(block, REPLAY_NOW_MS, verify_signatures=False, prune=False,
                                      solicited=True)  # it was admitted when stored
                if block.commitment is not None and block.commitment.get("model_digest") not in models:
                    self._keep_model(block)  # a store written before the models table
            except (ValidationError, EncodingError) as exc:
                code = getattr(exc, "code", "bad-encoding")
                failed.append((block_hash, f"{code}: {' '.join(getattr(exc, 'detail', str(exc)).split())}"))
        self.set_aside_on_open = len(failed)
        if failed:
            self._set_aside(store, failed)
        evicted = self._chain.prune_side_branches()
        if evicted:
            try:
                store.delete(evicted)
            except sqlite3.Error as exc:  # the caps are applied again at the next start
                log.warning("store: could not delete %d evicted side blocks: %s", len(evicted), exc)
        self.evicted_on_open = len(evicted)

    def _set_aside(self, store: Store, failed: list[tuple[str, str]]) -> None:
        """A stored block that no longer replays (rules or limits changed since it
        was accepted, or a corrupt row) must never keep a node from starting
        (issue 10 item 1): the valid blocks stay, the failed ones (and their
        descendants, which then fail as block-unknown-parent) move to the
        store's ``set_aside`` table, and one line says so. The chain may come
        back from peers by sync if the network still holds it."""
        first_hash, first_reason = failed[0]
        log.warning("store: %d stored block(s) did not replay and were set aside in %s (table set_aside), "
                    "the first %s: %s; starting from the valid blocks (tip at height %d)",
                    len(failed), store.path, first_hash[:16], first_reason[:200], self._chain.height)
        try:
            store.move_aside(failed)
        except sqlite3.Error as exc:  # e.g. disk full: they fail and are skipped again next start
            log.warning("store: could not move the failed blocks aside (%s); they stay and are skipped", exc)

    def _keep_model(self, block: Block) -> None:
        """Write G(r) of a round-closing block to the store (read back by the chain
        once the round is deep below the tip)."""
        if self.store is None or block.commitment is None or block.hash not in self._chain:
            return
        state = self._chain.state_of(block.hash)
        if state is not None:
            _best_effort("store the model of a closed round (it is recomputed from the blocks when needed)",
                         self.store.put_model, state.model_digest, state.model)

    def _load_mempool(self, store: Store) -> None:
        """Offer the stored mempool txs to the mempool again, as if just received
        (signatures, round, base, bounds); those refused are deleted from the store."""
        dropped = []
        for txid, data in store.mempool_rows():
            try:
                tx = parse_tx(parse_json(data))
                if tx.id != txid:
                    raise ValidationError(errors.TX_MALFORMED, "stored under another id")
                self.submit_tx(tx, persist=False)
                self.mempool_restored += 1
            except (ValidationError, EncodingError):
                dropped.append(txid)
        store.mempool_update(remove=dropped)
        self.mempool_dropped = len(dropped)

    def _mirror_mempool(self, before: set[str]) -> None:
        """Write the mempool's changes since ``before`` (its ids then) to the store."""
        if self.store is None:
            return
        now = {t.id for t in self._mempool}
        _best_effort("mirror the mempool (it is rebuilt from peers after a restart)", self.store.mempool_update,
                     add=[self._mempool.get(i) for i in now - before], remove=list(before - now))

    @property
    def chain(self) -> Chain:
        return self._chain

    @property
    def mempool(self) -> Mempool:
        return self._mempool

    def submit_tx(self, tx: UpdateTx, persist: bool = True) -> str:
        """"accepted", or "known" when already in the mempool (gossip arrives from
        several peers: idempotent); raises ValidationError (TX_*, mempool-full, and
        :data:`errors.TX_REPLAY` for a tx already confirmed in the main chain: sending it
        again is a replay, refused and counted like any bad tx, issue 4)."""
        if tx.id in self._mempool:
            return "known"
        found = self._chain.tx_block(tx.id)  # no body read: old blocks live in the store
        if found is not None:
            raise ValidationError(errors.TX_REPLAY, f"tx {tx.id[:16]}... is already confirmed in block "
                                                    f"{found[0][:16]}... at height {found[1]}")
        status = self._mempool.add(tx, self._chain)
        if persist and status == "accepted" and self.store is not None:
            _best_effort("mirror the mempool (it is rebuilt from peers after a restart)",
                         self.store.mempool_update, add=[tx], remove=self._mempool.just_evicted)
        return status

    def submit_block(self, block: Block, now_ms: int, solicited: bool = False) -> AddResult:
        """Validate, persist, and only then connect in memory; drop the side blocks
        the caps evicted, and update the mempool. A block the store cannot take
        (disk full: SQLITE_FULL, an I/O error) is refused as
        :data:`errors.STORE_WRITE_FAILED` with the chain in memory unchanged, so
        it is never served or relayed unpersisted (issue 10 item 7). ``solicited``:
        see ``Chain.add_block``."""
        persist = None if self.store is None else self._persist
        result = self._chain.add_block(block, now_ms, persist=persist, solicited=solicited)
        if result.status != "known":
            if self.store is not None and result.evicted:
                try:
                    self.store.delete(result.evicted)
                except sqlite3.Error as exc:  # harmless: replay applies the caps again
                    log.warning("store: could not delete %d evicted side blocks: %s", len(result.evicted), exc)
            if self.store is not None:
                self._keep_model(block)
            before = {t.id for t in self._mempool}
            self._mempool.on_new_tip(self._chain, result)
            self._mirror_mempool(before)
        return result

    def _persist(self, block: Block) -> None:
        try:
            self.store.put(block)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise ValidationError(errors.STORE_WRITE_FAILED,
                                  f"block {block.hash[:16]}... at height {block.height} is valid but the "
                                  f"store refused it ({exc}); it was not added and will be fetched again "
                                  f"by sync once the store can be written") from None

    def would_close(self) -> bool:
        """Would a block on the tip carrying the mempool's selection close the open
        round (its quorum is here, or the timeout is due)? What the miner asks
        when a tx arrives: a template that would not close stays until it would
        (the round closes in the block that carries its quorum). Selection's
        checks only, no signature: a wrong guess costs one template."""
        chain = self._chain
        try:
            return must_close(chain.tip_state, chain.config, chain.height + 1, self._mempool.select(chain))
        except ValidationError:
            return True

    def template(self, miner_pubkey: str, now_ms: int) -> Block:
        """An unmined block on the tip with the mempool's selection, trimmed until
        it fits ``max_block_bytes``."""
        limit = self._chain.config.max_block_bytes
        txs = self._mempool.select(self._chain, limit)
        while True:
            block = self._chain.build_block(miner_pubkey, txs, now_ms)
            if block.size <= limit or not txs:
                return block
            txs = txs[:-1]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    blocks: int                  # blocks that validated (genesis included)
    height: int                  # height of the best valid tip
    tip: str | None              # hash of the best valid tip
    error: dict[str, Any] | None = field(default=None)  # {"height", "hash", "code", "detail"}

    def describe(self) -> str:
        if self.ok:
            return f"ok: {self.blocks} blocks valid, tip {self.tip} at height {self.height}"
        e = self.error or {}
        return (f"INVALID at height {e.get('height')} block {e.get('hash')}: {e.get('code')}: "
                f"{e.get('detail')} ({self.blocks} blocks valid before it, best tip at height {self.height})")


def verify_store(data_dir: str | os.PathLike, genesis: Block | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Revalidate a stored chain from genesis with every rule and every signature;
    stop at the first block that breaks and say where and why. ``progress(done,
    total)`` is told after each block (``node.py verify``'s bar)."""
    path = store_path(data_dir)
    if not path.exists():
        return VerifyReport(False, 0, -1, None, {"height": None, "hash": None, "code": "no-store",
                                                 "detail": f"no chain database at {path}"})
    with Store(path) as store:
        chain: Chain | None = None
        count = 0
        total = store.count() if progress else 0
        for block_hash, height, data in store.iter_rows():
            try:
                block = Block.parse(parse_json(data))
                if block.hash != block_hash:
                    raise ValidationError(errors.BLOCK_MALFORMED,
                                          f"stored under hash {block_hash} but its header hashes to {block.hash}")
                if chain is None:
                    if genesis is not None and block.hash != genesis.hash:
                        raise ValidationError(errors.BLOCK_BAD_GENESIS,
                                              f"stored genesis {block.hash} is not the configured {genesis.hash}")
                    # judge every stored block; deep bodies are read back (memory bounded as a node's)
                    chain = Chain(block, max_side_blocks=None, max_side_bytes=None, block_source=store.get_block)
                else:
                    chain.add_block(block, REPLAY_NOW_MS, verify_signatures=True, solicited=True)
            except (ValidationError, EncodingError, ConfigError) as exc:
                code = getattr(exc, "code", type(exc).__name__)
                detail = getattr(exc, "detail", str(exc))
                return VerifyReport(False, count, chain.height if chain else -1,
                                    chain.tip.hash if chain else None,
                                    {"height": height, "hash": block_hash, "code": code, "detail": detail})
            count += 1
            if progress:
                progress(count, total)
        if chain is None:
            return VerifyReport(False, 0, -1, None, {"height": 0, "hash": None, "code": "empty-store",
                                                     "detail": f"{path} holds no blocks"})
        return VerifyReport(True, count, chain.height, chain.tip.hash)
