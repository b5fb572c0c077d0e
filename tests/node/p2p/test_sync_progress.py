"""The sync progress line of a node far behind (learningchain/node/p2p/sync_progress.py)."""
from __future__ import annotations

import re

from learningchain.node.p2p import sync_progress
from learningchain.node.p2p.sync_progress import SyncProgress
from tests.served import network_factory, wait_for

import pytest


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_line_a_second_while_far_behind_and_one_at_the_end():
    lines, clock = [], Clock()
    p = SyncProgress(lines.append, "http://peer", 5000, 0, clock=clock)
    p.update(100)  # within the first second: nothing
    clock.t += 1.5
    p.update(1200)
    clock.t += 0.5
    p.update(1300)  # half a second later: nothing
    clock.t += 1.0
    p.update(2000)
    p.done(5000)
    assert lines == ["sync: 1200/5000 blocks (24 %, 800 blocks/s) from http://peer",
                     "sync: 2000/5000 blocks (40 %, 667 blocks/s) from http://peer",
                     "sync: at height 5000 after 5000 blocks in 3.0 s from http://peer"]


def test_a_short_catch_up_logs_nothing():
    lines, clock = [], Clock()
    p = SyncProgress(lines.append, "http://peer", 30, 25, clock=clock)
    clock.t += 5
    p.update(30)
    p.done(30)
    SyncProgress(lines.append, "http://peer", None, 0, clock=clock).done(0)  # peer height unknown
    assert lines == []


def test_a_late_node_logs_its_sync(network, monkeypatch):
    monkeypatch.setattr(sync_progress, "FAR_BEHIND", 5)
    monkeypatch.setattr(sync_progress, "EVERY_S", 0.0)
    a = network("a")
    for _ in range(12):
        a.mine_one()
    d = network("d")
    lines = []
    d.node.log = lines.append
    d.node.peers.add(a.url)
    wait_for(lambda: d.status()["height"] == 12 and any(line.startswith("sync: at height 12") for line in lines),
             seconds=15, what="the late node to sync and say so")
    assert any(re.fullmatch(rf"sync: 12/12 blocks \(100 %, \d+ blocks/s\) from {a.url}", line) for line in lines), lines
