"""The mempool: validated updates waiting for a block.

Holds only transactions valid on the current tip (checked by
:meth:`Chain.validate_tx`, whose signature check is remembered in the chain's
shared :class:`~learningchain.ledger.rounds.VerifiedCache`, so a tx's signature is
verified once whether it arrives alone or inside a block). It is bounded in
count and bytes. When full, a newcomer may evict the waiting tx of lowest
:meth:`priority` if its own is strictly higher (the node's own update first,
then a tx for the open round, then an allow-listed sender), else it is refused
with ``mempool-full`` (first come, first served among equals: the only order a
participant can predict). So a flood of strangers' txs cannot keep a
participant's own update out (issue 10, item 6). Selection is deterministic (tx
id order), so two miners with the same mempool build the same block body.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterator, Mapping

from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.ledger.fork_choice import AddResult
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.stamp import stamp_ok
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.txs import is_secagg

#: bytes a block needs besides its txs: header, framing, and the commitment
#: (round, rule, params, digest). Per update the commitment adds its id up to
#: three times plus a rejection reason, see :data:`COMMITMENT_BYTES_PER_UPDATE`.
BLOCK_OVERHEAD_BYTES = 4096
#: rounds whose left-out txs the mempool remembers (for /status and /rounds/<r>)
NOT_INCLUDED_ROUNDS = 256
COMMITMENT_BYTES_PER_UPDATE = 512


class Mempool:
    def __init__(self, max_count: int = 10_000, max_bytes: int = 256 << 20):
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._txs: dict[str, UpdateTx] = {}
        self._slots: dict[tuple, str] = {}  # slot(tx) -> tx id: the one-per-slot check costs a lookup, not a scan
        self._bytes = 0
        #: senders whose txs outrank every other (the node's own key): local policy
        self.priority_senders: set[str] = set()
        self.evicted = 0
        self.just_evicted: list[str] = []  # ids the last add() pushed out to make room (the store follows)
        self._arrived: dict[str, int] = {}  # tx id -> tip height when it entered
        #: round -> [{"id", "sender"}]: valid txs we held for a block or more that the
        #: round closed without (censorship made visible: a local observation)
        self.not_included: OrderedDict[int, list[dict]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, txid: str) -> bool:
        return txid in self._txs

    def __iter__(self) -> Iterator[UpdateTx]:
        return iter(sorted(self._txs.values(), key=lambda t: t.id))

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, txid: str) -> UpdateTx | None:
        return self._txs.get(txid)

    def add(self, tx: UpdateTx, chain: Chain) -> str:
        """"accepted", or "known" if already here; raises ValidationError (TX_* or
        ``mempool-full``) otherwise."""
        self.just_evicted = []
        if tx.id in self._txs:
            return "known"
        # the slot first: it costs a comparison, and a sender re-signing its own valid
        # tx with new timestamps must not make us pay its full checks (an unmask's
        # are N·t point multiplications) again and again
        if slot(tx) in self._slots:
            raise ValidationError(errors.TX_DUPLICATE_SENDER,
                                  f"sender {tx.sender[:16]}... already has {'an update' if len(slot(tx)) == 2 else 'an ' + tx.kind} "
                                  f"for round {tx.round} waiting in the mempool")
        chain.validate_tx(tx)
        if self._full(tx) and not self._make_room(tx, chain):
            raise ValidationError(errors.MEMPOOL_FULL,
                                  f"mempool holds {len(self._txs)} txs / {self._bytes} bytes "
                                  f"(limits {self.max_count} / {self.max_bytes}); retry after the next block")
        self._put(tx)
        self._arrived[tx.id] = chain.height
        return "accepted"

    def _full(self, tx: UpdateTx) -> bool:
        return len(self._txs) >= self.max_count or self._bytes + tx.size > self.max_bytes

    def priority(self, tx: UpdateTx, chain: Chain) -> tuple[bool, bool, bool]:
        """(our own sender, for the open round, on the allow-list): compared as a tuple."""
        allowed = chain.config.allowed
        return (tx.sender in self.priority_senders, tx.round == chain.tip_state.round,
                allowed is not None and tx.sender in allowed)

    def _make_room(self, tx: UpdateTx, chain: Chain) -> bool:
        """Evict lower-priority txs (lowest first; among equals the largest id) until
        ``tx`` fits; False, evicting nothing, if it cannot fit that way."""
        mine = self.priority(tx, chain)
        lower = sorted((t for t in self._txs.values() if self.priority(t, chain) < mine),
                       key=lambda t: (self.priority(t, chain), _neg_id(t.id)))
        count, size, victims = len(self._txs), self._bytes, []
        for t in lower:
            if count < self.max_count and size + tx.size <= self.max_bytes:
                break
            victims.append(t)
            count, size = count - 1, size - t.size
        if count >= self.max_count or size + tx.size > self.max_bytes:
            return False
        for t in victims:
            self.remove(t.id)
            self.evicted += 1
            self.just_evicted.append(t.id)
        return True

    def _put(self, tx: UpdateTx) -> None:
        self._txs[tx.id] = tx
        self._slots[slot(tx)] = tx.id
        self._bytes += tx.size

    def remove(self, txid: str) -> None:
        tx = self._txs.pop(txid, None)
        self._arrived.pop(txid, None)
        if tx is not None:
            self._bytes -= tx.size
            del self._slots[slot(tx)]

    def _note_left_out(self, block) -> None:
        """At the block closing round r: every tx of round r still here (valid on the
        parent, so its sender has nothing in the round) that arrived at least two
        blocks before (so the block before this one could have carried it) and whose
        sender is not in this block was left out by the miners."""
        r = block.commitment.get("round") if isinstance(block.commitment, dict) else None
        if not isinstance(r, int):
            return
        in_block = {t.sender for t in block.txs}
        left = sorted(({"id": t.id, "sender": t.sender} for t in self._txs.values()
                       if t.round == r and t.sender not in in_block
                       and block.height >= self._arrived.get(t.id, block.height) + 2),
                      key=lambda d: d["id"])
        if left:
            self.not_included[r] = left
            while len(self.not_included) > NOT_INCLUDED_ROUNDS:
                self.not_included.popitem(last=False)

    def left_out_report(self, last: int = 20) -> dict:
        """``/status`` -> ``not_included``: rounds (newest ``last``) that closed without
        a valid tx we held, and the senders left out."""
        rounds = list(self.not_included.items())[-last:]
        return {"rounds": {str(r): [d["sender"] for d in v] for r, v in rounds},
                "total": sum(len(v) for v in self.not_included.values())}

    def select(self, chain: Chain, max_block_bytes: int | None = None) -> list[UpdateTx]:
        """Txs for the next block on ``chain``'s tip: open round only, one per
        sender (under secure aggregation: the open phase's txs only, one per sender
        and type), in tx id order, within the block size budget."""
        state = chain.tip_state
        limit = max_block_bytes if max_block_bytes is not None else chain.config.max_block_bytes
        budget = limit - BLOCK_OVERHEAD_BYTES - COMMITMENT_BYTES_PER_UPDATE * len(state.pending)
        taken = {slot(t) for t in state.pending}
        out = []
        for tx in self:
            if tx.round != state.round or slot(tx) in taken:
                continue
            if state.phase is not None and getattr(tx, "phase", None) != state.phase:
                continue
            cost = tx.size + 1 + COMMITMENT_BYTES_PER_UPDATE
            if cost > budget:
                continue
            budget -= cost
            taken.add(slot(tx))
            out.append(tx)
        return out

    def on_new_tip(self, chain: Chain, result: AddResult) -> None:
        """Drop txs included or invalidated by the new tip; after a reorg, offer
        the txs of disconnected blocks again (kept if still valid)."""
        if result.status not in ("connected", "reorg"):
            return
        for block in result.connected:
            for tx in block.txs:
                self.remove(tx.id)
            if block.commitment:
                self._note_left_out(block)
        self.revalidate(chain)
        for block in result.disconnected:
            for tx in block.txs:
                if tx.id not in self._txs:
                    try:
                        self.add(tx, chain)
                    except ValidationError:
                        pass  # included on the new branch, late, or superseded

    def revalidate(self, chain: Chain) -> None:
        for tx in list(self._txs.values()):
            try:
                chain.validate_tx(tx)
            except ValidationError:
                self.remove(tx.id)


def _held_key(tx):
    return (tx.sender, tx.kind) if is_secagg(tx) else tx.sender


def slot(tx) -> tuple:
    """What one tx occupies: (sender, round) for an update or skip, (sender, round,
    type) for a secure-aggregation tx (one of each type per sender and round)."""
    return (tx.sender, tx.round, tx.kind) if is_secagg(tx) else (tx.sender, tx.round)


def _neg_id(txid: str) -> str:
    """Sort key putting larger hex ids first."""
    return "".join("fedcba9876543210"["0123456789abcdef".index(c)] for c in txid)


class EarlyTxs:
    """Updates for the round after the open one, held until a block opens it (and
    secure-aggregation txs whose phase has not opened yet, held until it opens).

    A peer that closed round r trains for r+1 and gossips at once, often before
    the closing block has reached us; refusing (``tx-round-not-open``) would make
    it send the body again later. Held: at most one tx per sender and
    ``capacity`` in all (oldest dropped), and only from a sender that may take
    part (the allow-list, or the declared participants) with a well-formed,
    signed update; everything else is validated when the round opens
    (:meth:`Node.submit_tx` again). Who a selection policy picks for r+1 is
    drawn when round r closes (selection.py: seeded by the closing block's
    parent), so it cannot be checked here; the candidates list can.
    """

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        # sender (an update), or (sender, type) (a secure-aggregation tx) -> (tx, peer)
        self._by_sender: dict = {}

    def hold(self, tx: UpdateTx, open_round: int, peer: str | None, config: NetworkConfig | None = None,
             expected_shapes: Mapping[str, tuple[str, tuple[int, ...]]] | None = None) -> bool:
        """:meth:`admissible`, then :meth:`insert`: keep ``tx`` if it is for round
        ``open_round + 1``; False if for another round."""
        if not self.admissible(tx, open_round, config, expected_shapes):
            return False
        return self.insert(tx, open_round, peer)

    @staticmethod
    def early_for(tx, open_round: int) -> bool:
        """Whether ``tx`` is early while ``open_round`` is open: for the next round, or
        a secure-aggregation tx of the open round (its phase not open yet: the chain
        answered ``sa-phase-not-open``)."""
        return tx.round == open_round + 1 or (is_secagg(tx) and tx.round == open_round)

    @staticmethod
    def admissible(tx: UpdateTx, open_round: int, config: NetworkConfig | None = None,
                   expected_shapes: Mapping[str, tuple[str, tuple[int, ...]]] | None = None) -> bool:
        """May ``tx`` be held while ``open_round`` is open? False if it is for another
        round; raises ValidationError (``tx-unknown-sender`` off the allow-list of
        ``config``; shape, size, signature faults) rather than hold it. Touches no
        state: the node calls it without its lock (a signature check and a weights
        decode cost milliseconds), then takes the lock only to :meth:`insert`."""
        if not EarlyTxs.early_for(tx, open_round):
            return False
        allowed = config.allowed if config is not None else None
        if allowed is not None and tx.sender not in allowed:
            raise ValidationError(errors.TX_UNKNOWN_SENDER,
                                  f"sender {tx.sender[:16]}... is not on the allow list")
        if config is not None and not stamp_ok(tx.id_bytes, config.stamp_bits):
            raise ValidationError(errors.TX_INSUFFICIENT_STAMP,
                                  f"tx id {tx.id[:16]}... lacks the {config.stamp_bits}-bit stamp")
        sa = config.secure_aggregation if config is not None else None
        if is_secagg(tx) and sa is not None and expected_shapes is not None:
            d = sum(math.prod(shape) for _, shape in expected_shapes.values())
            tx.check(sa.threshold, d, config.max_tx_bytes)  # type: ignore[union-attr, call-arg]
        elif config is not None and expected_shapes is not None and not is_secagg(tx):
            tx.check(expected_shapes, config.max_tx_bytes)  # signature included
        else:
            tx.verify_signature()
        return True

    def insert(self, tx: UpdateTx, open_round: int, peer: str | None) -> bool:
        """Hold ``tx``, already found :meth:`admissible`, if ``open_round`` (read again
        by the caller, under its lock) is still the round before it: False if the
        chain has moved on meanwhile."""
        if not self.early_for(tx, open_round):
            return False
        key = _held_key(tx)
        self._by_sender.pop(key, None)
        self._by_sender[key] = (tx, peer)
        while len(self._by_sender) > self.capacity:
            self._by_sender.pop(next(iter(self._by_sender)))
        return True

    def holds(self, txid: str) -> bool:
        """Is the tx ``txid`` held here? (An announcement of it is not answered with
        "want": its body is here already.)"""
        return any(tx.id == txid for tx, _peer in self._by_sender.values())

    def take(self, open_round: int) -> list[tuple[UpdateTx, str | None]]:
        """The held txs of ``open_round`` (removed), dropping those of past rounds. A
        secure-aggregation tx whose phase is still not open is refused again with
        ``sa-phase-not-open`` when offered, and held again (node/intake.py)."""
        out = [v for v in self._by_sender.values() if v[0].round == open_round]
        self._by_sender = {s: v for s, v in self._by_sender.items() if v[0].round > open_round}
        return out

    def __len__(self) -> int:
        return len(self._by_sender)
