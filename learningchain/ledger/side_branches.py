"""Side branches: which blocks off the main chain we admit, and the caps on what we keep of them.

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
*Caps*: at most ``max_blocks`` blocks / ``max_bytes`` bytes are kept
off the main chain; past a cap, side *leaves* are evicted in order of least
cumulative work (the later seen first on a tie, as fork choice prefers the first
seen), the block just added last, until both caps hold. Only leaves go, so a kept
block keeps its ancestors, and the main chain is never touched. An evicted block
is forgotten, not invalid: sync may fetch it again.
"""
from __future__ import annotations

import heapq

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.ledger.block import BlockHeader
from learningchain.ledger.block_index import BlockIndex, Entry

#: default caps on blocks kept off the main chain (count and serialized bytes).
MAX_SIDE_BLOCKS = 2_000
MAX_SIDE_BYTES = 512 << 20
#: an unsolicited side block is stored only if its branch's work is at least the
#: tip's minus this many blocks of the tip's own work (side-branch admission).
SIDE_MARGIN_BLOCKS = 6


class SideBranches:
    """The blocks of ``index`` off its main chain: their leaves and bytes, admission
    and the caps (``max_blocks`` / ``max_bytes``; None: unbounded). Fork choice
    reports every block that leaves or joins the main chain (:meth:`add`,
    :meth:`left_main`, :meth:`joined_main`)."""

    def __init__(self, index: BlockIndex, max_blocks: int | None = MAX_SIDE_BLOCKS,
                 max_bytes: int | None = MAX_SIDE_BYTES):
        self.index = index
        self.max_blocks, self.max_bytes = max_blocks, max_bytes
        self.leaves: set[str] = set()
        self.bytes = 0
        self.evicted_total = 0  # side blocks evicted since start

    @property
    def count(self) -> int:
        """Blocks kept off the main chain."""
        return len(self.index.entries) - len(self.index.main)

    # --- admission -----------------------------------------------------------------
    def work_floor(self) -> int:
        """The least cumulative work an unsolicited side block's branch needs to be
        stored: the tip's minus :data:`SIDE_MARGIN_BLOCKS` times the tip block's work."""
        tip = self.index.tip
        return tip.work - SIDE_MARGIN_BLOCKS * tip.header.work

    def check_admission(self, parent: Entry, header: BlockHeader) -> None:
        """Raise BLOCK_SIDE_WORK_TOO_LOW if a block with ``header`` on ``parent``
        would be a side block (no more work than the tip) below :meth:`work_floor`."""
        tip = self.index.tip
        work = parent.work + header.work
        if work <= tip.work and work < self.work_floor():
            raise ValidationError(errors.BLOCK_SIDE_WORK_TOO_LOW,
                                  f"its branch would have {tip.work - work} less work than our tip (height "
                                  f"{tip.height}), more than {SIDE_MARGIN_BLOCKS} blocks' worth, and it was not "
                                  f"requested by headers-first sync: not stored")

    # --- bookkeeping (called by fork choice) ---------------------------------------------
    def has_child(self, parent: Entry) -> None:
        """``parent`` just got a child: it is no side leaf any more."""
        self.leaves.discard(parent.hash)

    def add(self, entry: Entry) -> None:
        """A new block stays off the main chain: a side leaf."""
        self.leaves.add(entry.hash)
        self.bytes += entry.size

    def left_main(self, e: Entry) -> None:
        """A reorg took ``e`` off the main chain."""
        self.bytes += e.size
        if e.children == 0:
            self.leaves.add(e.hash)

    def joined_main(self, e: Entry, counted: bool) -> None:
        """A reorg put ``e`` on the main chain (``counted``: it was a side block before)."""
        self.leaves.discard(e.hash)
        if counted:
            self.bytes -= e.size

    # --- caps ------------------------------------------------------------------------------
    def over_caps(self) -> bool:
        return ((self.max_blocks is not None and self.count > self.max_blocks)
                or (self.max_bytes is not None and self.bytes > self.max_bytes))

    def prune(self, keep: str | None = None, spare_keep: bool = False) -> tuple[str, ...]:
        """Evict side leaves of least cumulative work (later seen first on a tie)
        until the side-branch caps hold; returns the evicted hashes in order.
        ``keep`` (the block just added) goes last, only if nothing else can, and
        never if ``spare_keep``: a block that headers-first sync fetched along a
        header chain with more work than our tip is on its way to becoming the
        main chain; evicting it would make a fork deeper than the caps refetch
        the same block for ever (then the caps are exceeded until it overtakes,
        bounded by the sync's own header bounds)."""
        if not self.over_caps():
            return ()
        entries = self.index.entries
        heap = [(e.work, -e.seq, e.hash) for e in map(entries.__getitem__, self.leaves) if e.hash != keep]
        heapq.heapify(heap)
        evicted = []
        while self.over_caps():
            if heap:
                leaf = entries[heapq.heappop(heap)[2]]
            elif keep in self.leaves and not spare_keep:
                leaf, keep = entries[keep], None  # type: ignore[index]
            else:
                break
            parent = self._evict(leaf)
            evicted.append(leaf.hash)
            if parent.hash in self.leaves:
                heapq.heappush(heap, (parent.work, -parent.seq, parent.hash))
        return tuple(evicted)

    def _evict(self, leaf: Entry) -> Entry:
        """Forget a side leaf (not as invalid: it may come back through sync)."""
        self.index.remove(leaf)
        self.leaves.discard(leaf.hash)
        self.bytes -= leaf.size
        self.evicted_total += 1
        parent = leaf.parent
        assert parent is not None
        if parent.children == 0 and not self.index.on_main_chain(parent.hash):
            self.leaves.add(parent.hash)
        return parent
