"""The nonce search and the worker pool (miner/pow.py)."""
from __future__ import annotations

import threading
import time

import pytest

from learningchain.core import crypto
from learningchain.ledger.block import PREFIX_SIZE, BlockHeader
from miner.pow import CHUNK, Miner, mine_header, search

KEY = crypto.PrivateKey.from_secret(7)
EASY = 1 << 244  # ~4,096 tries
IMPOSSIBLE = 0  # no hash is below zero


def header(height: int = 1, prev_hash: str = "11" * 32, target: int = EASY) -> BlockHeader:
    return BlockHeader(height=height, prev_hash=prev_hash, merkle_root="22" * 32,
                       commitment_hash="33" * 32, timestamp=1_700_000_000_000 + height, target=target,
                       miner=KEY.public_hex)


def poll(predicate, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- search -----------------------------------------------------------------------
def test_search_finds_a_nonce_that_passes_check_pow():
    h = header()
    assert len(h.prefix()) == PREFIX_SIZE
    nonce, hashes = search(h.prefix(), h.target, 0, 1 << 20)
    assert nonce is not None and hashes == nonce + 1
    assert h.with_nonce(nonce).check_pow()
    # it is the *first* solution in the range
    assert not any(h.with_nonce(n).check_pow() for n in range(nonce))


def test_search_from_an_offset_counts_hashes_from_there():
    h = header()
    first, _ = search(h.prefix(), h.target, 0, 1 << 20)
    nonce, hashes = search(h.prefix(), h.target, first + 1, 1 << 20)
    assert nonce is not None and nonce > first and hashes == nonce - first
    assert h.with_nonce(nonce).check_pow()


def test_search_returns_none_when_the_range_holds_no_solution():
    h = header()
    assert search(h.prefix(), IMPOSSIBLE, 0, 5000) == (None, 5000)
    # clipped at the end of the 64-bit nonce space
    assert search(h.prefix(), IMPOSSIBLE, (1 << 64) - 10, 100) == (None, 10)


def test_mine_header_in_process():
    mined = mine_header(header())
    assert mined is not None and mined.check_pow()
    assert mine_header(header(target=IMPOSSIBLE), should_stop=lambda: True) is None


# --- worker pool ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    with Miner(workers=2) as m:
        yield m


def test_two_workers_find_valid_nonces_and_are_reused(pool):
    for height in (1, 2, 3):
        h = header(height=height, target=1 << 240)
        result = pool.mine(h.prefix(), h.target)
        assert result.nonce is not None and h.with_nonce(result.nonce).check_pow()
        assert result.hashes >= 1 and result.hashrate > 0
    procs = list(pool._procs)
    mined = mine_header(header(height=9), miner=pool)
    assert mined is not None and mined.check_pow()
    assert pool._procs == procs and all(p.is_alive() for p in procs)  # same processes, kept alive


def test_should_stop_aborts_an_impossible_search_quickly(pool):
    h = header(target=IMPOSSIBLE)
    stop = threading.Event()
    out = {}
    t = threading.Thread(target=lambda: out.update(r=pool.mine(h.prefix(), h.target, stop.is_set)))
    t.start()
    assert poll(lambda: sum(pool._progress) >= 2 * CHUNK, 10)  # both workers are hashing
    stop.set()
    stopped_at = time.monotonic()
    t.join(5)
    assert not t.is_alive()
    # generous bound for a loaded test machine; the design target is ~0.1 s (one chunk)
    assert time.monotonic() - stopped_at < 1.0
    result = out["r"]
    assert result.nonce is None and result.hashes >= 2 * CHUNK
    # the pool still works after an aborted job
    again = pool.mine(header().prefix(), EASY)
    assert again.nonce is not None


def test_single_worker_should_stop():
    m = Miner(workers=1)
    calls = []
    result = m.mine(header().prefix(), IMPOSSIBLE, lambda: calls.append(1) or len(calls) >= 3)
    assert result.nonce is None and result.hashes == 3 * CHUNK


def test_interrupt_stops_a_worker_process_search_from_another_thread():
    with Miner(workers=1, in_process=False, nice=5) as m:  # a node's miner: one worker, out of process
        h = header(target=IMPOSSIBLE)
        out = {}
        t = threading.Thread(target=lambda: out.update(r=m.mine(h.prefix(), h.target)))  # no should_stop
        t.start()
        assert poll(lambda: bool(m._procs) and sum(m._progress) > 0, 30)  # the worker is hashing
        m.interrupt()
        t.join(10)
        assert not t.is_alive() and out["r"].nonce is None and out["r"].hashes > 0
        again = m.mine(header().prefix(), EASY)  # an interrupt does not reach the next search
        assert again.nonce is not None


def test_interrupt_stops_an_in_process_search():
    m = Miner(workers=1)
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        if len(calls) == 2:
            m.interrupt()
        return False  # only the interrupt can stop it
    result = m.mine(header().prefix(), IMPOSSIBLE, stop_after_two)
    assert result.nonce is None and result.hashes == 2 * CHUNK
