"""results.json schema, detection figures and the PNG plots."""
from __future__ import annotations

import json
import math

import pytest

from learningchain.sim import results


def _doc(rounds: int = 3) -> dict:
    metric = lambda a: {"accuracy": a, "precision": a, "recall": a, "f1": a}  # noqa: E731
    entries = []
    for r in range(1, rounds + 1):
        commitment = {"accepted": ["a", "b", "c"], "rejected": {"x": "krum: far", "d": "krum: far"}}
        entries.append(results.round_entry(r, r, metric(0.5 + 0.1 * r), commitment, attacker_ids=["x"],
                                           timing={"train": 0.01234567, "mine": 0.002}, nbytes=1000,
                                           epsilon=2.0 * r))
    return {"config": {"dataset": "digits", "nodes": 5, "aggregator": "krum", "byzantine": 1,
                       "attack": "sign-flip"},
            "initial": metric(0.1), "rounds": entries, "final": metric(0.8),
            "baselines": {"centralized": metric(0.9),
                          "local_only": {**metric(0.6), "per_node": [metric(0.5), metric(0.7)]}},
            "elapsed_s": 1.5}


def test_detection_precision_and_recall():
    d = results.detection(rejected_ids=["x", "d"], accepted_ids=["a", "y"], attacker_ids=["x", "y", "z"])
    # z never reached the round: it counts neither way
    assert d == {"attackers_rejected": 1, "attackers_accepted": 1, "precision": 0.5, "recall": 0.5}
    assert results.detection([], ["a"], [])["precision"] is None
    assert results.detection([], ["a"], [])["recall"] is None


def test_round_entry_and_write_read_roundtrip(tmp_path):
    doc = _doc()
    e = doc["rounds"][0]
    assert e["attackers_rejected"] == 1 and e["precision"] == 0.5 and e["recall"] == 1.0
    assert e["timing"]["train"] == 0.0123 and e["epsilon"] == 2.0
    path = results.write_results(tmp_path / "out", doc)
    assert path.name == "results.json"
    back = results.read_results(tmp_path / "out")
    assert back["rounds"] == json.loads(json.dumps(doc["rounds"]))
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_non_finite_metrics_stay_strict_json(tmp_path):
    doc = _doc()
    reg = {"rmse": math.inf, "mae": 1.0, "r2": -math.inf}
    doc.update(initial=reg, final=dict(reg, rmse=2.0),
               baselines={"centralized": reg, "local_only": {**reg, "per_node": []}})
    for e in doc["rounds"]:
        e["metrics"] = dict(reg)
    path = results.write_results(tmp_path, doc)
    assert json.loads(path.read_text())["initial"]["rmse"] == "inf"
    assert results.primary_metric(doc["final"]) == "rmse"


@pytest.mark.parametrize("breakage, words", [
    (lambda d: d.pop("baselines"), "baselines"),
    (lambda d: d["final"].pop("f1"), "final metrics"),
    (lambda d: d["rounds"][1].pop("rejected"), "rounds[1]"),
    (lambda d: d["baselines"]["local_only"].pop("per_node"), "per_node"),
    (lambda d: d["initial"].update(rmse=1.0), "initial"),
])
def test_schema_violations_are_named(breakage, words, tmp_path):
    doc = _doc()
    breakage(doc)
    with pytest.raises(results.ResultsError, match=words.replace("[", r"\[").replace("]", r"\]")):
        results.write_results(tmp_path, doc)
    assert not (tmp_path / "results.json").exists()


def _is_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots_are_written(tmp_path):
    paths = results.plot_results(tmp_path, _doc())
    assert [p.name for p in paths] == ["metric.png", "updates.png"]
    assert all(_is_png(p) for p in paths)
    sweep = {"metric": "accuracy", "attack": "sign-flip", "nodes": 10,
             "aggregators": {"fedavg": {"byzantine": [0, 1, 2], "final": [0.96, 0.5, 0.01],
                                        "per_round": {"0": [0.8, 0.9], "2": [0.2, 0.01]}},
                             "krum": {"byzantine": [0, 1, 2], "final": [0.9, 0.9, 0.9],
                                      "per_round": {"0": [0.8, 0.9], "2": [0.8, 0.9]}}}}
    paths = results.plot_byzantine_sweep(tmp_path / "byz", sweep)
    assert [p.name for p in paths] == ["byzantine.png", "byzantine_rounds.png"]
    assert all(_is_png(p) for p in paths)
    dp = {"metric": "accuracy", "delta": 1e-5, "no_dp": 0.96,
          "points": [{"sigma": 0.5, "epsilon": 80.0, "final": 0.9}, {"sigma": 2.0, "epsilon": 9.0, "final": 0.6}]}
    assert _is_png(results.plot_dp_sweep(tmp_path / "dp", dp))


def test_a_dp_sweep_with_no_noisy_point_still_plots(tmp_path):
    """`experiment dp --sigmas 0`: only sigma 0 (epsilon = inf, no finite point);
    the log-scaled epsilon axis raised `unexpected ValueError` (issue 14)."""
    dp = {"metric": "accuracy", "points": [{"sigma": 0.0, "epsilon": math.inf, "final": 0.93}], "no_dp": 0.93}
    assert _is_png(results.plot_dp_sweep(tmp_path / "dp", dp))


def test_titles_carry_the_rule_and_its_parameters():
    cfg = {"dataset": "digits", "model": "mlp", "nodes": 10, "split": "iid", "aggregator": "krum",
           "aggregator_params": {"m": 1, "f": 2}}
    assert results._title(cfg) == "digits, mlp, 10 nodes, iid, krum (f=2, m=1)"
    assert results._title(cfg, seeds=[0, 1, 2]).endswith("krum (f=2, m=1), mean ± std over 3 seeds")
    assert results.rule_text("median", {}) == "median"


def test_plot_repeats_draws_a_band_png(tmp_path):
    from learningchain.sim.repeats import aggregate_runs
    one, two = _doc(), _doc()
    for e in two["rounds"]:
        e["metrics"] = {k: v - 0.05 for k, v in e["metrics"].items()}
    two["baselines"]["centralized"] = None  # one run skipped it: the line is the other's mean
    summary = aggregate_runs({0: one, 1: two})
    path = results.plot_repeats(tmp_path, summary)
    assert path.name == "metric.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plots_take_a_std_tree(tmp_path):
    from learningchain.sim.repeats import aggregate_sweeps
    sweep = lambda d: {"metric": "accuracy", "attack": "sign-flip", "nodes": 5,  # noqa: E731
                       "aggregators": {"median": {"byzantine": [0, 1], "final": [0.9 - d, 0.8],
                                                  "per_round": {"0": [0.8, 0.9 - d], "1": [0.7, 0.8]},
                                                  "params": {}}}}
    agg = aggregate_sweeps({0: sweep(0.0), 1: sweep(0.1)})
    paths = results.plot_byzantine_sweep(tmp_path, agg)
    assert [p.name for p in paths] == ["byzantine.png", "byzantine_rounds.png"]
    dp = aggregate_sweeps({s: {"metric": "accuracy", "points": [{"sigma": 1.0, "epsilon": 5.0, "final": 0.5 + s / 10}],
                               "no_dp": 0.9} for s in (0, 1)})
    assert results.plot_dp_sweep(tmp_path, dp).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
