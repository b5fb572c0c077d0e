"""Headers-first sync, the pure part: a peer's header chain checked header by
header against its parent, with its cumulative work (docs/protocol.md section 8,
"Sync"; Bitcoin Core's headers-first download, ``getheaders`` / ``headers``).

A node that syncs from a peer first downloads the peer's *headers* after a
locator, checks each against its parent with the header rules that need no
transactions (height, target, proof of work, timestamps: :func:`check_next_header`)
and sums their work. Only when that header chain has more work than our tip does
it download the blocks, by hash, along it (:mod:`learningchain.node.p2p.peer_sync`). A fork
of any depth is then followed, because the locator of the next page is built
from the headers received so far, not from our main chain (the old page-by-page
block sync asked again with the same locator once its first page had landed as
side blocks, and stopped).

Pure: no I/O, the caller passes the clock. A :class:`HeaderChain` holds at most
``max_headers`` headers in a compact form (:class:`HeaderNode`, a few hundred
bytes each), so a lying peer costs bounded memory.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from learningchain.core import errors
from learningchain.ledger.block import BlockHeader, work_of
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.header_rules import check_target_and_time

#: headers one ``/sync/headers`` page carries at most (about 560 bytes each as JSON).
MAX_HEADERS_PAGE = 2000
#: headers one sync keeps in memory before it gives up on a peer whose header
#: chain has not yet shown more work than our tip (about 40 MB).
MAX_SYNC_HEADERS = 100_000
#: ... and at most this many times as many headers as our own branch has blocks
#: above the header chain's base, plus two pages (:meth:`HeaderChain.cap`).
LENGTH_FACTOR = 4


class HeaderNode:
    """One header of a peer's chain, as much of it as the header rules read:
    ``next_target`` and ``median_time`` walk ``parent`` and read
    ``.header.target`` / ``.timestamp``, so ``header`` is the node itself. ``work`` is cumulative, as in ``block_index.Entry``; the parent of
    the first node is a ``block_index.Entry`` of a block we hold."""

    __slots__ = ("hash", "height", "target", "timestamp", "work", "parent")

    def __init__(self, header: BlockHeader, parent: Any):
        self.hash = header.hash
        self.height = header.height
        self.target = header.target
        self.timestamp = header.timestamp
        self.work = parent.work + work_of(header.target)
        self.parent = parent

    @property
    def header(self) -> "HeaderNode":
        return self


def check_next_header(header: BlockHeader, parent: Any, config: NetworkConfig, now_ms: int) -> None:
    """The header rules of docs/protocol.md section 4 that a header alone can be
    checked against, with the same codes: height (step 2), proof of work (step
    3), target (step 5) and timestamps (step 6). ``parent`` is a ``block_index.Entry`` or
    a :class:`HeaderNode`. The merkle root, commitment hash and size need the
    block and are checked when it arrives."""
    if header.height != parent.height + 1:
        raise ValidationError(errors.BLOCK_BAD_HEIGHT, f"height {header.height} after parent at {parent.height}")
    if not header.check_pow():
        raise ValidationError(errors.BLOCK_BAD_POW, f"header hash {header.hash} is not below its target")
    check_target_and_time(header, parent, config, now_ms)


class HeaderChain:
    """A peer's headers above a block we hold (``base``, a ``block_index.Entry``),
    lowest first, each checked against its parent. ``lookup(hash)`` returns our
    ``block_index.Entry`` for a block we hold, or None."""

    def __init__(self, base: Any, config: NetworkConfig, max_headers: int = MAX_SYNC_HEADERS,
                 our_height: int | None = None):
        self.base = base
        self.config = config
        self.max_headers = max_headers
        self.our_height = our_height  # our tip's height: see cap()
        self.nodes: list[HeaderNode] = []
        self._index: dict[str, int] = {}

    @property
    def tip(self) -> Any:
        """The highest header (or ``base`` when there is none)."""
        return self.nodes[-1] if self.nodes else self.base

    @property
    def work(self) -> int:
        return self.tip.work

    def __len__(self) -> int:
        return len(self.nodes)

    def hashes(self) -> list[str]:
        return [n.hash for n in self.nodes]

    def locator(self) -> list[str]:
        """Hashes of our header tip, tip-1, tip-2, tip-4, ... down to ``base``:
        a peer answers after the first of them on its main chain."""
        out, i, step = [], len(self.nodes) - 1, 1
        while i >= 0:
            out.append(self.nodes[i].hash)
            i -= step
            if len(out) > 1:
                step *= 2
        out.append(self.base.hash)
        return out

    def cap(self) -> int:
        """The most headers kept before the chain must show more work than our tip:
        ``max_headers``, and (when ``our_height`` is set) at most
        :data:`LENGTH_FACTOR` times our own blocks above ``base`` plus two pages.
        Retargeting keeps every branch at about one block per ``target_block_ms``
        of its timestamps, so an honest heavier branch is not much longer than ours
        since the fork; a far longer one is a cheap one, and checking it costs
        ~75 us per header (mostly the miner key check of parsing)."""
        if self.our_height is None:
            return self.max_headers
        return min(self.max_headers,
                   LENGTH_FACTOR * max(0, self.our_height - self.base.height) + 2 * MAX_HEADERS_PAGE)

    def rebase(self, entry: Any) -> None:
        """Start again above ``entry`` (a block we hold), forgetting every header."""
        self.base, self.nodes, self._index = entry, [], {}

    def extend(self, headers: Iterable[BlockHeader], lookup: Callable[[str], Any], now_ms: int) -> int:
        """Append a page of headers (lowest first). The first must connect to a
        header we have from this peer or to a block we hold (a peer that reorged
        may answer from an earlier point: the headers above that point are
        dropped); each next one to the one before. A header of a block we hold
        makes it the new ``base``. Returns how many headers are new. Raises
        ValidationError: ``block-unknown-parent`` for a page that does not
        connect, the header rule's code for a bad header, ``sync-too-many-headers``
        past ``max_headers``."""
        added = 0
        for i, header in enumerate(headers):
            if i == 0 or header.prev_hash != self.tip.hash:
                self._attach(header.prev_hash, lookup, first=i == 0)
            held = lookup(header.hash)
            if held is not None:  # a block we hold: everything below it is held too
                self.rebase(held)
                continue
            check_next_header(header, self.tip, self.config, now_ms)
            if len(self.nodes) >= self.cap():
                raise ValidationError(errors.SYNC_TOO_MANY_HEADERS,
                                      f"more than {self.cap()} headers above {self.base.hash[:16]} without more "
                                      f"work than our tip")
            self.nodes.append(HeaderNode(header, self.tip))
            self._index[header.hash] = len(self.nodes) - 1
            added += 1
        return added

    def _attach(self, prev_hash: str, lookup: Callable[[str], Any], first: bool) -> None:
        if prev_hash == self.tip.hash:
            return
        if not first:
            raise ValidationError(errors.BLOCK_BAD_PREV, "a header does not follow the one before it in the page")
        if prev_hash in self._index:
            self.nodes = self.nodes[:self._index[prev_hash] + 1]
            self._reindex()
            return
        held = lookup(prev_hash)
        if held is None:
            raise ValidationError(errors.BLOCK_BAD_PREV,
                                  f"the page's first header follows {prev_hash}, which is neither a block we "
                                  f"hold nor a header this peer sent")
        self.rebase(held)

    def _reindex(self) -> None:
        self._index = {n.hash: i for i, n in enumerate(self.nodes)}
