"""Side branches: admission (block-side-work-too-low unless solicited) and the caps
(least-work leaves evicted first, never the main chain, a solicited block spared)."""
import pytest

from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.core.errors import ValidationError
from tests.helpers import EASY, MINER, MINER2, extend, next_block, now, refused, tiny_genesis


# --- side-branch caps (local policy: docs/protocol.md section 8) -------------------------

def _consistent(chain):
    """Every kept block has its parent kept; the caps' counters match a recount."""
    entries = chain.index.entries
    assert all(e.parent is None or e.parent.hash in entries for e in entries.values())
    side = [e for e in entries.values() if not chain.on_main_chain(e.hash)]
    assert chain.side_blocks == len(side) and chain.side_bytes == sum(e.block.size for e in side)
    assert chain.side.leaves == {e.hash for e in side if e.children == 0}


def _side_block(chain, main, fork_height, miner=MINER2, dt=1000):
    """A one-block fork on ``main[fork_height]`` (genesis at 0), from a scratch chain."""
    side = Chain(chain.genesis)
    for b in main[:fork_height]:
        side.add_block(b, now(b))
    return next_block(side, miner=miner, dt=dt)


def test_side_cap_evicts_least_work_leaves_and_never_the_main_chain():
    chain = Chain(tiny_genesis(), max_side_blocks=3)
    main = extend(chain, 6)
    forks = [_side_block(chain, main, h) for h in range(6)]  # fork at h: cumulative work grows with h
    results = [chain.add_block(b, now(b)) for b in forks]
    assert [r.status for r in results] == ["side"] * 6
    # past the cap each new fork evicts the least-work leaf (the deepest fork left)
    assert [r.evicted for r in results] == [(), (), (), (forks[0].hash,), (forks[1].hash,), (forks[2].hash,)]
    assert chain.side_blocks == 3 and chain.evicted_total == 3
    assert all(f.hash in chain for f in forks[3:]) and not any(f.hash in chain for f in forks[:3])
    assert chain.tip == main[-1] and chain.main_chain(1, 10) == main
    _consistent(chain)
    # a cheaper fork than every kept leaf still evicts another leaf, not itself
    again = chain.add_block(forks[0], now(forks[0]))
    assert again.status == "side" and again.evicted == (forks[3].hash,) and forks[0].hash in chain
    _consistent(chain)


def test_evicted_block_is_forgotten_not_invalid():
    chain = Chain(tiny_genesis(), max_side_blocks=0)
    main = extend(chain, 2)
    fork = extend(Chain(chain.genesis), 2, MINER2)  # equal work: side, first seen wins
    res = chain.add_block(fork[0], now(fork[0]))
    assert res.status == "side" and res.evicted == (fork[0].hash,) and fork[0].hash not in chain
    refused(chain, fork[1], errors.BLOCK_BAD_PREV)   # its child is an orphan, to be synced
    assert chain.add_block(fork[0], now(fork[0])).evicted == (fork[0].hash,)  # not remembered as invalid
    assert chain.side_blocks == 0 and chain.main_chain(1, 5) == main
    _consistent(chain)


def test_only_leaves_are_evicted_so_kept_blocks_keep_their_ancestors():
    chain = Chain(tiny_genesis(), max_side_blocks=2)
    main = extend(chain, 5)
    deep = extend(Chain(chain.genesis), 2, MINER2, dt=1500)   # heights 1-2, little work
    high = _side_block(chain, main, 4)                         # height 5, the most work of the side
    for b in deep + [high]:
        chain.add_block(b, now(b))
    assert deep[0].hash in chain and deep[1].hash not in chain and high.hash in chain
    _consistent(chain)


def test_side_bytes_cap():
    chain = Chain(tiny_genesis(), max_side_blocks=None)
    main = extend(chain, 3)
    forks = [_side_block(chain, main, h) for h in range(3)]
    chain.max_side_bytes = forks[0].size + forks[1].size + 10
    for b in forks:
        chain.add_block(b, now(b))
    assert chain.side_blocks == 2 and forks[0].hash not in chain and chain.side_bytes <= chain.max_side_bytes
    _consistent(chain)


def test_heavier_deep_fork_still_reorgs_past_a_full_cap_of_cheap_junk():
    """Deep cheap junk fills the cap; an honest heavier fork from the same depth,
    submitted block by block as sync does, displaces it and takes over."""
    g = tiny_genesis(retarget_window=2, target_block_ms=1000, pow_limit=EASY, initial_target=EASY >> 2)
    chain = Chain(g, max_side_blocks=5)
    main = extend(chain, 10, MINER, dt=2000)       # steady target E/4
    base = Chain(g)
    base.add_block(main[0], now(main[0]))
    slow = Chain(g)
    slow.add_block(main[0], now(main[0]))
    junk = extend(slow, 20, MINER2, dt=100_000)    # eases to pow_limit: cheap, long
    refused(chain, junk[0], errors.BLOCK_SIDE_WORK_TOO_LOW)  # unsolicited: side-branch admission refuses it
    # a block sync asked for (solicited: fetched along a header chain with more work
    # than our tip) is never the one evicted: the cap may be passed until its branch
    # overtakes (here the premise is false, junk asked for as if it were heavier)
    evicted = [chain.add_block(b, now(b), solicited=True).evicted for b in junk[:6]]
    assert evicted == [()] * 6 and chain.side_blocks == 6 and slow.tip_work < chain.tip_work
    fast = extend(base, 8, MINER2, dt=10)          # harder every 2 blocks: more work, shorter
    statuses = []
    for b in fast:
        statuses.append(chain.add_block(b, now(b), solicited=True).status)
        assert chain.side_blocks <= 6  # the junk's leaves go first, one per fast block
        _consistent(chain)
    assert chain.side_blocks <= 5  # once the fetched branch overtook, the caps hold again
    assert "reorg" in statuses and chain.tip == fast[-1] and base.tip_work == chain.tip_work
    assert all(b.hash in chain for b in fast) and chain.main_chain(2, 8) == fast
    # the old main chain is a side branch now: the junk went first, then its own upper blocks
    assert not any(b.hash in chain for b in junk)
    assert [b.hash in chain for b in main[1:]] == [True] * 5 + [False] * 4


@pytest.mark.parametrize("solicited", [False, True])
def test_a_heavier_fork_deeper_than_the_side_caps_heals_only_when_fetched_by_sync(solicited):
    """Issue 10 item 2: blocks of a heavier branch are side blocks until it overtakes.
    Past the cap the newest one was evicted, so a fork deeper than the caps was
    refetched block after block for ever. Fetched along a heavier header chain
    (solicited) it is spared and the branch takes over; unrequested, the cap holds."""
    g = tiny_genesis()
    main = Chain(g, max_side_blocks=3)
    extend(main, 4)
    side = Chain(g)
    branch = extend(side, 6, miner=MINER2)
    results = []
    for b in branch:
        try:
            results.append(main.add_block(b, now(b), solicited=solicited))
        except ValidationError as exc:
            results.append(exc.code)
    if solicited:
        assert main.tip.hash == side.tip.hash and results[4].status == "reorg"
        evicted = {h for r in results for h in r.evicted}
        assert not evicted & {b.hash for b in branch}  # only blocks of the old main chain, after the reorg
    else:
        assert branch[3].hash in results[3].evicted  # the 4th side block passes the cap of 3
        assert results[4] == errors.BLOCK_BAD_PREV and main.tip.hash != side.tip.hash
