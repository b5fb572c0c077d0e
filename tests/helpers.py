"""Shared fixtures for the ledger tests: a tiny network (softmax, 4 features,
3 classes), deterministic keys, real signatures and real (easy) proof of work."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from learningchain.core import crypto
from learningchain.core.errors import ValidationError
from learningchain.ledger.block import Block, make_block
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import NetworkConfig, make_genesis
from learningchain.learning.models import ModelSpec
from learningchain.ledger.tx import UpdateTx
from miner.pow import search

T0 = 1_700_000_000_000
EASY = 1 << 252  # ~16 hashes per block
TINY_SPEC = ModelSpec("softmax", "classification", 4, 3, (), 0, 1, 8, 0.1)
KEYS = [crypto.PrivateKey.from_secret(1000 + i) for i in range(12)]
MINER = crypto.PrivateKey.from_secret(77)
MINER2 = crypto.PrivateKey.from_secret(78)


def tiny_config(**overrides) -> NetworkConfig:
    base = dict(network="test", model=TINY_SPEC.to_dict(),
                aggregation={"rule": "fedavg", "params": {"cap_factor": "2"}}, quorum=3,
                round_timeout=5, target_block_ms=1000, initial_target=EASY, pow_limit=EASY,
                retarget_window=1000, max_tx_bytes=10_000, max_block_bytes=1_000_000,
                max_future_ms=4000, allow_list=None, timestamp=T0)
    base.update(overrides)
    return NetworkConfig(**base)


def tiny_genesis(**overrides) -> Block:
    return make_genesis(tiny_config(**overrides))


def mine(block: Block) -> Block:
    """The block with the first nonce whose header meets its target."""
    nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 40)
    assert nonce is not None
    return Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)


def remine(block: Block, **header_changes) -> Block:
    """``block`` with header fields changed and mined again (merkle and
    commitment hash are NOT recomputed: pass them if wanted)."""
    return mine(Block(replace(block.header, nonce=0, **header_changes), block.txs, block.commitment,
                      block.config))


def rebuild(block: Block, txs=None, commitment="same", **header_changes) -> Block:
    """Rebuild ``block`` with other txs/commitment/header fields (merkle root and
    commitment hash recomputed) and mine it."""
    h = block.header
    fields = dict(height=h.height, prev_hash=h.prev_hash, timestamp=h.timestamp, target=h.target,
                  miner=h.miner)
    fields.update(header_changes)
    return mine(make_block(txs=tuple(block.txs if txs is None else txs),
                           commitment=block.commitment if commitment == "same" else commitment,
                           config=block.config, **fields))


def update_tx(chain: Chain, key: crypto.PrivateKey, *, round: int | None = None, base: str | None = None,
              shift: float | None = None, num_samples: int = 10, timestamp: int = 0) -> UpdateTx:
    """A signed update trained (here: shifted) from the tip's current model."""
    model, digest = chain.model()
    if shift is None:
        shift = (KEYS.index(key) + 1) / 64 if key in KEYS else 0.5
    weights = {name: (arr + np.float32(shift)).astype(np.float32) for name, arr in model.items()}
    return UpdateTx.create(key, chain.tip_state.round if round is None else round,
                           digest if base is None else base, weights, num_samples,
                           timestamp=timestamp)


def next_block(chain: Chain, txs=(), miner: crypto.PrivateKey = MINER, dt: int = 1000) -> Block:
    """A mined, valid block on the tip, ``dt`` ms after it."""
    return mine(chain.build_block(miner.public_hex, list(txs), chain.tip.header.timestamp + dt))


def extend(chain: Chain, n: int, miner: crypto.PrivateKey = MINER, dt: int = 1000) -> list[Block]:
    out = []
    for _ in range(n):
        b = next_block(chain, (), miner, dt)
        chain.add_block(b, now(b))
        out.append(b)
    return out


def now(block: Block) -> int:
    """A validator clock reading at which ``block`` is not from the future."""
    return block.header.timestamp


def refused(chain: Chain, block: Block, code: str, now_ms: int | None = None) -> ValidationError:
    """Assert that ``chain`` refuses ``block`` with ``code``; returns the error."""
    with pytest.raises(ValidationError) as exc:
        chain.add_block(block, now(block) if now_ms is None else now_ms)
    assert exc.value.code == code, exc.value
    return exc.value


def write_data_dir(directory, sizes=(60, 50, 40), test: int | None = 60, shape=(2, 3), classes: int = 3):
    """A user's data directory (--data DIR): node0.npz, node1.npz, ... with ``sizes``
    samples of ``shape`` (images when 2-D), three separable classes, and test.npz."""
    import numpy as np
    from pathlib import Path
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(classes, *shape))
    named = [(f"node{i}", n) for i, n in enumerate(sizes)] + ([("test", test)] if test else [])
    for name, n in named:
        y = rng.integers(0, classes, n)
        np.savez(d / f"{name}.npz", X=(centers[y] + rng.normal(size=(n, *shape))).astype(np.float32), y=y)
    return d


def bad_data_dir(directory, kind: str):
    """A --data DIR that must be refused: "mismatched" (node1 has 5 features, node0 6)
    or "without-y" (node1.npz holds no y)."""
    import numpy as np
    d = write_data_dir(directory, sizes=(20, 20))
    arrays = {"X": np.zeros((20, 5 if kind == "mismatched" else 6), np.float32)}
    if kind == "mismatched":
        arrays["y"] = np.zeros(20, np.int64)
    np.savez(d / "node1.npz", **arrays)
    return d
