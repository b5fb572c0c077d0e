"""Headers-first sync: the pure header chain (learningchain/ledger/headers.py) and, with
in-process served nodes (tests/served.py), a fork deeper than any page healing
by sync, and peers that lie in their headers or blocks."""
from __future__ import annotations

import json

import pytest

from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.core.errors import ValidationError
from learningchain.ledger.headers import HeaderChain
from tests.helpers import MINER, MINER2, next_block, remine, tiny_genesis
from tests.served import FakePeer, network_factory


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def grow(chain: Chain, n: int, miner=MINER) -> list:
    blocks = []
    for _ in range(n):
        blocks.append(next_block(chain, miner=miner))
        chain.add_block(blocks[-1], blocks[-1].header.timestamp)
    return blocks


def test_a_header_chain_checks_each_header_against_its_parent():
    g = tiny_genesis()
    ours, theirs = Chain(g), Chain(g)
    grow(ours, 3)
    fork = grow(theirs, 5, MINER2)
    hc = HeaderChain(ours.entry(ours.tip.hash), ours.config)
    now = fork[-1].header.timestamp
    assert hc.extend([b.header for b in fork[:3]], ours.entry, now) == 3  # connects to genesis, which we hold
    assert hc.base.hash == g.hash and hc.hashes() == [b.hash for b in fork[:3]]
    assert hc.work == theirs.work_of(fork[2].hash) and hc.work < ours.tip_work + 1
    assert hc.locator()[0] == fork[2].hash and hc.locator()[-1] == g.hash
    with pytest.raises(ValidationError) as exc:  # a page that skips a header does not connect
        hc.extend([fork[4].header], ours.entry, now)
    assert exc.value.code == errors.BLOCK_BAD_PREV
    for bad, code in ((remine(fork[3], target=fork[3].header.target >> 1), errors.BLOCK_BAD_TARGET),
                      (remine(fork[3], timestamp=fork[0].header.timestamp - 1), errors.BLOCK_TIME_TOO_OLD),
                      (remine(fork[3], height=9), errors.BLOCK_BAD_HEIGHT)):
        with pytest.raises(ValidationError) as exc:
            hc.extend([bad.header], ours.entry, now)
        assert exc.value.code == code
    header = fork[3].header
    while header.check_pow():
        header = header.with_nonce(header.nonce + 1)
    with pytest.raises(ValidationError) as exc:
        hc.extend([header], ours.entry, now)
    assert exc.value.code == errors.BLOCK_BAD_POW
    assert hc.extend([fork[3].header, fork[4].header], ours.entry, now) == 2
    assert hc.work == theirs.tip_work > ours.tip_work
    # a peer that reorged answers from an earlier header: the ones above it go
    assert hc.extend([fork[2].header], ours.entry, now) == 1 and hc.hashes() == [b.hash for b in fork[:3]]
    capped = HeaderChain(ours.entry(g.hash), ours.config, max_headers=2)
    with pytest.raises(ValidationError) as exc:
        capped.extend([b.header for b in fork], ours.entry, now)
    assert exc.value.code == errors.SYNC_TOO_MANY_HEADERS
    # a header chain far longer than our own branch above its base is a cheap one
    short = HeaderChain(ours.entry(g.hash), ours.config, our_height=3)
    assert short.cap() == 4 * 3 + 2 * 2000
    assert HeaderChain(ours.entry(g.hash), ours.config, max_headers=10, our_height=3).cap() == 10


def test_headers_of_blocks_we_hold_move_the_base():
    g = tiny_genesis()
    ours = Chain(g)
    common = grow(ours, 4)
    theirs = Chain(g)
    for b in common[:2]:
        theirs.add_block(b, b.header.timestamp)
    fork = grow(theirs, 3, MINER2)
    hc = HeaderChain(ours.entry(ours.tip.hash), ours.config)
    hc.extend([b.header for b in common[:2] + fork], ours.entry, fork[-1].header.timestamp)
    assert hc.base.hash == common[1].hash and hc.hashes() == [b.hash for b in fork]


def mine_apart(a, b, na: int, nb: int) -> None:
    for _ in range(na):
        a.mine_one()
    for _ in range(nb):
        b.mine_one()


def test_a_fork_deeper_than_a_page_heals_by_headers_first_sync(network):
    a, b = network("a"), network("b")  # not peered: a partition
    for s in (a, b):
        s.node.peers._stop.set()
        s.node.peers._thread.join(timeout=10)
    mine_apart(a, b, 260, 230)  # deeper than a sync page (100) and than the locator's dense part
    assert a.node.tip_work() > b.node.tip_work()
    b.node.peers.add(a.url)
    assert b.node.peers.sync_with(a.url) == 260  # every block of the heavier branch, then the reorg
    assert b.node.chain.tip.hash == a.node.chain.tip.hash and b.node.chain.model()[1] == a.node.chain.model()[1]
    assert b.node.chain.side_blocks == 230  # its own old branch is a side branch now
    a.node.peers.add(b.url)
    assert a.node.peers.sync_with(b.url) == 0  # b's chain is a's now: nothing to fetch


def test_a_lighter_peers_headers_fetch_no_blocks(network):
    a, b = network("a"), network("b")
    for s in (a, b):
        s.node.peers._stop.set()
        s.node.peers._thread.join(timeout=10)
    mine_apart(a, b, 30, 40)
    b.node.peers.add(a.url)
    assert b.node.peers.sync_with(a.url) == 0
    assert b.node.chain.side_blocks == 0  # not one of a's lighter blocks was fetched or stored


def test_headers_that_do_not_connect_end_the_sync_and_count_a_failure(network):
    b = network("b")
    b.node.peers._stop.set()
    b.node.peers._thread.join(timeout=10)
    other = Chain(tiny_genesis(network="other"))  # another network's headers connect to nothing here
    blocks = grow(other, 3)
    liar = FakePeer(reply=json.dumps({"height": 3, "headers": [x.header.to_dict() for x in blocks[1:]],
                                      "more": True, "blocks": []}).encode())
    try:
        b.node.peers.add(liar.url)
        assert b.node.peers.sync_with(liar.url) == 0
        assert liar.paths == ["/sync/headers"]  # no block asked for
        assert b.node.peers.snapshot()[0]["failures"] == 1
        assert b.node.peers.sync_penalized(liar.url)  # it broke a rule: no sync with it for a while
        assert b.node.peers.sync_with(liar.url) == 0 and liar.paths == ["/sync/headers"]
    finally:
        liar.close()
