"""The adversarial suite: attacks on real ``node.py run`` processes.

Each attack is a *scenario*: a function ``run(out: Path) -> Outcome`` registered
with :func:`scenario`. It starts its own small network under ``out`` (with
:func:`honest_network`), attacks it the way an outsider with a valid key, a
socket and patience would, and reports what the network did. The same
scenarios serve twice:

* ``tests/system/test_adversary.py`` runs one test per scenario and asserts
  :meth:`Outcome.passed` (and whatever else the scenario checks);
* ``bench/hostile.py`` runs all of them against live networks and prints one
  table: attack, what it tried, what the network did, whether honest rounds
  kept closing and every node kept one chain and one model.

Scenarios live in one module per area (``tests/adversary/<area>.py``); importing
this package imports them all, so the registry is complete.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from learningchain.learning import data
from learningchain.cli.processes import Network, get, wait_ready
from learningchain.ledger.genesis import NetworkConfig, default_config

from tests.netutil import one_chain, status


@dataclass
class Outcome:
    attack: str                 # short name, e.g. "nesting-bomb"
    tried: str                  # what the attacker did, one line
    network_did: str            # what the network did, one line (figures welcome)
    rounds_kept_closing: bool   # honest rounds closed during / after the attack
    one_chain_one_model: bool   # every honest node ended on one chain with one model (agree)
    ok: bool = True             # the scenario's own checks (bounded memory, refused, ...)
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.rounds_kept_closing and self.one_chain_one_model and self.ok


Scenario = Callable[[Path], Outcome]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name} registered twice")
        SCENARIOS[name] = fn
        return fn
    return register


def load_all() -> dict[str, Scenario]:
    """Import every ``tests/adversary/*.py`` module (each registers its scenarios)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return SCENARIOS


# --- a small honest network ---------------------------------------------------

@dataclass
class HonestNet:
    net: Network
    nodes: list            # NodeProc, node 0 mines
    parts: Path
    genesis: Path
    config: NetworkConfig

    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]


def honest_network(out: Path, n: int = 3, *, miners: int = 1, config: NetworkConfig | None = None,
                   round_timeout: int = 6, target_block_ms: int = 200, extra=()) -> HonestNet:
    """``n`` learners on digits (softmax, quorum = n) connected to node 0; the first
    ``miners`` nodes mine. The caller stops it with ``h.net.stop_all()``."""
    parts = data.write_partitions(out / "parts", "digits", n, "iid")
    config = config or default_config(n, dataset="digits", kind="softmax", round_timeout=round_timeout,
                                      target_block_ms=target_block_ms)
    genesis = out / "genesis.json"
    genesis.write_text(json.dumps(config.to_dict()))
    net = Network(out)
    nodes = []
    for i in range(n):
        peers = [nodes[0].url] if nodes else []
        nodes.append(net.start(i, peers=peers, dataset=parts / f"node{i}.npz", genesis=genesis,
                               mine=i < miners, extra=extra))
        if i == 0:  # as the demo does: a node whose seed is not up yet backs off from it for seconds
            wait_ready(net, nodes)
    wait_ready(net, nodes)
    return HonestNet(net, nodes, parts, genesis, config)


def poll(predicate, timeout: float, interval: float = 0.1):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def rounds_close(nodes, more: int = 2, timeout: float = 60.0) -> bool:
    """True once every node in ``nodes`` reports a round at least ``more`` past the
    highest round any of them reported at the call (polled, with a deadline)."""
    start = max((status(n).get("round") or 0) for n in nodes)
    return bool(poll(lambda: all((status(n).get("round") or 0) >= start + more for n in nodes), timeout, 0.2))


def agree(nodes, timeout: float = 60.0) -> bool:
    """True once every node is on one chain with one model (:func:`tests.netutil.one_chain`),
    each having reached the height the highest of them had at the call."""
    deadline = time.monotonic() + timeout

    def every_height():  # one read that every node answered: a timeout must not lower the bar
        got = [status(n).get("height") for n in nodes]
        return got if all(isinstance(h, int) for h in got) else None
    heights = poll(every_height, timeout, 0.3)
    if not heights:
        return False  # some node never answered /status
    start = max(heights)
    return bool(poll(lambda: one_chain(nodes, start), max(1.0, deadline - time.monotonic()), 0.3))


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc, clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


__all__ = ["Outcome", "SCENARIOS", "scenario", "load_all", "HonestNet", "honest_network", "poll",
           "rounds_close", "agree", "rss_mb", "cpu_seconds", "get"]
