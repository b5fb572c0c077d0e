"""The chain: a block's validation in the context of its parent, then its place by fork choice; the queries on the main chain.

A block's path through :meth:`Chain.add_block` reads top-down:

1. known, remembered invalid, or an orphan (unknown parent): answered at once;
2. side-branch admission, unless solicited
   (:meth:`SideBranches.check_admission <learningchain.ledger.side_branches.SideBranches.check_admission>`);
3. :meth:`Chain.connect`, every rule against the parent's own state, in order:
   the header against its parent (:func:`~learningchain.ledger.header_rules.check_header`),
   the parent's full round state (rebuilt if it was retired:
   :meth:`BlockIndex.full_state <learningchain.ledger.block_index.BlockIndex.full_state>`),
   each tx against the open round (:func:`~learningchain.ledger.rounds.check_tx`,
   which decodes compressed deltas), then the round's closing rule and
   commitment (:func:`~learningchain.ledger.rounds.next_state`, where the
   aggregation, reputation, selection and energy accounting of a closing round run);
4. ``persist`` (the store), before anything in memory changes;
5. the block is indexed (:mod:`learningchain.ledger.block_index`) and placed by
   fork choice (:func:`learningchain.ledger.fork_choice.choose`: side, connected or reorg);
6. the side-branch caps (:meth:`SideBranches.prune <learningchain.ledger.side_branches.SideBranches.prune>`).

Pure: the caller passes the clock (``now_ms``) and persists blocks
(:mod:`learningchain.node.store`). The rules a header must meet against its
parent (target, timestamps, genesis header) are in
:mod:`learningchain.ledger.header_rules`; the round rules in
:mod:`learningchain.ledger.rounds`; the round index and summaries in
:mod:`learningchain.ledger.round_index`.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.learning.models import expected_shapes, initial_weights
from learningchain.ledger import fork_choice
from learningchain.ledger.block import ZERO_HASH, Block, BlockHeader, commitment_hash_of, make_block
from learningchain.ledger.block_index import RETAIN_BLOCKS, BlockIndex, Entry
from learningchain.ledger.fork_choice import AddResult
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.header_rules import check_genesis_header, check_header, median_time, next_target
from learningchain.ledger.round_index import RoundIndex
from learningchain.ledger.rounds import (RoundState, VerifiedCache, block_commitment, check_tx, initial_state,
                                         next_state, taken_key)
from learningchain.ledger.side_branches import MAX_SIDE_BLOCKS, MAX_SIDE_BYTES, SideBranches
from learningchain.ledger.tx import UpdateTx

#: bound of the remembered-invalid set.
MAX_INVALID = 10_000
#: failures that depend on something the header hash does not commit to (the
#: clock, a missing parent, tx signatures and thus exact size): never cached.
_NOT_CACHED = {errors.BLOCK_BAD_PREV, errors.BLOCK_TIME_TOO_NEW, errors.BLOCK_TOO_LARGE,
               errors.BLOCK_BAD_TX, errors.BLOCK_MALFORMED, errors.BLOCK_BAD_MERKLE,
               errors.BLOCK_BAD_COMMITMENT_HASH, errors.BLOCK_BAD_POW}


class Chain:
    """Valid blocks with per-block round state (:attr:`index`), their side
    branches (:attr:`side`) and round index (:attr:`rounds`). ``max_side_blocks``
    / ``max_side_bytes`` bound what is kept off the main chain (None: unbounded);
    ``block_source`` / ``model_source`` / ``retain_blocks``: what of deep blocks
    stays in memory (:mod:`learningchain.ledger.block_index`)."""

    def __init__(self, genesis: Block, verified: VerifiedCache | None = None, *,
                 max_side_blocks: int | None = MAX_SIDE_BLOCKS, max_side_bytes: int | None = MAX_SIDE_BYTES,
                 block_source: Callable[[str], Block | None] | None = None,
                 model_source: Callable[[str], Any] | None = None, retain_blocks: int = RETAIN_BLOCKS):
        if genesis.height != 0 or genesis.header.prev_hash != ZERO_HASH or genesis.txs:
            raise ValidationError(errors.BLOCK_BAD_GENESIS, "genesis must be height 0, prev zeros, no txs")
        # Genesis proof of work is not checked: genesis is the trust anchor, named by its hash.
        self.config = NetworkConfig.from_genesis(genesis)
        if commitment_hash_of(genesis.commitment, genesis.config) != genesis.header.commitment_hash:
            raise ValidationError(errors.BLOCK_BAD_GENESIS, "genesis commitment hash does not match its config")
        check_genesis_header(genesis, self.config)
        # shapes and G0 from the spec alone: validating never needs the model's backend (PyTorch)
        self.expected_shapes = expected_shapes(self.config.model_spec)
        self.verified = verified if verified is not None else VerifiedCache()
        state = initial_state(self.config, initial_weights(self.config.model_spec), genesis.hash)
        self.index = BlockIndex(genesis, state, self.config, block_source=block_source,
                                model_source=model_source, retain_blocks=retain_blocks)
        self.side = SideBranches(self.index, max_side_blocks, max_side_bytes)
        self.rounds = RoundIndex(self.index)
        self._invalid: OrderedDict[str, ValidationError] = OrderedDict()

    # --- adding blocks: the path of a block, top-down ------------------------------------
    def add_block(self, block: Block, now_ms: int, *, verify_signatures: bool = True,
                  prune: bool = True, solicited: bool = False,
                  persist: Callable[[Block], None] | None = None) -> AddResult:
        """Validate ``block`` against its parent's state, update fork choice and
        (``prune``) enforce the side-branch caps: ``result.evicted`` names what went,
        possibly ``block`` itself. Unless ``solicited`` (sync fetched it along a
        header chain with more work than our tip, or it is replayed from our store),
        a block whose branch would stay below :meth:`side_work_floor` is refused
        before any rule runs. ``persist``, when given, is called with the valid
        block before anything in memory changes: if it raises, the chain is exactly
        as before (a block is never in memory without being on disk). Raises
        ValidationError (BLOCK_BAD_PREV for an unknown parent: an orphan;
        BLOCK_SIDE_WORK_TOO_LOW)."""
        if block.hash in self.index.entries:
            return AddResult("known", block)
        parent = self._parent_of(block)
        if not solicited:
            self.side.check_admission(parent, block.header)
        state = self._connect_or_remember(block, parent, now_ms, verify_signatures)
        if persist is not None:
            persist(block)
        result = fork_choice.choose(self.index, self.side, self.index.add(block, parent, state))
        evicted = self.side.prune(keep=block.hash, spare_keep=solicited) if prune else ()
        return replace(result, evicted=evicted) if evicted else result

    def _parent_of(self, block: Block) -> Entry:
        """The parent's entry; raises the remembered error of a known-invalid block,
        BLOCK_BAD_PREV for an orphan."""
        if block.hash in self._invalid:
            self._invalid.move_to_end(block.hash)
            raise self._invalid[block.hash]
        parent = self.index.entries.get(block.header.prev_hash)
        if parent is None:
            raise ValidationError(errors.BLOCK_BAD_PREV, f"parent {block.header.prev_hash} is unknown")
        return parent

    def _connect_or_remember(self, block: Block, parent: Entry, now_ms: int, verify_signatures: bool) -> RoundState:
        """:meth:`connect`, remembering a failure the header hash commits to."""
        try:
            return self.connect(block, parent, now_ms, verify_signatures)
        except ValidationError as exc:
            if exc.code not in _NOT_CACHED:
                self._invalid[block.hash] = exc
                while len(self._invalid) > MAX_INVALID:
                    self._invalid.popitem(last=False)
            raise

    def connect(self, block: Block, parent: Entry, now_ms: int, verify_signatures: bool = True) -> RoundState:
        """All rules for ``block`` on ``parent``; returns the state after it."""
        check_header(block, parent, self.config, now_ms)
        state = self.index.full_state(parent)
        decoded: dict = {}  # weights decoded by the tx checks, aggregated if the block closes the round
        self._check_txs(block, state, verify_signatures, decoded)
        return next_state(state, self.config, block.height, block.txs, block.commitment,
                          block.header.miner, parent.hash, decoded)

    def _check_txs(self, block: Block, state: RoundState, verify_signatures: bool, decoded: dict) -> None:
        ids = [t.id for t in block.txs]
        dup = set(ids) & state.pending_ids or (len(set(ids)) != len(ids))
        if dup:
            raise ValidationError(errors.BLOCK_DUPLICATE_TX, "a transaction appears twice on this branch")
        senders: set = set()  # senders, and (sender, type) pairs (rounds.taken_key)
        for i, tx in enumerate(block.txs):
            try:
                check_tx(tx, state, self.config, self.expected_shapes, self.verified, senders,
                         verify_signatures, decoded)
            except ValidationError as exc:
                raise ValidationError(errors.BLOCK_BAD_TX,
                                      f"tx {i} ({tx.id}): {exc.code}: {exc.detail}") from None
            senders.update((tx.sender, taken_key(tx)))

    def validate_tx(self, tx: UpdateTx, verified: VerifiedCache | None = None) -> None:
        """Raise the TX_* ValidationError unless ``tx`` may enter the next block on the tip."""
        state = self.index.tip.state
        if tx.id in self.index.tx_index or tx.id in state.pending_ids:
            raise ValidationError(errors.TX_DUPLICATE, f"tx {tx.id[:16]}... is already in the chain")
        check_tx(tx, state, self.config, self.expected_shapes,
                 verified if verified is not None else self.verified)

    # --- side branches ------------------------------------------------------------------
    def side_work_floor(self) -> int:
        """The least cumulative work an unsolicited side block's branch needs to be stored."""
        return self.side.work_floor()

    def check_side_admission(self, parent: Entry, header: BlockHeader) -> None:
        """Raise BLOCK_SIDE_WORK_TOO_LOW if a block with ``header`` on ``parent``
        would be a side block below :meth:`side_work_floor`."""
        self.side.check_admission(parent, header)

    def prune_side_branches(self, keep: str | None = None, spare_keep: bool = False) -> tuple[str, ...]:
        """Enforce the side-branch caps (:meth:`SideBranches.prune`)."""
        return self.side.prune(keep, spare_keep)

    @property
    def max_side_blocks(self) -> int | None:
        return self.side.max_blocks

    @max_side_blocks.setter
    def max_side_blocks(self, value: int | None) -> None:
        self.side.max_blocks = value

    @property
    def max_side_bytes(self) -> int | None:
        return self.side.max_bytes

    @max_side_bytes.setter
    def max_side_bytes(self, value: int | None) -> None:
        self.side.max_bytes = value

    @property
    def side_blocks(self) -> int:
        """Blocks kept off the main chain."""
        return self.side.count

    @property
    def side_bytes(self) -> int:
        return self.side.bytes

    @property
    def evicted_total(self) -> int:
        """Side blocks evicted since start."""
        return self.side.evicted_total

    # --- queries ----------------------------------------------------------------
    @property
    def genesis(self) -> Block:
        return self.index.genesis.block

    @property
    def tip(self) -> Block:
        return self.index.tip.block

    @property
    def tip_entry(self) -> Entry:
        """The tip's index entry (what the header rules take as a parent)."""
        return self.index.tip

    @property
    def height(self) -> int:
        return self.index.tip.height

    @property
    def tip_work(self) -> int:
        return self.index.tip.work

    @property
    def tip_state(self) -> RoundState:
        return self.index.tip.state

    def __contains__(self, block_hash: str) -> bool:
        return block_hash in self.index.entries

    def __len__(self) -> int:
        return len(self.index.entries)

    def entry(self, block_hash: str) -> Entry | None:
        """The index entry of a block we hold (its parent link, cumulative work and
        height: what headers-first sync checks a peer's headers against)."""
        return self.index.entries.get(block_hash)

    def state_of(self, block_hash: str) -> RoundState | None:
        e = self.index.entries.get(block_hash)
        return self.index.full_state(e) if e else None

    def work_of(self, block_hash: str) -> int | None:
        e = self.index.entries.get(block_hash)
        return e.work if e else None

    def get_block(self, block_hash: str) -> Block | None:
        e = self.index.entries.get(block_hash)
        return e.block if e else None

    def block_at(self, height: int) -> Block | None:
        if 0 <= height < len(self.index.main):
            return self.index.at(height).block
        return None

    def main_chain(self, start: int = 0, limit: int = 100) -> list[Block]:
        """Whole main-chain blocks (bodies deep below the tip are read from the store)."""
        return [e.block for e in self.main_entries(start, limit)]

    def main_entries(self, start: int = 0, limit: int = 100) -> list[Entry]:
        """Main-chain entries: header, hash, tx ids and commitment, no body read."""
        return self.index.main_entries(start, limit)

    def on_main_chain(self, block_hash: str) -> bool:
        return self.index.on_main_chain(block_hash)

    def tx_block(self, txid: str) -> tuple[str, int] | None:
        """(hash, height) of the main-chain block holding ``txid``; no body is read."""
        block_hash = self.index.tx_index.get(txid)
        return (block_hash, self.index.entries[block_hash].height) if block_hash is not None else None

    def find_tx(self, txid: str, stored: bool = True) -> tuple[UpdateTx, str] | None:
        """The main-chain tx and its block's hash; ``stored=False``: only from a block
        kept in memory (never read from the store)."""
        block_hash = self.index.tx_index.get(txid)
        if block_hash is None:
            return None
        entry = self.index.entries[block_hash]
        if entry.body is None and not stored:
            return None
        tx = next(t for t in entry.block.txs if t.id == txid)
        return tx, block_hash

    def model(self, block_hash: str | None = None) -> tuple["OrderedDict[str, np.ndarray]", str]:
        """The latest global model at a block (default: the tip) and its digest."""
        e = self.index.entries.get(block_hash) if block_hash else self.index.tip
        if e is None:
            raise KeyError(f"unknown block {block_hash}")
        if e.state.model is None:
            return self.index.round_model(self.index.opening(e)), e.state.model_digest
        return e.state.model, e.state.model_digest

    def peek_model(self, block_hash: str):
        """The global model at a block if it is at hand (kept in memory or read from
        the model source), else None; unlike :meth:`model` it never recomputes one
        and never changes the model LRU (:meth:`BlockIndex.peek_model`)."""
        e = self.index.entries.get(block_hash)
        if e is None:
            return None
        if e.state.model is not None:
            return e.state.model
        return self.index.peek_model(e.state.model_digest)

    # --- sync: locators -------------------------------------------------------------
    def locator(self) -> list[str]:
        """Hashes of the tip, tip-1, tip-2, tip-4, tip-8, ... and genesis."""
        main = self.index.main
        out, step, h = [], 1, self.height
        while h > 0:
            out.append(main[h])
            h = h - 1 if len(out) == 1 else h - step
            if len(out) > 1:
                step *= 2
        out.append(main[0])
        return out

    def blocks_after(self, locator: Sequence[str], limit: int = 100) -> list[Block]:
        """Main-chain blocks after the first locator hash on our main chain (after
        genesis if none is)."""
        return self.main_chain(self.index.fork_height(locator) + 1, limit)

    def entries_after(self, locator: Sequence[str], limit: int = 100) -> list[Entry]:
        """The entries of :meth:`blocks_after` (sizes and headers without a body read)."""
        return self.main_entries(self.index.fork_height(locator) + 1, limit)

    def headers_after(self, locator: Sequence[str], limit: int = 2000) -> list[BlockHeader]:
        """The headers of :meth:`blocks_after` (``POST /sync/headers``)."""
        return [e.header for e in self.main_entries(self.index.fork_height(locator) + 1, limit)]

    # --- rounds (:mod:`learningchain.ledger.round_index`) ---------------------------------
    def round_rows(self, first: int, last: int | None = None) -> dict[int, dict]:
        """Per-round counts and closes, rounds ``first`` .. ``last`` (:meth:`RoundIndex.rows`)."""
        return self.rounds.rows(first, last)

    def round_close(self, r: int) -> tuple[int, str] | None:
        """``(height, hash)`` of the main-chain block that closed round ``r``, or None."""
        return self.rounds.close(r)

    def round_closes(self, first: int = 1) -> list[tuple[int, int, str]]:
        """``(round, height, hash)`` of each main-chain round close, from round ``first``."""
        return self.rounds.all_closes(first)

    def round_summary(self, r: int, txs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Round ``r`` on the main chain (:meth:`RoundIndex.summary`; ``txs``: filled
        with its txs by id)."""
        return self.rounds.summary(r, txs)

    @property
    def index_steps(self) -> int:
        """Blocks read by the round index and summaries (a cost counter)."""
        return self.rounds.steps

    # --- block building -------------------------------------------------------------
    def build_block(self, miner_pubkey: str, txs: Sequence[UpdateTx], now_ms: int) -> Block:
        """An unmined block (nonce 0) on the tip: right target, timestamp
        max(now, median + 1), the given txs (checked against the tip) and, if the
        block must close the round, the commitment every validator will expect."""
        parent = self.index.tip
        state = parent.state
        senders: set = set()
        for tx in txs:
            check_tx(tx, state, self.config, self.expected_shapes, self.verified, senders)
            senders.update((tx.sender, taken_key(tx)))
        height = parent.height + 1
        commitment = block_commitment(state, self.config, height, txs, miner_pubkey, parent.hash)
        return make_block(height=height, prev_hash=parent.hash,
                          timestamp=max(now_ms, median_time(parent) + 1),
                          target=next_target(parent, self.config), miner=miner_pubkey,
                          txs=tuple(txs), commitment=commitment)
