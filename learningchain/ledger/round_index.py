"""The round index: where each round closed on the main chain, and the round summaries and rows read through it.

Queries only: nothing here changes the chain. The index is kept incrementally
with no hook in fork choice (see :meth:`RoundIndex.closes`), and every query
walks only the blocks of the rounds it asks about; ``steps`` counts the blocks
read (a cost counter the tests and the node's evaluator check).
"""
from __future__ import annotations

from typing import Any

from learningchain.ledger.block_index import BlockIndex


class RoundIndex:
    """Round closes on ``index``'s main chain and the queries that use them."""

    def __init__(self, index: BlockIndex):
        self.index = index
        self._closes: list[tuple[int, str]] = []  # see closes()
        self._scanned = (0, index.genesis.hash)
        self.steps = 0  # blocks read by the round index and summaries (a cost counter)

    def closes(self) -> list[tuple[int, str]]:
        """``(height, hash)`` of the main-chain block that closed each round:
        item ``k`` closed round ``k + 1``. Kept incrementally, with no hook in
        fork choice: entries a reorg took off the main chain are dropped from the
        end, then only blocks connected since the last call are read, so a call
        costs O(new blocks + reorg depth), never O(chain) (issue 10, item 13)."""
        index, closes, scanned = self.index, self._closes, self._scanned
        main = index.main
        while closes and not index.on_main_chain(closes[-1][1]):
            closes.pop()
        if not index.on_main_chain(scanned[1]):
            scanned = closes[-1] if closes else (0, main[0])
        prev_round = index.at(scanned[0]).state.round
        for h in range(scanned[0] + 1, len(main)):
            self.steps += 1
            r = index.at(h).state.round
            if r > prev_round:  # the round grows by one per close (rounds.py next_state)
                closes.append((h, main[h]))
            prev_round = r
        self._scanned = (len(main) - 1, main[-1])
        return closes

    def close(self, r: int) -> tuple[int, str] | None:
        """``(height, hash)`` of the main-chain block that closed round ``r``, or None."""
        closes = self.closes()
        return closes[r - 1] if 1 <= r <= len(closes) else None

    def all_closes(self, first: int = 1) -> list[tuple[int, int, str]]:
        """``(round, height, hash)`` of each main-chain round close, from round ``first``."""
        closes = self.closes()
        return [(r, *closes[r - 1]) for r in range(max(1, first), len(closes) + 1)]

    def rows(self, first: int, last: int | None = None) -> dict[int, dict]:
        """Rounds ``first`` .. ``last`` (default: the open one) on the main chain, from
        the kept headers, tx ids and commitments (no block body is read) and walking
        only those rounds' blocks (the round index gives where they start): round ->
        {"updates", "skipped"} plus, once closed, "closed_at", "block", "commitment"
        and "opened_at" (the height of the block that closed the previous round, 1
        for round 1)."""
        closes = self.closes()
        current = len(closes) + 1  # the open round
        first, last = max(1, first), current if last is None else min(last, current)
        if first > last:
            return {}
        opened = closes[first - 2][0] if first > 1 else 0
        end = closes[last - 1][0] if last <= len(closes) else len(self.index.main) - 1
        rows: dict[int, dict] = {}
        start = max(1, opened)
        for h in range(opened + 1, end + 1):
            self.steps += 1
            e = self.index.at(h)
            r = e.parent.state.round  # type: ignore[union-attr]
            row = rows.setdefault(r, {"updates": 0, "skipped": 0})
            row["updates"] += len(e.tx_ids)
            row["skipped"] += e.skips
            if e.commitment is not None:
                row.update(closed_at=h, block=e.hash, commitment=e.commitment, opened_at=start)
                start = h
        return rows

    def summary(self, r: int, txs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Round ``r`` on the main chain: its updates with heights, and the closing
        block with its commitment (status "closed") or status "open". None if the
        round has not opened yet. O(blocks of round r) with the round index.
        ``txs``: filled with tx id -> tx of the updates listed (the blocks are read
        here anyway; a deep one comes from the block source)."""
        if r < 1 or r > self.index.tip.state.round:
            return None
        closes = self.closes()
        # round 1 opens at genesis; round r > 1 in the block that closed round r - 1
        opened = closes[r - 2][0] if r > 1 else 0
        last = closes[r - 1][0] if r <= len(closes) else len(self.index.main) - 1
        updates = []
        for h in range(opened + 1, last + 1):
            self.steps += 1
            e = self.index.at(h)
            block_txs = e.block.txs
            updates += [{"id": t.id, "sender": t.sender, "height": h, "num_samples": t.num_samples,
                         "skip": t.is_skip} for t in block_txs]
            if txs is not None:
                txs.update((t.id, t) for t in block_txs)
        closed = self.index.at(last) if r <= len(closes) else None
        selected = self.index.at(opened).state.selected
        summary = {"round": r, "opened_at": opened, "updates": updates, "status": "open",
                   "closed_at": None, "block": None, "commitment": None}
        if selected is not None:  # only under a selection policy: old summaries unchanged
            summary["selected"] = sorted(selected)
        if closed is not None:
            summary.update(status="closed", closed_at=closed.height, block=closed.hash,
                           commitment=closed.commitment)
        return summary
