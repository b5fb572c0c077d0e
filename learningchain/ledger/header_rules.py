"""Header rules: what a block header must satisfy given its parent's branch,
before any transaction is looked at (docs/protocol.md section 4, "Block
validation" steps 2-7; section 5, difficulty; section 6, genesis).

* the target: unchanged inside a retarget window, rescaled at its end by the
  time the window took between median times past, clamped to [1/2, 2]
  (:func:`next_target`; after Bitcoin's ``GetNextWorkRequired``, with the
  time-warp fix of overlapping windows);
* the timestamp: after the median time past of the last :data:`MEDIAN_SPAN`
  blocks (:func:`median_time`, Bitcoin's BIP 113 median of 11) and at most
  ``max_future_ms`` ahead of the validator's clock;
* the genesis header: fixed by its config (:func:`check_genesis_header`).

A header's own work is ``BlockHeader.work`` (:mod:`learningchain.ledger.block`);
cumulative work and fork choice, which need the block index, stay in
:mod:`learningchain.ledger.chain`. Pure functions: the caller passes the clock and the
parent, anything with ``block``, ``parent`` and ``height`` (block_index.Entry).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from learningchain.core import errors
from learningchain.ledger.block import Block
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig, make_genesis

#: blocks in the median-time-past window (Bitcoin's 11).
MEDIAN_SPAN = 11


class Ancestry(Protocol):
    """A block's header with a link to its parent's (block_index.Entry is one, and
    headers.HeaderNode). Only ``header`` is read: a chain entry deep below the tip
    has no body in memory, and reading one back from the store for a median or
    a retarget would put store reads under the node's lock."""

    @property
    def header(self) -> Any: ...

    @property
    def parent(self) -> "Ancestry | None": ...

    @property
    def height(self) -> int: ...


def median_time(entry: Ancestry) -> int:
    """Median timestamp of the last :data:`MEDIAN_SPAN` blocks ending at ``entry``
    (fewer near genesis): element ``k // 2`` of the ``k`` sorted timestamps."""
    stamps = []
    e: Ancestry | None = entry
    while e is not None and len(stamps) < MEDIAN_SPAN:
        stamps.append(e.header.timestamp)
        e = e.parent
    stamps.sort()
    return stamps[len(stamps) // 2]


def ancestor(entry: Ancestry, height: int) -> Ancestry:
    """The block at ``height`` on ``entry``'s branch."""
    e = entry
    while e.height > height:
        e = e.parent  # type: ignore[assignment]
    return e


#: the most one retarget can change the target: a factor of 2 either way.
RETARGET_CLAMP = 2


def next_target(parent: Ancestry, config: NetworkConfig) -> int:
    """Target for the block after ``parent``. Every ``retarget_window`` blocks the
    target is scaled by (actual / expected) time, the ratio clamped to
    [1/RETARGET_CLAMP, RETARGET_CLAMP]. ``actual`` is measured between *median
    times past*, from the parent of the previous retarget block to ``parent``:

    * medians, so that one block (or five of the last eleven) stamped at the
      edge of the clock allowance cannot move a window (the old rule used the
      parent's own timestamp: one block at now + 59 s made the next target 4x
      easier; issue 10 item 10);
    * consecutive windows share their end points, so their spans telescope:
      over any run of windows the spans add up to the growth of the median
      time, which no miner, even a majority, can push past the real clock plus
      ``max_future_ms`` (this is what defeats the classic time warp, which
      relies on windows that do not overlap);
    * the 2x clamp (Bitcoin's is 4x) halves what any one window can gain.

    Once ``start`` is 10 or more blocks above genesis both medians lag by 5
    blocks and a window measures exactly ``retarget_window`` intervals; nearer
    genesis the medians cover fewer blocks and early windows measure fewer.
    docs/protocol.md section 5."""
    h = parent.height + 1
    target = parent.header.target
    if h % config.retarget_window != 0:
        return target
    start = ancestor(parent, max(0, h - 1 - config.retarget_window))
    expected = config.retarget_window * config.target_block_ms
    actual = median_time(parent) - median_time(start)
    actual = min(max(actual, expected // RETARGET_CLAMP), expected * RETARGET_CLAMP)
    return max(1, min(target * actual // expected, config.pow_limit))


def check_header(block: Block, parent: Ancestry, config: NetworkConfig, now_ms: int) -> None:
    """Steps 2-7 of docs/protocol.md section 4, in that order (the order decides
    which error a block with several faults gets): height, structure (proof of
    work, merkle root, commitment hash), no config, target, timestamp, size."""
    h = block.header
    if h.height != parent.height + 1:
        raise ValidationError(errors.BLOCK_BAD_HEIGHT, f"height {h.height} after parent at {parent.height}")
    block.check_structure()
    if block.config is not None:
        raise ValidationError(errors.BLOCK_MALFORMED, "only genesis carries a config")
    check_target_and_time(h, parent, config, now_ms)
    if block.size > config.max_block_bytes:
        raise ValidationError(errors.BLOCK_TOO_LARGE,
                              f"block is {block.size} bytes, limit {config.max_block_bytes}")



def check_target_and_time(h: Any, parent: Any, config: NetworkConfig, now_ms: int) -> None:
    """The rules a header meets against its parent whatever its body: the target the
    chain requires there, a timestamp after the parent's median time past and at most
    ``max_future_ms`` ahead of our clock. Shared by block validation
    (:func:`check_header`) and headers-first sync (``headers.py``)."""
    want = next_target(parent, config)
    if h.target != want:
        raise ValidationError(errors.BLOCK_BAD_TARGET, f"target {h.target:064x}, expected {want:064x}")
    mtp = median_time(parent)
    if h.timestamp <= mtp:
        raise ValidationError(errors.BLOCK_TIME_TOO_OLD,
                              f"timestamp {h.timestamp} is not after the median {mtp} of the last blocks")
    if h.timestamp > now_ms + config.max_future_ms:
        raise ValidationError(errors.BLOCK_TIME_TOO_NEW,
                              f"timestamp {h.timestamp} is more than {config.max_future_ms} ms "
                              f"ahead of now ({now_ms})")


def check_genesis_header(genesis: Block, config: NetworkConfig) -> None:
    """docs/protocol.md section 6: the genesis header is the one ``make_genesis``
    builds from its config (target = initial_target, timestamp = config
    timestamp, the generator key as miner, nonce 0), and it carries no
    commitment. Its proof of work is not checked, so without this a genesis could
    carry any target and make the first retarget window trivially easy, or name
    another miner, under the same config. The commitment hash is taken from the
    genesis itself: it binds the config *as written* (the caller checks it), and
    a config that leaves defaulted fields out hashes differently from
    ``config.to_dict()``."""
    want = replace(make_genesis(config).header, commitment_hash=genesis.header.commitment_hash)
    if genesis.header == want and genesis.commitment is None:
        return
    got_h, want_h = genesis.header.to_dict(), want.to_dict()
    bad = [f for f in want_h if got_h[f] != want_h[f]]
    if genesis.commitment is not None:
        bad.append("commitment")
    raise ValidationError(errors.BLOCK_BAD_GENESIS,
                          f"genesis header differs from the one its config defines in: {', '.join(bad)}")
