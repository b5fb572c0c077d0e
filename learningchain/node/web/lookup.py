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
import weakref
from bisect import bisect_left
from typing import Any

from learningchain.core.encoding import is_hex
from learningchain.node.web import names

MIN_PREFIX = 4
#: ids listed at most for an ambiguous prefix.
MAX_MATCHES = 10
_HEX = re.compile(r"[0-9a-f]{4,64}")
_ROUND = re.compile(r"(?:r|round\s*)([0-9]{1,9})")
_DIGITS = re.compile(r"[0-9]{1,15}")


class AmbiguousId(Exception):
    """A prefix naming more than one id: answered 409 ``ambiguous-id`` with the ``matches``."""

    def __init__(self, what: str, prefix: str, matches: list[str]):
        super().__init__(f"{what} prefix {prefix} names {len(matches)}{'+' if len(matches) >= MAX_MATCHES else ''} "
                         f"ids; give more characters")
        self.what, self.prefix, self.matches = what, prefix, matches


def is_height(text: str) -> bool:
    """Digits read as a height: without a leading zero, or too short for a prefix.
    ``00000047`` is no height but a hash prefix (proof-of-work hashes start with
    zeros); a height above the tip with 4+ digits is tried as a prefix too."""
    return _DIGITS.fullmatch(text) is not None and (len(text) < MIN_PREFIX or not text.startswith("0"))


def is_prefix(text: str) -> bool:
    """``text`` can name an id: 4 to 64 lowercase hex characters."""
    return isinstance(text, str) and _HEX.fullmatch(text) is not None


class TxPrefixIndex:
    """Sorted ids of every tx the main chain held since the index was built."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.entry = None  # the main-chain entry indexed last (kept: its parent links lead to a fork)

    def catch_up(self, chain: Any) -> None:
        """(node lock held) add the txs of the main-chain blocks connected since the
        last call: O(new blocks), after a reorg O(its depth) more."""
        index = chain.index
        if self.entry is None:
            self.ids = sorted(index.tx_index)
            self.entry = index.tip
            return
        e = self.entry
        while e is not None and not index.on_main_chain(e.hash):
            e = e.parent
        start = e.height + 1 if e is not None else 0
        new = [t for h in range(start, len(index.main)) for t in index.at(h).tx_ids]
        if len(new) > 64:
            self.ids = sorted(set(self.ids).union(new))
        else:
            for t in new:
                i = bisect_left(self.ids, t)
                if i == len(self.ids) or self.ids[i] != t:
                    self.ids.insert(i, t)
        self.entry = index.tip

    def starting(self, prefix: str, limit: int) -> list[str]:
        i, out = bisect_left(self.ids, prefix), []
        while i < len(self.ids) and self.ids[i].startswith(prefix) and len(out) < limit:
            out.append(self.ids[i])
            i += 1
        return out


_tx_indexes: "weakref.WeakKeyDictionary[Any, TxPrefixIndex]" = weakref.WeakKeyDictionary()


def prepare_tx_index(node: Any) -> None:
    """Build the node's tx index on first use (call without the node's lock): the
    ids are copied under the lock and sorted outside it (400k ids: ~10 ms held,
    ~0.5 s of sorting; bench/explorer_lookup.py), then caught up under the lock."""
    chain = node.chain
    if chain in _tx_indexes:
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
    found = [t for t in idx.starting(prefix, limit + 16) if t in chain.index.tx_index]
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
        return _unique("block hash", ref, block_hashes_from(node, ref))


def resolve_tx(node: Any, ref: str) -> str | None:
    """The full id of the tx ``ref`` names (main chain or mempool), as :func:`resolve_block`."""
    if len(ref) == 64:
        return ref
    prepare_tx_index(node)
    with node.lock:
        return _unique("tx id", ref, tx_ids_from(node, ref))


def search(node: Any, q: str) -> list[dict]:
    """Every reading of ``q`` that names something this node holds: ``[{"kind",
    "id", "url", "label"}]``, most specific first. Bounded work: index lookups only."""
    q = " ".join((q or "").split()).lower()
    out: list[dict] = []
    if not q:
        return out

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
            for b in block_hashes_from(node, q):
                add("block", b, f"/blocks/{b}", "block")
            for t in tx_ids_from(node, q):
                add("tx", t, f"/txs/{t}", "transaction")
    key = names.pubkey_of(node, q)
    if key is not None:
        add("participant", key, f"/participants/{names.ref_of(node, key)}", names.name_of(node, key))
    elif is_hex(q, 20) and not out:  # an address outside the genesis list
        add("participant", q, f"/participants/{q}", names.name_of(node, q))
    elif is_prefix(q) and len(q) < 40:
        for k in names.listed(node):
            if names.address_of(k).startswith(q) or k.startswith(q):
                add("participant", k, f"/participants/{names.ref_of(node, k)}", names.name_of(node, k))
    return out
