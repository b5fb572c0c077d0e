"""The in-memory block index: one :class:`Entry` per known block, the main chain, its tx index, and deep blocks' memory.

Every valid block we know (main chain and side branches) has an :class:`Entry`
holding its cumulative work and the :class:`~learningchain.ledger.rounds.RoundState`
after it, so a block is always validated against *its own parent's* state.
:class:`BlockIndex` holds the entries, the main chain (hashes by height), its tip
and the tx index (tx id -> main-chain block), and changes the main chain only
through :meth:`BlockIndex.extend` and :meth:`BlockIndex.cut_back` (called by
:mod:`learningchain.ledger.fork_choice`).

Memory (issue 10 item 12): with a ``block_source`` (hash -> Block, e.g.
:meth:`Store.get_block <learningchain.node.store.Store.get_block>`), main-chain
blocks more than ``retain_blocks`` below the tip are *retired*: their bodies and
txs are dropped and their state keeps only the round, its start, the model
digest and the selection (no model, no pending txs). What stays per retired
block is its header, size, tx ids and commitment (about 1.2 KB, plus 0.3 KB per
tx with the tx index, plus the commitment's ids and verdicts). Their full state
is rebuilt on demand (:meth:`BlockIndex.full_state`: a fork from deep below,
the model of an old round): the round's model from ``model_source`` (digest ->
model or None, checked against the digest) or an LRU of :data:`RETAIN_MODELS`,
else recomputed from the blocks; its pending txs from at most ``round_timeout``
bodies. Without a ``block_source`` everything is kept (the simulator, most tests).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Sequence

from learningchain.ledger.block import Block
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.rounds import RoundState, next_state

#: main-chain blocks below the tip whose body and full round state stay in memory
#: when the chain has a ``block_source`` (deeper ones are read back on demand);
#: at least the default ``retarget_window`` (20), median-time span (11) and
#: ``round_timeout`` (20), so extending the tip never reads the store.
RETAIN_BLOCKS = 32
#: models of old rounds kept in memory after their blocks were retired (an LRU).
RETAIN_MODELS = 4


class Entry:
    """One known block: its header, size and tx ids always; its body and the full
    :class:`RoundState` after it while it is near the tip. A main-chain block
    retired by :meth:`BlockIndex.retire` keeps a *light* state (no model, no pending
    txs) and no body: :attr:`block` then reads the body back from the index's
    ``block_source`` (the store), and the index rebuilds the full state when asked."""
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


class BlockIndex:
    """Entries by hash, the main chain, its tip and tx index, and the memory of deep
    blocks (retired bodies and states, the LRU of old rounds' models)."""

    def __init__(self, genesis: Block, state: RoundState, config: NetworkConfig, *,
                 block_source: Callable[[str], Block | None] | None = None,
                 model_source: Callable[[str], Any] | None = None, retain_blocks: int = RETAIN_BLOCKS):
        self.config = config
        self.block_source, self.model_source = block_source, model_source
        self.retain_blocks = max(1, int(retain_blocks))
        self.retired = 0  # main-chain heights 1..retired are retired (with a block_source)
        self.models: OrderedDict[str, Any] = OrderedDict()  # digest -> model of retired rounds (LRU)
        self.genesis = Entry(genesis, None, genesis.header.work, state, 0)
        self.entries: dict[str, Entry] = {genesis.hash: self.genesis}
        self.tip = self.genesis
        self.main: list[str] = [genesis.hash]
        self.tx_index: dict[str, str] = {}
        self.seq = 0

    # --- lookups -----------------------------------------------------------------
    def on_main_chain(self, block_hash: str) -> bool:
        e = self.entries.get(block_hash)
        return e is not None and e.height < len(self.main) and self.main[e.height] == block_hash

    def main_entries(self, start: int = 0, limit: int = 100) -> list[Entry]:
        """Main-chain entries: header, hash, tx ids and commitment, no body read."""
        return [self.entries[h] for h in self.main[max(0, start):max(0, start) + max(0, limit)]]

    def at(self, height: int) -> Entry:
        """The main-chain entry at ``height`` (0 <= height <= tip height)."""
        return self.entries[self.main[height]]

    def fork_height(self, locator: Sequence[str]) -> int:
        """Height of the first locator hash on our main chain (0 if none is)."""
        for block_hash in locator:
            if self.on_main_chain(block_hash):
                return self.entries[block_hash].height
        return 0

    # --- changes -------------------------------------------------------------------
    def add(self, block: Block, parent: Entry, state: RoundState) -> Entry:
        """Index a valid block (not yet on the main chain: fork choice decides)."""
        self.seq += 1
        entry = Entry(block, parent, parent.work + block.header.work, state, self.seq, source=self.block_source)
        self.entries[block.hash] = entry
        parent.children += 1
        return entry

    def remove(self, leaf: Entry) -> None:
        """Forget a childless block off the main chain (side-branch eviction)."""
        del self.entries[leaf.hash]
        assert leaf.parent is not None
        leaf.parent.children -= 1

    def extend(self, entry: Entry) -> None:
        """Make ``entry`` (a child of the tip) the tip; retire what falls deep enough."""
        self.main.append(entry.hash)
        for txid in entry.tx_ids:
            self.tx_index[txid] = entry.hash
        self.tip = entry
        if self.block_source is not None:
            while self.retired < entry.height - self.retain_blocks:
                self.retired += 1
                self.retire(self.at(self.retired))

    def cut_back(self, fork: Entry, disconnected: Sequence[Entry]) -> None:
        """Take ``disconnected`` (the main chain above ``fork``) off the main chain."""
        for e in disconnected:
            for txid in e.tx_ids:
                self.tx_index.pop(txid, None)
        del self.main[fork.height + 1:]
        self.retired = min(self.retired, fork.height)
        self.tip = fork

    # --- memory: retiring deep blocks and rebuilding their state ----------------------
    def retire(self, e: Entry) -> None:
        """Drop a deep main-chain block's body and its state's model and pending txs
        (the model goes to the LRU when it was the round's, so a deep fork syncing
        block by block does not read it back each time)."""
        if e.state.model is not None and e.state.round_start == e.height:
            self.remember_model(e.state.model_digest, e.state.model)
        e.body = None
        if e.state.model is not None:
            p = e.parent  # a round's light states are equal: share the parent's
            same = (p is not None and p.state.model is None and p.state.round == e.state.round
                    and p.state.round_start == e.state.round_start and p.state.phase == e.state.phase
                    and p.state.phase_start == e.state.phase_start)
            e.state = p.state if same else e.state.light()  # type: ignore[union-attr]

    def remember_model(self, digest: str, model) -> None:
        self.models[digest] = model
        self.models.move_to_end(digest)
        while len(self.models) > RETAIN_MODELS:
            self.models.popitem(last=False)

    @staticmethod
    def opening(e: Entry) -> Entry:
        """The block that opened ``e``'s round, on ``e``'s branch."""
        while e.height > e.state.round_start:
            e = e.parent  # type: ignore[assignment]
        return e

    def full_state(self, e: Entry) -> RoundState:
        """``e.state``, rebuilt if ``e`` was retired: the round's model and the txs of
        the blocks after the round opened (at most ``round_timeout`` bodies)."""
        s = e.state
        if s.model is not None:
            return s
        path, x = [], e
        while x.height > s.round_start:
            path.append(x)
            x = x.parent  # type: ignore[assignment]
        model = self.round_model(x)
        pending = tuple(t for y in reversed(path) for t in y.block.txs)
        return replace(s, model=model, pending=pending)

    def known_model(self, digest: str):
        """A model by digest from memory or the model source (verified there), or None."""
        if digest in self.models:
            self.models.move_to_end(digest)
            return self.models[digest]
        for s in (self.tip.state, self.genesis.state):
            if s.model_digest == digest and s.model is not None:
                return s.model
        model = self.model_source(digest) if self.model_source is not None else None
        if model is not None:
            self.remember_model(digest, model)
        return model

    def peek_model(self, digest: str):
        """:meth:`known_model` without its side effects, for readers outside
        consensus (the explorer): the LRU's content and order are left as they
        are, so reading old rounds never evicts the models fork choice needs."""
        if digest in self.models:
            return self.models[digest]
        for s in (self.tip.state, self.genesis.state):
            if s.model_digest == digest and s.model is not None:
                return s.model
        return self.model_source(digest) if self.model_source is not None else None

    def round_model(self, opening: Entry):
        """G(r-1) after ``opening`` (a block that opened round r, or genesis): kept,
        read from the model source, or recomputed by closing the earlier rounds
        again from their blocks (iteratively, back to the first model we have)."""
        if opening.state.model is not None:
            return opening.state.model
        todo = []  # openings whose model must be recomputed, newest first
        e = opening
        while (model := self.known_model(e.state.model_digest)) is None:
            todo.append(e)
            e = self.opening(e.parent)  # type: ignore[arg-type]
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
            self.remember_model(o.state.model_digest, model)
        return model
