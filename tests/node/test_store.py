"""Store: the SQLite block store, its round trip, crash consistency (SIGKILL
mid-write), genesis mismatch."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from learningchain.core.errors import ConfigError
from learningchain.node.chainstate import Ledger, verify_store
from learningchain.node.store import Store
from tests.helpers import tiny_genesis
from tests.node.test_chainstate import grow

ROOT = Path(__file__).resolve().parents[2]


def test_wal_mode_and_round_trip(tmp_path):
    g = tiny_genesis()
    with Store(tmp_path) as store:
        assert store.journal_mode == "wal"
        assert store.put(g) and not store.put(g)
        assert store.genesis_hash() == g.hash and store.has(g.hash) and store.count() == 1
        assert [b.serialize() for b in store.iter_blocks()] == [g.serialize()]
    assert (tmp_path / "chain.sqlite3").exists()


def test_genesis_mismatch_is_refused(tmp_path):
    Ledger(tiny_genesis(), Store(tmp_path)).store.close()
    with pytest.raises(ConfigError, match="use another --data-dir"):
        Ledger(tiny_genesis(network="other"), Store(tmp_path))


CHILD = """
import sys
from learningchain.ledger.block import Block
from learningchain.core.encoding import parse_json
from learningchain.node.store import Store
store = Store(sys.argv[1])
for i, line in enumerate(open(sys.argv[2])):
    store.put(Block.parse(parse_json(line)))
    print(i, flush=True)
print("done", flush=True)
sys.stdin.read()
"""


def test_sigkill_mid_write_leaves_a_consistent_store(tmp_path):
    g = tiny_genesis(round_timeout=1000, quorum=12)
    source = Ledger(g)
    blocks = grow(source, 30, updates_per_block=1)
    dump = tmp_path / "blocks.jsonl"
    dump.write_text("".join(b.serialize().decode() + "\n" for b in [g, *blocks]))
    data = tmp_path / "node"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(dump)], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "12":
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL
    store = Store(data)
    stored = list(store.iter_blocks())
    assert 13 <= len(stored) <= 31
    by_hash = {b.hash: b for b in [g, *blocks]}
    for b in stored:  # every block present is complete: byte-identical to what was written
        assert b.serialize() == by_hash[b.hash].serialize()
    assert [b.height for b in stored] == list(range(len(stored)))
    ledger = Ledger(g, store)
    assert ledger.chain.height == len(stored) - 1
    assert ledger.chain.tip_state == source.chain.state_of(ledger.chain.tip.hash)
    store.close()
    assert verify_store(data, g).ok
