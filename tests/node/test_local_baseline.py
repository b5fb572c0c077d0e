"""A node's own local-only baseline: trained in steps that add up to one run,
every EVERY_ROUNDS measured rounds, skipped when baselines.json has one or the
node runs under differential privacy."""
import threading
from types import SimpleNamespace

import pytest

from learningchain.learning import baselines
from learningchain.learning.data import load_partition
from learningchain.node.baselines_file import write_baselines
from learningchain.node.local_baseline import EVERY_ROUNDS, LocalBaseline, local_baseline_loop
from learningchain.node.service import Node
from tests.helpers import TINY_SPEC, tiny_config
from tests.node.test_service import write_partition


@pytest.fixture
def data(tmp_path):
    path = write_partition(tmp_path)
    return load_partition(path), load_partition(path.with_name("test.npz"))


def test_it_is_due_at_the_first_round_then_every_ten(data):
    (X, y), test = data
    lb = LocalBaseline(TINY_SPEC, X, y, test)
    assert lb.due(None) is None and lb.due(0) is None and lb.due(3) == 3
    lb.advance(3)
    assert lb.due(3 + EVERY_ROUNDS - 1) is None and lb.due(3 + EVERY_ROUNDS) == 3 + EVERY_ROUNDS


def test_steps_add_up_to_the_baseline_trained_in_one_go(data):
    (X, y), test = data
    lb = LocalBaseline(TINY_SPEC, X, y, test, index=2)
    lb.advance(2)
    lb.advance(5)
    report = lb.report()
    assert report["rounds"] == 5 and report["epochs"] == 5 * TINY_SPEC.epochs
    # baselines.local_only seeds partition i as 7919 * (i + 1): node2's is the third of three
    whole = baselines.local_only(TINY_SPEC, [(X, y)] * 3, test, 5 * TINY_SPEC.epochs)["per_node"][2]
    assert report["metrics"] == whole


def loop_node(tmp_path, data, rounds_measured):
    (X, y), test = data
    stop = threading.Event()
    calls = []

    def wait_tip(seconds, seen=None):
        calls.append(seconds)
        if len(calls) > 1:
            stop.set()
    idle = threading.Event()
    idle.set()
    return SimpleNamespace(local_baseline=LocalBaseline(TINY_SPEC, X, y, test), stop_event=stop,
                           metrics={r: {"accuracy": 0.5} for r in range(1, rounds_measured + 1)},
                           learner_idle=idle, data_dir=tmp_path, wait_tip=wait_tip, log=print)


def test_the_loop_trains_up_to_the_newest_measured_round(tmp_path, data):
    node = loop_node(tmp_path, data, 4)
    local_baseline_loop(node)
    assert node.local_baseline.report()["rounds"] == 4


def test_the_loop_leaves_it_to_baselines_json_when_that_has_one(tmp_path, data):
    node = loop_node(tmp_path, data, 4)
    write_baselines(tmp_path, {"source": "node.py demo: test", "rounds": 4, "epochs": 4,
                               "test_digest": node.local_baseline.test_digest, "local_only": {"accuracy": 0.9}})
    local_baseline_loop(node)
    assert node.local_baseline.report() is None


def test_a_dp_node_computes_none(tmp_path):
    path = write_partition(tmp_path)
    dp = Node(tmp_path / "dp", tiny_config(), dataset_path=path, dp_mode="sample", dp_epsilon=4.0,
              dp_rounds=10, quiet=True, port=5989, local_baseline=True)
    plain = Node(tmp_path / "plain", tiny_config(), dataset_path=path, quiet=True, port=5988, local_baseline=True)
    try:
        assert dp.local_baseline is None and plain.local_baseline is not None
    finally:
        dp.stop()
        plain.stop()
