"""The round index (issue 10, item 13): round summaries cost the round's own blocks,
not the chain's, and follow a reorg."""
from learningchain.ledger.chain import Chain
from tests.helpers import KEYS, MINER2, extend, next_block, now, tiny_genesis, update_tx


# --- the round index (issue 10, item 13) -------------------------------------------

def _summary_by_scan(chain: Chain, r: int) -> tuple[int, int | None, list[str]]:
    """Round r's opening height, closing height and update ids, from a walk over the
    whole main chain (the reference the index must agree with)."""
    blocks = chain.main_chain(0, chain.height + 1)
    rounds = [chain.state_of(b.hash).round for b in blocks]
    opened = next(h for h, rr in enumerate(rounds) if rr >= r)
    closed = next((h for h in range(opened + 1, len(blocks)) if rounds[h] > r), None)
    end = closed if closed is not None else chain.height
    return opened, closed, [t.id for b in blocks[opened + 1:end + 1] for t in b.txs]


def test_round_summary_cost_does_not_grow_with_the_chain():
    short, long = Chain(tiny_genesis(round_timeout=3)), Chain(tiny_genesis(round_timeout=3))
    extend(short, 12)
    extend(long, 240)
    for chain in (short, long):
        chain.round_summary(1)  # builds the index once: O(chain), then only new blocks
    costs = []
    for chain in (short, long):
        before = chain.index_steps
        summary = chain.round_summary(3)
        costs.append(chain.index_steps - before)
        assert (summary["opened_at"], summary["closed_at"], [u["id"] for u in summary["updates"]]) \
            == _summary_by_scan(chain, 3)
    assert costs[0] == costs[1] == 3  # the round's own blocks, at 12 blocks as at 240
    before = long.index_steps
    extend(long, 2)
    long.round_summary(long.tip_state.round)
    assert long.index_steps - before <= 2 + 3  # the new blocks, then the open round's


def test_round_index_follows_a_reorg():
    chain = Chain(tiny_genesis(round_timeout=2, quorum=2))
    extend(chain, 4)  # rounds 1 and 2 closed by timeout
    fork_at = chain.height
    assert [h for _r, h, _b in chain.round_closes()] == [2, 4]
    side = Chain(chain.genesis)
    for b in chain.main_chain(1, fork_at):
        side.add_block(b, now(b))
    txs = [update_tx(side, KEYS[0]), update_tx(side, KEYS[1])]  # quorum 2: round 3 closes at once
    heavier = [next_block(side, txs, miner=MINER2)]
    side.add_block(heavier[0], now(heavier[0]))
    heavier += extend(side, 2, miner=MINER2)
    extend(chain, 1)  # our branch: round 3 still open
    assert chain.round_summary(3)["status"] == "open"
    for b in heavier:
        chain.add_block(b, now(b))
    assert chain.tip.hash == side.tip.hash
    for r in range(1, chain.tip_state.round + 1):
        s = chain.round_summary(r)
        assert (s["opened_at"], s["closed_at"], [u["id"] for u in s["updates"]]) == _summary_by_scan(chain, r)
    assert chain.round_summary(3)["closed_at"] == fork_at + 1
