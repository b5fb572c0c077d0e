"""Aggregation of repeated runs (learningchain/sim/repeats.py): mean, sample std, n."""
from __future__ import annotations

import math

import pytest

from learningchain.sim import repeats


def _run(finals: list[float], base: float | None = 0.9, seed_cfg: int = 0) -> dict:
    m = lambda a: {"accuracy": a, "f1": a}  # noqa: E731
    return {"config": {"nodes": 2, "seed": seed_cfg, "aggregator": "fedavg"}, "initial": m(0.1),
            "rounds": [{"round": r + 1, "metrics": m(v)} for r, v in enumerate(finals)],
            "final": m(finals[-1]),
            "baselines": {"centralized": None if base is None else m(base),
                          "local_only": {**m(0.5), "per_node": [m(0.4), m(0.6)]}}}


def test_stats_is_the_sample_std_over_the_finite_values():
    s = repeats.stats([1.0, 2.0, 3.0, None])
    assert s["mean"] == 2.0 and s["n"] == 3 and s["values"] == [1.0, 2.0, 3.0, None]
    assert s["std"] == pytest.approx(1.0)  # n - 1: sqrt(2 / 2); the population std would be 0.816
    assert repeats.stats([0.5])["std"] is None  # one seed: undefined, never 0
    assert repeats.stats([None, math.inf]) == {"mean": None, "std": None, "n": 0, "values": [None, math.inf]}


def test_aggregate_runs_per_round_final_and_baselines():
    agg = repeats.aggregate_runs({3: _run([0.5, 0.7]), 4: _run([0.6, 0.9], base=0.8, seed_cfg=4)})
    assert agg["repeats"]["seeds"] == [3, 4] and agg["repeats"]["n"] == 2 and "n - 1" in agg["repeats"]["std"]
    assert "seed" not in agg["config"] and agg["config"]["aggregator"] == "fedavg"
    r1, r2 = agg["rounds"]
    assert r1["round"] == 1 and r1["metrics"]["accuracy"]["mean"] == pytest.approx(0.55)
    assert r2["metrics"]["accuracy"]["std"] == pytest.approx(math.sqrt(2) * 0.1)
    assert agg["final"]["accuracy"]["values"] == [0.7, 0.9]
    assert agg["baselines"]["centralized"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert "per_node" not in agg["baselines"]["local_only"]
    assert agg["initial"]["accuracy"]["std"] == 0.0


def test_missing_rounds_and_baselines_leave_the_points_n():
    agg = repeats.aggregate_runs({0: _run([0.5, 0.7, 0.8], base=None), 1: _run([0.6, 0.9], base=None)})
    assert [e["round"] for e in agg["rounds"]] == [1, 2, 3]
    last = agg["rounds"][2]["metrics"]["accuracy"]
    assert last["n"] == 1 and last["mean"] == 0.8 and last["std"] is None
    assert agg["baselines"]["centralized"] is None  # skipped in every run


def test_single_seed_gives_null_std():
    agg = repeats.aggregate_runs({7: _run([0.5, 0.7])})
    assert agg["final"]["accuracy"] == {"mean": 0.7, "std": None, "n": 1, "values": [0.7]}


def test_mean_std_tree_keeps_the_sweep_shape():
    a = {"metric": "accuracy", "aggregators": {"krum": {"byzantine": [0, 1], "final": [0.9, 0.5], "recall": [None, 1.0]}}}
    b = {"metric": "accuracy", "aggregators": {"krum": {"byzantine": [0, 1], "final": [0.7, 0.5], "recall": [None, 0.5]}}}
    agg = repeats.aggregate_sweeps({0: a, 1: b})
    row, spread = agg["aggregators"]["krum"], agg["std"]["aggregators"]["krum"]
    assert row["byzantine"] == [0, 1] and agg["metric"] == "accuracy"  # equal leaves kept as they are
    assert row["final"] == [pytest.approx(0.8), 0.5] and spread["final"] == [pytest.approx(math.sqrt(0.02)), 0.0]
    assert row["recall"] == [None, 0.75]
    assert agg["per_seed"]["1"] == b and agg["repeats"]["n"] == 2


@pytest.mark.parametrize("text, seeds", [("0,1,2", [0, 1, 2]), ("0..4", [0, 1, 2, 3, 4]), ("0..2,7,1", [0, 1, 2, 7]),
                                         ("5", [5])])
def test_parse_seeds(text, seeds):
    assert repeats.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3..1", "-1", "1..x"])
def test_parse_seeds_refuses(text):
    with pytest.raises(ValueError):
        repeats.parse_seeds(text)


def test_pm():
    assert repeats.pm(repeats.stats([1.0, 3.0])) == "2.0000 ± 1.4142"
    assert repeats.pm(repeats.stats([1.0])) == "1.0000 ± -"
    assert repeats.pm(None) == "-"
