"""A running node's own local-only baseline: the same model trained from G0 on
this node's partition alone, for as many rounds x E epochs as the network has
measured, evaluated on the node's held-out set. The explorer's chart draws it
when no ``baselines.json`` (``node.py demo``) gives one.

It runs in its own thread at the lowest CPU priority, after our learner is done
with the tip, and only every :data:`EVERY_ROUNDS` measured rounds; each step
trains only the new rounds' epochs (:func:`~learningchain.learning.baselines.train_blocks`
continues where the last step stopped), so it never sits on a round's path. A
node under differential privacy or secure aggregation does not compute it: the
figure would describe its private data outside what the accountant or the
masking covers.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from learningchain.learning.models import ModelSpec, build_model
from learningchain.node.baselines_file import dataset_digest, read_baselines

#: the baseline moves on once this many more rounds have been measured.
EVERY_ROUNDS = 10
#: how long the loop waits for the next measurement before it looks again (seconds).
IDLE_WAIT_S = 2.0
#: the seed of node i's training, as ``baselines.local_only`` seeds the i-th partition.
SEED_STEP = 7919


def lower_thread_priority() -> None:
    """Run the calling thread at nice 19 (Linux: a thread is a task with its own
    nice value); elsewhere, leave it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


class LocalBaseline:
    """The model trained alone on (X, y), ``rounds`` blocks of E epochs so far."""

    def __init__(self, spec: ModelSpec, X, y, test, index: int = 0):
        self.spec, self.X, self.y, self.test = spec, X, y, test
        self.seed = SEED_STEP * (index + 1)
        self.model = build_model(spec)
        self.weights = self.model.initial_weights()
        self.rounds = 0
        self.metrics: dict[str, float] | None = None
        self.test_digest = dataset_digest(*test)
        self._lock = threading.Lock()

    def due(self, measured: int | None) -> int | None:
        """The rounds to train up to now, or None (first at round 1, then every EVERY_ROUNDS)."""
        if not measured or measured < 1:
            return None
        if self.rounds == 0 or measured >= self.rounds + EVERY_ROUNDS:
            return measured
        return None

    def advance(self, rounds: int) -> None:
        from learningchain.learning.baselines import train_blocks  # it imports scikit-learn: only when used
        w = train_blocks(self.spec, self.weights, self.X, self.y, self.rounds, rounds, self.seed)
        m = self.model.evaluate(w, *self.test)
        with self._lock:
            self.weights, self.rounds, self.metrics = w, rounds, m

    def report(self) -> dict | None:
        with self._lock:
            if self.metrics is None:
                return None
            return {"metrics": dict(self.metrics), "rounds": self.rounds, "epochs": self.rounds * self.spec.epochs}


class BaselineNode(Protocol):
    """What the loop uses of the node."""
    local_baseline: LocalBaseline
    metrics: dict[int, dict[str, float]]
    stop_event: threading.Event
    learner_idle: threading.Event
    data_dir: Any

    def wait_tip(self, seconds: float, seen: int | None = None) -> None: ...

    def log(self, line: str) -> None: ...


def local_baseline_loop(node: BaselineNode) -> None:
    lower_thread_priority()
    while not node.stop_event.is_set():
        node.wait_tip(IDLE_WAIT_S)
        target = node.local_baseline.due(max(list(node.metrics), default=None))
        if target is None:
            continue
        found, _ = read_baselines(node.data_dir, node.local_baseline.test_digest)
        if found is not None and "local_only" in found:
            continue  # baselines.json (node.py demo) has it for the run's horizon
        node.learner_idle.wait(IDLE_WAIT_S)  # our own update first
        try:
            node.local_baseline.advance(target)
        except Exception as exc:  # a baseline must never stop the node
            node.log(f"local-only baseline error: {type(exc).__name__}: {exc}")
            return
