"""Fork choice: where a newly validated block goes (a side branch, the tip, or a reorganisation onto its branch).

The best chain is the one with the most cumulative work, first seen wins ties
(Nakamoto 2008, section 4; Bitcoin Core's ``nChainWork``; docs/protocol.md
section 8). Every block was validated against its own parent's state before it
gets here (:meth:`Chain.add_block <learningchain.ledger.chain.Chain.add_block>`),
so a reorganisation is just a switch of tip, with no revalidation.
"""
from __future__ import annotations

from dataclasses import dataclass

from learningchain.ledger.block import Block
from learningchain.ledger.block_index import BlockIndex, Entry
from learningchain.ledger.side_branches import SideBranches


@dataclass(frozen=True)
class AddResult:
    status: str   # "connected" | "side" | "reorg" | "known"
    block: Block
    disconnected: tuple[Block, ...] = ()  # old branch, tip first (reorg only)
    connected: tuple[Block, ...] = ()     # new branch, lowest first (connected/reorg)
    evicted: tuple[str, ...] = ()         # side blocks dropped by the caps (may include ``block``)


def choose(index: BlockIndex, side: SideBranches, entry: Entry) -> AddResult:
    """Place ``entry`` (just indexed, its parent's child): no more work than the
    tip keeps it on a side branch; on the tip it extends the main chain; else its
    branch has more work and becomes the main chain (:func:`reorg`)."""
    side.has_child(entry.parent)  # type: ignore[arg-type]
    if entry.work <= index.tip.work:
        side.add(entry)
        return AddResult("side", entry.block)
    if entry.parent is index.tip:
        index.extend(entry)
        return AddResult("connected", entry.block, connected=(entry.block,))
    return reorg(index, side, entry)


def reorg(index: BlockIndex, side: SideBranches, entry: Entry) -> AddResult:
    """Switch the main chain to ``entry``'s branch: back to the fork point, then up."""
    old, new = index.tip, entry
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
        side.left_main(e)
    index.cut_back(old, disconnected)
    for e in reversed(connected):
        index.extend(e)
        side.joined_main(e, counted=e is not entry)  # the new block was never counted as a side block
    return AddResult("reorg", entry.block, disconnected=tuple(e.block for e in disconnected),
                     connected=tuple(e.block for e in reversed(connected)))
