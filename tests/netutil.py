"""Helpers for fault tests and bench/faults.py: a network of ``node.py run``
processes on 127.0.0.1 (via :class:`learningchain.cli.processes.Network`), what their
main chains hold, and a peer that accepts connections and never answers."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

from learningchain.learning import data
from learningchain.cli.processes import Network, get, wait_for, wait_ready
from learningchain.node.keyfile import load_or_create_key
from learningchain.ledger.genesis import default_config, permissioned

ROOT = Path(__file__).resolve().parents[1]


def fault_network(out: Path, n: int, *, round_timeout: int = 6, target_block_ms: int = 200):
    """Partitions, genesis (softmax on digits, quorum = every node) and a Network."""
    parts = data.write_partitions(out / "parts", "digits", n, "iid")
    # the keys first, where Network.start will look for them, so genesis allow-lists them
    keys = [load_or_create_key(out / "nodes" / f"node{i}").public_hex for i in range(n)]
    config = permissioned(default_config(n, dataset="digits", kind="softmax", round_timeout=round_timeout,
                                         target_block_ms=target_block_ms), keys)
    genesis = out / "genesis.json"
    genesis.write_text(json.dumps(config.to_dict()))
    return Network(out), parts, genesis, config


def status(node) -> dict:
    return get(node.url, "/status") or {}


def main_chain_txs(url: str) -> dict[str, dict]:
    """tx id -> {"height", "round", "base", "block"} for every tx on ``url``'s main chain."""
    out: dict[str, dict] = {}
    start = 0
    while True:
        page = get(url, f"/chain?start={start}&limit=500")
        if not page or not page["blocks"]:
            return out
        for summary in page["blocks"]:
            if summary["txs"]:
                block = get(url, f"/blocks/{summary['hash']}") or {}
                for tx in block.get("txs", []):
                    out[tx_id(tx)] = {"height": summary["height"], "round": tx["round"], "base": tx["base"],
                                      "block": summary["hash"]}
        start = page["blocks"][-1]["height"] + 1
        if start > page["height"]:
            return out


def tx_id(doc: dict) -> str:
    from learningchain.ledger.tx import UpdateTx
    return UpdateTx.parse(doc).id


def lost_txs(before: dict[str, dict], node) -> list[str]:
    """Txs that were on a main chain ``before`` and are now neither on ``node``'s
    main chain nor in its mempool, although still valid on its tip (open round
    and base model): those would be lost updates. Must be empty."""
    after = main_chain_txs(node.url)
    pool = {t["id"] for t in (get(node.url, "/mempool") or {}).get("txs", [])}
    s = status(node)
    lost = []
    for txid, info in before.items():
        if txid in after or txid in pool:
            continue
        if info["round"] == s.get("round") and info["base"] == s.get("model_digest"):
            lost.append(txid)
    return lost


def converged(nodes) -> str | None:
    """The common tip once every node reports the same tip and model digest
    (one /status per node, so tip and digest are read together)."""
    seen = {(d.get("tip"), d.get("model_digest")) for d in (status(n) for n in nodes)}
    if len(seen) == 1:
        tip, digest = seen.pop()
        return tip if tip and digest else None
    return None


def one_chain(nodes, min_height: int = 0) -> bool:
    """Every node has reached ``min_height``; all hold the same block at the lowest
    node's height, and the same model digest for the last round all of them closed.
    Unlike :func:`converged` this holds while the network keeps mining: a node a
    block or two behind is on the same chain, not split from it (on a loaded
    machine three tips were rarely equal at the same moment)."""
    docs = [status(n) for n in nodes]
    heights = [d.get("height") for d in docs]
    if not all(isinstance(h, int) for h in heights) or min(heights) < min_height:
        return False
    low = min(heights)
    hashes = {(get(n.url, f"/blocks/{low}") or {}).get("hash") for n in nodes}
    if len(hashes) != 1 or None in hashes:
        return False
    closed = min(d.get("round") or 1 for d in docs) - 1
    if closed < 1:
        return True
    digests = {(get(n.url, f"/rounds/{closed}", timeout=10) or {}).get("model_digest") for n in nodes}
    return len(digests) == 1 and None not in digests


def verify(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "node.py"), "verify", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))


def round_commitments(url: str, rounds) -> dict[int, int]:
    """round -> number of updates in its closing commitment."""
    out = {}
    for r in rounds:
        doc = get(url, f"/rounds/{r}") or {}
        if doc.get("status") == "closed":
            out[r] = len(doc.get("updates", []))
    return out


class SilentPeer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers
    (a hung peer). ``url`` to give to nodes; ``accepted`` counts connections."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for c in self._conns:
            c.close()
        self.sock.close()


__all__ = ["Network", "wait_for", "wait_ready", "get"]
