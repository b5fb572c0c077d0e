"""The chain: block validation in context, the block index and fork choice.

Every valid block we know (main chain and side branches) has an
:class:`Entry` holding its cumulative work and the :class:`RoundState` after
it, so a block is always validated against *its own parent's* state: a side
branch is judged on arrival and a reorganisation is just a switch of tip, with
no lazy revalidation. The best chain is the one with the most cumulative work,
first seen wins ties (Nakamoto 2008, section 4; Bitcoin Core's
``nChainWork``). Pure: the caller passes the clock (``now_ms``) and persists
blocks (:mod:`learningchain.store`). The rules a header must meet against its
parent (target, timestamps, genesis header) are in
:mod:`learningchain.header_rules`.

Side branches are bounded (local policy, not consensus; docs/protocol.md
section 8): a peer can fork from deep in history, where the retarget rules may
allow a far easier target than today's, and feed valid but cheap blocks without
end. At most ``max_side_blocks`` blocks / ``max_side_bytes`` bytes are kept off
the main chain; past a cap, side *leaves* are evicted in order of least
cumulative work (the later seen first on a tie, as fork choice prefers the first
seen), the block just added last, until both caps hold. Only leaves go, so a kept
block keeps its ancestors, and the main chain is never touched. Least work first
because a fork from deep history carries little more than its fork point's work,
so it is the least likely to become the best chain; sparing the newest block lets
a branch that is being extended (e.g. a heavier fork arriving by sync) displace
old cheap leaves instead of being evicted block after block. An evicted block is
forgotten, not invalid: sync may fetch it again. Bitcoin Core instead fetches
headers first and stores no unrequested block on a chain with less work
(``AcceptBlock``: ``fHasMoreOrSameWork``, ``fTooFarAhead``); without headers a
refusal by fork depth would also refuse the first blocks of a heavier deep fork
arriving by sync, so only the caps are used.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from learningchain import errors
from learningchain.block import ZERO_HASH, Block, commitment_hash_of, make_block
from learningchain.errors import ValidationError
from learningchain.genesis import NetworkConfig
from learningchain.header_rules import check_genesis_header, check_header, median_time, next_target
from learningchain.models import build_model
from learningchain.rounds import (RoundState, VerifiedCache, check_tx, close_round, initial_state,
                                  must_close, next_state)
from learningchain.tx import UpdateTx

#: bound of the remembered-invalid set.
MAX_INVALID = 10_000
#: default caps on blocks kept off the main chain (count and serialized bytes).
MAX_SIDE_BLOCKS = 2_000
MAX_SIDE_BYTES = 512 << 20
#: failures that depend on something the header hash does not commit to (the
#: clock, a missing parent, tx signatures and thus exact size): never cached.
_NOT_CACHED = {errors.BLOCK_BAD_PREV, errors.BLOCK_TIME_TOO_NEW, errors.BLOCK_TOO_LARGE,
               errors.BLOCK_BAD_TX, errors.BLOCK_MALFORMED, errors.BLOCK_BAD_MERKLE,
               errors.BLOCK_BAD_COMMITMENT_HASH, errors.BLOCK_BAD_POW}


@dataclass
class Entry:
    block: Block
    parent: "Entry | None"
    work: int            # cumulative work up to and including this block
    state: RoundState    # round state after this block
    seq: int             # arrival order: ties in work go to the first seen
    children: int = 0    # entries whose parent this is (0 and off the main chain: a side leaf)

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def hash(self) -> str:
        return self.block.hash


@dataclass(frozen=True)
class AddResult:
    status: str   # "connected" | "side" | "reorg" | "known"
    block: Block
    disconnected: tuple[Block, ...] = ()  # old branch, tip first (reorg only)
    connected: tuple[Block, ...] = ()     # new branch, lowest first (connected/reorg)
    evicted: tuple[str, ...] = ()         # side blocks dropped by the caps (may include ``block``)


class Chain:
    """In-memory index of valid blocks with per-block round state. ``max_side_blocks``
    / ``max_side_bytes`` bound what is kept off the main chain (None: unbounded)."""

    def __init__(self, genesis: Block, verified: VerifiedCache | None = None, *,
                 max_side_blocks: int | None = MAX_SIDE_BLOCKS, max_side_bytes: int | None = MAX_SIDE_BYTES):
        if genesis.height != 0 or genesis.header.prev_hash != ZERO_HASH or genesis.txs:
            raise ValidationError(errors.BLOCK_BAD_GENESIS, "genesis must be height 0, prev zeros, no txs")
        # Genesis proof of work is not checked: genesis is the trust anchor, named by its hash.
        self.config = NetworkConfig.from_genesis(genesis)
        if commitment_hash_of(genesis.commitment, genesis.config) != genesis.header.commitment_hash:
            raise ValidationError(errors.BLOCK_BAD_GENESIS, "genesis commitment hash does not match its config")
        check_genesis_header(genesis, self.config)
        self.model_obj = build_model(self.config.model_spec)
        self.expected_shapes = self.model_obj.expected_shapes()
        self.verified = verified if verified is not None else VerifiedCache()
        state = initial_state(self.config, self.model_obj.initial_weights(), genesis.hash)
        self._genesis = Entry(genesis, None, genesis.header.work, state, 0)
        self._entries: dict[str, Entry] = {genesis.hash: self._genesis}
        self._tip = self._genesis
        self._main: list[str] = [genesis.hash]
        self._tx_index: dict[str, str] = {}
        self._invalid: OrderedDict[str, ValidationError] = OrderedDict()
        self._seq = 0
        self.max_side_blocks = max_side_blocks
        self.max_side_bytes = max_side_bytes
        self._side_leaves: set[str] = set()
        self._side_bytes = 0
        self.evicted_total = 0  # side blocks evicted since start
        self._closes: list[tuple[int, str]] = []  # the round index: see _round_index
        self._closes_scanned = (0, genesis.hash)
        self.index_steps = 0  # blocks read by the round index and summaries (a cost counter)

    # --- queries ----------------------------------------------------------------
    @property
    def genesis(self) -> Block:
        return self._genesis.block

    @property
    def tip(self) -> Block:
        return self._tip.block

    @property
    def height(self) -> int:
        return self._tip.height

    @property
    def tip_work(self) -> int:
        return self._tip.work

    @property
    def tip_state(self) -> RoundState:
        return self._tip.state

    def __contains__(self, block_hash: str) -> bool:
        return block_hash in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def side_blocks(self) -> int:
        """Blocks kept off the main chain."""
        return len(self._entries) - len(self._main)

    @property
    def side_bytes(self) -> int:
        return self._side_bytes

    def state_of(self, block_hash: str) -> RoundState | None:
        e = self._entries.get(block_hash)
        return e.state if e else None

    def work_of(self, block_hash: str) -> int | None:
        e = self._entries.get(block_hash)
        return e.work if e else None

    def get_block(self, block_hash: str) -> Block | None:
        e = self._entries.get(block_hash)
        return e.block if e else None

    def block_at(self, height: int) -> Block | None:
        if 0 <= height < len(self._main):
            return self._entries[self._main[height]].block
        return None

    def main_chain(self, start: int = 0, limit: int = 100) -> list[Block]:
        return [self._entries[h].block for h in self._main[max(0, start):max(0, start) + max(0, limit)]]

    def on_main_chain(self, block_hash: str) -> bool:
        e = self._entries.get(block_hash)
        return e is not None and e.height < len(self._main) and self._main[e.height] == block_hash

    def find_tx(self, txid: str) -> tuple[UpdateTx, str] | None:
        block_hash = self._tx_index.get(txid)
        if block_hash is None:
            return None
        tx = next(t for t in self._entries[block_hash].block.txs if t.id == txid)
        return tx, block_hash

    def model(self, block_hash: str | None = None) -> tuple["OrderedDict[str, np.ndarray]", str]:
        """The latest global model at a block (default: the tip) and its digest."""
        e = self._entries.get(block_hash) if block_hash else self._tip
        if e is None:
            raise KeyError(f"unknown block {block_hash}")
        return e.state.model, e.state.model_digest

    def locator(self) -> list[str]:
        """Hashes of the tip, tip-1, tip-2, tip-4, tip-8, ... and genesis."""
        out, step, h = [], 1, self.height
        while h > 0:
            out.append(self._main[h])
            h = h - 1 if len(out) == 1 else h - step
            if len(out) > 1:
                step *= 2
        out.append(self._main[0])
        return out

    def blocks_after(self, locator: Sequence[str], limit: int = 100) -> list[Block]:
        """Main-chain blocks after the first locator hash on our main chain (after
        genesis if none is)."""
        start = 0
        for block_hash in locator:
            if self.on_main_chain(block_hash):
                start = self._entries[block_hash].height
                break
        return self.main_chain(start + 1, limit)

    def _round_index(self) -> list[tuple[int, str]]:
        """``(height, hash)`` of the main-chain block that closed each round:
        item ``k`` closed round ``k + 1``. Kept incrementally, with no hook in
        fork choice: entries a reorg took off the main chain are dropped from the
        end, then only blocks connected since the last call are read, so a call
        costs O(new blocks + reorg depth), never O(chain) (issue 10, item 13)."""
        closes, scanned = self._closes, self._closes_scanned
        while closes and not self.on_main_chain(closes[-1][1]):
            closes.pop()
        if not self.on_main_chain(scanned[1]):
            scanned = closes[-1] if closes else (0, self._main[0])
        prev_round = self._entries[self._main[scanned[0]]].state.round
        for h in range(scanned[0] + 1, len(self._main)):
            self.index_steps += 1
            r = self._entries[self._main[h]].state.round
            if r > prev_round:  # the round grows by one per close (rounds.py next_state)
                closes.append((h, self._main[h]))
            prev_round = r
        self._closes_scanned = (len(self._main) - 1, self._main[-1])
        return closes

    def round_close(self, r: int) -> tuple[int, str] | None:
        """``(height, hash)`` of the main-chain block that closed round ``r``, or None."""
        closes = self._round_index()
        return closes[r - 1] if 1 <= r <= len(closes) else None

    def round_closes(self, first: int = 1) -> list[tuple[int, int, str]]:
        """``(round, height, hash)`` of each main-chain round close, from round ``first``."""
        closes = self._round_index()
        return [(r, *closes[r - 1]) for r in range(max(1, first), len(closes) + 1)]

    def round_summary(self, r: int) -> dict[str, Any] | None:
        """Round ``r`` on the main chain: its updates with heights, and the closing
        block with its commitment (status "closed") or status "open". None if the
        round has not opened yet. O(blocks of round r) with the round index."""
        if r < 1 or r > self._tip.state.round:
            return None
        closes = self._round_index()
        # round 1 opens at genesis; round r > 1 in the block that closed round r - 1
        opened = closes[r - 2][0] if r > 1 else 0
        last = closes[r - 1][0] if r <= len(closes) else len(self._main) - 1
        updates = []
        for h in range(opened + 1, last + 1):
            self.index_steps += 1
            e = self._entries[self._main[h]]
            updates += [{"id": t.id, "sender": t.sender, "height": h, "num_samples": t.num_samples,
                         "skip": t.is_skip} for t in e.block.txs]
        closed = self._entries[self._main[last]] if r <= len(closes) else None
        selected = self._entries[self._main[opened]].state.selected
        summary = {"round": r, "opened_at": opened, "updates": updates, "status": "open",
                   "closed_at": None, "block": None, "commitment": None}
        if selected is not None:  # only under a selection policy: old summaries unchanged
            summary["selected"] = sorted(selected)
        if closed is not None:
            summary.update(status="closed", closed_at=closed.height, block=closed.hash,
                           commitment=closed.block.commitment)
        return summary

    # --- validation -------------------------------------------------------------
    def validate_tx(self, tx: UpdateTx, verified: VerifiedCache | None = None) -> None:
        """Raise the TX_* ValidationError unless ``tx`` may enter the next block on the tip."""
        state = self._tip.state
        if tx.id in self._tx_index or tx.id in state.pending_ids:
            raise ValidationError(errors.TX_DUPLICATE, f"tx {tx.id[:16]}... is already in the chain")
        check_tx(tx, state, self.config, self.expected_shapes,
                 verified if verified is not None else self.verified)

    def _check_txs(self, block: Block, state: RoundState, verify_signatures: bool) -> None:
        ids = [t.id for t in block.txs]
        dup = set(ids) & state.pending_ids or (len(set(ids)) != len(ids))
        if dup:
            raise ValidationError(errors.BLOCK_DUPLICATE_TX, "a transaction appears twice on this branch")
        senders: set[str] = set()
        for i, tx in enumerate(block.txs):
            try:
                check_tx(tx, state, self.config, self.expected_shapes, self.verified, senders,
                         verify_signatures)
            except ValidationError as exc:
                raise ValidationError(errors.BLOCK_BAD_TX,
                                      f"tx {i} ({tx.id}): {exc.code}: {exc.detail}") from None
            senders.add(tx.sender)

    def connect(self, block: Block, parent: Entry, now_ms: int, verify_signatures: bool = True) -> RoundState:
        """All rules for ``block`` on ``parent``; returns the state after it."""
        check_header(block, parent, self.config, now_ms)
        self._check_txs(block, parent.state, verify_signatures)
        return next_state(parent.state, self.config, block.height, block.txs, block.commitment,
                          block.header.miner, parent.hash)

    # --- adding blocks ------------------------------------------------------------
    def add_block(self, block: Block, now_ms: int, *, verify_signatures: bool = True,
                  prune: bool = True) -> AddResult:
        """Validate ``block`` against its parent's state, update fork choice and
        (``prune``) enforce the side-branch caps: ``result.evicted`` names what went,
        possibly ``block`` itself. Raises ValidationError (BLOCK_BAD_PREV for an
        unknown parent: an orphan)."""
        if block.hash in self._entries:
            return AddResult("known", block)
        if block.hash in self._invalid:
            self._invalid.move_to_end(block.hash)
            raise self._invalid[block.hash]
        parent = self._entries.get(block.header.prev_hash)
        if parent is None:
            raise ValidationError(errors.BLOCK_BAD_PREV, f"parent {block.header.prev_hash} is unknown")
        try:
            state = self.connect(block, parent, now_ms, verify_signatures)
        except ValidationError as exc:
            if exc.code not in _NOT_CACHED:
                self._invalid[block.hash] = exc
                while len(self._invalid) > MAX_INVALID:
                    self._invalid.popitem(last=False)
            raise
        self._seq += 1
        entry = Entry(block, parent, parent.work + block.header.work, state, self._seq)
        self._entries[block.hash] = entry
        parent.children += 1
        self._side_leaves.discard(parent.hash)
        if entry.work <= self._tip.work:
            self._side_leaves.add(entry.hash)
            self._side_bytes += block.size
            result = AddResult("side", block)
        elif parent is self._tip:
            self._extend(entry)
            result = AddResult("connected", block, connected=(block,))
        else:
            result = self._reorg(entry)
        evicted = self.prune_side_branches(keep=block.hash) if prune else ()
        return replace(result, evicted=evicted) if evicted else result

    def prune_side_branches(self, keep: str | None = None) -> tuple[str, ...]:
        """Evict side leaves of least cumulative work (later seen first on a tie)
        until the side-branch caps hold; returns the evicted hashes in order.
        ``keep`` (the block just added) goes last, only if nothing else can."""
        def over() -> bool:
            return ((self.max_side_blocks is not None and self.side_blocks > self.max_side_blocks)
                    or (self.max_side_bytes is not None and self._side_bytes > self.max_side_bytes))
        if not over():
            return ()
        heap = [(e.work, -e.seq, e.hash) for e in map(self._entries.__getitem__, self._side_leaves)
                if e.hash != keep]
        heapq.heapify(heap)
        evicted = []
        while over():
            if heap:
                leaf = self._entries[heapq.heappop(heap)[2]]
            elif keep in self._side_leaves:
                leaf, keep = self._entries[keep], None  # type: ignore[index]
            else:
                break
            parent = self._evict(leaf)
            evicted.append(leaf.hash)
            if parent.hash in self._side_leaves:
                heapq.heappush(heap, (parent.work, -parent.seq, parent.hash))
        return tuple(evicted)

    def _evict(self, leaf: Entry) -> Entry:
        """Forget a side leaf (not as invalid: it may come back through sync)."""
        del self._entries[leaf.hash]
        self._side_leaves.discard(leaf.hash)
        self._side_bytes -= leaf.block.size
        self.evicted_total += 1
        parent = leaf.parent
        assert parent is not None
        parent.children -= 1
        if parent.children == 0 and not self.on_main_chain(parent.hash):
            self._side_leaves.add(parent.hash)
        return parent

    def _extend(self, entry: Entry) -> None:
        self._main.append(entry.hash)
        for tx in entry.block.txs:
            self._tx_index[tx.id] = entry.hash
        self._tip = entry

    def _reorg(self, entry: Entry) -> AddResult:
        old, new = self._tip, entry
        disconnected, connected = [], []
        while old.height > new.height:
            disconnected.append(old)
            old = old.parent  # type: ignore[assignment]
        while new.height > old.height:
            connected.append(new)
            new = new.parent  # type: ignore[assignment]
        while old is not new:
            disconnected.append(old)
            connected.append(new)
            old, new = old.parent, new.parent  # type: ignore[assignment]
        for e in disconnected:
            for tx in e.block.txs:
                self._tx_index.pop(tx.id, None)
            self._side_bytes += e.block.size
            if e.children == 0:
                self._side_leaves.add(e.hash)
        del self._main[old.height + 1:]
        self._tip = old
        for e in reversed(connected):
            self._extend(e)
            self._side_leaves.discard(e.hash)
            if e is not entry:  # the new block was never counted as a side block
                self._side_bytes -= e.block.size
        return AddResult("reorg", entry.block, disconnected=tuple(e.block for e in disconnected),
                         connected=tuple(e.block for e in reversed(connected)))

    # --- block building -------------------------------------------------------------
    def build_block(self, miner_pubkey: str, txs: Sequence[UpdateTx], now_ms: int) -> Block:
        """An unmined block (nonce 0) on the tip: right target, timestamp
        max(now, median + 1), the given txs (checked against the tip) and, if the
        block must close the round, the commitment every validator will expect."""
        parent, state = self._tip, self._tip.state
        senders: set[str] = set()
        for tx in txs:
            check_tx(tx, state, self.config, self.expected_shapes, self.verified, senders)
            senders.add(tx.sender)
        height = parent.height + 1
        commitment = None
        if must_close(state, self.config, height, len(txs)):
            commitment = close_round(state, self.config, state.pending + tuple(txs), miner_pubkey,
                                     parent.hash).commitment
        return make_block(height=height, prev_hash=parent.hash,
                          timestamp=max(now_ms, median_time(parent) + 1),
                          target=next_target(parent, self.config), miner=miner_pubkey,
                          txs=tuple(txs), commitment=commitment)
