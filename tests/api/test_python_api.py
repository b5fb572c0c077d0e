"""The Python API (learningchain/api.py): ``lc.simulate`` returns what
``node.py simulate`` writes to results.json for the same settings, its rounds
as flat rows, and ``import learningchain`` stays light. The live network
(``lc.Network.local``) is tests/system/test_api_network.py."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import learningchain as lc
from learningchain.cli import main as cli
from learningchain.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = {"nodes": 2, "rounds": 2, "model": "softmax", "seed": 3}


def test_simulate_returns_what_the_cli_writes_to_results_json(tmp_path):
    assert cli.main(["simulate", "--nodes", "2", "--rounds", "2", "--model", "softmax", "--seed", "3",
                     "--aggregator", "fedavg", "--dataset", "digits", "--no-baselines",
                     "--out", str(tmp_path / "cli")]) == 0
    written = json.loads((tmp_path / "cli" / "results.json").read_text())
    res = lc.simulate(**TINY, baselines=False, out=str(tmp_path / "api"))
    assert isinstance(res, dict) and isinstance(res, lc.Results)
    # the same configuration (every resolved key: rule sizing, genesis, tip, model digest) ...
    ours, theirs = dict(res["config"]), dict(written["config"])
    assert ours.pop("out") == str(tmp_path / "api") and theirs.pop("out") == str(tmp_path / "cli")
    assert ours == theirs and ours["model_digest"] and ours["aggregator_params"] == theirs["aggregator_params"]
    # ... the same learning, round by round
    assert res["initial"] == written["initial"] and res["final"] == written["final"]
    assert [e["metrics"] for e in res["rounds"]] == [e["metrics"] for e in written["rounds"]]
    assert [e["accepted"] for e in res["rounds"]] == [e["accepted"] for e in written["rounds"]]
    assert res["baselines"] == written["baselines"] and res["baselines"]["centralized"] is None
    # the same provenance block, with the call in place of the command line
    assert set(res["provenance"]) == set(written["provenance"])
    assert res["provenance"]["config"] == res["config"] and res["provenance"]["seeds"] == written["provenance"]["seeds"]
    assert res["provenance"]["command"][0].startswith("learningchain.simulate(nodes=2, rounds=2")
    # out= writes results.json as the CLI does: exactly the dict returned
    assert json.loads((tmp_path / "api" / "results.json").read_text()) == res
    assert (tmp_path / "api" / "metric.png").stat().st_size > 0
    assert res.metric == "accuracy" and res.final_metric == written["final"]["accuracy"]


def test_rounds_table_rows_are_flat_and_name_the_metrics():
    res = lc.simulate(**TINY, baselines=False)
    rows = lc.rounds_table(res)
    assert rows == res.table() and [r["round"] for r in rows] == [1, 2]
    for row, entry in zip(rows, res["rounds"]):
        assert all(v is None or isinstance(v, (int, float, str, bool)) for v in row.values()), row
        assert row["accuracy"] == entry["metrics"]["accuracy"] and row["f1"] == entry["metrics"]["f1"]
        assert row["accepted"] == len(entry["accepted"]) == 2 and row["rejected"] == 0
        assert row["bytes"] == entry["bytes"] > 0 and row["bytes_per_update"] == entry["bytes_per_update"]
        assert row["energy_total_j"] == entry["energy"]["total_j"] and "timing_train" in row
        assert "detection_precision" in row  # the attacker detection, apart from the metrics' precision
    assert len({tuple(r) for r in rows}) == 1  # every row has the same columns: one DataFrame


def test_simulate_refuses_an_unknown_keyword_naming_the_valid_ones():
    with pytest.raises(TypeError, match="unknown key.*bogus.*known:.*aggregator.*nodes") as err:
        lc.simulate(nodes=2, rounds=1, bogus=1)
    assert isinstance(err.value, ConfigError)
    with pytest.raises(ConfigError, match="unknown dataset"):
        lc.simulate(nodes=2, rounds=1, dataset="no-such")
    with pytest.raises(ConfigError, match="krum.*needs at least"):  # sized as the CLI sizes it
        lc.simulate(nodes=3, rounds=1, aggregator="krum", byzantine=1)
    with pytest.raises(ConfigError, match="results document"):
        lc.rounds_table({"final": {}})


def test_import_learningchain_loads_no_learning_stack():
    code = ("import sys, learningchain as lc\n"
            "assert callable(lc.simulate) and lc.Network.local and lc.ConfigError\n"
            "print([m for m in ('numpy', 'sklearn', 'scipy', 'matplotlib', 'requests') if m in sys.modules])\n"
            "try:\n    lc.nothing\nexcept AttributeError:\n    print('no attribute')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.stdout.split("\n")[:2] == ["[]", "no attribute"], done.stdout + done.stderr


def test_the_package_metadata_installs_node_py_and_the_requirements():
    """pyproject's [project]: the `learningchain` command is node.py's main, and the
    requirements come from the files make demo / make test install from."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = doc["project"]
    module, func = project["scripts"]["learningchain"].split(":")
    assert module == "learningchain.cli.main" and getattr(cli, func) is cli.main
    assert project["requires-python"] == ">=3.11" and set(project["dynamic"]) == {"dependencies",
                                                                                   "optional-dependencies"}
    dynamic = doc["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"]["file"] == ["requirements.txt"]
    assert dynamic["optional-dependencies"]["test"]["file"] == ["requirements-test.txt"]
    data = doc["tool"]["setuptools"]["package-data"]["learningchain.node.web"]
    web = ROOT / "learningchain" / "node" / "web"
    assert all(list(web.glob(pattern)) for pattern in data)  # the explorer's templates and script ship
    assert doc["tool"]["importlinter"]["contracts"][0]["layers"][0] == "api"
