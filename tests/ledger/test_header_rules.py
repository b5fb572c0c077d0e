"""Header rules in context: retargeting (clamped, capped at pow_limit), the time
warp, median time past over exactly 11 blocks, and the genesis header fixed by its config."""
from dataclasses import replace

import pytest

from learningchain.core import errors
from learningchain.ledger.block import Block, make_block
from learningchain.ledger.chain import Chain
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import LOCAL_BLOCK_MS
from learningchain.ledger.header_rules import next_target
from tests.helpers import EASY, MINER, T0, extend, mine, next_block, rebuild, refused, tiny_genesis


def test_retarget_up_down_and_clamped():
    g = tiny_genesis(retarget_window=4, target_block_ms=1000, pow_limit=EASY, initial_target=EASY >> 4)
    def target_after(dt):
        chain = Chain(g)
        extend(chain, 3, dt=dt)
        return next_target(chain.tip_entry, chain.config)
    t = EASY >> 4
    expected = 4 * 1000
    # first window: from genesis' median (T0) to block 3's median (of T0..T0+3dt: T0+2dt)
    assert target_after(2000) == t                               # 2 * 2000 = expected: unchanged
    assert target_after(1500) == t * 3000 // expected             # faster: harder
    assert target_after(100) == t * (expected // 2) // expected   # too fast: clamped at 1/2
    assert target_after(100_000) == min(t * expected * 2 // expected, EASY)  # clamped at 2x
    g2 = tiny_genesis(retarget_window=4, pow_limit=EASY, initial_target=EASY)
    chain = Chain(g2)
    extend(chain, 3, dt=100_000)
    assert next_target(chain.tip_entry, chain.config) == EASY  # capped at pow_limit
    chain = Chain(g)
    blocks = extend(chain, 5, dt=100)
    assert blocks[3].header.target == t // 2 and blocks[4].header.target == t // 2


# --- time warp (issue 10 item 10): pure next_target over a simulated branch ------------

class _Entry:
    """The part of block_index.Entry next_target reads, without proof of work."""

    def __init__(self, parent, timestamp, target):
        self.parent, self.height = parent, 0 if parent is None else parent.height + 1
        self.header = type("H", (), {"timestamp": timestamp, "target": target})
        self.block = type("B", (), {"header": self.header})


def _old_next_target(parent, config):
    """The rule before issue 10: parent's own timestamp, windows apart, clamp 4x."""
    h = parent.height + 1
    target = parent.block.header.target
    if h % config.retarget_window:
        return target
    first = parent
    while first.height > h - config.retarget_window:
        first = first.parent
    expected = config.retarget_window * config.target_block_ms
    actual = min(max(parent.block.header.timestamp - first.block.header.timestamp, expected // 4), expected * 4)
    return max(1, min(target * actual // expected, config.pow_limit))


def _simulate(config, rule, stamp, windows, future=None):
    """A miner of constant hash rate (one block per target_block_ms at the initial
    target) builds ``windows`` retarget windows; ``stamp(height, now, mtp)`` picks
    each timestamp (clamped into the valid range; ``future``: the clock allowance,
    default the config's). Returns the final target."""
    future = config.max_future_ms if future is None else future
    from learningchain.ledger.header_rules import median_time
    tip = _Entry(None, config.timestamp, config.initial_target)
    now = config.timestamp
    for _ in range(windows * config.retarget_window):
        target = rule(tip, config)
        now += max(1, config.target_block_ms * config.initial_target // target)  # easier: faster blocks
        mtp = median_time(tip)
        ts = min(max(stamp(tip.height + 1, now, mtp), mtp + 1), now + future)
        tip = _Entry(tip, ts, target)
    return rule(tip, config) if (tip.height + 1) % config.retarget_window else tip.block.header.target


def _warp_config():
    """The demo's timing (500 ms blocks, 20-block windows, 2 s clock allowance)."""
    return Chain(tiny_genesis(retarget_window=20, target_block_ms=500, max_future_ms=2000,
                              initial_target=EASY >> 24, pow_limit=EASY)).config


def test_one_future_block_at_a_window_end_moves_nothing():
    config = _warp_config()
    honest = _simulate(config, next_target, lambda h, now, mtp: now, 3)
    warped = _simulate(config, next_target,
                       lambda h, now, mtp: now + config.max_future_ms if h % 20 == 19 else now, 3)
    assert warped == honest
    old_warped = _simulate(config, _old_next_target,  # the attack of the issue, against the old rule
                           lambda h, now, mtp: now + 59_000 if h % 20 == 19 else now, 1, future=60_000)
    assert old_warped >= 4 * config.initial_target


def test_majority_time_warp_gains_nothing():
    """The classic warp: every block at the median + 1 except the last of each
    window, at the edge of the clock allowance. The old rule reached pow_limit
    within 12 windows; the new one never eases below what real time allows."""
    config = _warp_config()
    def warp(h, now, mtp):  # (clamped to the allowance: 60 s under the old rule, 2 s now)
        return now + 60_000 if h % 20 == 19 else mtp + 1
    old = _simulate(config, _old_next_target, warp, 12, future=60_000)
    assert old == config.pow_limit
    for strategy in (warp, lambda h, now, mtp: now + config.max_future_ms, lambda h, now, mtp: mtp + 1):
        assert _simulate(config, next_target, strategy, 12) <= 2 * config.initial_target


def test_claimed_elapsed_time_eases_at_most_2x_per_window():
    """A fork from deep history may claim any elapsed time up to the clock: each
    window still eases at most 2x (it was 4x)."""
    config = _warp_config()
    for windows in (1, 2, 5):
        got = _simulate(config, next_target, lambda h, now, mtp: mtp + 10**9, windows)
        assert got <= config.initial_target * 2 ** windows


# --- median time past over a window of exactly 11 (docs/protocol.md section 4, rule 6) ----

def _at(chain, ts):
    b = mine(chain.build_block(MINER.public_hex, [], ts))
    chain.add_block(b, ts)
    return b


def test_median_time_past_uses_exactly_the_last_11_blocks():
    """15 blocks with one early outlier each side of the median: windows of 10,
    11 or 12 blocks give different medians, and only 11 is accepted."""
    chain = Chain(tiny_genesis())
    stamps = [1000, 2000, 30_000, 2500] + [1000 * (k - 2) for k in range(5, 15)]  # heights 1..14
    for ts in stamps:
        _at(chain, T0 + ts)
    assert chain.height == 14
    # last 11 (heights 4..14): 2500, 3000, 4000, ..., 12000 -> element 5 = 7000;
    # a 12-block window (adds 30000) or a 10-block one (drops 2500) would give 8000.
    from learningchain.ledger.header_rules import median_time
    assert median_time(chain.tip_entry) == T0 + 7000
    b = next_block(chain)
    refused(chain, rebuild(b, timestamp=T0 + 7000), errors.BLOCK_TIME_TOO_OLD)
    assert chain.add_block(rebuild(b, timestamp=T0 + 7001), T0 + 13_000).status == "connected"


# --- genesis header fixed by its config (docs/protocol.md section 6) -----------------------

@pytest.mark.parametrize("field,value", [
    ("target", EASY >> 1), ("timestamp", T0 + 1), ("miner", MINER.public_hex), ("nonce", 7),
])
def test_genesis_header_must_match_its_config(field, value):
    g = tiny_genesis()
    Chain(g)  # the real one is fine
    forged = Block(replace(g.header, **{field: value}), g.txs, g.commitment, g.config)
    with pytest.raises(ValidationError) as exc:
        Chain(forged)
    assert exc.value.code == errors.BLOCK_BAD_GENESIS and field in exc.value.detail


def test_genesis_header_check_names_every_differing_field_and_spares_defaulted_configs():
    from learningchain.ledger.block import ZERO_HASH
    from learningchain.ledger.genesis import GENESIS_MINER, NetworkConfig
    g = tiny_genesis()
    forged = Block(replace(g.header, nonce=3, timestamp=T0 + 5), g.txs, g.commitment, g.config)
    with pytest.raises(ValidationError, match="in: timestamp, nonce$"):
        Chain(forged)
    # a config that leaves a defaulted field out hashes differently from
    # to_dict(): its own commitment hash is the one the header must carry
    cfg = NetworkConfig.from_genesis(g)
    doc = {k: v for k, v in g.config.items() if k != "max_future_ms"}
    sparse = make_block(height=0, prev_hash=ZERO_HASH, timestamp=cfg.timestamp, target=cfg.initial_target,
                        miner=GENESIS_MINER, txs=(), commitment=None, config=doc, nonce=0)
    assert sparse.hash != g.hash and Chain(sparse).config.max_future_ms == cfg.max_future_ms


@pytest.mark.parametrize("speed", [0.3, 3.0])
@pytest.mark.parametrize("block_ms", [50, LOCAL_BLOCK_MS])
def test_retargeting_brings_a_fast_network_to_its_interval(speed, block_ms):
    """Short intervals (the demo's LOCAL_BLOCK_MS, and 50 ms; 20-block windows,
    issue 13): miners ``speed`` times as fast as the initial target assumed reach
    one block about every ``block_ms`` within a few windows (honest timestamps,
    integer milliseconds)."""
    from learningchain.ledger.header_rules import next_target
    config = Chain(tiny_genesis(retarget_window=20, target_block_ms=block_ms, max_future_ms=4 * block_ms,
                                initial_target=EASY >> 24, pow_limit=EASY)).config
    tip = _Entry(None, config.timestamp, config.initial_target)
    now, intervals = config.timestamp, []
    for _ in range(12 * config.retarget_window):
        target = next_target(tip, config)
        step = max(1, round(config.target_block_ms * config.initial_target / target / speed))
        now += step
        intervals.append(step)
        tip = _Entry(tip, now, target)
    last_window = intervals[-config.retarget_window:]
    assert 0.75 * block_ms <= sum(last_window) / len(last_window) <= 1.25 * block_ms
