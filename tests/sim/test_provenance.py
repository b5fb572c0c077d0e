"""The provenance block of results (learningchain/sim/provenance.py), and that
``simulate`` and ``experiment`` write it (the demo's: tests/cli/test_demo.py)."""
from __future__ import annotations

import json
import platform
import subprocess

import numpy as np

from learningchain.cli.main import main
from learningchain.sim.provenance import git_state, provenance


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def test_provenance_of_a_git_checkout_clean_and_dirty(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("a\n")
    git(tmp_path, "add", "f.txt")
    git(tmp_path, "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f.txt").write_text("b\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}
    doc = provenance({"nodes": 4, "rule": ("krum", 1)}, {"seed": 3}, ["node.py", "simulate"], root=tmp_path)
    assert doc["config"] == {"nodes": 4, "rule": ["krum", 1]} and doc["seeds"] == {"seed": 3}
    assert doc["command"] == ["node.py", "simulate"] and doc["git"] == {"commit": head, "dirty": True}
    assert doc["packages"]["numpy"] == np.__version__
    assert doc["python"] == platform.python_version() and doc["host"]["platform"] == platform.platform()
    assert set(doc["packages"]) >= {"numpy", "scikit-learn", "flask", "ecdsa", "coincurve", "dp-accounting"}
    json.dumps(doc, allow_nan=False)  # plain JSON


def test_outside_a_git_checkout_the_commit_is_null(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_simulate_and_experiment_record_their_provenance(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--nodes", "2", "--rounds", "1", "--model", "softmax", "--seed", "7",
                 "--no-baselines", "--out", str(out)]) == 0
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["seeds"]["seed"] == 7 and prov["config"]["seed"] == 7 and prov["config"]["nodes"] == 2
    assert prov["config"]["aggregator_params"] == {"cap_factor": "2"}
    assert prov["command"][:2] == ["node.py", "simulate"] and "--seed" in prov["command"]
    assert len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)  # this checkout
    sweep = tmp_path / "dp"
    assert main(["experiment", "dp", "--nodes", "2", "--rounds", "1", "--model", "softmax", "--sigmas", "0,1",
                 "--seed", "5", "--out", str(sweep)]) == 0
    prov = json.loads((sweep / "dp.json").read_text())["provenance"]
    assert prov["seeds"] == {"seed": 5} and prov["config"]["flags"]["sigmas"] == [0.0, 1.0]
    assert prov["config"]["base"]["nodes"] == 2 and prov["config"]["flags"]["kind"] == "dp"
