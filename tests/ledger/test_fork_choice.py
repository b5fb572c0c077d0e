"""Fork choice: the most cumulative work wins (not the longest chain), first seen
wins ties, and a reorg moves the tx index to the new branch."""
from learningchain.ledger.chain import Chain
from tests.helpers import EASY, KEYS, MINER, MINER2, extend, next_block, now, tiny_genesis, update_tx


def _fork(chain, base_chain_blocks, n, miner, dt):
    """Build n blocks on a copy of the chain at the same genesis, returning them."""
    side = Chain(chain.genesis)
    for b in base_chain_blocks:
        side.add_block(b, now(b))
    return extend(side, n, miner, dt)


def test_more_work_beats_more_length():
    g = tiny_genesis(retarget_window=2, target_block_ms=1000, pow_limit=EASY, initial_target=EASY >> 2)
    chain = Chain(g)
    long = extend(chain, 4, MINER, dt=100_000)   # slow: retarget makes the target easier (up to pow_limit)
    short = _fork(chain, [], 3, MINER2, dt=10)    # fast: target gets harder every 2 blocks
    w_long = chain.tip_work
    side = Chain(g)
    for blk in short:
        side.add_block(blk, now(blk))
    # long: E/4 then E, E, E (slow blocks ease to pow_limit); short: E/4 then E/16, E/16
    assert side.work_of(short[1].hash) > w_long
    res = [chain.add_block(blk, now(blk)) for blk in short]
    assert [r.status for r in res] == ["side", "reorg", "connected"]
    assert res[1].disconnected == tuple(reversed(long)) and res[1].connected == tuple(short[:2])
    assert chain.tip == short[-1] and chain.height == 3 and chain.block_at(1) == short[0]
    # ties: first seen wins, so re-adding the old tip is "known" and does not switch back
    assert chain.add_block(long[-1], now(long[-1])).status == "known"


def test_reorg_updates_tx_index():
    g = tiny_genesis()
    chain = Chain(g)
    tx = update_tx(chain, KEYS[0])
    a1 = next_block(chain, [tx])
    chain.add_block(a1, now(a1))
    fork = _fork(chain, [], 2, MINER2, dt=500)
    for blk in fork:
        res = chain.add_block(blk, now(blk))
    assert res.status == "reorg" and chain.find_tx(tx.id) is None
