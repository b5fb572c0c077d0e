"""Ids by prefix, and the explorer's search.

A unique lowercase hex prefix of at least :data:`MIN_PREFIX` characters names a
block or a tx wherever a full id does (``/blocks/ab12``, ``/txs/ab12``,
``node.py tx <16 chars>``). Nothing scans the chain:

* blocks: a range query over the store's primary key
  (:meth:`~learningchain.node.store.Store.block_hashes_from`), kept to the
  blocks the chain holds (the store holds exactly those, plus a block being
  written);
* main-chain txs: :class:`TxPrefixIndex`, a sorted list of the ids of the main
  chain's tx index, caught up incrementally with the blocks connected since the
  last query (a reorg is followed back to the fork, as the round index does);
  ids that left the main chain stay in the list and are filtered out by the
  chain's own tx index (built on first use: the ids are copied under the node's
  lock and sorted outside it);
* mempool txs: the same range query over the store's mempool table.

:func:`search` answers ``/search?q=``: a height, a block hash or prefix, a tx id
or prefix, an address or public key, a node name (``node3``) or a round
(``r12``, ``round 12``).
"""
from __future__ import annotations

import re
import threading
import weakref
from bisect import bisect_left, insort
from typing import Any, Callable

from learningchain.node.web import names, pages

MIN_PREFIX = 4
#: ids listed at most for an ambiguous prefix.
MAX_MATCHES = 10
_HEX = re.compile(r"[0-9a-f]{4,64}")
_ROUND = re.compile(r"(?:r|round\s*)([0-9]{1,9})")
_DIGITS = re.compile(r"[0-9]{1,15}")


class AmbiguousId(Exception):
    """A prefix naming more than one id: answered 409 ``ambiguous-id`` with the
    ``matches`` (at most :data:`MAX_MATCHES`). ``found``: the ids looked up, at
    most ``MAX_MATCHES + 1``: one more than shown says "more than 10"."""

    def __init__(self, what: str, prefix: str, found: list[str]):
        count = f"more than {MAX_MATCHES}" if len(found) > MAX_MATCHES else str(len(found))
        super().__init__(f"{what} prefix {prefix} names {count} ids; give more characters")
        self.what, self.prefix, self.matches = what, prefix, found[:MAX_MATCHES]
        self.more = len(found) > MAX_MATCHES


def is_height(text: str) -> bool:
    """Digits read as a height: without a leading zero, or too short for a prefix.
    ``00000047`` is no height but a hash prefix (proof-of-work hashes start with
    zeros); a height above the tip with 4+ digits is tried as a prefix too."""
    return _DIGITS.fullmatch(text) is not None and (len(text) < MIN_PREFIX or not text.startswith("0"))


def is_prefix(text: str) -> bool:
    """``text`` can name an id: 4 to 64 lowercase hex characters."""
    return isinstance(text, str) and _HEX.fullmatch(text) is not None


#: ids added to a :class:`TxPrefixIndex` since its last merge beyond which the
#: next lookup merges them into the big sorted list, outside the node's lock.
RECENT_MAX = 2048


class TxPrefixIndex:
    """Sorted ids of every tx the main chain held since the index was built: a big
    sorted list ``ids`` (replaced whole, never changed in place) and a small sorted
    list ``recent`` of the ids added since its last merge. Under the node's lock a
    catch-up costs O(new txs * log n + len(recent)), never a sort of the whole list;
    :meth:`merge` folds ``recent`` into ``ids`` outside the lock."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.recent: list[str] = []
        self.entry = None  # the main-chain entry indexed last (kept: its parent links lead to a fork)
        self._merging = threading.Lock()

    def has(self, t: str) -> bool:
        for run in (self.ids, self.recent):
            i = bisect_left(run, t)
            if i < len(run) and run[i] == t:
                return True
        return False

    def catch_up(self, chain: Any) -> None:
        """(node lock held) add the txs of the main-chain blocks connected since the
        last call: O(new blocks), after a reorg O(its depth) more. Only ids not held
        yet are added (a reorg may bring back ids the index kept), to ``recent``."""
        index = chain.index
        if self.entry is None:
            self.ids, self.recent = sorted(index.tx_index), []
            self.entry = index.tip
            return
        e = self.entry
        while e is not None and not index.on_main_chain(e.hash):
            e = e.parent
        start = e.height + 1 if e is not None else 0
        fresh = sorted({t for h in range(start, len(index.main)) for t in index.at(h).tx_ids if not self.has(t)})
        if len(fresh) > 64:  # two sorted runs: timsort merges them in one pass over the small list
            self.recent = self.recent + fresh
            self.recent.sort()
        else:
            for t in fresh:
                insort(self.recent, t)
        self.entry = index.tip

    def merge(self, lock: Any) -> bool:
        """(node lock NOT held) fold ``recent`` into ``ids``: the copy and the sort run
        outside ``lock`` (the node's), which is taken twice, only to read and to swap
        lists (O(len(recent))). One merge at a time; False if another runs."""
        if not self._merging.acquire(blocking=False):
            return False
        try:
            with lock:
                base, extra = self.ids, list(self.recent)
            merged = base + extra
            merged.sort()  # two sorted runs: a merge
            with lock:
                taken = set(extra)
                self.ids, self.recent = merged, [t for t in self.recent if t not in taken]
            return True
        finally:
            self._merging.release()

    def starting(self, prefix: str, limit: int, keep: Callable[[str], bool] | None = None) -> list[str]:
        """Up to ``limit`` ids starting with ``prefix``, in order, skipping those
        ``keep`` refuses while scanning (ids that left the main chain): the result
        is short only when fewer ids match."""
        runs = []
        for run in (self.ids, self.recent):
            i = bisect_left(run, prefix)
            runs.append((run, i))
        out: list[str] = []
        (a, i), (b, j) = runs
        while len(out) < limit:
            x = a[i] if i < len(a) and a[i].startswith(prefix) else None
            y = b[j] if j < len(b) and b[j].startswith(prefix) else None
            if x is None and y is None:
                break
            if y is None or (x is not None and x <= y):
                t, i = x, i + 1
            else:
                t, j = y, j + 1
            if keep is None or keep(t):
                out.append(t)
        return out


_tx_indexes: "weakref.WeakKeyDictionary[Any, TxPrefixIndex]" = weakref.WeakKeyDictionary()


def prepare_tx_index(node: Any) -> None:
    """Build the node's tx index on first use, and merge its recent ids when there
    are more than :data:`RECENT_MAX` (call without the node's lock): the ids are
    copied under the lock and sorted outside it (400k ids: ~10 ms held, ~0.5 s of
    sorting; bench/explorer_lookup.py), then caught up under the lock."""
    chain = node.chain
    idx = _tx_indexes.get(chain)
    if idx is not None:
        if len(idx.recent) > RECENT_MAX:
            idx.merge(node.lock)
        return
    with node.lock:
        ids, tip = list(chain.index.tx_index), chain.index.tip
    idx = TxPrefixIndex()
    idx.ids, idx.entry = sorted(ids), tip
    with node.lock:
        _tx_indexes.setdefault(chain, idx)


def tx_ids_from(node: Any, prefix: str, limit: int = MAX_MATCHES) -> list[str]:
    """(node lock held) ids of main-chain and mempool txs starting with ``prefix``
    (after :func:`prepare_tx_index`, else the first call builds it under the lock)."""
    chain = node.chain
    idx = _tx_indexes.get(chain)
    if idx is None:
        idx = _tx_indexes[chain] = TxPrefixIndex()
    idx.catch_up(chain)
    tx_index = chain.index.tx_index
    found = idx.starting(prefix, limit, tx_index.__contains__)
    pool = node.ledger.mempool
    if node.ledger.store is not None:
        found += [t for t in node.ledger.store.mempool_ids_from(prefix, limit) if t in pool]
    return sorted(set(found))[:limit]


def block_hashes_from(node: Any, prefix: str, limit: int = MAX_MATCHES) -> list[str]:
    """(node lock held) hashes of blocks the chain holds starting with ``prefix``."""
    chain = node.chain
    store = node.ledger.store
    if store is None:
        return []
    return [h for h in store.block_hashes_from(prefix, limit + 4) if h in chain][:limit]


def _unique(what: str, ref: str, found: list[str]) -> str | None:
    if len(found) > 1:
        raise AmbiguousId(what, ref, found)
    return found[0] if found else None


def resolve_block(node: Any, ref: str) -> str | None:
    """The full hash of the block ``ref`` names (a hash or a unique prefix); None if
    none; raises :class:`AmbiguousId`. ``ref`` must satisfy :func:`is_prefix`."""
    with node.lock:
        if len(ref) == 64:
            return ref if ref in node.chain else None
        return _unique("block hash", ref, block_hashes_from(node, ref, MAX_MATCHES + 1))


def resolve_tx(node: Any, ref: str) -> str | None:
    """The full id of the tx ``ref`` names (main chain or mempool), as :func:`resolve_block`."""
    if len(ref) == 64:
        return ref
    prepare_tx_index(node)
    with node.lock:
        return _unique("tx id", ref, tx_ids_from(node, ref, MAX_MATCHES + 1))


def search(node: Any, q: str) -> list[dict]:
    """Every reading of ``q`` that names something this node holds: ``[{"kind",
    "id", "url", "label"}]``, most specific first (:func:`search_all`'s matches)."""
    return search_all(node, q)[0]


def search_all(node: Any, q: str) -> tuple[list[dict], list[str]]:
    """:func:`search`'s matches, and the kinds ("block", "tx") of which more than
    :data:`MAX_MATCHES` start with ``q`` (only the first are listed). Bounded
    work: index lookups only. A participant matches only if this node knows it
    (:func:`~learningchain.node.web.pages.known_participant`): any 40- or 66-hex
    string is not one."""
    q = " ".join((q or "").split()).lower()
    out: list[dict] = []
    more: list[str] = []
    if not q:
        return out, more

    def add(kind: str, ident: str, url: str, label: str) -> None:
        if not any(m["url"] == url for m in out):
            out.append({"kind": kind, "id": ident, "url": url, "label": label})

    m = _ROUND.fullmatch(q)
    if is_prefix(q):
        prepare_tx_index(node)
    with node.lock:
        current, main = node.chain.tip_state.round, node.chain.index.main
        if is_height(q) and int(q) < len(main):
            add("block", main[int(q)], f"/blocks/{main[int(q)]}", f"block at height {int(q)}")
        if m and 1 <= int(m.group(1)) <= current:
            r = int(m.group(1))
            add("round", str(r), f"/rounds/{r}", f"round {r}")
        if is_prefix(q):
            for kind, found, label in (("block", block_hashes_from(node, q, MAX_MATCHES + 1), "block"),
                                       ("tx", tx_ids_from(node, q, MAX_MATCHES + 1), "transaction")):
                if len(found) > MAX_MATCHES:
                    more.append(kind)
                for x in found[:MAX_MATCHES]:
                    add(kind, x, f"/{kind}s/{x}", label)
    key = pages.known_participant(node, q)
    if key is not None:
        add("participant", key, f"/participants/{names.ref_of(node, key)}", names.name_of(node, key))
    elif is_prefix(q) and len(q) < 40:
        for k in names.listed(node):
            if names.address_of(k).startswith(q) or k.startswith(q):
                add("participant", k, f"/participants/{names.ref_of(node, k)}", names.name_of(node, k))
    return out, more
