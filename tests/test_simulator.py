"""The in-process simulator end to end: real keys, signatures, proof of work and
validation by every full node; results.json in the shared schema; the CLI."""
from __future__ import annotations

import json

import pytest

from learningchain import cli, results, sim_cli
from learningchain.errors import ConfigError
from learningchain.ledger import Ledger
from learningchain.simulator import SimConfig, Simulation, SimulationError, load_config


@pytest.fixture(scope="module")
def krum_run():
    """5 nodes, one sign-flip attacker, Krum (f=1 needs 2f+3 = 5 updates), 3 rounds."""
    cfg = SimConfig(name="t", nodes=5, rounds=3, model="softmax", aggregator="krum",
                    aggregator_params={"f": 1}, byzantine=1, attack="sign-flip", seed=3)
    sim = Simulation(cfg)
    return sim, sim.run(with_baselines=True)


def test_results_follow_the_shared_schema(krum_run, tmp_path):
    sim, res = krum_run
    results.check_results(res)
    path = results.write_results(tmp_path, res)
    doc = json.loads(path.read_text())
    assert [e["round"] for e in doc["rounds"]] == [1, 2, 3]
    assert set(doc["final"]) == set(results.CLASSIFICATION_METRICS)
    for entry in doc["rounds"]:
        assert len(entry["accepted"]) + len(entry["rejected"]) == 5
        assert set(entry["timing"]) >= {"train", "sign", "submit", "mine", "validate_block", "evaluate"}
        assert entry["bytes"] > 0
    assert len(doc["baselines"]["local_only"]["per_node"]) == 5


def test_full_nodes_agree_and_hold_the_model_of_the_chain(krum_run):
    sim, res = krum_run
    assert len(sim.ledgers) == 3
    tips = {(l.chain.tip.hash, l.chain.tip_state.model_digest) for l in sim.ledgers}
    assert tips == {(res["config"]["tip"], res["config"]["model_digest"])}
    # the final metrics are those of the model the chain committed to
    assert sim.evaluate(sim.ledgers[2].chain.tip_state.model) == res["final"]
    assert sim.ledgers[0].chain.tip.header.check_pow()


def test_learning_improves_over_g0(krum_run):
    _, res = krum_run
    assert res["final"]["accuracy"] > res["initial"]["accuracy"] + 0.3


def test_krum_rejects_the_sign_flip_attacker(krum_run):
    sim, res = krum_run
    assert len(sim.attackers) == 1
    caught = sum(e["attackers_rejected"] for e in res["rounds"])
    assert caught == 3  # every round
    assert all(e["recall"] == 1.0 for e in res["rounds"])
    assert all(e["attackers_accepted"] == 0 for e in res["rounds"])


def test_disagreeing_full_nodes_are_detected(krum_run):
    sim, _ = krum_run
    saved = sim.ledgers[1]
    sim.ledgers[1] = Ledger(sim.genesis)  # a node that missed every block
    try:
        with pytest.raises(SimulationError, match="disagree"):
            sim.check_agreement()
    finally:
        sim.ledgers[1] = saved


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"nodes": 6, "rounds": 2, "aggregator": "median", "target": {"max_gap": 0.1}}))
    cfg = load_config(p, {"rounds": 4, "seed": None})
    assert (cfg.name, cfg.nodes, cfg.rounds, cfg.aggregator, cfg.n_full, cfg.n_quorum) == ("c", 6, 4, "median", 3, 6)
    p.write_text(json.dumps({"nodez": 6}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(p)
    with pytest.raises(ConfigError, match="byzantine"):
        SimConfig(nodes=4, byzantine=4)
    with pytest.raises(ConfigError, match="krum"):  # genesis: quorum below what krum f=3 needs
        Simulation(SimConfig(nodes=4, rounds=1, model="softmax", aggregator="krum",
                             aggregator_params={"f": 3}))


def test_simulate_cli_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = sim_cli.main(["simulate", "--nodes", "4", "--rounds", "2", "--model", "softmax",
                         "--full-nodes", "2", "--no-baselines", "--out", str(out)])
    assert code == 0
    doc = results.read_results(out)
    assert len(doc["rounds"]) == 2 and doc["config"]["full_nodes"] == 2
    assert (out / "metric.png").read_bytes()[:4] == b"\x89PNG"
    assert "round" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["simulate", "--nodes", "many"], ["simulate", "--split", "zipf"],
                                  ["simulate", "--bogus-flag"], ["experiment", "byzantine", "--max-byzantine", "-1"]])
def test_bad_flag_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text('{"nodes": 4, "aggregator": "mean"}')
    assert cli.main(["simulate", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mean" in err[0] and "fedavg" in err[0]
    assert cli.main(["simulate", "--config", str(tmp_path / "missing.json")]) == 2
    assert cli.main(["experiment", "byzantine", "--nodes", "4", "--max-byzantine", "4"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
