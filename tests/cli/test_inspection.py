"""The inspection commands' output (learningchain/cli/inspection.py): units,
aligned tables, ids a user can paste back, and ``--json`` exactly as the node
answers. Against a real node served over HTTP in-process (tests/served.py)."""
from __future__ import annotations

import json

import pytest
import requests

from learningchain.cli import inspection as ins
from learningchain.cli.main import main
from tests.helpers import KEYS, update_tx
from tests.served import network_factory


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def test_units():
    """The CLI's units are core.units' (shared with the explorer): decimal prefixes."""
    from learningchain.core import units
    assert ins.hash_rate is units.hash_rate and ins.byte_size is units.byte_size and ins.duration is units.duration
    assert ins.hash_rate(1435417.9) == "1.44 MH/s" and ins.hash_rate(748583.5) == "748.6 kH/s"
    assert ins.hash_rate(812) == "812 H/s" and ins.hash_rate(None) == "-"
    assert ins.byte_size(812) == "812 B" and ins.byte_size(13541) == "13.5 kB" and ins.byte_size(6718568) == "6.7 MB"
    assert ins.duration(0.0143) == "14.3 ms" and ins.duration(164.3) == "2 min 44 s"
    assert ins.age(1_000_000, now_ms=1_012_400) == "12 s ago" and ins.age(0, now_ms=3_600_000 * 3) == "3 h ago"
    assert ins.metrics({"accuracy": 0.97777, "f1": "1.000000"}) == "accuracy 0.9778  f1 1.0000"


def test_tables_align_numbers_right_and_ids_are_copyable_prefixes():
    text = ins.table(["id", "n"], [[ins.short("ab" * 32), 5], [ins.short("cd" * 32), 12345]], right=(1,))
    lines = text.splitlines()
    assert lines[0] == "id                    n" and lines[2] == "abababababababab      5"
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert ins.short("ab" * 32) == "ab" * 8 and len(ins.short("ab" * 32)) == ins.ID_CHARS >= 16


def run(capsys, *argv) -> str:
    assert main(list(argv)) == 0, argv
    return capsys.readouterr().out


def test_every_command_against_a_served_node(network, capsys):
    a = network("a")
    txs = [update_tx(a.node.chain, k) for k in KEYS[:3]]  # quorum 3: the block closes round 1
    for tx in txs:
        assert a.node.submit_tx(tx) == "accepted"
    ids = sorted(t.id for t in txs)
    mempool = run(capsys, "mempool", "--node", a.url)
    assert mempool.startswith("3 transaction(s) waiting, ") and " kB" in mempool
    assert all(i[:16] in mempool for i in ids), mempool
    a.mine_one()
    block = run(capsys, "block", "1", "--node", a.url)
    rows = block.split("3 transaction(s)\n")[1].splitlines()[2:]
    assert sorted(r.split()[0] for r in rows) == [i[:16] for i in ids], block  # the id column is filled
    assert a.node.chain.tip.hash in block  # the full hash, to copy
    tx = run(capsys, "tx", ids[0], "--node", a.url)
    assert tx.splitlines()[0].split() == ["id", ids[0]]
    status = run(capsys, "status", "--node", a.url)
    assert "by_type" not in status and "=" not in status
    traffic = status.split("traffic: ")[1].splitlines()
    assert traffic[1].split() == ["message", "type", "messages", "sent", "received"]
    assert "mining              no" in status and "height              1" in status
    brief = run(capsys, "status", "--brief", "--node", a.url).rstrip("\n")  # the tmux pane's line
    assert brief == f":{a.port:<5} h     1  r    2  no metric   mp  0  peers 0  not mining", brief
    rounds = run(capsys, "round", "--node", a.url)
    assert rounds.splitlines()[0].split()[:2] == ["round", "status"]
    for command in ("chain", "peers", "model", "round 1"):
        out = run(capsys, *command.split(), "--node", a.url)
        assert out.strip() and "Traceback" not in out


@pytest.mark.parametrize("path, argv", [("/blocks/1", ["block", "1"]), ("/rounds/1", ["round", "1"]),
                                        ("/mempool", ["mempool"]), ("/model", ["model"])])
def test_json_is_the_nodes_answer_byte_for_byte(network, capsys, path, argv):
    a = network("a")
    for k in KEYS[:3]:
        a.node.submit_tx(update_tx(a.node.chain, k))
    a.mine_one()
    out = run(capsys, *argv, "--json", "--node", a.url)
    assert out == json.dumps(requests.get(a.url + path, timeout=10).json(), indent=1) + "\n"
