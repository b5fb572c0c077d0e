"""The chain: block validation in context, the block index and fork choice.

Every valid block we know (main chain and side branches) has an
:class:`Entry` holding its cumulative work and the :class:`RoundState` after
it, so a block is always validated against *its own parent's* state: a side
branch is judged on arrival and a reorganisation is just a switch of tip, with
no lazy revalidation. The best chain is the one with the most cumulative work,
first seen wins ties (Nakamoto 2008, section 4; Bitcoin Core's
``nChainWork``). Pure: the caller passes the clock (``now_ms``) and persists
blocks (:mod:`learningchain.node.store`). The rules a header must meet against its
parent (target, timestamps, genesis header) are in
:mod:`learningchain.ledger.header_rules`.

Side branches are bounded (local policy, not consensus; docs/protocol.md
section 8) in two ways. *Admission*: a block that would be stored off the main
chain is refused (``block-side-work-too-low``, not remembered as invalid) unless
its branch's cumulative work is at least the tip's minus :data:`SIDE_MARGIN_BLOCKS`
blocks' worth of the tip's work, or the caller says it was *solicited*: fetched
by headers-first sync along a header chain with more work than our tip
(:mod:`learningchain.ledger.headers`), or replayed from our own store. So a peer that
forks from deep in history, where the retarget rules may allow a far easier
target than today's, cannot make us store its cheap blocks (Bitcoin Core's
``AcceptBlock``: an unrequested block on a chain with less work is not stored).
*Caps*: at most ``max_side_blocks`` blocks / ``max_side_bytes`` bytes are kept
off the main chain; past a cap, side *leaves* are evicted in order of least
cumulative work (the later seen first on a tie, as fork choice prefers the first
seen), the block just added last, until both caps hold. Only leaves go, so a kept
block keeps its ancestors, and the main chain is never touched. An evicted block
is forgotten, not invalid: sync may fetch it again.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from learningchain.core import errors
from learningchain.ledger.block import ZERO_HASH, Block, BlockHeader, commitment_hash_of, make_block
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.header_rules import check_genesis_header, check_header, median_time, next_target
from learningchain.learning.models import build_model
from learningchain.ledger.rounds import (RoundState, VerifiedCache, check_tx, close_round, initial_state,
                                  must_close, next_state)
from learningchain.ledger.tx import UpdateTx

#: bound of the remembered-invalid set.
MAX_INVALID = 10_000
#: main-chain blocks below the tip whose body and full round state stay in memory
#: when the chain has a ``block_source`` (deeper ones are read back on demand);
#: at least the default ``retarget_window`` (20), median-time span (11) and
#: ``round_timeout`` (20), so extending the tip never reads the store.
RETAIN_BLOCKS = 32
#: models of old rounds kept in memory after their blocks were retired (an LRU).
RETAIN_MODELS = 4
#: default caps on blocks kept off the main chain (count and serialized bytes).
MAX_SIDE_BLOCKS = 2_000
MAX_SIDE_BYTES = 512 << 20
#: an unsolicited side block is stored only if its branch's work is at least the
#: tip's minus this many blocks of the tip's own work (side-branch admission).
SIDE_MARGIN_BLOCKS = 6
#: failures that depend on something the header hash does not commit to (the
#: clock, a missing parent, tx signatures and thus exact size): never cached.
_NOT_CACHED = {errors.BLOCK_BAD_PREV, errors.BLOCK_TIME_TOO_NEW, errors.BLOCK_TOO_LARGE,
               errors.BLOCK_BAD_TX, errors.BLOCK_MALFORMED, errors.BLOCK_BAD_MERKLE,
               errors.BLOCK_BAD_COMMITMENT_HASH, errors.BLOCK_BAD_POW}


class Entry:
    """One known block: its header, size and tx ids always; its body and the full
    :class:`RoundState` after it while it is near the tip. A main-chain block
    retired by :meth:`Chain._retire` keeps a *light* state (no model, no pending
    txs) and no body: :attr:`block` then reads the body back from the chain's
    ``block_source`` (the store), and the chain rebuilds the full state when asked."""
    __slots__ = ("header", "hash", "size", "tx_ids", "skips", "commitment", "body", "parent", "work", "state",
                 "seq", "children", "_source")

    def __init__(self, block: Block, parent: "Entry | None", work: int, state: RoundState, seq: int,
                 children: int = 0, source: Callable[[str], Block | None] | None = None):
        self.header, self.hash, self.size = block.header, block.hash, block.size
        self.tx_ids = tuple(t.id for t in block.txs)  # the tx index shares these strings
        self.skips = sum(t.is_skip for t in block.txs)
        self.commitment = block.commitment  # kept: the round's record (ids and verdicts, no weights)
        self.body: Block | None = block
        self.parent, self.work, self.state, self.seq, self.children = parent, work, state, seq, children
        self._source = source

    @property
    def block(self) -> Block:
        """The whole block: kept in memory near the tip, read from the store below."""
        if self.body is not None:
            return self.body
        block = self._source(self.hash) if self._source is not None else None
        if block is None:
            raise LookupError(f"block {self.hash} was dropped from memory and is not in the block source")
        return block

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True)
class AddResult:
    status: str   # "connected" | "side" | "reorg" | "known"
    block: Block
    disconnected: tuple[Block, ...] = ()  # old branch, tip first (reorg only)
    connected: tuple[Block, ...] = ()     # new branch, lowest first (connected/reorg)
    evicted: tuple[str, ...] = ()         # side blocks dropped by the caps (may include ``block``)


class Chain:
    """In-memory index of valid blocks with per-block round state. ``max_side_blocks``
    / ``max_side_bytes`` bound what is kept off the main chain (None: unbounded).

    Memory (issue 10 item 12): with a ``block_source`` (hash -> Block, e.g.
    :meth:`Store.get_block`), main-chain blocks more than ``retain_blocks`` below
    the tip are *retired*: their bodies and txs are dropped and their state keeps
    only the round, its start, the model digest and the selection (no model, no
    pending txs). What stays per retired block is its header, size, tx ids and
    commitment (about 1.2 KB, plus 0.3 KB per tx with the tx index, plus the
    commitment's ids and verdicts). Their full state is rebuilt on demand (a fork
    from deep below, ``model()`` of an old round): the round's model from
    ``model_source`` (digest -> model or None, checked against the digest) or an
    LRU of :data:`RETAIN_MODELS`, else recomputed from the blocks; its pending txs
    from at most ``round_timeout`` bodies. Without a ``block_source`` everything
    is kept (the simulator, most tests)."""

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
        self.model_obj = build_model(self.config.model_spec)
        self.expected_shapes = self.model_obj.expected_shapes()
        self.verified = verified if verified is not None else VerifiedCache()
        state = initial_state(self.config, self.model_obj.initial_weights(), genesis.hash)
        self._block_source, self._model_source = block_source, model_source
        self.retain_blocks = max(1, int(retain_blocks))
        self._retired = 0  # main-chain heights 1.._retired are retired (with a block_source)
        self._models: OrderedDict[str, Any] = OrderedDict()  # digest -> model of retired rounds (LRU)
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
        return self._full_state(e) if e else None

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
        """Whole main-chain blocks (bodies deep below the tip are read from the store)."""
        return [e.block for e in self.main_entries(start, limit)]

    def main_entries(self, start: int = 0, limit: int = 100) -> list[Entry]:
        """Main-chain entries: header, hash, tx ids and commitment, no body read."""
        return [self._entries[h] for h in self._main[max(0, start):max(0, start) + max(0, limit)]]

    def on_main_chain(self, block_hash: str) -> bool:
        e = self._entries.get(block_hash)
        return e is not None and e.height < len(self._main) and self._main[e.height] == block_hash

    def tx_block(self, txid: str) -> tuple[str, int] | None:
        """(hash, height) of the main-chain block holding ``txid``; no body is read."""
        block_hash = self._tx_index.get(txid)
        return (block_hash, self._entries[block_hash].height) if block_hash is not None else None

    def find_tx(self, txid: str, stored: bool = True) -> tuple[UpdateTx, str] | None:
        """The main-chain tx and its block's hash; ``stored=False``: only from a block
        kept in memory (never read from the store)."""
        block_hash = self._tx_index.get(txid)
        if block_hash is None:
            return None
        entry = self._entries[block_hash]
        if entry.body is None and not stored:
            return None
        tx = next(t for t in entry.block.txs if t.id == txid)
        return tx, block_hash

    def model(self, block_hash: str | None = None) -> tuple["OrderedDict[str, np.ndarray]", str]:
        """The latest global model at a block (default: the tip) and its digest."""
        e = self._entries.get(block_hash) if block_hash else self._tip
        if e is None:
            raise KeyError(f"unknown block {block_hash}")
        if e.state.model is None:
            return self._round_model(self._opening(e)), e.state.model_digest
        return e.state.model, e.state.model_digest

    def round_rows(self, first: int, last: int | None = None) -> dict[int, dict]:
        """Rounds ``first`` .. ``last`` (default: the open one) on the main chain, from
        the kept headers, tx ids and commitments (no block body is read) and walking
        only those rounds' blocks (the round index gives where they start): round ->
        {"updates", "skipped"} plus, once closed, "closed_at", "block", "commitment"
        and "opened_at" (the height of the block that closed the previous round, 1
        for round 1)."""
        closes = self._round_index()
        current = len(closes) + 1  # the open round
        first, last = max(1, first), current if last is None else min(last, current)
        if first > last:
            return {}
        opened = closes[first - 2][0] if first > 1 else 0
        end = closes[last - 1][0] if last <= len(closes) else len(self._main) - 1
        rows: dict[int, dict] = {}
        start = max(1, opened)
        for h in range(opened + 1, end + 1):
            self.index_steps += 1
            e = self._entries[self._main[h]]
            r = e.parent.state.round  # type: ignore[union-attr]
            row = rows.setdefault(r, {"updates": 0, "skipped": 0})
            row["updates"] += len(e.tx_ids)
            row["skipped"] += e.skips
            if e.commitment is not None:
                row.update(closed_at=h, block=e.hash, commitment=e.commitment, opened_at=start)
                start = h
        return rows

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
        return self.main_chain(self._fork_height(locator) + 1, limit)

    def entries_after(self, locator: Sequence[str], limit: int = 100) -> list[Entry]:
        """The entries of :meth:`blocks_after` (sizes and headers without a body read)."""
        return self.main_entries(self._fork_height(locator) + 1, limit)

    def headers_after(self, locator: Sequence[str], limit: int = 2000) -> list[BlockHeader]:
        """The headers of :meth:`blocks_after` (``POST /sync/headers``)."""
        start = self._fork_height(locator) + 1
        return [self._entries[h].header for h in self._main[start:start + max(0, limit)]]

    def _fork_height(self, locator: Sequence[str]) -> int:
        for block_hash in locator:
            if self.on_main_chain(block_hash):
                return self._entries[block_hash].height
        return 0

    def entry(self, block_hash: str) -> Entry | None:
        """The index entry of a block we hold (its parent link, cumulative work and
        height: what headers-first sync checks a peer's headers against)."""
        return self._entries.get(block_hash)

    def side_work_floor(self) -> int:
        """The least cumulative work an unsolicited side block's branch needs to be
        stored: the tip's minus :data:`SIDE_MARGIN_BLOCKS` times the tip block's work."""
        return self._tip.work - SIDE_MARGIN_BLOCKS * self._tip.header.work

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
                           commitment=closed.commitment)
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
        state = self._full_state(parent)
        self._check_txs(block, state, verify_signatures)
        return next_state(state, self.config, block.height, block.txs, block.commitment,
                          block.header.miner, parent.hash)

    # --- adding blocks ------------------------------------------------------------
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
        if block.hash in self._entries:
            return AddResult("known", block)
        if block.hash in self._invalid:
            self._invalid.move_to_end(block.hash)
            raise self._invalid[block.hash]
        parent = self._entries.get(block.header.prev_hash)
        if parent is None:
            raise ValidationError(errors.BLOCK_BAD_PREV, f"parent {block.header.prev_hash} is unknown")
        if not solicited:
            self.check_side_admission(parent, block.header)
        try:
            state = self.connect(block, parent, now_ms, verify_signatures)
        except ValidationError as exc:
            if exc.code not in _NOT_CACHED:
                self._invalid[block.hash] = exc
                while len(self._invalid) > MAX_INVALID:
                    self._invalid.popitem(last=False)
            raise
        if persist is not None:
            persist(block)
        self._seq += 1
        entry = Entry(block, parent, parent.work + block.header.work, state, self._seq, source=self._block_source)
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
        evicted = self.prune_side_branches(keep=block.hash, spare_keep=solicited) if prune else ()
        return replace(result, evicted=evicted) if evicted else result

    def check_side_admission(self, parent: Entry, header: BlockHeader) -> None:
        """Raise BLOCK_SIDE_WORK_TOO_LOW if a block with ``header`` on ``parent``
        would be a side block (no more work than the tip) below :meth:`side_work_floor`."""
        work = parent.work + header.work
        if work <= self._tip.work and work < self.side_work_floor():
            raise ValidationError(errors.BLOCK_SIDE_WORK_TOO_LOW,
                                  f"its branch would have {self._tip.work - work} less work than our tip (height "
                                  f"{self.height}), more than {SIDE_MARGIN_BLOCKS} blocks' worth, and it was not "
                                  f"requested by headers-first sync: not stored")

    def prune_side_branches(self, keep: str | None = None, spare_keep: bool = False) -> tuple[str, ...]:
        """Evict side leaves of least cumulative work (later seen first on a tie)
        until the side-branch caps hold; returns the evicted hashes in order.
        ``keep`` (the block just added) goes last, only if nothing else can, and
        never if ``spare_keep``: a block that headers-first sync fetched along a
        header chain with more work than our tip is on its way to becoming the
        main chain; evicting it would make a fork deeper than the caps refetch
        the same block for ever (then the caps are exceeded until it overtakes,
        bounded by the sync's own header bounds)."""
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
            elif keep in self._side_leaves and not spare_keep:
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
        self._side_bytes -= leaf.size
        self.evicted_total += 1
        parent = leaf.parent
        assert parent is not None
        parent.children -= 1
        if parent.children == 0 and not self.on_main_chain(parent.hash):
            self._side_leaves.add(parent.hash)
        return parent

    def _extend(self, entry: Entry) -> None:
        self._main.append(entry.hash)
        for txid in entry.tx_ids:
            self._tx_index[txid] = entry.hash
        self._tip = entry
        if self._block_source is not None:
            while self._retired < entry.height - self.retain_blocks:
                self._retired += 1
                self._retire(self._entries[self._main[self._retired]])

    # --- memory: retiring deep blocks and rebuilding their state ----------------------
    def _retire(self, e: Entry) -> None:
        """Drop a deep main-chain block's body and its state's model and pending txs
        (the model goes to the LRU when it was the round's, so a deep fork syncing
        block by block does not read it back each time)."""
        if e.state.model is not None and e.state.round_start == e.height:
            self._remember_model(e.state.model_digest, e.state.model)
        e.body = None
        if e.state.model is not None:
            p = e.parent  # a round's light states are equal: share the parent's
            same = (p is not None and p.state.model is None and p.state.round == e.state.round
                    and p.state.round_start == e.state.round_start)
            e.state = p.state if same else e.state.light()  # type: ignore[union-attr]

    def _remember_model(self, digest: str, model) -> None:
        self._models[digest] = model
        self._models.move_to_end(digest)
        while len(self._models) > RETAIN_MODELS:
            self._models.popitem(last=False)

    def _opening(self, e: Entry) -> Entry:
        """The block that opened ``e``'s round, on ``e``'s branch."""
        while e.height > e.state.round_start:
            e = e.parent  # type: ignore[assignment]
        return e

    def _full_state(self, e: Entry) -> RoundState:
        """``e.state``, rebuilt if ``e`` was retired: the round's model and the txs of
        the blocks after the round opened (at most ``round_timeout`` bodies)."""
        s = e.state
        if s.model is not None:
            return s
        path, x = [], e
        while x.height > s.round_start:
            path.append(x)
            x = x.parent  # type: ignore[assignment]
        model = self._round_model(x)
        pending = tuple(t for y in reversed(path) for t in y.block.txs)
        return replace(s, model=model, pending=pending)

    def _known_model(self, digest: str):
        """A model by digest from memory or the model source (verified there), or None."""
        if digest in self._models:
            self._models.move_to_end(digest)
            return self._models[digest]
        for s in (self._tip.state, self._genesis.state):
            if s.model_digest == digest and s.model is not None:
                return s.model
        model = self._model_source(digest) if self._model_source is not None else None
        if model is not None:
            self._remember_model(digest, model)
        return model

    def _round_model(self, opening: Entry):
        """G(r-1) after ``opening`` (a block that opened round r, or genesis): kept,
        read from the model source, or recomputed by closing the earlier rounds
        again from their blocks (iteratively, back to the first model we have)."""
        if opening.state.model is not None:
            return opening.state.model
        todo = []  # openings whose model must be recomputed, newest first
        e = opening
        while (model := self._known_model(e.state.model_digest)) is None:
            todo.append(e)
            e = self._opening(e.parent)  # type: ignore[arg-type]
        for o in reversed(todo):
            parent = o.parent
            assert parent is not None
            path, x = [], parent
            while x.height > parent.state.round_start:
                path.append(x)
                x = x.parent  # type: ignore[assignment]
            before = replace(parent.state, model=model, pending=tuple(t for y in reversed(path) for t in y.block.txs))
            body = o.block
            model = next_state(before, self.config, o.height, body.txs, body.commitment, body.header.miner,
                               parent.hash).model
            self._remember_model(o.state.model_digest, model)
        return model

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
            for txid in e.tx_ids:
                self._tx_index.pop(txid, None)
            self._side_bytes += e.size
            if e.children == 0:
                self._side_leaves.add(e.hash)
        del self._main[old.height + 1:]
        self._retired = min(self._retired, old.height)
        self._tip = old
        for e in reversed(connected):
            self._extend(e)
            self._side_leaves.discard(e.hash)
            if e is not entry:  # the new block was never counted as a side block
                self._side_bytes -= e.size
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
        if must_close(state, self.config, height, txs):
            commitment = close_round(state, self.config, state.pending + tuple(txs), miner_pubkey,
                                     parent.hash).commitment
        return make_block(height=height, prev_hash=parent.hash,
                          timestamp=max(now_ms, median_time(parent) + 1),
                          target=next_target(parent, self.config), miner=miner_pubkey,
                          txs=tuple(txs), commitment=commitment)
